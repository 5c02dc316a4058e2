"""The OAuth2 JWT bearer grant (salesforce-api.md §1.3): the real simple-salesforce client signs in with a private
key against the live HTTPS server, and each refusal has Salesforce's error and description at the HTTP level."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from apihelp import ADMIN, NOAPI, USER, Live, V, user_id
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed
from tests.livehttp import LocalSession

from keel.errors import KeelError
from keel.security import sessions
from keel.services import oauth_apps
from keel.services.security import set_connected_app_active, system_context
from keel.storage import system as S

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"




def _key_and_cert() -> tuple[rsa.RSAPrivateKey, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keel jwt test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


def _hs256(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token built by hand (PyJWT refuses a PEM as an HMAC key, but an attacker would not)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(hmac.new(key, head.encode(), hashlib.sha256).digest())


class Jwt:
    """The live server's connected app with a certificate, and the matching private key."""

    def __init__(self, live: Live, key: rsa.RSAPrivateKey, key_file: Path) -> None:
        self.live, self.key, self.key_file = live, key, key_file

    def assertion(self, sub: str = USER, *, iss: str | None = None, aud: Any = "https://login.salesforce.com",
                  exp: float | None = None, key: Any = None, algorithm: str = "RS256") -> str:
        claims = {"iss": iss or self.live.client_id, "sub": sub, "aud": aud,
                  "exp": int(exp if exp is not None else time.time() + 180)}
        return jwt.encode(claims, key if key is not None else self.key, algorithm=algorithm)

    def post(self, assertion: str | None) -> httpx.Response:
        data = {"grant_type": JWT_GRANT}
        if assertion is not None:
            data["assertion"] = assertion
        return httpx.post(f"{self.live.http}/services/oauth2/token", data=data)

    def refused(self, assertion: str | None, error: str, description: str) -> None:
        r = self.post(assertion)
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.json() == {"error": error, "error_description": description}


@pytest.fixture(scope="module")
def jwt_app(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jwt]:
    key, pem = _key_and_cert()
    key_file = tmp_path_factory.mktemp("jwt") / "server.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    admin = system_context(live.ctx, "jwt test setup")
    oauth_apps.set_certificate(admin, live.client_id, pem)
    for username in (USER, ADMIN, NOAPI):
        oauth_apps.preauthorize_user(admin, live.client_id, user_id(live, username))
    yield Jwt(live, key, key_file)
    oauth_apps.set_certificate(admin, live.client_id, None)


def test_simple_salesforce_signs_in_with_a_private_key(live: Live, jwt_app: Jwt) -> None:
    s = LocalSession(live.https.removeprefix("https://"), str(live.cert))
    sf = Salesforce(username=USER, consumer_key=live.client_id, privatekey_file=str(jwt_app.key_file),
                    domain="login", session=s, version=V)
    assert sf.sf_instance == live.https.removeprefix("https://")
    assert sf.query("SELECT Id FROM Widget__c")["totalSize"] >= 0
    me = httpx.get(f"{live.http}/services/oauth2/userinfo",
                   headers={"Authorization": f"Bearer {sf.session_id}"}).json()
    assert me["username"] == USER


def test_simple_salesforce_unapproved_user_is_told_to_approve(live: Live, jwt_app: Jwt) -> None:
    admin = system_context(live.ctx, "jwt test")
    oauth_apps.preauthorize_user(admin, live.client_id, user_id(live, USER), allowed=False)
    try:
        s = LocalSession(live.https.removeprefix("https://"), str(live.cert))
        with warnings.catch_warnings(record=True), pytest.raises(SalesforceAuthenticationFailed) as e:
            Salesforce(username=USER, consumer_key=live.client_id, privatekey=jwt_app.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode(), domain="test", session=s, version=V)
        assert "user hasn't approved this consumer" in str(e.value)
    finally:
        oauth_apps.preauthorize_user(admin, live.client_id, user_id(live, USER))


def test_token_response_has_no_refresh_token_or_signature(live: Live, jwt_app: Jwt) -> None:
    r = jwt_app.post(jwt_app.assertion())
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"access_token", "instance_url", "id", "token_type", "issued_at", "scope"}
    assert body["instance_url"] == live.http and body["token_type"] == "Bearer" and body["scope"] == "api"
    assert body["id"].endswith("/" + user_id(live, USER))
    q = httpx.get(f"{live.http}/services/data/v{V}/query", params={"q": "SELECT Id FROM Widget__c LIMIT 1"},
                  headers={"Authorization": f"Bearer {body['access_token']}"})
    assert q.status_code == 200, q.text


