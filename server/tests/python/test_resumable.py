"""Resumable uploads (api-newest §2.9) through the real PyPI client 0.2.10: above its
threshold the client must use a session (checked on the server's metrics, not just by
the result), and the raw protocol answers 204/201/409/410/404 as documented."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

import pytest
import urllib3
from objectstore_client import Session

from conftest import PAIR, Raw

# In pair mode (tiered: Bigtable + S3) sessions are staged in the shared bucket, and
# consecutive requests alternate between the two servers: every session is continued
# by the server that did not create it.


@dataclass
class Seen:
    method: str
    url: str
    status: int


@pytest.fixture
def wire(session: Session, monkeypatch: pytest.MonkeyPatch) -> list[Seen]:
    """Records every request the session's connection pool sends, with its status."""
    pool = session._pool
    seen: list[Seen] = []
    original = pool.urlopen

    def recording_urlopen(method, url, *args, **kwargs):
        response = original(method, url, *args, **kwargs)
        seen.append(Seen(method, url, response.status))
        return response

    monkeypatch.setattr(pool, "urlopen", recording_urlopen)
    return seen


def metric(server, operation: str, outcome: str = "ok") -> int:
    """`strata_service_operations_total{operation, outcome}` from /metrics, summed over
    both servers in pair mode (each request may land on either)."""
    want = f'strata_service_operations_total{{operation="{operation}",outcome="{outcome}"}} '
    total, found = 0, False
    for one in server.servers if PAIR else [server]:
        text = Raw(one.url).request("GET", "/metrics").data.decode()
        for line in text.splitlines():
            if line.startswith(want):
                total += int(float(line[len(want):]))
                found = True
    if not found:
        raise AssertionError(f"{want!r} not exported")
    return total


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_resumable_put_above_threshold_uses_a_session(
    session: Session, wire: list[Seen], server, compress: str
):
    payload = os.urandom(3 * 1024 * 1024) + b"tail" * 1000
    key = f"resumable-{compress}"
    creates_before = metric(server, "resumable_create")
    chunks_before = metric(server, "resumable_chunk")
    inserts_before = metric(server, "insert")
    assert (
        session.put(payload, key=key, compress=compress, resumable_threshold_bytes=1024 * 1024)
        == key
    )

    creates = [s for s in wire if "upload_type=resumable" in s.url]
    assert [(s.method, s.status) for s in creates] == [("PUT", 200)], wire
    chunks = [s for s in wire if "session=" in s.url]
    assert chunks and chunks[-1].status == 201, wire
    assert not [s for s in wire if s.method == "PUT" and "?" not in s.url], "no fallback PUT"
    # Server side: a session was created and written, no plain insert happened.
    assert metric(server, "resumable_create") == creates_before + 1
    assert metric(server, "resumable_chunk") >= chunks_before + 1
    assert metric(server, "insert") == inserts_before

    got = session.get(key)
    assert got is not None and got.payload.read() == payload
    meta = session.head(key)
    assert meta is not None
    assert meta.compression == ("zstd" if compress == "zstd" else None)


def test_resumable_post_without_key(session: Session, wire: list[Seen]):
    payload = b"resumable without key " * 100_000
    key = session.put(payload, resumable_threshold_bytes=1024 * 1024)
    assert uuid.UUID(key).version == 4

    creates = [s for s in wire if "upload_type=resumable" in s.url]
    assert [(s.method, s.status) for s in creates] == [("POST", 200)], wire
    assert [s.status for s in wire if "session=" in s.url][-1] == 201
    got = session.get(key)
    assert got is not None and got.payload.read() == payload


def test_resumable_from_seekable_stream(session: Session):
    import io

    payload = os.urandom(2 * 1024 * 1024)
    session.put(io.BytesIO(payload), key="stream", resumable_threshold_bytes=1024 * 1024)
    got = session.get("stream")
    assert got is not None and got.payload.read() == payload


def test_resumable_raw_protocol(raw: Raw, org: int):
    path = raw.object_path(org, "raw-session")
    response = raw.request(
        "PUT",
        path + "?upload_type=resumable",
        body=b"",
        headers={"Upload-Length": "10", "Content-Length": "0", "content-type": "text/plain"},
    )
    assert response.status == 200, (response.status, response.data)
    created = json.loads(response.data)
    assert created["key"] == "raw-session" and created["granularity"] == 0
    token = created["session"]
    assert "=" not in token and "+" not in token and "/" not in token
    assert raw.request("HEAD", path).status == 404, "nothing is stored before the last byte"

    url = f"{path}?session={token}"
    r = raw.request("PUT", url, body=b"01234", headers={"Upload-Offset": "0"})
    assert r.status == 204 and r.headers["upload-offset"] == "5", (r.status, r.data)
    r = raw.request("PUT", url, body=b"xx", headers={"Upload-Offset": "3"})
    assert r.status == 409 and r.headers["upload-offset"] == "5", (r.status, r.data)
    r = raw.request("PUT", url, body=b"", headers={"Upload-Offset": "*", "Content-Length": "0"})
    assert r.status == 204 and r.headers["upload-offset"] == "5"
    r = raw.request("PUT", url, body=b"5678901", headers={"Upload-Offset": "5"})
    assert r.status == 400, "beyond Upload-Length"
    r = raw.request("PUT", url, body=b"56789", headers={"Upload-Offset": "5"})
    assert r.status == 201 and json.loads(r.data) == {"key": "raw-session"}
    got = raw.request("GET", path)
    assert got.data == b"0123456789" and got.headers["content-type"] == "text/plain"
    # The final response may be lost: an offset query reports completion again...
    r = raw.request("PUT", url, body=b"", headers={"Upload-Offset": "*", "Content-Length": "0"})
    assert r.status == 201, (r.status, r.data)
    # ...while writes to the completed session are gone.
    r = raw.request("PUT", url, body=b"x", headers={"Upload-Offset": "9"})
    assert r.status == 410, (r.status, r.data)
    # The same token on another key is unknown.
    other = raw.object_path(org, "other") + f"?session={token}"
    r = raw.request("PUT", other, body=b"", headers={"Upload-Offset": "*", "Content-Length": "0"})
    assert r.status == 404


def test_unknown_upload_type_is_400(raw: Raw, org: int):
    path = raw.object_path(org, "odd")
    response = raw.request("PUT", path + "?upload_type=multipart", body=b"x")
    assert response.status == 400, (response.status, response.data)
    assert raw.request("HEAD", path).status == 404


def test_query_string_without_upload_params_is_a_plain_put(raw: Raw, org: int):
    # Auth-style query parameters must not change an ordinary insert.
    path = raw.object_path(org, "plain-query")
    response = raw.request("PUT", path + "?os_auth=ignored-when-auth-is-off", body=b"q")
    assert response.status == 200, (response.status, response.data)
    assert raw.request("GET", path).data == b"q"


def test_pool_is_usable_after_sessions(session: Session):
    # Every session response is fully framed, so the keep-alive connection stays usable.
    for i in range(3):
        session.put(b"z" * 2048, key=f"again-{i}", resumable_threshold_bytes=1)
    for i in range(3):
        got = session.get(f"again-{i}")
        assert got is not None and got.payload.read() == b"z" * 2048
    assert isinstance(session._pool, urllib3.HTTPConnectionPool)
