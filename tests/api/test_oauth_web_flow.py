"""The OAuth2 web-server flow over real HTTP (salesforce-api.md §1.3, ``authorization_code``): authorize, sign in on
the web login, approve, the redirect back with ``code`` and ``state``, and the token exchange with PKCE, as
django-salesforce and jsforce drive it; plus each refusal of RFC 6749 on both endpoints."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt as pyjwt
import pytest
import sqlalchemy as sa
from apihelp import ADMIN, ADMIN_PW, NOAPI, NOAPI_PW, USER, USER_PW, Live, V, user_id
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from tests.livehttp import serving

from keel.cli.asgi import build_app
from keel.security import sessions
from keel.security.tables import oauth_codes
from keel.services import oauth_apps
from keel.services.security import system_context

CALLBACK = "https://client.example/oauth/callback"
LOCAL_CALLBACK = "http://localhost:8765/cb?tenant=7"


@dataclass
class Flow:
    live: Live
    base: str  # the whole server (web app and API) on plain HTTP

    def authorize_url(self, **params: str) -> str:
        query = {"response_type": "code", "client_id": self.live.client_id, "redirect_uri": CALLBACK,
                 "state": "st-42", **params}
        return f"{self.base}/services/oauth2/authorize?{urlencode(query)}"

    def dance(self, username: str = USER, password: str = USER_PW, *, approve: bool = True,
              **params: str) -> httpx.Response:
        """From the authorize URL to the redirect back to the client (not followed)."""
        with httpx.Client(follow_redirects=False, timeout=30) as browser:
            first = browser.get(self.authorize_url(**params))
            assert first.status_code == 303, first.text
            login_url = self.base + first.headers["location"]
            assert urlsplit(login_url).path == "/login"
            page = browser.get(login_url)
            form = hidden_fields(page.text)
            signed = browser.post(f"{self.base}/login", data={**form, "username": username, "password": password})
            assert signed.status_code == 303, signed.text
            assert signed.headers["location"].startswith("/services/oauth2/authorize?")
            approve_page = browser.get(self.base + signed.headers["location"])
            assert approve_page.status_code == 200, approve_page.text
            assert "Allow access?" in approve_page.text
            origin = "{0.scheme}://{0.netloc}".format(urlsplit(params.get("redirect_uri", CALLBACK)))
            assert f"form-action 'self' {origin}" in approve_page.headers["content-security-policy"]
            fields = hidden_fields(approve_page.text)
            return browser.post(f"{self.base}/services/oauth2/authorize",
                                data={**fields, "action": "approve" if approve else "deny"})

    def code(self, **params: str) -> str:
        back = self.dance(**params)
        assert back.status_code == 302, back.text
        got = redirect_query(back, params.get("redirect_uri", CALLBACK))
        assert got["state"] == "st-42"
        return got["code"]

    def exchange(self, code: str, *, secret: str | None = "", verifier: str | None = None,
                 redirect_uri: str = CALLBACK, client_id: str | None = None) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": code, "client_id": client_id or self.live.client_id,
                "redirect_uri": redirect_uri, "format": "json"}
        if secret is not None:
            data["client_secret"] = secret or self.live.client_secret
        if verifier is not None:
            data["code_verifier"] = verifier
        return httpx.post(f"{self.base}/services/oauth2/token", data=data)


def hidden_fields(html: str) -> dict[str, str]:
    return {m[0]: m[1].replace("&amp;", "&").replace("&#34;", '"').replace("&#39;", "'")
            for m in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html)}


def redirect_query(resp: httpx.Response, redirect_uri: str) -> dict[str, str]:
    location = resp.headers["location"]
    assert location.startswith(redirect_uri.split("?")[0]), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def refused(resp: httpx.Response, error: str, description: str) -> None:
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"error": error, "error_description": description}


@pytest.fixture(scope="module")
def flow(live: Live) -> Iterator[Flow]:
    admin = system_context(live.ctx, "web flow test setup")
    oauth_apps.set_callback_urls(admin, live.client_id, [CALLBACK, LOCAL_CALLBACK])
    with serving(build_app(live.ctx, background=False)) as base:
        yield Flow(live, base)


def test_the_whole_dance_with_pkce_s256(flow: Flow, live: Live) -> None:
    verifier, challenge = pkce()
    code = flow.code(code_challenge=challenge, code_challenge_method="S256")
    r = flow.exchange(code, verifier=verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"access_token", "refresh_token", "instance_url", "id", "token_type", "issued_at", "signature",
            "scope"} <= set(body)
    assert body["instance_url"] == flow.base and body["token_type"] == "Bearer"
    assert body["scope"] == "api refresh_token"
    assert body["id"] == f"{flow.base}/id/{body['id'].split('/')[-2]}/{user_id(live, USER)}"
    mac = hmac.new(live.client_secret.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256).digest()
    assert body["signature"] == base64.b64encode(mac).decode()  # what django-salesforce checks
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    q = httpx.get(f"{flow.base}/services/data/v{V}/query", params={"q": "SELECT Id FROM Widget__c"}, headers=auth)
    assert q.status_code == 200, q.text
    # The code is single-use, and the refresh token works.
    refused(flow.exchange(code, verifier=verifier), "invalid_grant", "invalid authorization code")
    again = httpx.post(f"{flow.base}/services/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": live.client_id,
        "client_secret": live.client_secret})
    assert again.status_code == 200, again.text


def test_no_challenge_method_means_s256_as_on_salesforce(flow: Flow) -> None:
    verifier, challenge = pkce()
    assert flow.exchange(flow.code(code_challenge=challenge), verifier=verifier).status_code == 200
    refused(flow.exchange(flow.code(code_challenge=challenge), verifier=challenge), "invalid_grant",
            "invalid code verifier")


def test_django_salesforce_gets_a_refresh_token_through_the_web_server_flow(flow: Flow, live: Live) -> None:
    """django-salesforce's own code builds the authorize URL (S256 challenge without a method, prompt=consent,
    login_hint) and exchanges the code (secret, verifier, format=json), checking the signature."""
    from salesforce.auth import RefreshTokenAuth

    dj = RefreshTokenAuth("keel-web-flow", settings_dict={
        "HOST": flow.base, "USER": USER, "CONSUMER_KEY": live.client_id, "CONSUMER_SECRET": live.client_secret,
        "REFRESH_TOKEN": "?", "CALLBACK_URL": CALLBACK})
    url = dj.get_auth_redirect_url()
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert "code_challenge_method" not in query and query["code_challenge"]
    back = flow.dance(**{k: query[k] for k in ("redirect_uri", "scope", "code_challenge")}, state="")
    assert back.status_code == 302, back.text
    auth = dj.authorization_code_processing(back.headers["location"])
    assert auth["refresh_token"] and auth["instance_url"] == flow.base
    refreshed = httpx.post(f"{flow.base}/services/oauth2/token", data={
        "grant_type": "refresh_token", "refresh_token": auth["refresh_token"], "client_id": live.client_id,
        "client_secret": live.client_secret})
    assert refreshed.status_code == 200, refreshed.text


def test_plain_pkce_lets_a_public_client_exchange_without_the_secret(flow: Flow) -> None:
    verifier = secrets.token_urlsafe(40)
    code = flow.code(code_challenge=verifier, code_challenge_method="plain", redirect_uri=LOCAL_CALLBACK,
                     scope="api")
    r = flow.exchange(code, secret=None, verifier=verifier, redirect_uri=LOCAL_CALLBACK)
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "api" and "refresh_token" not in r.json()


def test_without_pkce_the_secret_is_required(flow: Flow) -> None:
    refused(flow.exchange(flow.code(), secret=None), "invalid_client", "invalid client credentials")
    refused(flow.exchange(flow.code(), secret="wrong"), "invalid_client", "invalid client credentials")
    assert flow.exchange(flow.code()).status_code == 200


def test_wrong_verifier_is_refused_and_burns_the_code(flow: Flow) -> None:
    verifier, challenge = pkce()
    code = flow.code(code_challenge=challenge, code_challenge_method="S256")
    refused(flow.exchange(code, verifier="x" * 43), "invalid_grant", "invalid code verifier")
    refused(flow.exchange(code, verifier=verifier), "invalid_grant", "invalid authorization code")
    refused(flow.exchange(flow.code(code_challenge=challenge, code_challenge_method="plain"), verifier=verifier),
            "invalid_grant", "invalid code verifier")  # plain compares the verifier with the challenge itself
    refused(flow.exchange(flow.code(code_challenge=challenge, code_challenge_method="S256")), "invalid_grant",
            "invalid code verifier")  # the verifier left out


def test_redirect_uri_and_client_must_match_the_code(flow: Flow, live: Live) -> None:
    refused(flow.exchange(flow.code(), redirect_uri=LOCAL_CALLBACK), "redirect_uri_mismatch",
            "redirect_uri must match configuration")
    admin = system_context(live.ctx, "web flow test")
    with live.ctx.db.transaction() as conn:
        other, other_secret = sessions.create_connected_app(admin, conn, "another client")
    refused(flow.exchange(flow.code(), client_id=other, secret=other_secret), "invalid_grant",
            "invalid authorization code")
    refused(flow.exchange("aPrxnot-a-code"), "invalid_grant", "invalid authorization code")


def test_an_expired_code_is_refused(flow: Flow, live: Live) -> None:
    code = flow.code()
    with live.ctx.db.transaction() as conn:
        conn.execute(sa.update(oauth_codes).where(oauth_codes.c.code_hash == sessions.digest(code))
                     .values(expires_at=live.ctx.clock() - timedelta(seconds=1)))
    refused(flow.exchange(code), "invalid_grant", "expired authorization code")


def test_codes_are_stored_hashed(flow: Flow, live: Live) -> None:
    code = flow.code()
    with live.ctx.db.read() as conn:
        stored = list(conn.execute(sa.select(oauth_codes.c.code_hash)).scalars())
    assert code not in stored and sessions.digest(code) in stored


def test_user_without_api_enabled_gets_no_token(flow: Flow) -> None:
    refused(flow.exchange(flow.code(username=NOAPI, password=NOAPI_PW)), "invalid_grant",
            "API is disabled for this User")


def test_denying_redirects_access_denied(flow: Flow) -> None:
    back = flow.dance(approve=False)
    assert back.status_code == 302
    got = redirect_query(back, CALLBACK)
    assert got == {"error": "access_denied", "error_description": "end-user denied authorization",
                   "state": "st-42"}


def test_approving_lets_the_app_use_the_jwt_bearer_grant(flow: Flow, live: Live) -> None:
    """The approval on the authorize screen is the one the JWT bearer grant asks for."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web flow")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    admin = system_context(live.ctx, "web flow test")
    oauth_apps.set_certificate(admin, live.client_id, cert.public_bytes(serialization.Encoding.PEM).decode())
    oauth_apps.preauthorize_user(admin, live.client_id, user_id(live, ADMIN), allowed=False)

    def jwt_login() -> httpx.Response:
        assertion = pyjwt.encode({"iss": live.client_id, "sub": ADMIN, "aud": flow.base,
                                  "exp": int(time.time()) + 60}, key, algorithm="RS256")
        return httpx.post(f"{flow.base}/services/oauth2/token",
                          data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})

    try:
        refused(jwt_login(), "invalid_grant", "user hasn't approved this consumer")
        flow.code(username=ADMIN, password=ADMIN_PW)
        assert jwt_login().status_code == 200
    finally:
        oauth_apps.set_certificate(admin, live.client_id, None)


