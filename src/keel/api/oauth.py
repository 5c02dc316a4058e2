"""OAuth 2.0 token, revoke and identity endpoints (salesforce-api.md §1.3).

The token response is signed the way django-salesforce checks it: ``base64(HMAC-SHA256(client_secret, id +
issued_at))``. Grants: password, client_credentials (body or ``Authorization: Basic``), refresh_token,
authorization_code (the web-server flow, with PKCE; the browser half is the web app's ``/services/oauth2/authorize``)
and the JWT bearer assertion (``keel.security.oauth_flows`` verifies it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from keel.api.auth import bearer_token
from keel.api.backend import AuthBackend, Session
from keel.api.errors import invalid_session, json_response
from keel.errors import KeelError
from keel.security.oauth_flows import GrantError


def sign(secret: str, identity: str, issued_at: str) -> str:
    mac = hmac.new(secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return json_response({"error": error, "error_description": description}, status)


def identity_url(base: str, session: Session) -> str:
    return f"{base}/id/{session.org_id}/{session.user_id}"


def _basic(request: Request) -> tuple[str, str] | None:
    raw = request.headers.get("authorization", "")
    scheme, _, value = raw.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        key, _, secret = base64.b64decode(value.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return key, secret


JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GRANTS = ("password", "client_credentials", "refresh_token", "authorization_code", JWT_BEARER)


async def token(request: Request) -> Response:
    state = request.app.state
    auth: AuthBackend = state.auth
    ctx = state.ctx
    form = {k: str(v) for k, v in (await request.form()).items()}
    form.update({k: v for k, v in request.query_params.items() if k not in form})
    grant = form.get("grant_type", "")
    client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
    basic = _basic(request)
    if basic is not None:
        client_id, client_secret = basic
    if grant not in GRANTS:
        return oauth_error("unsupported_grant_type", "grant type not supported")
    base = f"{request.url.scheme}://{request.url.netloc}"
    ip = request.client.host if request.client else ""
    if grant == JWT_BEARER:
        return await _jwt_bearer(auth, ctx, form.get("assertion", ""), base, ip)
    if not client_id:
        return oauth_error("invalid_client_id", "client identifier invalid")
    if not await run_in_threadpool(auth.verify_client, ctx, client_id, None):
        return oauth_error("invalid_client_id", "client identifier invalid")
    # A refresh or a PKCE-bound code may come from a public client without the secret; a secret sent is checked.
    if (grant not in ("refresh_token", "authorization_code") or client_secret) and not await run_in_threadpool(
            auth.verify_client, ctx, client_id, client_secret):
        return oauth_error("invalid_client", "invalid client credentials")
    scope: str | None = None
    try:
        if grant == "password":
            session = await run_in_threadpool(lambda: auth.login(ctx, form.get("username", ""),
                                                                 form.get("password", ""), ip=ip, refresh=True,
                                                                 client_id=client_id))
        elif grant == "client_credentials":
            session = await run_in_threadpool(lambda: auth.client_login(ctx, client_id, client_secret, ip=ip))
        elif grant == "authorization_code":
            session, scope, pkce = await run_in_threadpool(lambda: auth.code_login(
                ctx, form.get("code", ""), client_id, form.get("redirect_uri", ""),
                form.get("code_verifier") or None, ip=ip))
            if not client_secret and not pkce:
                await _revoke_all(auth, ctx, session)
                return oauth_error("invalid_client", "invalid client credentials")
        else:
            session = await run_in_threadpool(lambda: auth.refresh(ctx, form.get("refresh_token", ""), client_id,
                                                                   ip=ip))
    except GrantError as e:
        return oauth_error(e.code, e.message)
    except KeelError:
        return oauth_error("invalid_grant", "authentication failure")
    if not session.api_enabled:
        await _revoke_all(auth, ctx, session)
        return oauth_error("invalid_grant", "API is disabled for this User")
    body = _token_body(base, session, client_secret)
    if scope is not None:
        body["scope"] = scope
    if session.refresh_token and grant != "refresh_token":
        body["refresh_token"] = session.refresh_token
    return json_response(body)


async def _jwt_bearer(auth: AuthBackend, ctx: Any, assertion: str, base: str, ip: str) -> Response:
    """The JWT bearer grant: the client is the assertion's ``iss``, so there is no client_id or secret to check
    here, no refresh token, and no ``signature`` (it is keyed by a secret this grant never sees). ``aud`` may be
    Salesforce's login URLs (what clients send by default) or this server's own URL as the client reached it."""
    if not assertion:
        return oauth_error("invalid_grant", "invalid assertion")
    try:
        session = await run_in_threadpool(lambda: auth.jwt_login(ctx, assertion, [base], ip=ip))
    except GrantError as e:
        return oauth_error(e.code, e.message)
    except KeelError:
        return oauth_error("invalid_grant", "authentication failure")
    if not session.api_enabled:
        await _revoke_all(auth, ctx, session)
        return oauth_error("invalid_grant", "API is disabled for this User")
    body = _token_body(base, session, None)
    body["scope"] = "api"
    return json_response(body)


async def _revoke_all(auth: AuthBackend, ctx: Any, session: Session) -> None:
    await run_in_threadpool(auth.revoke, ctx, session.token)
    if session.refresh_token:
        await run_in_threadpool(auth.revoke, ctx, session.refresh_token)


def _token_body(base: str, session: Session, client_secret: str | None) -> dict[str, Any]:
    """Salesforce's token response; ``signature`` is django-salesforce's check that the response is genuine."""
    ident = identity_url(base, session)
    issued = str(int(time.time() * 1000))
    body: dict[str, Any] = {
        "access_token": session.token, "instance_url": base, "id": ident, "token_type": "Bearer",
        "issued_at": issued, "scope": "api refresh_token" if session.refresh_token else "api",
    }
    if client_secret is not None:
        body["signature"] = sign(client_secret, ident, issued)
    return body


async def revoke(request: Request) -> Response:
    state = request.app.state
    form = dict(await request.form()) if request.method == "POST" else {}
    value = str(form.get("token") or request.query_params.get("token") or "")
    if not value:
        return oauth_error("unsupported_token_type", "this token type is not supported")
    await run_in_threadpool(state.auth.revoke, state.ctx, value)
    return Response(b"", 200)


async def _session(request: Request) -> Session | None:
    state = request.app.state
    tok = bearer_token(request.headers) or request.query_params.get("oauth_token")
    if not tok:
        return None
    result: Session | None = await run_in_threadpool(state.auth.resolve, state.ctx, tok)
    return result


async def identity(request: Request) -> Response:
    """``/id/{org}/{user}``: who a token belongs to. A token may only read its own identity."""
    session = await _session(request)
    if session is None:
        return invalid_session()
    org, user = request.path_params["org"], request.path_params["user"]
    if org[:15] != session.org_id[:15] or user[:15] != session.user_id[:15]:
        return oauth_error("Bad_Id", "Bad id " + user, 403)
    base = f"{request.url.scheme}://{request.url.netloc}"
    return json_response(_identity_body(base, session))


async def userinfo(request: Request) -> Response:
    session = await _session(request)
    if session is None:
        return invalid_session()
    base = f"{request.url.scheme}://{request.url.netloc}"
    return json_response(_identity_body(base, session))


def _identity_body(base: str, s: Session) -> dict[str, Any]:
    ver = "{version}"
    return {
        "id": identity_url(base, s), "user_id": s.user_id, "organization_id": s.org_id, "username": s.username,
        "nick_name": s.username.split("@")[0], "display_name": s.username, "active": True,
        "user_type": "STANDARD", "language": s.actor.locale, "locale": s.actor.locale,
        "timezone": s.actor.time_zone, "is_app_installed": True,
        "urls": {
            "rest": f"{base}/services/data/v{ver}/", "sobjects": f"{base}/services/data/v{ver}/sobjects/",
            "query": f"{base}/services/data/v{ver}/query/", "search": f"{base}/services/data/v{ver}/search/",
            "profile": f"{base}/{s.user_id}",
        },
    }
