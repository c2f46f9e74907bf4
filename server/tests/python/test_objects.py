"""Put / get / head / delete through PyPI objectstore-client 0.2.10, plus wire checks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import uuid

import zstandard
from objectstore_client import Session

from conftest import Raw

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def read_all(session: Session, key: str, decompress: bool = True) -> bytes:
    response = session.get(key, decompress=decompress)
    assert response is not None, f"GET {key!r} returned 404"
    return response.payload.read()


def test_put_with_key_returns_key_and_reads_back(session: Session, raw: Raw, org: int):
    payload = b"hello strata " * 100
    assert session.put(payload, key="greeting.txt") == "greeting.txt"
    assert read_all(session, "greeting.txt") == payload

    # PUT with a key answers 200 and a JSON body naming the key.
    response = raw.request(
        "PUT", raw.object_path(org, "wire.bin"), body=b"abc", headers={"x-sn-origin": "1.2.3.4"}
    )
    assert response.status == 200, response.data
    assert response.headers["content-type"].startswith("application/json")
    assert json.loads(response.data) == {"key": "wire.bin"}


def test_put_without_key_generates_uuid4(session: Session, raw: Raw, org: int):
    payload = os.urandom(1000)
    key = session.put(payload)
    parsed = uuid.UUID(key)
    assert parsed.version == 4 and str(parsed) == key, key
    assert read_all(session, key) == payload

    # Without a key the client POSTs to the scope; the server answers 201 {"key": uuid}.
    for path in (raw.object_path(org), raw.object_path(org).rstrip("/")):
        response = raw.request("POST", path, body=b"xyz")
        assert response.status == 201, (path, response.status, response.data)
        generated = json.loads(response.data)["key"]
        assert uuid.UUID(generated).version == 4
        assert raw.request("GET", raw.object_path(org, generated)).data == b"xyz"

    # An empty key means "generate one" too.
    assert uuid.UUID(session.put(b"e", key="")).version == 4


def test_zstd_is_the_default_and_stored_verbatim(session: Session, raw: Raw, org: int):
    payload = b"compressible " * 5000
    session.put(payload, key="z")

    meta = session.head("z")
    assert meta is not None and meta.compression == "zstd"

    stored = read_all(session, "z", decompress=False)
    assert stored.startswith(ZSTD_MAGIC)
    assert len(stored) < len(payload)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(stored) == payload
    assert meta.size == len(stored), "x-sn-size is the stored (compressed) size"

    decompressed = session.get("z")
    assert decompressed is not None
    assert decompressed.metadata.compression is None  # the client decoded it
    assert decompressed.payload.read() == payload

    # The server never re-encodes: the wire carries the stored bytes and the encoding.
    response = raw.request("GET", raw.object_path(org, "z"), headers={"accept-encoding": "gzip"})
    assert response.status == 200
    assert response.headers["content-encoding"] == "zstd"
    assert response.data == stored
    assert response.headers["x-sn-size"] == str(len(stored))


def test_uncompressed_put(session: Session, raw: Raw, org: int):
    payload = os.urandom(4096)
    session.put(payload, key="plain", compress="none")

    meta = session.head("plain")
    assert meta is not None
    assert meta.compression is None
    assert meta.size == len(payload)
    assert read_all(session, "plain", decompress=False) == payload
    assert read_all(session, "plain") == payload

    response = raw.request("GET", raw.object_path(org, "plain"))
    assert "content-encoding" not in response.headers
    assert response.data == payload


def test_precompressed_zstd(session: Session):
    payload = b"already squeezed " * 1000
    compressed = zstandard.ZstdCompressor(level=3).compress(payload)
    session.put(compressed, key="pre", precompressed="zstd")

    meta = session.head("pre")
    assert meta is not None and meta.compression == "zstd"
    assert meta.size == len(compressed)
    assert read_all(session, "pre", decompress=False) == compressed
    assert read_all(session, "pre") == payload


def test_multi_frame_zstd_reads_back_whole(session: Session):
    first, second = b"first frame|" * 300, b"second frame" * 300
    cctx = zstandard.ZstdCompressor()
    session.put(cctx.compress(first) + cctx.compress(second), key="frames", precompressed="zstd")
    assert read_all(session, "frames") == first + second


def test_empty_object(session: Session, raw: Raw, org: int):
    session.put(b"", key="empty", compress="none")
    assert read_all(session, "empty") == b""
    meta = session.head("empty")
    assert meta is not None and meta.size == 0

    session.put(b"", key="empty-zstd")
    assert read_all(session, "empty-zstd") == b""


def test_get_and_head_of_missing_key(session: Session, raw: Raw, org: int):
    assert session.get("never-written") is None
    assert session.head("never-written") is None

    for method in ("GET", "HEAD"):
        response = raw.request(method, raw.object_path(org, "never-written"))
        assert response.status == 404, method
        assert response.data == b""
        assert "x-sn-time-created" not in response.headers


def test_head_status_and_headers(session: Session, raw: Raw, org: int):
    payload = os.urandom(2048)
    session.put(payload, key="h", compress="none", content_type="image/png")
    response = raw.request("HEAD", raw.object_path(org, "h"))
    assert response.status in (200, 204), response.status
    assert response.data == b""
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-sn-size"] == str(len(payload))
    assert response.headers.get("accept-ranges") == "bytes"
    if response.status == 200:
        assert response.headers["content-length"] == str(len(payload))
    created = response.headers["x-sn-time-created"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created), created

    get = raw.request("GET", raw.object_path(org, "h"))
    assert get.status == 200
    assert get.headers["content-type"] == "image/png"
    assert get.headers.get("accept-ranges") == "bytes"
    assert get.data == payload


def test_response_header_names_are_lowercase(session: Session, raw: Raw, org: int):
    session.put(b"x", key="lc", content_type="text/plain", metadata={"Team": "storage"})
    response = raw.request("GET", raw.object_path(org, "lc"))
    names = list(response.headers.keys())
    assert names == [name.lower() for name in names], names
    assert "x-snme-team" in names


def test_overwrite_replaces_payload_and_metadata(session: Session):
    session.put(b"v1", key="ow", metadata={"version": "1"}, content_type="text/plain")
    first = session.head("ow")
    session.put(b"version two", key="ow", compress="none")
    second = session.head("ow")
    assert read_all(session, "ow") == b"version two"
    assert first is not None and second is not None
    assert second.custom == {}
    assert second.content_type == "application/octet-stream"
    assert second.compression is None
    assert first.time_created is not None and second.time_created is not None
    assert second.time_created >= first.time_created


def test_delete(session: Session, raw: Raw, org: int):
    session.put(b"doomed", key="d")
    assert session.head("d") is not None
    session.delete("d")
    assert session.get("d") is None
    assert session.head("d") is None

    # Deleting what is not there is not an error (204, not upstream's 500).
    session.delete("d")
    session.delete("never-existed")
    response = raw.request("DELETE", raw.object_path(org, "never-existed-either"))
    assert response.status == 204, (response.status, response.data)
    assert response.data == b""


def _streamed_put_and_verify(session: Session, key: str, size: int, compress: str) -> None:
    payload = os.urandom(size)
    digest = hashlib.sha256(payload).hexdigest()
    # A file-like body makes the client stream the upload (chunked transfer encoding).
    assert session.put(io.BytesIO(payload), key=key, compress=compress) == key
    del payload

    response = session.get(key)
    assert response is not None
    hasher = hashlib.sha256()
    total = 0
    while chunk := response.payload.read(256 * 1024):
        hasher.update(chunk)
        total += len(chunk)
    assert total == size
    assert hasher.hexdigest() == digest


def test_large_object_streamed_uncompressed(session: Session):
    _streamed_put_and_verify(session, "large/raw", 9 * 1024 * 1024 + 17, "none")
    meta = session.head("large/raw")
    assert meta is not None and meta.size == 9 * 1024 * 1024 + 17


def test_large_object_streamed_zstd(session: Session):
    _streamed_put_and_verify(session, "large/zstd", 8 * 1024 * 1024, "zstd")


def test_scopes_are_separate_namespaces(client, org: int):
    from objectstore_client import Usecase

    one = client.session(Usecase("pytest"), org=org, project=1)
    two = client.session(Usecase("pytest"), org=org, project=2)
    parent = client.session(Usecase("pytest"), org=org)
    other_usecase = client.session(Usecase("pytest-other"), org=org, project=1)
    one.put(b"one", key="same")
    two.put(b"two", key="same")
    assert read_all(one, "same") == b"one"
    assert read_all(two, "same") == b"two"
    assert parent.get("same") is None
    assert other_usecase.get("same") is None
