"""Multipart uploads (api §2.7, M1–M6) through the real PyPI client 0.2.10, plus the
raw-HTTP edge cases the client never produces."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import pytest
import zstandard
from objectstore_client import Session
from objectstore_client.multipart import CompletePart, MultipartCompleteError

from conftest import Raw

# In pair mode (tiered: Bigtable + S3) uploads are staged in the shared bucket, and
# consecutive requests alternate between the two servers: every upload is continued by
# the server that did not start it.


def mp_path(kind: str, org: int, key: str) -> str:
    return f"/v1/objects:{kind}/pytest/org={org}/{key}"


def test_multipart_zstd_parts_read_back_as_one_object(session: Session):
    # Each part is an independent zstd frame; the object is their concatenation.
    chunks = [os.urandom(300_000), b"compressible " * 50_000, os.urandom(1000)]
    frames = [zstandard.ZstdCompressor().compress(c) for c in chunks]
    upload = session.initiate_multipart_upload(key="mp/zstd", compression="zstd")
    assert upload.key == "mp/zstd"
    done = [
        upload.put_part(frame, part_number=n, content_length=len(frame))
        for n, frame in enumerate(frames, start=1)
    ]
    listed = upload.list_parts()
    assert [p.part_number for p in listed] == [1, 2, 3]
    assert [p.size for p in listed] == [len(f) for f in frames]
    assert [p.etag for p in listed] == [p.etag for p in done]
    assert all(p.last_modified.tzinfo is not None for p in listed)
    assert upload.complete(listed) == "mp/zstd"

    got = session.get("mp/zstd")
    assert got is not None
    assert got.payload.read() == b"".join(chunks)
    raw = session.get("mp/zstd", decompress=False)
    assert raw is not None and raw.payload.read() == b"".join(frames)
    meta = session.head("mp/zstd")
    assert meta is not None and meta.compression == "zstd"


def test_multipart_without_key_md5_and_reupload(session: Session):
    upload = session.initiate_multipart_upload(compression="none", content_type="text/plain")
    assert uuid.UUID(upload.key).version == 4
    upload.put_part(b"first draft", part_number=1, content_length=11)
    # Re-uploading a part number replaces it.
    one = upload.put_part(
        b"hello ",
        part_number=1,
        content_length=6,
        content_md5=hashlib.md5(b"hello ").digest(),
    )
    two = upload.put_part(b"world", part_number=2, content_length=5)
    # A wrong Content-MD5 is refused and keeps the earlier part.
    with pytest.raises(Exception):
        upload.put_part(
            b"WORLD", part_number=2, content_length=5, content_md5=hashlib.md5(b"x").digest()
        )
    assert upload.complete([two, one]) == upload.key
    got = session.get(upload.key)
    assert got is not None and got.payload.read() == b"hello world"
    assert got.metadata.content_type == "text/plain"


def test_multipart_large_parts_replacement_and_md5(session: Session):
    # Parts of S3's minimum part size (5 MiB) and more go straight into S3's own
    # multipart upload on shared storage (pair mode); the small last part is staged.
    mib = 1024 * 1024
    first, second, tail = os.urandom(5 * mib + 1), os.urandom(6 * mib), b"tail"
    upload = session.initiate_multipart_upload(key="mp/large", compression="none")
    upload.put_part(os.urandom(5 * mib), part_number=1, content_length=5 * mib)
    one = upload.put_part(
        first,
        part_number=1,
        content_length=len(first),
        content_md5=hashlib.md5(first).digest(),
    )
    two = upload.put_part(second, part_number=2, content_length=len(second))
    with pytest.raises(Exception):
        upload.put_part(
            os.urandom(6 * mib),
            part_number=2,
            content_length=6 * mib,
            content_md5=hashlib.md5(b"x").digest(),
        )
    three = upload.put_part(tail, part_number=3, content_length=len(tail))
    assert [p.size for p in upload.list_parts()] == [len(first), len(second), len(tail)]
    assert upload.complete([one, two, three]) == "mp/large"
    got = session.get("mp/large")
    assert got is not None and got.payload.read() == first + second + tail


def test_resume_multipart_upload_and_abort(session: Session):
    upload = session.initiate_multipart_upload(key="mp/resume", compression="none")
    upload.put_part(b"a" * 10, part_number=1, content_length=10)
    # Another process picks the upload up from its key and id alone.
    resumed = session.resume_multipart_upload("mp/resume", upload.upload_id)
    resumed.put_part(b"b" * 5, part_number=2, content_length=5)
    assert [p.part_number for p in resumed.list_parts()] == [1, 2]
    assert resumed.complete(resumed.list_parts()) == "mp/resume"
    got = session.get("mp/resume")
    assert got is not None and got.payload.read() == b"a" * 10 + b"b" * 5

    doomed = session.initiate_multipart_upload(key="mp/aborted", compression="none")
    doomed.put_part(b"x", part_number=1, content_length=1)
    doomed.abort()
    assert session.get("mp/aborted") is None
    with pytest.raises(Exception):
        doomed.list_parts()


def test_complete_with_a_wrong_etag_is_invalid_part(session: Session):
    upload = session.initiate_multipart_upload(key="mp/bad", compression="none")
    part = upload.put_part(b"data", part_number=1, content_length=4)
    with pytest.raises(MultipartCompleteError) as err:
        upload.complete([CompletePart(part_number=1, etag='"0000"')])
    assert err.value.code == "InvalidPart"
    with pytest.raises(MultipartCompleteError) as err:
        upload.complete([part, CompletePart(part_number=2, etag=part.etag)])
    assert err.value.code == "InvalidPart"
    assert session.get("mp/bad") is None
    # The upload is still usable after a failed completion.
    assert upload.complete([part]) == "mp/bad"


def test_list_parts_paging_with_max_parts(session: Session, raw: Raw, org: int):
    upload = session.initiate_multipart_upload(key="mp/paged", compression="none")
    for n in range(1, 6):
        upload.put_part(bytes([n]) * n, part_number=n, content_length=n)
    path = mp_path("multipart:parts", org, "mp/paged")
    r = raw.request("GET", f"{path}?upload_id={upload.upload_id}&max_parts=2")
    page = json.loads(r.data)
    assert [p["part_number"] for p in page["parts"]] == [1, 2]
    assert page["is_truncated"] is True and page["next_part_number_marker"] == 2
    r = raw.request(
        "GET", f"{path}?upload_id={upload.upload_id}&max_parts=2&part_number_marker=4"
    )
    page = json.loads(r.data)
    assert [p["part_number"] for p in page["parts"]] == [5]
    assert page["is_truncated"] is False and "next_part_number_marker" not in page
    # The client follows pages itself.
    assert [p.part_number for p in upload.list_parts()] == [1, 2, 3, 4, 5]


def test_raw_multipart_edge_cases(session: Session, raw: Raw, org: int):
    upload = session.initiate_multipart_upload(key="mp/edges", compression="none")
    parts = mp_path("multipart:parts", org, "mp/edges")
    uid = upload.upload_id

    # Content-Length is required: a chunked body gets 400 JSON.
    r = raw.request(
        "PUT", f"{parts}?upload_id={uid}&part_number=1", body=iter([b"abc"]), chunked=True
    )
    assert r.status == 400, r.data
    assert r.headers["content-type"] == "application/json"
    assert b"Content-Length header is required" in r.data

    for query in [
        f"upload_id={uid}&part_number=0",
        f"upload_id={uid}&part_number=x",
        f"upload_id={uid}&part_number=4294967296",
        f"upload_id={uid}",
        "part_number=1",
        "upload_id=&part_number=1",
        "upload_id=../x&part_number=1",
        "upload_id=%2Fetc%2Fpasswd&part_number=1",
        "upload_id=.&part_number=1",
    ]:
        r = raw.request("PUT", f"{parts}?{query}", body=b"abc")
        assert r.status == 400, (query, r.status, r.data)
        assert r.headers["content-type"].startswith("text/plain"), query

    # An unknown (well-formed) upload id is a backend error: 500 JSON.
    r = raw.request("PUT", f"{parts}?upload_id=unknown&part_number=1", body=b"abc")
    assert r.status == 500, r.data
    # An upload only answers for its own key.
    other = mp_path("multipart:parts", org, "mp/other")
    r = raw.request("PUT", f"{other}?upload_id={uid}&part_number=1", body=b"abc")
    assert r.status == 500, r.data

    # Complete: JSON extractor rejections are plain text; afterwards always 200.
    complete = mp_path("multipart:complete", org, "mp/edges") + f"?upload_id={uid}"
    r = raw.request("POST", complete, body=b'{"parts":[]}')
    assert r.status == 415, r.status
    r = raw.request(
        "POST", complete, body=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status == 400
    r = raw.request(
        "POST", complete, body=b'{"parts":1}', headers={"content-type": "application/json"}
    )
    assert r.status == 422
    r = raw.request(
        "POST",
        mp_path("multipart:complete", org, "mp/edges") + "?upload_id=unknown",
        body=b'{"parts":[{"part_number":1,"etag":"x"}]}',
        headers={"content-type": "application/json"},
    )
    assert r.status == 200
    doc = json.loads(r.data.lstrip())
    assert doc["error"]["code"] == "internal error", doc

    # Abort of an unknown upload is a backend error; abort of a real one is 204.
    r = raw.request("DELETE", mp_path("multipart", org, "mp/edges") + "?upload_id=unknown")
    assert r.status == 500
    r = raw.request("DELETE", mp_path("multipart", org, "mp/edges") + f"?upload_id={uid}")
    assert r.status == 204 and r.data == b""
    r = raw.request("GET", f"{parts}?upload_id={uid}")
    assert r.status == 500


def test_initiate_answers_200_with_key_and_opaque_id(raw: Raw, org: int):
    r = raw.request("POST", f"/v1/objects:multipart/pytest/org={org}/")
    assert r.status == 200, r.data
    body = json.loads(r.data)
    assert uuid.UUID(body["key"]).version == 4 and body["upload_id"]
    r = raw.request(
        "PUT", f"/v1/objects:multipart/pytest/org={org}/k", headers={"x-sn-expiration": "bogus"}
    )
    assert r.status == 400
