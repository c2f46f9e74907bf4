"""Keys are byte-exact: slashes (leading, trailing, doubled), prefixes of other keys,
unicode and `%` are all distinct objects that read back intact."""

from __future__ import annotations

import json

import pytest
from objectstore_client import Session

from conftest import Raw

# Every one of these must be a distinct object. `.`/`..` segments are avoided on purpose:
# urllib3 may collapse them before they reach the server (objectstore API §3.5).
KEYS = [
    "a",
    "a/b",
    "a/",
    "a//a",
    "a//",
    "a/b/c",
    "/leading",
    "//double-leading",
    "trailing//",
    "dir/sub/file.txt",
    "ünïcødé/ключ/键.bin",
    "emoji-🦀",
    "100%",
    "%2F",
    "a%2Fb",
    "%25",
    "sp ace",
    "semi;colon=eq,comma",
    "q?mark#hash",
    "plus+and&at@dollar$!'()*",
    "tilde~under_score-dash",
    "back\\slash",
    "quote\"lt<gt>",
    "brackets[]{}|^`",
]


def payload_for(key: str) -> bytes:
    return f"payload of {key!r}".encode()


def test_special_keys_are_distinct_objects(session: Session):
    # Collect every mismatch so one failing key does not hide the others.
    problems = []
    for key in KEYS:
        returned = session.put(payload_for(key), key=key, compress="none")
        if returned != key:
            problems.append(f"PUT {key!r} answered key {returned!r}")
    for key in KEYS:
        response = session.get(key)
        if response is None:
            problems.append(f"GET {key!r}: 404")
            continue
        body = response.payload.read()
        if body != payload_for(key):
            problems.append(f"GET {key!r}: got {body!r}")
        meta = session.head(key)
        if meta is None or meta.size != len(payload_for(key)):
            problems.append(f"HEAD {key!r}: {meta}")
    assert not problems, "\n".join(problems)


def test_prefix_keys_survive_each_others_deletion(session: Session):
    family = ["a", "a/b", "a/", "a//a", "a/b/c"]
    for key in family:
        session.put(payload_for(key), key=key)
    for victim in family:
        session.delete(victim)
        assert session.get(victim) is None, victim
        for other in family:
            if other == victim:
                continue
            response = session.get(other)
            if family.index(other) > family.index(victim):
                assert response is not None, f"deleting {victim!r} removed {other!r}"
                assert response.payload.read() == payload_for(other)
    for key in family:
        assert session.head(key) is None


def test_overwriting_a_prefix_key_leaves_the_longer_one(session: Session):
    session.put(b"child", key="p/q")
    session.put(b"parent", key="p")
    session.put(b"parent again", key="p")
    assert (session.get("p/q") or pytest.fail("p/q gone")).payload.read() == b"child"
    assert (session.get("p") or pytest.fail("p gone")).payload.read() == b"parent again"


@pytest.mark.parametrize(
    ("raw_path_key", "logical_key"),
    [
        ("a%2Fb", "a/b"),  # percent-decoded before use: %2F and / name the same key
        ("caf%C3%A9", "café"),
        ("x%20y", "x y"),
        ("semi;colon", "semi;colon"),
    ],
)
def test_path_is_percent_decoded(session: Session, raw: Raw, org: int, raw_path_key, logical_key):
    path = f"/v1/objects/pytest/org={org}/{raw_path_key}"
    response = raw.request("PUT", path, body=b"decoded")
    assert response.status == 200, (response.status, response.data)
    assert json.loads(response.data) == {"key": logical_key}
    got = session.get(logical_key)
    assert got is not None and got.payload.read() == b"decoded"


def test_invalid_utf8_in_key_is_400(raw: Raw, org: int):
    response = raw.request("PUT", f"/v1/objects/pytest/org={org}/bad%FFkey", body=b"x")
    assert response.status == 400, (response.status, response.data)


def test_collection_route_only_accepts_post(raw: Raw, org: int):
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        for path in (f"/v1/objects/pytest/org={org}/", f"/v1/objects/pytest/org={org}"):
            response = raw.request(method, path)
            assert response.status == 405, (method, path, response.status)


def test_bad_scope_is_400(raw: Raw):
    for scope in ("org", "org=", "=1", "org=1;", "org=a.b", "org=1;project"):
        response = raw.request("PUT", f"/v1/objects/pytest/{scope}/k", body=b"x")
        assert response.status == 400, (scope, response.status, response.data)


def test_long_key(session: Session):
    key = "k" * 1500 + "/" + "é" * 200 + "/end"
    session.put(b"long", key=key)
    got = session.get(key)
    assert got is not None and got.payload.read() == b"long"
    assert session.get(key[:-1]) is None


def test_session_without_scopes(client):
    from objectstore_client import Usecase

    unscoped = client.session(Usecase("pytest-unscoped"))
    unscoped.put(b"no scope", key="k")
    got = unscoped.get("k")
    assert got is not None and got.payload.read() == b"no scope"


def test_post_with_a_key_is_405(raw: Raw, org: int):
    response = raw.request("POST", raw.object_path(org, "some-key"), body=b"x")
    assert response.status == 405, (response.status, response.data)


def test_unknown_routes_are_404(raw: Raw, org: int):
    for method, path in [
        ("GET", "/v2/objects/pytest/_/k"),
        ("GET", "/nope"),
        ("POST", f"/v1/objects:batch/pytest/org={org}"),
    ]:
        response = raw.request(method, path)
        assert response.status == 404, (method, path, response.status)
