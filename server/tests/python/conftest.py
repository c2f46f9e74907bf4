"""Fixtures for the Python client suite: a real `strata-server` child process.

The server binary comes from `STRATA_SERVER_BIN`, or else
`$CARGO_TARGET_DIR/debug/strata-server` (`target/debug/strata-server` at the repository
root when `CARGO_TARGET_DIR` is unset). Each server listens on 127.0.0.1 port 0 and keeps
its objects in a fresh temporary directory (filesystem backend).

With `STRATA_TEST_PAIR=1` the session-wide server is instead a pair of servers on one
Bigtable emulator and one S3 server (`moto_server`), tiered storage, behind a
round-robin TCP balancer; clients send `Connection: close`, so consecutive requests
alternate between the two servers as they would behind a Kubernetes Service.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import socket
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


PAIR = os.environ.get("STRATA_TEST_PAIR") == "1"
CBTEMULATOR = "/usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator"
# Fake credentials for moto; they only ever live in the environment.
S3_ENV = {"AWS_ACCESS_KEY_ID": "strata-test-access-key", "AWS_SECRET_ACCESS_KEY": "strata-test-secret"}


class StrataServer:
    """One `strata-server run` child on the filesystem backend (or `storage_yaml`)."""

    # The one place the suite sets access control: off unless a test passes `auth_yaml`.
    AUTH_OFF = "auth:\n  enforce: false\n"

    def __init__(
        self,
        workdir: Path,
        data_dir: Path | None = None,
        storage_yaml: str | None = None,
        extra_env: dict[str, str] | None = None,
        auth_yaml: str = AUTH_OFF,
    ):
        self.storage_yaml = storage_yaml
        self.extra_env = extra_env or {}
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
            + (self.storage_yaml or f"storage:\n  type: filesystem\n  path: {self.data_dir}\n")
            + "logging:\n"
            "  level: info\n"
            # Access control is off for the suite; test_auth.py starts its own servers.
            f"{self.auth_yaml}"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA__")}
        env["STRATA__HTTP__ADDR"] = "127.0.0.1:0"
        env.update(self.extra_env)
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(process: subprocess.Popen, port: int, what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"{what} exited with {process.returncode}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not listen on port {port}", pytrace=False)
            time.sleep(0.05)


class Child:
    """A service process (emulator, S3 server) on a free port, killed on stop."""

    def __init__(self, argv: list[str], port: int, what: str):
        try:
            self.process = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        except OSError as err:
            pytest.fail(f"cannot start {what} ({argv[0]}): {err}", pytrace=False)
        self.port = port
        wait_for_port(self.process, port, what)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(SHUTDOWN_TIMEOUT)


class RoundRobin:
    """A TCP balancer handing each new connection to the next backend in turn."""

    def __init__(self, backends: list[str]):
        self.backends = backends
        self.counts = [0] * len(backends)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        turn = 0
        while True:
            try:
                inbound, _ = self.listener.accept()
            except OSError:
                return
            index = turn % len(self.backends)
            turn += 1
            self.counts[index] += 1
            host, port = self.backends[index].rsplit(":", 1)
            try:
                outbound = socket.create_connection((host, int(port)))
            except OSError:
                inbound.close()
                continue
            for a, b in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


class ServerPair:
    """Two servers sharing one keyspace (tiered: Bigtable emulator + S3) behind a balancer."""

    def __init__(self, workdir: Path):
        self.data_dir = workdir / "no-local-data"
        self.data_dir.mkdir(parents=True)
        bt_port, s3_port = free_port(), free_port()
        self.bigtable = Child(
            [CBTEMULATOR, "-host", "127.0.0.1", "-port", str(bt_port)], bt_port, "cbtemulator"
        )
        self.s3 = Child(
            ["moto_server", "-H", "127.0.0.1", "-p", str(s3_port)], s3_port, "moto_server"
        )
        created = urllib3.PoolManager().request("PUT", f"http://127.0.0.1:{s3_port}/strata")
        assert created.status == 200, created.data
        storage = (
            "storage:\n"
            "  type: tiered\n"
            f"  high_volume: {{type: bigtable, endpoint: '127.0.0.1:{bt_port}', project_id: test,"
            " instance_name: test, table_name: objects, create_table: true}\n"
            f"  long_term: {{type: s3compatible, endpoint: 'http://127.0.0.1:{s3_port}', bucket: strata}}\n"
        )
        self.servers = [
            StrataServer(workdir / name, storage_yaml=storage, extra_env=S3_ENV).start()
            for name in ("one", "two")
        ]
        self.balancer = RoundRobin([s.addr for s in self.servers])
        self.addr = self.balancer.addr

    @property
    def url(self) -> str:
        return f"http://{self.addr}"

    def terminate(self) -> None:
        self.balancer.close()
        for server in self.servers:
            server.terminate()
        self.bigtable.stop()
        self.s3.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StrataServer]:
    if PAIR:
        pair = ServerPair(tmp_path_factory.mktemp("strata-pair"))
        yield pair  # type: ignore[misc]
        counts = pair.balancer.counts
        pair.terminate()
        assert all(counts), f"both servers must have served requests: {counts}"
        return
    srv = StrataServer(tmp_path_factory.mktemp("strata")).start()
    yield srv
    srv.terminate()


# In pair mode every request opens a new connection, so the balancer alternates.
CONNECTION_HEADERS = {"Connection": "close"} if PAIR else {}


@pytest.fixture(scope="session")
def client(server: StrataServer) -> Client:
    if PAIR:
        return Client(server.url, connection_kwargs={"headers": CONNECTION_HEADERS})
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
        self.http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(30), headers=CONNECTION_HEADERS or None
        )

    def object_path(self, org: int, key: str = "", usecase: str = USECASE) -> str:
        return f"/v1/objects/{usecase}/org={org}/" + quote(key, safe=PATH_SAFE)

    def request(self, method: str, path: str, **kwargs) -> urllib3.BaseHTTPResponse:
        kwargs.setdefault("decode_content", False)
        kwargs.setdefault("redirect", False)
        return self.http.request(method, self.base_url + path, **kwargs)


@pytest.fixture(scope="session")
def raw(server: StrataServer) -> Raw:
    return Raw(server.url)