# -- the authorize endpoint's own errors ----------------------------------------------------------------------

def _get(flow: Flow, url: str) -> httpx.Response:
    return httpx.get(url, follow_redirects=False)


def test_unknown_client_or_callback_gets_an_error_page_not_a_redirect(flow: Flow) -> None:
    for params in ({"client_id": "3MVGnope"}, {"redirect_uri": "https://evil.example/cb"},
                   {"redirect_uri": CALLBACK + "/extra"}, {"redirect_uri": ""}):
        r = _get(flow, flow.authorize_url(**params))
        assert r.status_code == 400, params
        assert "location" not in r.headers and "cannot sign in here" in r.text


def test_request_errors_go_back_to_a_valid_redirect_uri(flow: Flow) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": ""}, "unsupported_response_type"),
        ({"code_challenge": "a" * 43, "code_challenge_method": "S512"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
    ]
    for params, error in cases:
        r = _get(flow, flow.authorize_url(**params))
        assert r.status_code == 302, (params, r.text)
        got = redirect_query(r, CALLBACK)
        assert got["error"] == error and got["state"] == "st-42", params
    # A redirect_uri with its own query keeps it.
    r = _get(flow, flow.authorize_url(redirect_uri=LOCAL_CALLBACK, response_type="token"))
    assert r.headers["location"].startswith(LOCAL_CALLBACK + "&error=unsupported_response_type")


def test_approving_needs_the_session_and_its_csrf_token(flow: Flow) -> None:
    fields = {"response_type": "code", "client_id": flow.live.client_id, "redirect_uri": CALLBACK,
              "state": "s", "action": "approve"}
    anonymous = httpx.post(f"{flow.base}/services/oauth2/authorize", data=fields, follow_redirects=False)
    assert anonymous.status_code == 401 and "location" not in anonymous.headers
    with httpx.Client(follow_redirects=False) as browser:
        page = browser.get(f"{flow.base}/login")
        browser.post(f"{flow.base}/login", data={**hidden_fields(page.text), "username": USER,
                                                  "password": USER_PW})
        forged = browser.post(f"{flow.base}/services/oauth2/authorize", data=fields)
        assert forged.status_code == 403 and "location" not in forged.headers
