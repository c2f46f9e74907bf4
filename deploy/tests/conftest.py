"""Fixtures of the packaging tests: a running strata-server with fault injection."""

from __future__ import annotations

import queue
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import strata_pkg as p  # noqa: E402

PANIC_PREFIX = "panic/"
LISTENING = re.compile(r"listening on (http://[0-9.]+:[0-9]+)")


class Server:
    """A strata-server child process on a free port with memory storage."""

    def __init__(self, tmp: Path):
        binary = p.server_bin()
        if not binary.is_file():
            raise AssertionError(
                f"strata-server binary not found at {binary}: build it "
                "(cargo build -p strata-server) or set STRATA_SERVER_BIN"
            )
        config = tmp / "strata.yaml"
        config.write_text(
            "http:\n"
            '  addr: "127.0.0.1:0"\n'
            f"  drain_file: {tmp / 'strata.down'}\n"
            "storage:\n"
            "  type: memory\n"
            "faults:\n"
            f'  panic_key_prefix: "{PANIC_PREFIX}"\n'
            "auth:\n"
            "  enforce: false\n"
        )
        self.log = tmp / "strata-server.log"
        self.proc = subprocess.Popen(
            [str(binary), "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            with open(self.log, "w") as log:
                for line in self.proc.stdout:
                    log.write(line)
                    log.flush()
                    lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 30
        self.url = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            m = LISTENING.search(line)
            if m:
                self.url = m.group(1)
                break
        if self.url is None:
            self.stop()
            raise AssertionError(f"strata-server did not report its address:\n{self.log.read_text()}")

    @property
    def hostport(self) -> str:
        return self.url.removeprefix("http://")

    def panic(self, n: int = 1) -> None:
        """Injects `n` panics (GET on keys under the panic prefix -> 500)."""
        for i in range(n):
            r = requests.get(f"{self.url}/v1/objects/drill/_/{PANIC_PREFIX}{i}", timeout=10)
            assert r.status_code == 500, f"expected 500 from an injected panic, got {r.status_code}"

    def metrics(self) -> str:
        r = requests.get(f"{self.url}/metrics", timeout=10)
        r.raise_for_status()
        return r.text

    def stop(self) -> None:
        p.stop_process(self.proc)


@pytest.fixture
def strata_server(tmp_path):
    server = Server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
