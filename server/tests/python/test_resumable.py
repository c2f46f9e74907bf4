"""Resumable uploads are not implemented: the server must answer create with 501 (never
a plain insert), and Python's automatic resumable path must fall back to a plain upload
that reads back intact."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass

import pytest
import urllib3
from objectstore_client import Session

from conftest import Raw


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


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_resumable_put_with_key_falls_back_after_501(
    session: Session, wire: list[Seen], compress: str
):
    payload = os.urandom(64 * 1024) + b"tail" * 1000
    key = f"resumable-{compress}"
    assert (
        session.put(payload, key=key, compress=compress, resumable_threshold_bytes=1024) == key
    )

    creates = [s for s in wire if "upload_type=resumable" in s.url]
    assert len(creates) == 1, wire
    assert creates[0].method == "PUT" and creates[0].status == 501, creates[0]
    plain = [s for s in wire if s.method == "PUT" and "?" not in s.url]
    assert [s.status for s in plain] == [200], wire

    got = session.get(key)
    assert got is not None and got.payload.read() == payload
    meta = session.head(key)
    assert meta is not None
    assert meta.compression == ("zstd" if compress == "zstd" else None)


def test_resumable_post_without_key_falls_back_after_501(session: Session, wire: list[Seen]):
    payload = b"resumable without key " * 4096
    key = session.put(payload, resumable_threshold_bytes=0)
    assert uuid.UUID(key).version == 4

    creates = [s for s in wire if "upload_type=resumable" in s.url]
    assert [(s.method, s.status) for s in creates] == [("POST", 501)], wire
    posts = [s for s in wire if s.method == "POST" and "?" not in s.url]
    assert [s.status for s in posts] == [201], wire
    got = session.get(key)
    assert got is not None and got.payload.read() == payload


def test_resumable_fallback_from_seekable_stream(session: Session):
    import io

    payload = os.urandom(300 * 1024)
    session.put(io.BytesIO(payload), key="stream", resumable_threshold_bytes=4096)
    got = session.get("stream")
    assert got is not None and got.payload.read() == payload


def test_resumable_create_answers_501_and_stores_nothing(raw: Raw, org: int):
    path = raw.object_path(org, "no-session")
    response = raw.request(
        "PUT",
        path + "?upload_type=resumable",
        body=b"",
        headers={"Upload-Length": "10", "Content-Length": "0", "content-encoding": "zstd"},
    )
    assert response.status == 501, (response.status, response.data)
    assert response.headers["content-type"].startswith("application/json")
    assert "detail" in json.loads(response.data)
    assert raw.request("HEAD", path).status == 404, "a 501 create must not store an object"

    collection = f"/v1/objects/pytest/org={org}/"
    for url in (collection, collection.rstrip("/")):
        response = raw.request(
            "POST",
            url + "?upload_type=resumable",
            body=b"",
            headers={"Upload-Length": "10", "Content-Length": "0"},
        )
        assert response.status == 501, (url, response.status, response.data)


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


def test_pool_is_usable_after_fallback(session: Session):
    # The 501 response body must be fully framed so the keep-alive connection stays usable.
    for i in range(3):
        session.put(b"z" * 2048, key=f"again-{i}", resumable_threshold_bytes=1)
    for i in range(3):
        got = session.get(f"again-{i}")
        assert got is not None and got.payload.read() == b"z" * 2048
    assert isinstance(session._pool, urllib3.HTTPConnectionPool)
