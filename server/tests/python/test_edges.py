"""Edges the clients reach indirectly: expired objects, byte ranges, and uploads that break
off mid-body (which must never leave a partial object or a temp file behind)."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from objectstore_client import ObjectNotFound, Session, TimeToIdle, TimeToLive

from conftest import Raw, StrataServer


def test_expired_object_is_not_served(session: Session, raw: Raw, org: int):
    session.put(b"short-lived", key="ttl1", expiration_policy=TimeToLive(timedelta(seconds=1)))
    meta = session.head("ttl1")
    assert meta is not None and meta.time_expires is not None
    # Wait (bounded) until the deadline has passed on the wall clock.
    wait = (meta.time_expires - datetime.now(UTC)).total_seconds() + 1.1
    assert wait < 5, meta.time_expires
    time.sleep(max(wait, 0))

    assert session.get("ttl1") is None
    assert session.head("ttl1") is None
    assert raw.request("GET", raw.object_path(org, "ttl1")).status == 404
    with pytest.raises(ObjectNotFound):
        session.extend_expiry("ttl1", from_now=timedelta(days=1))
    session.delete("ttl1")
    # The key is free for a new object.
    session.put(b"reborn", key="ttl1")
    got = session.get("ttl1")
    assert got is not None and got.payload.read() == b"reborn"


def _sleep_until(instant: datetime) -> None:
    wait = (instant - datetime.now(UTC)).total_seconds()
    assert wait < 10, instant
    time.sleep(max(wait, 0))


def test_reading_a_tti_object_keeps_it_alive(session: Session):
    tti = TimeToIdle(timedelta(seconds=4))
    session.put(b"read me", key="tti-read", expiration_policy=tti)
    session.put(b"ignore me", key="tti-idle", expiration_policy=tti)
    read_meta = session.head("tti-read")
    idle_meta = session.head("tti-idle")
    assert read_meta is not None and read_meta.time_expires is not None
    assert idle_meta is not None and idle_meta.time_expires is not None
    deadline = max(read_meta.time_expires, idle_meta.time_expires)

    # Read well before the deadline: far enough from it to pass the debounce
    # (min(tti/4, 24h) = 1 s), so the deadline moves to access + 4 s.
    _sleep_until(read_meta.time_expires - timedelta(seconds=1.5))
    got = session.get("tti-read")
    assert got is not None and got.payload.read() == b"read me"

    # Past the original deadlines: the read object lives on, the idle one is gone.
    _sleep_until(deadline + timedelta(seconds=1))
    alive = session.get("tti-read")
    assert alive is not None, "a read must extend a TTI deadline"
    assert alive.payload.read() == b"read me"
    assert alive.metadata.expiration_policy == tti
    assert session.get("tti-idle") is None


@pytest.mark.parametrize(
    ("range_header", "status", "body", "content_range"),
    [
        ("bytes=2-5", 206, b"2345", "bytes 2-5/10"),
        ("bytes=7-", 206, b"789", "bytes 7-9/10"),
        ("bytes=-3", 206, b"789", "bytes 7-9/10"),
        ("bytes=-30", 206, b"0123456789", "bytes 0-9/10"),
        ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
        ("BYTES=0-0", 206, b"0", "bytes 0-0/10"),
        ("bytes=10-", 416, b"", "bytes */10"),
        ("bytes=0-1,3-4", 200, b"0123456789", None),
        ("bytes=5-2", 400, None, None),
        ("items=0-1", 400, None, None),
        ("bytes=-0", 400, None, None),
    ],
)
def test_byte_ranges(
    session: Session, raw: Raw, org: int, range_header, status, body, content_range
):
    session.put(b"0123456789", key="digits", compress="none")
    response = raw.request(
        "GET", raw.object_path(org, "digits"), headers={"Range": range_header}
    )
    assert response.status == status, (range_header, response.status, response.data)
    if body is not None:
        assert response.data == body
    if content_range is not None:
        assert response.headers["content-range"] == content_range
    if status == 206:
        assert response.headers["content-length"] == str(len(body))
        assert response.headers["x-sn-size"] == "10"
        assert response.headers.get("accept-ranges") == "bytes"


def test_range_on_missing_and_empty_objects(session: Session, raw: Raw, org: int):
    missing = raw.request("GET", raw.object_path(org, "nope"), headers={"Range": "bytes=0-1"})
    assert missing.status == 404
    session.put(b"", key="empty", compress="none")
    empty = raw.request("GET", raw.object_path(org, "empty"), headers={"Range": "bytes=0-"})
    assert empty.status == 416
    assert empty.headers["content-range"] == "bytes */0"


def _abort_upload(server: StrataServer, path: str, chunked: bool) -> None:
    host, port = server.addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        if chunked:
            head = (
                f"PUT {path} HTTP/1.1\r\nHost: {server.addr}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            )
            sock.sendall(head.encode() + b"10000\r\n" + b"p" * 30000)
        else:
            head = f"PUT {path} HTTP/1.1\r\nHost: {server.addr}\r\nContent-Length: 2000000\r\n\r\n"
            sock.sendall(head.encode() + b"p" * 500_000)
        # Break off mid-body.


def _temp_files(data_dir: Path) -> list[Path]:
    return [
        p
        for p in data_dir.rglob("*")
        if p.is_file() and (p.suffix == ".tmp" or "tmp" in p.relative_to(data_dir).parts[:1])
    ]


@pytest.mark.parametrize("chunked", [False, True])
def test_broken_off_upload_leaves_nothing(
    server: StrataServer, session: Session, raw: Raw, org: int, chunked: bool
):
    session.put(b"old version", key="keep", compress="none")
    _abort_upload(server, raw.object_path(org, "fresh"), chunked)
    _abort_upload(server, raw.object_path(org, "keep"), chunked)

    # The server learns of the break asynchronously: watch for a bounded while. At no
    # point may a partial object appear, and the temp files must go away.
    deadline = time.monotonic() + 10
    while True:
        assert raw.request("GET", raw.object_path(org, "fresh")).status == 404
        kept = raw.request("GET", raw.object_path(org, "keep"))
        assert kept.status == 200 and kept.data == b"old version"
        leftovers = _temp_files(server.data_dir)
        if not leftovers:
            break
        assert time.monotonic() < deadline, f"temp files left behind: {leftovers}"
        time.sleep(0.1)

    # The same keys still take complete uploads.
    session.put(b"complete", key="fresh")
    got = session.get("fresh")
    assert got is not None and got.payload.read() == b"complete"