def test_audience_may_be_salesforce_or_this_server(live: Live, jwt_app: Jwt) -> None:
    for aud in ("https://test.salesforce.com", live.http, live.http + "/", [live.http, "https://elsewhere"]):
        assert jwt_app.post(jwt_app.assertion(aud=aud)).status_code == 200, aud
    jwt_app.refused(jwt_app.assertion(aud="https://evil.example.com"), "invalid_grant", "audience is invalid")
    jwt_app.refused(jwt_app.assertion(aud="https://mydomain.my.salesforce.com"), "invalid_grant",
                    "audience is invalid")


def test_expiry_allows_a_little_clock_skew(jwt_app: Jwt) -> None:
    assert jwt_app.post(jwt_app.assertion(exp=time.time() - 20)).status_code == 200
    jwt_app.refused(jwt_app.assertion(exp=time.time() - 300), "invalid_grant", "expired access/refresh token")


def test_bad_assertions_are_invalid(jwt_app: Jwt, live: Live) -> None:
    other, _pem = _key_and_cert()
    jwt_app.refused(jwt_app.assertion(key=other), "invalid_grant", "invalid assertion")
    jwt_app.refused("not.a.jwt", "invalid_grant", "invalid assertion")
    jwt_app.refused(None, "invalid_grant", "invalid assertion")
    unsigned = jwt.encode({"iss": live.client_id, "sub": USER, "aud": "https://login.salesforce.com",
                           "exp": int(time.time()) + 60}, None, algorithm="none")
    jwt_app.refused(unsigned, "invalid_grant", "invalid assertion")
    # Algorithm confusion: an HMAC keyed with the (public) certificate must not pass as the app's signature.
    with live.ctx.db.read() as conn:
        pem = conn.execute(sa.text("SELECT certificate FROM keel_connected_app WHERE client_id = :c"),
                           {"c": live.client_id}).scalar()
    forged = _hs256({"iss": live.client_id, "sub": USER, "aud": "https://login.salesforce.com",
                     "exp": int(time.time()) + 60}, str(pem).encode())
    jwt_app.refused(forged, "invalid_grant", "invalid assertion")
    no_exp = jwt.encode({"iss": live.client_id, "sub": USER, "aud": "https://login.salesforce.com"}, jwt_app.key,
                        algorithm="RS256")
    jwt_app.refused(no_exp, "invalid_grant", "invalid assertion")


def test_issuer_must_be_an_active_app_with_a_certificate(live: Live, jwt_app: Jwt) -> None:
    jwt_app.refused(jwt_app.assertion(iss="3MVGnosuchapp"), "invalid_client_id", "client identifier invalid")
    admin = system_context(live.ctx, "jwt test")
    with live.ctx.db.transaction() as conn:
        bare, _secret = sessions.create_connected_app(admin, conn, "no certificate")
    oauth_apps.preauthorize_user(admin, bare, user_id(live, USER))
    jwt_app.refused(jwt_app.assertion(iss=bare), "invalid_grant", "invalid assertion")
    # Deactivating the app refuses new assertions and revokes the tokens already issued through it.
    ok = jwt_app.post(jwt_app.assertion())
    token = ok.json()["access_token"]
    set_connected_app_active(admin, live.client_id, False)
    try:
        jwt_app.refused(jwt_app.assertion(), "invalid_client_id", "client identifier invalid")
        r = httpx.get(f"{live.http}/services/data/v{V}/limits", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
    finally:
        set_connected_app_active(admin, live.client_id, True)


def test_subject_must_be_an_active_permitted_api_user(live: Live, jwt_app: Jwt) -> None:
    jwt_app.refused(jwt_app.assertion(sub="nobody@api.test"), "invalid_grant", "authentication failure")
    jwt_app.refused(jwt_app.assertion(sub=NOAPI), "invalid_grant", "API is disabled for this User")
    with live.ctx.db.read() as conn:
        found = sessions._find_user(conn, live.ctx, ADMIN)
    assert found is not None
    admin_pk = found[0]
    with live.ctx.db.transaction() as conn:
        conn.execute(sa.update(S.credentials).where(S.credentials.c.user_id == admin_pk)
                     .values(locked_until=live.ctx.clock() + dt.timedelta(minutes=5)))
    try:
        jwt_app.refused(jwt_app.assertion(sub=ADMIN), "invalid_grant", "authentication failure")
    finally:
        with live.ctx.db.transaction() as conn:
            conn.execute(sa.update(S.credentials).where(S.credentials.c.user_id == admin_pk)
                         .values(locked_until=None))
    assert jwt_app.post(jwt_app.assertion(sub=ADMIN.upper())).status_code == 200


def test_certificate_upload_is_checked(live: Live) -> None:
    admin = system_context(live.ctx, "jwt test")
    with pytest.raises(KeelError) as e:
        oauth_apps.set_certificate(admin, live.client_id, "-----BEGIN CERTIFICATE-----\nnope\n")
    assert e.value.code == "INVALID_FIELD"
