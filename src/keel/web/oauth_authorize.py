"""``/services/oauth2/authorize``: the browser half of the OAuth2 web-server flow (authorization code, with PKCE).

The path is under ``/services`` like Salesforce's, but the page is the web app's: the server's dispatcher
(``cli/asgi.py``) sends it here so the user signs in with the web login (password, TOTP, lockout) and approves the
app with the web session's CSRF protection. The token exchange itself is the API's (``api/oauth.py``).

Errors follow RFC 6749 §4.1.2.1: while the client or redirect_uri is unknown, nothing may be sent to the
redirect_uri (it could be an attacker's), so the user gets an error page; after that, errors go back to the client
as ``error=…&state=…`` on the redirect_uri. Keel shows the approve screen on every authorization (Salesforce
skips it once approved); that also means the redirect to the client always follows the approve form, whose
Content-Security-Policy ``form-action`` names the client's origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

from starlette.responses import HTMLResponse, RedirectResponse, Response

from keel.context import Context
from keel.errors import KeelError
from keel.security import oauth_flows, sessions
from keel.services import oauth_apps
from keel.web.base import COOKIE, Web, csrf_for

PARAMS = ("response_type", "client_id", "redirect_uri", "state", "scope", "code_challenge",
          "code_challenge_method")
DEFAULT_SCOPE = "api refresh_token"


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    app: oauth_flows.OAuthApp
    redirect_uri: str
    state: str
    scope: str
    challenge: str | None
    method: str | None

    def redirect(self, **values: str) -> Response:
        """Back to the client with ``values`` (and the state) in the query, keeping any query it registered."""
        if self.state:
            values["state"] = self.state
        sep = "&" if urlsplit(self.redirect_uri).query else "?"
        return RedirectResponse(self.redirect_uri + sep + urlencode(values), status_code=302)


class ClientError(Exception):
    """The request cannot be answered on the redirect_uri: show a page instead."""


def _error_page(web: Web, message: str, status: int = 400) -> Response:
    env = web.request.app.state.jinja
    return HTMLResponse(env.get_template("oauth_error.html").render(message=message), status_code=status)


def _parse(ctx: Context, p: dict[str, str]) -> AuthorizeRequest | Response:
    """Validate in RFC order. Raises ``ClientError`` before the redirect_uri is trusted; afterwards returns the
    error redirect (a Response) or the request."""
    app = oauth_flows.find_app(ctx, p.get("client_id", ""))
    if app is None:
        raise ClientError("The client id is not an active connected app (error=invalid_client_id).")
    uri = p.get("redirect_uri", "")
    if not uri or uri not in app.callback_urls:
        raise ClientError("The redirect_uri does not match a callback URL of this connected app "
                          "(error=redirect_uri_mismatch).")
    challenge = p.get("code_challenge") or None
    # Salesforce takes no code_challenge_method and always means S256, and django-salesforce relies on that, so an
    # absent method is S256 here (RFC 7636's default would be plain); plain must be asked for by name.
    method = p.get("code_challenge_method") or ("S256" if challenge else None)
    req = AuthorizeRequest(app, uri, p.get("state", ""), p.get("scope", "").strip() or DEFAULT_SCOPE, challenge,
                           method)
    if p.get("response_type") != "code":
        return req.redirect(error="unsupported_response_type",
                            error_description="response type not supported (only code)")
    if method is not None and method not in ("S256", "plain"):
        return req.redirect(error="invalid_request", error_description="unsupported code_challenge_method")
    if challenge is not None and not 43 <= len(challenge) <= 128:
        return req.redirect(error="invalid_request", error_description="code_challenge must be 43-128 characters")
    return req


def _params(web: Web) -> dict[str, str]:
    source = web.form if web.request.method == "POST" else web.params
    return {k: str(source.get(k, "")) for k in PARAMS}


def authorize_page(web: Web) -> Response:
    """GET: check the request, send an anonymous user to the login page (which returns here), then ask the
    signed-in user to approve the app."""
    params = _params(web)
    try:
        parsed = _parse(web.ctx, params)
    except ClientError as e:
        return _error_page(web, str(e))
    if isinstance(parsed, Response):
        return parsed
    token = web.request.cookies.get(COOKIE, "")
    actor = sessions.resolve_token(web.ctx, token) if token else None
    if actor is None:
        here = web.request.url.path + "?" + web.request.url.query
        return RedirectResponse("/login?next=" + quote(here, safe=""), status_code=303)
    user_web = Web(web.request, web.ctx.as_actor(actor), {}, {}, csrf_for(token))
    u = urlsplit(parsed.redirect_uri)
    origin = f"{u.scheme}://{u.netloc}" if u.netloc else f"{u.scheme}:"
    resp = user_web.render("oauth_authorize.html", app=parsed.app, params=params, scope=parsed.scope,
                           origin=origin)
    resp.headers["content-security-policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
        f"base-uri 'none'; form-action 'self' {origin}; frame-ancestors 'none'")
    return resp


def authorize_submit(web: Web) -> Response:
    """POST (signed in, CSRF-checked by ``page``): Allow issues a code, Deny answers ``access_denied``."""
    try:
        parsed = _parse(web.ctx, _params(web))
    except ClientError as e:
        return _error_page(web, str(e))
    if isinstance(parsed, Response):
        return parsed
    if web.form.get("action") != "approve":
        return parsed.redirect(error="access_denied", error_description="end-user denied authorization")
    try:
        code = oauth_apps.authorize(web.ctx, parsed.app.client_id, parsed.redirect_uri,
                                    challenge=parsed.challenge, method=parsed.method, scope=parsed.scope)
    except KeelError as e:
        return parsed.redirect(error="server_error", error_description=e.message)
    return parsed.redirect(code=code)
