"""Metadata round trips (UTF-8 values, expiration under strict parsing) and PATCH expiry
extension through PyPI objectstore-client 0.2.10."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest
from objectstore_client import (
    ExpiryExtensionRejected,
    ObjectNotFound,
    Session,
    TimeToIdle,
    TimeToLive,
)

from conftest import Raw

ORIGIN = "Ünknown-源 10.0.0.1"
FILENAME = "rápport 📄.pdf"
CUSTOM = {
    "release": "100% vérsion",
    "tab": "a\tb",
    "plain": "just ascii",
    "emoji": "🦀 crab",
    "percent-literal": "%41 stays %41",
}


def test_head_round_trips_utf8_metadata(session: Session, raw: Raw, org: int):
    session.put(
        b"payload",
        key="meta",
        content_type="text/plain; charset=utf-8",
        origin=ORIGIN,
        filename=FILENAME,
        metadata=CUSTOM,
        expiration_policy=TimeToLive(timedelta(days=90)),
    )
    meta = session.head("meta")
    assert meta is not None
    assert meta.content_type == "text/plain; charset=utf-8"
    assert meta.origin == ORIGIN
    assert meta.filename == FILENAME
    assert meta.custom == CUSTOM
    assert meta.compression == "zstd"
    assert meta.expiration_policy == TimeToLive(timedelta(days=90))
    assert meta.time_created is not None and meta.time_expires is not None
    assert meta.time_created.tzinfo is not None
    assert abs((meta.time_expires - meta.time_created) - timedelta(days=90)) <= timedelta(seconds=1)

    got = session.get("meta")
    assert got is not None
    assert got.metadata.origin == ORIGIN
    assert got.metadata.filename == FILENAME
    assert got.metadata.custom == CUSTOM
    assert got.payload.read() == b"payload"

    # On the wire: percent-encoded UTF-8 values, d/h/m/s durations, whole-second times.
    response = raw.request("HEAD", raw.object_path(org, "meta"))
    h = response.headers
    assert h["x-sn-expiration"] == "ttl:90d"
    assert h["x-sn-origin"] == "%C3%9Cnknown-%E6%BA%90 10.0.0.1"
    assert h["x-sn-filename"] == "r%C3%A1pport %F0%9F%93%84.pdf"
    assert h["x-snme-release"] == "100%25 v%C3%A9rsion"
    assert h["x-snme-tab"] == "a%09b"
    for name in ("x-sn-time-created", "x-sn-time-expires"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", h[name]), (name, h[name])
    disposition = h["content-disposition"]
    assert disposition.startswith('attachment; filename="'), disposition
    assert "filename*=UTF-8''r%C3%A1pport%20%F0%9F%93%84.pdf" in disposition, disposition
    quoted = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert quoted.isascii(), disposition


def test_ascii_filename_disposition(session: Session, raw: Raw, org: int):
    session.put(b"x", key="f", filename="dir/report.pdf")
    response = raw.request("GET", raw.object_path(org, "f"))
    assert response.headers["content-disposition"] == 'attachment; filename="dir-report.pdf"'
    meta = session.head("f")
    assert meta is not None and meta.filename == "dir/report.pdf"


def test_no_filename_no_disposition(session: Session, raw: Raw, org: int):
    session.put(b"x", key="nf")
    response = raw.request("GET", raw.object_path(org, "nf"))
    assert "content-disposition" not in response.headers
    assert "x-sn-expiration" not in response.headers  # manual is never sent back
    assert "x-sn-time-expires" not in response.headers


@pytest.mark.parametrize(
    ("policy", "wire"),
    [
        (TimeToLive(timedelta(days=90)), "ttl:90d"),
        (TimeToLive(timedelta(days=400)), "ttl:400d"),
        (TimeToLive(timedelta(seconds=90061)), "ttl:1d 1h 1m 1s"),
        (TimeToLive(timedelta(days=7)), "ttl:7d"),
        (TimeToIdle(timedelta(days=1, hours=1)), "tti:1d 1h"),
        (TimeToIdle(timedelta(hours=1)), "tti:1h"),
        (TimeToIdle(timedelta(seconds=30)), "tti:30s"),
    ],
)
def test_expiration_policy_round_trip(session: Session, raw: Raw, org: int, policy, wire):
    session.put(b"e", key="policy", expiration_policy=policy)
    meta = session.head("policy")  # strict parse: raises on anything but d/h/m/s
    assert meta is not None
    assert meta.expiration_policy == policy
    got = session.get("policy")
    assert got is not None and got.metadata.expiration_policy == policy
    assert raw.request("HEAD", raw.object_path(org, "policy")).headers["x-sn-expiration"] == wire


def test_usecase_default_expiration(client, org: int):
    from objectstore_client import Usecase

    s = client.session(Usecase("pytest", expiration_policy=TimeToIdle(timedelta(days=2))), org=org)
    s.put(b"u", key="default-policy")
    meta = s.head("default-policy")
    assert meta is not None and meta.expiration_policy == TimeToIdle(timedelta(days=2))


def test_bad_metadata_is_rejected(raw: Raw, org: int):
    path = raw.object_path(org, "bad")
    for headers in (
        {"x-sn-expiration": "ttl:"},
        {"x-sn-expiration": "forever"},
        {"content-encoding": "identity"},
        {"content-encoding": "br"},
        {"x-snme-bad": "%FF"},
        {"content-type": "not a media type"},
    ):
        response = raw.request("PUT", path, body=b"x", headers=headers)
        assert response.status == 400, (headers, response.status, response.data)
    assert raw.request("HEAD", path).status == 404


def _meta(session: Session, key: str):
    meta = session.head(key)
    assert meta is not None
    return meta


def test_extend_expiry_from_creation(session: Session):
    session.put(b"x", key="ttl", expiration_policy=TimeToLive(timedelta(days=1)))
    before = _meta(session, "ttl")
    session.extend_expiry("ttl", from_creation=timedelta(days=3))
    after = _meta(session, "ttl")
    assert after.time_created == before.time_created
    assert after.time_expires == before.time_created + timedelta(days=3)
    # The TTL is recalculated to the new lifetime (#646).
    assert after.expiration_policy == TimeToLive(timedelta(days=3))
    assert (session.get("ttl") or pytest.fail("gone")).payload.read() == b"x"


def test_extend_expiry_from_now(session: Session):
    session.put(b"x", key="now", expiration_policy=TimeToLive(timedelta(hours=1)))
    before = _meta(session, "now")
    session.extend_expiry("now", from_now=timedelta(days=30))
    after = _meta(session, "now")
    assert before.time_expires is not None and after.time_expires is not None
    assert after.time_expires >= before.time_created + timedelta(days=30)
    assert isinstance(after.expiration_policy, TimeToLive)
    assert after.expiration_policy.delta >= timedelta(days=30)
    assert after.time_expires - after.time_created == after.expiration_policy.delta


def test_extend_expiry_at(session: Session):
    session.put(b"x", key="at", expiration_policy=TimeToLive(timedelta(hours=1)))
    target = datetime.now(UTC).replace(microsecond=123456) + timedelta(days=10)
    session.extend_expiry("at", at=target)
    after = _meta(session, "at")
    expected = datetime.fromtimestamp(math.ceil(target.timestamp()), UTC)
    assert after.time_expires == expected  # fractional deadlines round up


def test_extend_expiry_never_shortens(session: Session):
    session.put(b"x", key="long", expiration_policy=TimeToLive(timedelta(days=10)))
    before = _meta(session, "long")
    session.extend_expiry("long", from_creation=timedelta(days=1))
    session.extend_expiry("long", from_now=timedelta(0))
    after = _meta(session, "long")
    assert after.time_expires == before.time_expires
    assert after.expiration_policy == TimeToLive(timedelta(days=10))


def test_extend_expiry_tti_keeps_its_duration(session: Session):
    session.put(b"x", key="tti", expiration_policy=TimeToIdle(timedelta(days=1)))
    before = _meta(session, "tti")
    session.extend_expiry("tti", from_creation=timedelta(days=5))
    after = _meta(session, "tti")
    assert after.expiration_policy == TimeToIdle(timedelta(days=1))
    assert after.time_expires == before.time_created + timedelta(days=5)


def test_extend_expiry_missing_object(session: Session):
    with pytest.raises(ObjectNotFound) as err:
        session.extend_expiry("absent", from_now=timedelta(days=1))
    assert err.value.status == 404


def test_extend_expiry_manual_object_is_rejected(session: Session):
    session.put(b"x", key="manual")
    with pytest.raises(ExpiryExtensionRejected) as err:
        session.extend_expiry("manual", from_now=timedelta(days=1))
    assert err.value.status == 409
    meta = _meta(session, "manual")
    assert meta.expiration_policy is None and meta.time_expires is None


def test_extend_expiry_bad_requests(session: Session, raw: Raw, org: int):
    session.put(b"x", key="p", expiration_policy=TimeToLive(timedelta(days=1)))
    path = raw.object_path(org, "p")
    json_type = {"content-type": "application/json"}
    cases = [
        (b'{"extend_expiry":{"after":"1d","from":"now"}}', {}, 415),
        (b'{"extend_expiry":', json_type, 400),
        (b'{"extend_expiry":{"after":"1d","from":"now"},"x":1}', json_type, 422),
        (b'{"extend_expiry":{"after":"soon","from":"now"}}', json_type, 422),
        (b'{"extend_expiry":{"at":"tomorrow"}}', json_type, 422),
    ]
    for body, headers, status in cases:
        response = raw.request("PATCH", path, body=body, headers=headers)
        assert response.status == status, (body, response.status, response.data)
    response = raw.request("PATCH", path, body=b'{"extend_expiry":{}}', headers=json_type)
    assert response.status == 422, (response.status, response.data)
    # None of these touched the object.
    assert _meta(session, "p").expiration_policy == TimeToLive(timedelta(days=1))


@pytest.mark.parametrize(
    ("filename", "disposition"),
    [
        ('my "quoted" \\ name.txt', 'attachment; filename="my \\"quoted\\" - name.txt"'),
        ("...", 'attachment; filename="---"'),
        ("a/b\\c.txt", 'attachment; filename="a-b-c.txt"'),
        ("", 'attachment; filename=""'),
    ],
)
def test_content_disposition_escaping(
    session: Session, raw: Raw, org: int, filename: str, disposition: str
):
    session.put(b"x", key="cd", filename=filename)
    response = raw.request("GET", raw.object_path(org, "cd"))
    assert response.headers.get("content-disposition") == disposition, response.headers
    meta = session.head("cd")
    assert meta is not None and meta.filename == filename


def test_read_only_headers_are_ignored_on_write(raw: Raw, org: int):
    path = raw.object_path(org, "ro")
    response = raw.request(
        "PUT",
        path,
        body=b"1234",
        headers={
            "x-sn-time-created": "garbage",
            "x-sn-time-expires": "2000-01-01T00:00:00Z",
            "x-sn-size": "999999",
        },
    )
    assert response.status == 200, (response.status, response.data)
    head = raw.request("HEAD", path)
    assert head.headers["x-sn-size"] == "4"
    assert "x-sn-time-expires" not in head.headers
    assert head.headers["x-sn-time-created"] != "garbage"


def test_extend_expiry_to_a_past_instant_changes_nothing(session: Session):
    session.put(b"x", key="past", expiration_policy=TimeToLive(timedelta(days=2)))
    before = _meta(session, "past")
    session.extend_expiry("past", at=datetime(2020, 1, 1, tzinfo=UTC))
    after = _meta(session, "past")
    assert after.time_expires == before.time_expires
    assert after.expiration_policy == TimeToLive(timedelta(days=2))
