"""A server of its own: SIGTERM exits cleanly, and objects survive a restart on the same
data directory."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from objectstore_client import Client, TimeToLive, Usecase

from conftest import StrataServer


def test_objects_survive_sigterm_and_restart(tmp_path: Path):
    data = tmp_path / "data"
    first = StrataServer(tmp_path / "first", data_dir=data).start()
    try:
        session = Client(first.url).session(Usecase("pytest"), org=1)
        big = os.urandom(2 * 1024 * 1024)
        session.put(big, key="big", compress="none")
        session.put(
            b"small",
            key="a/b",
            origin="Ünïcode",
            expiration_policy=TimeToLive(timedelta(days=90)),
        )
        session.put(b"gone", key="deleted")
        session.delete("deleted")
        assert first.terminate() == 0, f"SIGTERM exit code, log:\n{first.log()}"
    finally:
        first.kill()

    second = StrataServer(tmp_path / "second", data_dir=data).start()
    try:
        session = Client(second.url).session(Usecase("pytest"), org=1)
        got = session.get("big")
        assert got is not None and got.payload.read() == big
        got = session.get("a/b")
        assert got is not None and got.payload.read() == b"small"
        assert got.metadata.origin == "Ünïcode"
        assert got.metadata.expiration_policy == TimeToLive(timedelta(days=90))
        assert session.get("deleted") is None
        assert session.get("a") is None
    finally:
        second.terminate()
        second.kill()
