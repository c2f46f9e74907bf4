"""Fixtures for the Python client suite: a real `strata-server` child process.

The server binary comes from `STRATA_SERVER_BIN`, or else
`$CARGO_TARGET_DIR/debug/strata-server` (`target/debug/strata-server` at the repository
root when `CARGO_TARGET_DIR` is unset). Each server listens on 127.0.0.1 port 0 and keeps
its objects in a fresh temporary directory (filesystem backend).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import urllib3
from objectstore_client import Client, Session, Usecase

REPO_ROOT = Path(__file__).resolve().parents[3]
LISTENING = re.compile(r"listening on http://(\S+)")
STARTUP_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 20.0

# The characters Python's client leaves unescaped in paths (objectstore API §3.5).
PATH_SAFE = "/:@!$&'()*+,;="


def server_binary() -> Path:
    explicit = os.environ.get("STRATA_SERVER_BIN")
    if explicit:
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO_ROOT / "target")
    return Path(target) / "debug" / "strata-server"


class StrataServer:
    """One `strata-server run` child on the filesystem backend."""

    # The one place the suite sets access control: off unless a test passes `auth_yaml`.
    AUTH_OFF = "auth:\n  enforce: false\n"

    def __init__(
        self, workdir: Path, data_dir: Path | None = None, auth_yaml: str = AUTH_OFF
    ):
        self.auth_yaml = auth_yaml
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir or workdir / "data"
        self.config = workdir / "strata.yaml"
        self.log_path = workdir / "server.log"
        self.process: subprocess.Popen[str] | None = None
        self.addr: str | None = None
        self._stdout: list[str] = []

    @property
    def url(self) -> str:
        assert self.addr, "server not started"
        return f"http://{self.addr}"

    def start(self) -> StrataServer:
        binary = server_binary()
        if not binary.is_file():
            pytest.fail(
                f"strata-server binary not found at {binary}; build it with "
                "`cargo build -p strata-server` or set STRATA_SERVER_BIN",
                pytrace=False,
            )
        self.config.write_text(
            "http:\n"
            "  addr: 127.0.0.1:0\n"
            f"  drain_file: {self.workdir / 'strata.down'}\n"
            "storage:\n"
            "  type: filesystem\n"
            f"  path: {self.data_dir}\n"
            "logging:\n"
            "  level: info\n"
            # Access control is off for the suite; test_auth.py starts its own servers.
            f"{self.auth_yaml}"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA__")}
        env["STRATA__HTTP__ADDR"] = "127.0.0.1:0"
        log = open(self.log_path, "a", encoding="utf-8")
        self.process = subprocess.Popen(
            [str(binary), "run", "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        log.close()
        found = threading.Event()

        def pump() -> None:
            assert self.process and self.process.stdout
            for line in self.process.stdout:
                self._stdout.append(line)
                if self.addr is None:
                    match = LISTENING.search(line)
                    if match:
                        self.addr = match.group(1)
                        found.set()
            found.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not found.wait(0.1):
            if time.monotonic() > deadline:
                break
        if self.addr is None:
            self.kill()
            pytest.fail(
                "strata-server did not print 'listening on http://…'.\n"
                f"stdout:\n{''.join(self._stdout)}\nstderr:\n{self.log()}",
                pytrace=False,
            )
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def terminate(self) -> int | None:
        """SIGTERM, then wait; returns the exit code, or None if it had to be killed."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(SHUTDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(SHUTDOWN_TIMEOUT)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StrataServer]:
    srv = StrataServer(tmp_path_factory.mktemp("strata")).start()
    yield srv
    srv.terminate()


@pytest.fixture(scope="session")
def client(server: StrataServer) -> Client:
    return Client(server.url)


_scope_ids = itertools.count(int(time.time()) % 100_000 * 1000)


@pytest.fixture
def org() -> int:
    """A scope value no other test uses, so tests never see each other's objects."""
    return next(_scope_ids)


USECASE = "pytest"


@pytest.fixture
def session(client: Client, org: int) -> Session:
    """A session with the client defaults (zstd) in a private scope."""
    return client.session(Usecase(USECASE), org=org)


class Raw:
    """Plain HTTP against the server, for asserting status codes and headers directly."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(30))

    def object_path(self, org: int, key: str = "", usecase: str = USECASE) -> str:
        return f"/v1/objects/{usecase}/org={org}/" + quote(key, safe=PATH_SAFE)

    def request(self, method: str, path: str, **kwargs) -> urllib3.BaseHTTPResponse:
        kwargs.setdefault("decode_content", False)
        kwargs.setdefault("redirect", False)
        return self.http.request(method, self.base_url + path, **kwargs)


@pytest.fixture(scope="session")
def raw(server: StrataServer) -> Raw:
    return Raw(server.url)
