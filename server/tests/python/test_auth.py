"""Access control with the real Python client 0.2.10 (api §6): `SecretKey`-signed
tokens per request, `object_url(token_validity=…)` and `presigned_object_url` fetched by a
plain HTTP client, and refusals that write and delete nothing. Keys are made here with
`openssl genpkey -algorithm ed25519`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import urllib3
from objectstore_client import Client, Permission, SecretKey, Usecase
from objectstore_client.errors import RequestError

from conftest import StrataServer

USECASE = "pyauth"


def keypair(directory: Path, name: str) -> tuple[str, Path]:
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub.pem"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)], check=True
    )
    subprocess.run(
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True
    )
    return private.read_text(), public


class Keys:
    def __init__(self, directory: Path):
        self.full, full_pub = keypair(directory, "full")
        self.readonly, ro_pub = keypair(directory, "readonly")
        self.stranger, _ = keypair(directory, "stranger")
        self.yaml = (
            "auth:\n"
            "  enforce: true\n"
            "  keys:\n"
            f"    full: {{key_files: [{full_pub}], "
            "max_permissions: [object.read, object.write, object.delete]}\n"
            f"    readonly: {{key_files: [{ro_pub}], max_permissions: [object.read]}}\n"
        )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def auth_server(
    tmp_path_factory: pytest.TempPathFactory, keys: Keys
) -> Iterator[StrataServer]:
    srv = StrataServer(tmp_path_factory.mktemp("strata-auth"), auth_yaml=keys.yaml).start()
    yield srv
    srv.terminate()


def session(server: StrataServer, token, org: int = 1):
    return Client(server.url, token=token).session(
        Usecase(USECASE, compression="none"), org=org
    )


def plain_get(url: str, method: str = "GET") -> urllib3.BaseHTTPResponse:
    return urllib3.PoolManager(retries=False).request(method, url)


def test_secret_key_signs_every_request(auth_server: StrataServer, keys: Keys) -> None:
    s = session(auth_server, SecretKey("full", keys.full))
    key = s.put(b"hello", key="k")
    assert s.get(key).payload.read() == b"hello"
    assert s.head(key) is not None
    s.delete(key)
    assert s.get(key) is None


def test_refused_tokens_write_and_delete_nothing(auth_server: StrataServer, keys: Keys) -> None:
    owner = session(auth_server, SecretKey("full", keys.full))
    owner.put(b"original", key="keep")
    refused = [
        (None, 400),
        ("not-a-jwt", 401),
        (SecretKey("stranger", keys.stranger), 401),  # unknown kid
        (SecretKey("full", keys.stranger), 401),  # signature matches no version
        (SecretKey("full", keys.full, expiry_seconds=-120), 401),  # expired past leeway
        (SecretKey("full", keys.full, permissions=[Permission.OBJECT_READ]), 403),
        (SecretKey("readonly", keys.readonly), 403),  # max_permissions lacks write
    ]
    for token, status in refused:
        s = session(auth_server, token)
        with pytest.raises(RequestError) as put_err:
            s.put(b"evil", key="new")
        assert put_err.value.status == status, (token, put_err.value.response)
        assert "auth error" in put_err.value.response
        with pytest.raises(RequestError) as del_err:
            s.delete("keep")
        assert del_err.value.status == status
    # A token minted for another organization cannot touch org 1 (scope escape).
    other_token = session(auth_server, SecretKey("full", keys.full), org=2).mint_token()
    with pytest.raises(RequestError) as err:
        session(auth_server, other_token).delete("keep")
    assert err.value.status == 403
    assert owner.get("new") is None
    assert owner.get("keep").payload.read() == b"original"


def test_object_url_with_token_validity(auth_server: StrataServer, keys: Keys) -> None:
    s = session(auth_server, SecretKey("full", keys.full))
    s.put(b"shared", key="shared")
    url = s.object_url("shared", token_validity=timedelta(minutes=5))
    assert "os_auth=" in url
    res = plain_get(url)
    assert (res.status, res.data) == (200, b"shared")
    # Without the token the server wants credentials.
    assert plain_get(s.object_url("shared")).status == 400
    # The embedded token is read-only.
    assert urllib3.PoolManager(retries=False).request("DELETE", url).status == 403
    assert s.get("shared") is not None


def test_presigned_object_url(auth_server: StrataServer, keys: Keys) -> None:
    s = session(auth_server, SecretKey("full", keys.full))
    s.put(b"presigned", key="dir/a b")
    url = s.presigned_object_url("GET", "dir/a b", duration=timedelta(minutes=10))
    assert "os_sig=" in url
    res = plain_get(url)
    assert (res.status, res.data) == (200, b"presigned")
    assert plain_get(url, "HEAD").status == 200
    assert plain_get(url.replace("a%20b", "other")).status == 401
    assert plain_get(url + "&extra=1").status == 401
    assert urllib3.PoolManager(retries=False).request("DELETE", url).status == 403
    assert s.get("dir/a b").payload.read() == b"presigned"
    head_url = s.presigned_object_url("HEAD", "dir/a b", duration=timedelta(seconds=1))
    assert plain_get(head_url).status == 200
