"""Signing in and out: the web session is an ordinary Keel session token in an HttpOnly cookie.

Login goes through ``security.sessions.authenticate`` so throttling, lockout, TOTP and auditing are the same as
for the API. Before there is a session, the login form is protected by a double-submit token: a random value in a
SameSite=Strict cookie that must match the form field (login CSRF would sign the victim into the attacker's
account).
"""

from __future__ import annotations

import hmac
import secrets

from starlette.responses import RedirectResponse, Response

from keel.security import sessions
from keel.web.base import COOKIE, LOGIN_CSRF_COOKIE, Web, back


def _secure(web: Web) -> bool:
    return web.request.url.scheme == "https"


def login_form(web: Web, *, error: str = "", need_code: bool = False, username: str = "",
               status: int = 200) -> Response:
    token = web.request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    resp = web.render("login.html", status=status, login_csrf=token, error=error, need_code=need_code,
                      username=username, next=back(web, "/"))
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(web), path="/login")
    return resp


def login_page(web: Web) -> Response:
    return login_form(web)


def login_submit(web: Web) -> Response:
    cookie = web.request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, str(web.form.get("csrf_token", ""))):
        return login_form(web, error="The form expired; please try again.", status=403)
    username = str(web.form.get("username", "")).strip()
    password = str(web.form.get("password", ""))
    code = str(web.form.get("code", "")).strip() or None
    ip = web.request.client.host if web.request.client else "unknown"
    try:
        session = sessions.authenticate(web.ctx, username, password, ip=ip, totp_code=code,
                                        previous_token=web.request.cookies.get(COOKIE), kind="web")
    except sessions.LoginError as e:
        need = e.code in ("MFA_REQUIRED", "INVALID_TOTP") and "enrol" not in e.message
        return login_form(web, error=e.message, need_code=need, username=username, status=401)
    resp = RedirectResponse(back(web, "/"), status_code=303)
    max_age = int(web.ctx.settings.session_absolute_hours * 3600)
    resp.set_cookie(COOKIE, session.token, httponly=True, samesite="lax", secure=_secure(web), max_age=max_age,
                    path="/")
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


def logout(web: Web) -> Response:
    sessions.revoke_token(web.ctx, web.request.cookies.get(COOKIE, ""))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp
