"""What an administrator sets on a connected app for the JWT bearer and web-server flows: the X.509 certificate,
the callback URLs and the users pre-authorized to use it (the setup screen calls these; ``services.security``
holds the rest of the connected-app life cycle).

Callback URLs are checked when saved, not only when used: a redirect_uri must equal one of them exactly, so a
registered URL that can never be a safe redirect target (``javascript:``, a fragment, plain http to a remote host)
is refused up front.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from keel.context import Context
from keel.errors import KeelError, NotFoundError
from keel.security import oauth_flows
from keel.security.audit import audit
from keel.security.tables import connected_apps, oauth_approvals
from keel.services.security import _require, _user_exists
from keel.storage import ids

LOOPBACK = ("localhost", "127.0.0.1", "::1")
FORBIDDEN_SCHEMES = ("javascript", "data", "file", "vbscript")


def _app_pk(conn: sa.Connection, client_id: str) -> int:
    pk = conn.execute(sa.select(connected_apps.c.id).where(connected_apps.c.client_id == client_id)).scalar()
    if pk is None:
        raise NotFoundError("No connected app with that client id.")
    return int(pk)


def set_certificate(ctx: Context, client_id: str, pem: str | None) -> None:
    """Upload (or, with None/blank, remove) the certificate that verifies the app's JWT bearer assertions."""
    _require(ctx, "CustomizeApplication")
    text = (pem or "").strip() or None
    if text is not None:
        oauth_flows.load_certificate(text)
    with ctx.db.transaction() as conn:
        pk = _app_pk(conn, client_id)
        conn.execute(sa.update(connected_apps).where(connected_apps.c.id == pk).values(certificate=text))
        audit(conn, "connected_app_certificate_set" if text else "connected_app_certificate_removed",
              actor_id=ctx.actor.user_id, detail={"client_id": client_id}, at=ctx.clock())


def check_callback_url(url: str) -> str:
    u = urlsplit(url)
    if not u.scheme or u.scheme.lower() in FORBIDDEN_SCHEMES or u.fragment or any(c.isspace() for c in url):
        raise KeelError(f"'{url}' is not a usable callback URL (absolute, no fragment, no spaces).",
                        code="INVALID_FIELD", fields=["callback_urls"])
    if u.scheme.lower() in ("http", "https") and not u.hostname:
        raise KeelError(f"'{url}' has no host.", code="INVALID_FIELD", fields=["callback_urls"])
    if u.scheme.lower() == "http" and u.hostname not in LOOPBACK:
        raise KeelError(f"'{url}': plain http is only allowed to localhost; use https.", code="INVALID_FIELD",
                        fields=["callback_urls"])
    return url


def set_callback_urls(ctx: Context, client_id: str, urls: Iterable[str]) -> tuple[str, ...]:
    """Replace the app's callback URLs (the redirect_uri values the authorize endpoint accepts, matched exactly)."""
    _require(ctx, "CustomizeApplication")
    clean = tuple(dict.fromkeys(check_callback_url(u.strip()) for u in urls if u.strip()))
    with ctx.db.transaction() as conn:
        pk = _app_pk(conn, client_id)
        conn.execute(sa.update(connected_apps).where(connected_apps.c.id == pk)
                     .values(callback_urls="\n".join(clean) or None))
        audit(conn, "connected_app_callbacks_set", actor_id=ctx.actor.user_id,
              detail={"client_id": client_id, "urls": list(clean)}, at=ctx.clock())
    return clean


def app_details(ctx: Context, client_id: str) -> dict[str, Any]:
    """Certificate subject and expiry, callback URLs and pre-authorized/approved users of one app."""
    from cryptography import x509

    _require(ctx, "ViewSetup")
    c = connected_apps.c
    with ctx.db.read() as conn:
        row = conn.execute(sa.select(c.certificate, c.callback_urls).where(c.client_id == client_id)).first()
        if row is None:
            raise NotFoundError("No connected app with that client id.")
        users = [int(u) for u in conn.execute(sa.select(oauth_approvals.c.user_id)
                                              .where(oauth_approvals.c.client_id == client_id)).scalars()]
    cert = None
    if row.certificate:
        parsed = x509.load_pem_x509_certificate(str(row.certificate).encode())
        cert = {"subject": parsed.subject.rfc4514_string(), "not_after": parsed.not_valid_after_utc}
    return {"certificate": cert, "callback_urls": oauth_flows.parse_callback_urls(row.callback_urls),
            "approved_user_ids": [ids.encode("005", u) for u in sorted(users)]}


def preauthorize_user(ctx: Context, client_id: str, user_id: str, allowed: bool = True) -> None:
    """An administrator lets a user use the app without approving it themself (what the JWT bearer grant needs
    for a server-to-server integration user), or withdraws that (and any approval the user gave)."""
    _require(ctx, "CustomizeApplication")
    pk = ids.decode(user_id, "005")
    with ctx.db.transaction() as conn:
        _app_pk(conn, client_id)
        if not _user_exists(ctx, conn, pk):
            raise NotFoundError("No such user.")
        if allowed:
            oauth_flows.approve(ctx, conn, client_id, pk, by=ctx.actor.user_id)
        else:
            oauth_flows.revoke_approval(ctx, conn, client_id, pk, by=ctx.actor.user_id)


def authorize(ctx: Context, client_id: str, redirect_uri: str, *, challenge: str | None, method: str | None,
              scope: str) -> str:
    """The signed-in user approves the app on the authorize screen: record the approval (which the JWT bearer
    grant also honours) and issue an authorization code for this redirect_uri and PKCE challenge."""
    if ctx.actor.is_system:
        raise KeelError("Only a signed-in user can approve a connected app.", code="INSUFFICIENT_ACCESS")
    app = oauth_flows.find_app(ctx, client_id)
    if app is None or redirect_uri not in app.callback_urls:
        raise NotFoundError("No active connected app with that client id and callback URL.")
    with ctx.db.transaction() as conn:
        oauth_flows.approve(ctx, conn, client_id, ctx.actor.user_id, by=ctx.actor.user_id)
        return oauth_flows.issue_code(ctx, conn, client_id, ctx.actor.user_id, redirect_uri, challenge=challenge,
                                      method=method, scope=scope)
