"""The OAuth2 grants that do not start from a password: JWT bearer and the web-server (authorization code) flow.

Both end in an ordinary API token (``sessions.issue_token``); what lives here is how each proves who the user is:

- **JWT bearer**: the app signs ``{iss: client_id, sub: username, aud, exp}`` with its private key; Keel verifies
  it with the X.509 certificate the administrator uploaded for the app. The key replaces the password, so the user
  must have approved the app (on the authorize screen) or an administrator must have pre-authorized them, as on
  Salesforce. No password is involved, so no second factor is asked for; a locked-out or inactive user is refused.
- **Authorization code**: the user signs in on the web app (password, TOTP and lockout as usual) and approves the
  app; the code handed to the redirect_uri is random, stored as a SHA-256 digest, lives ten minutes, is burnt by
  its first redemption attempt, and is bound to the client, the redirect_uri, the user and the PKCE challenge.

Errors carry OAuth2's ``error`` as ``code`` and Salesforce's ``error_description`` as the message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.errors import KeelError
from keel.security.audit import audit
from keel.security.sessions import _find_user, digest
from keel.security.tables import connected_apps, oauth_approvals, oauth_codes
from keel.storage import system as S

if TYPE_CHECKING:
    from keel.context import Context

CODE_LIFETIME = timedelta(minutes=10)
CLOCK_SKEW = timedelta(seconds=60)  # an assertion's exp may be this far in the past (clocks differ)
SALESFORCE_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


class GrantError(KeelError):
    """A refused grant: ``code`` is OAuth2's ``error``, the message its ``error_description``."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description, code=error)


def invalid_grant(description: str) -> GrantError:
    return GrantError("invalid_grant", description)


@dataclass(frozen=True, slots=True)
class OAuthApp:
    id: int
    name: str
    client_id: str
    certificate: str | None
    callback_urls: tuple[str, ...]


def parse_callback_urls(text: str | None) -> tuple[str, ...]:
    return tuple(u.strip() for u in (text or "").splitlines() if u.strip())


def find_app(ctx: Context, client_id: str) -> OAuthApp | None:
    """The active connected app with this client id, or None."""
    if not client_id:
        return None
    c = connected_apps.c
    with ctx.db.read() as conn:
        row = conn.execute(sa.select(c.id, c.name, c.client_id, c.certificate, c.callback_urls)
                           .where(c.client_id == client_id, c.is_active == sa.true())).first()
    if row is None:
        return None
    return OAuthApp(int(row.id), str(row.name), str(row.client_id), row.certificate or None,
                    parse_callback_urls(row.callback_urls))


# -- approvals ------------------------------------------------------------------------------------------------

def is_approved(conn: Connection, client_id: str, user_pk: int) -> bool:
    a = oauth_approvals.c
    return conn.execute(sa.select(a.user_id).where(a.client_id == client_id, a.user_id == user_pk)).first() is not None


def approve(ctx: Context, conn: Connection, client_id: str, user_pk: int, *, by: int | None) -> None:
    """Record that ``user_pk`` may use the app (idempotent); ``by`` is the approving user (themself or an admin)."""
    if is_approved(conn, client_id, user_pk):
        return
    conn.execute(sa.insert(oauth_approvals).values(client_id=client_id, user_id=user_pk, created_date=ctx.clock(),
                                                   approved_by_id=by))
    audit(conn, "oauth_app_approved", actor_id=by, on_behalf_of_id=user_pk, detail={"client_id": client_id},
          at=ctx.clock())


def revoke_approval(ctx: Context, conn: Connection, client_id: str, user_pk: int, *, by: int | None) -> bool:
    a = oauth_approvals.c
    n = conn.execute(sa.delete(oauth_approvals).where(a.client_id == client_id, a.user_id == user_pk)).rowcount
    if n:
        audit(conn, "oauth_app_approval_revoked", actor_id=by, on_behalf_of_id=user_pk,
              detail={"client_id": client_id}, at=ctx.clock())
    return bool(n)


# -- JWT bearer ------------------------------------------------------------------------------------------------

def load_certificate(pem: str) -> Any:
    """The RSA public key of a PEM X.509 certificate; ``KeelError`` when it is not one (checked at upload)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        cert = x509.load_pem_x509_certificate(pem.strip().encode())
    except ValueError:
        raise KeelError("That is not a PEM X.509 certificate (-----BEGIN CERTIFICATE-----).",
                        code="INVALID_FIELD", fields=["certificate"]) from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeelError("The certificate must hold an RSA key: JWT bearer assertions are signed with RS256.",
                        code="INVALID_FIELD", fields=["certificate"])
    return key


def _timestamp(now: datetime) -> float:
    return now.timestamp() if now.tzinfo else (now - datetime(1970, 1, 1)).total_seconds()


def verify_assertion(ctx: Context, assertion: str, audiences: Collection[str]) -> tuple[OAuthApp, int]:
    """Check a JWT bearer assertion and return (app, user pk). The claims are read unverified only to find the
    app (``iss``) whose certificate then verifies the signature; nothing else is trusted before that."""
    import jwt

    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise invalid_grant("invalid assertion") from None
    if header.get("alg") != "RS256" or not isinstance(claims.get("iss"), str):
        raise invalid_grant("invalid assertion")
    app = find_app(ctx, claims["iss"])
    if app is None:
        raise GrantError("invalid_client_id", "client identifier invalid")
    if app.certificate is None:
        raise invalid_grant("invalid assertion")  # nothing to verify a signature with
    try:
        claims = jwt.decode(assertion, load_certificate(app.certificate), algorithms=["RS256"],
                            options={"verify_aud": False, "verify_exp": False, "verify_iat": False,
                                     "verify_nbf": False})
        exp = int(claims["exp"])
    except (jwt.PyJWTError, KeelError, KeyError, TypeError, ValueError):
        raise invalid_grant("invalid assertion") from None
    now = ctx.clock()
    if exp < _timestamp(now) - CLOCK_SKEW.total_seconds():
        raise invalid_grant("expired access/refresh token")
    aud = claims.get("aud")
    sent = [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
    allowed = {a.rstrip("/").lower() for a in (*SALESFORCE_AUDIENCES, *audiences)}
    if not any(isinstance(a, str) and a.rstrip("/").lower() in allowed for a in sent):
        raise invalid_grant("audience is invalid")
    sub = claims.get("sub")
    with ctx.db.transaction() as conn:
        found = _find_user(conn, ctx, sub) if isinstance(sub, str) and sub else None
        if found is None or not found[1]:
            audit(conn, "login_failure", actor_id=found[0] if found else None, result="failure",
                  detail={"reason": "jwt: unknown or inactive user", "client_id": app.client_id}, at=now)
            raise invalid_grant("authentication failure")
        user_pk = found[0]
        locked = conn.execute(sa.select(S.credentials.c.locked_until)
                              .where(S.credentials.c.user_id == user_pk)).scalar()
        if locked is not None and locked > now:
            audit(conn, "login_failure", actor_id=user_pk, result="failure",
                  detail={"reason": "jwt: locked", "client_id": app.client_id}, at=now)
            raise invalid_grant("authentication failure")
        if not is_approved(conn, app.client_id, user_pk):
            audit(conn, "login_failure", actor_id=user_pk, result="failure",
                  detail={"reason": "jwt: app not approved", "client_id": app.client_id}, at=now)
            raise invalid_grant("user hasn't approved this consumer")
    return app, user_pk


# -- authorization codes ---------------------------------------------------------------------------------------

def pkce_matches(challenge: str, method: str, verifier: str) -> bool:
    """RFC 7636: S256 is base64url(SHA-256(verifier)) without padding; plain compares the strings."""
    if method == "S256":
        computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    else:
        computed = verifier
    return hmac.compare_digest(computed.encode(), challenge.encode())


def issue_code(ctx: Context, conn: Connection, client_id: str, user_pk: int, redirect_uri: str, *,
               challenge: str | None, method: str | None, scope: str) -> str:
    """A new authorization code (returned once; only its digest is stored)."""
    code = "aPrx" + secrets.token_urlsafe(32)
    now = ctx.clock()
    conn.execute(sa.insert(oauth_codes).values(
        code_hash=digest(code), client_id=client_id, user_id=user_pk, redirect_uri=redirect_uri,
        challenge=challenge, challenge_method=(method or "S256") if challenge else None, scope=scope,
        created_date=now, expires_at=now + CODE_LIFETIME))
    audit(conn, "oauth_code_issued", actor_id=user_pk, detail={"client_id": client_id}, at=now)
    return code


@dataclass(frozen=True, slots=True)
class Redeemed:
    user_id: int
    scope: str
    pkce: bool


def redeem_code(ctx: Context, code: str, client_id: str, redirect_uri: str, verifier: str | None) -> Redeemed:
    """Exchange a code once. The first attempt burns it whatever its outcome (one UPDATE ... WHERE used_at IS
    NULL, so two concurrent exchanges cannot both win); then client, redirect_uri, expiry and PKCE are checked."""
    now = ctx.clock()
    h = digest(code)
    c = oauth_codes.c
    with ctx.db.transaction() as conn:
        row = conn.execute(sa.select(oauth_codes).where(c.code_hash == h)).first() if code else None
        if row is None:
            raise invalid_grant("invalid authorization code")
        won = conn.execute(sa.update(oauth_codes).where(c.code_hash == h, c.used_at.is_(None))
                           .values(used_at=now)).rowcount
    if not won:
        with ctx.db.transaction() as conn:
            audit(conn, "oauth_code_reused", actor_id=int(row.user_id), result="failure",
                  detail={"client_id": client_id}, at=now)
        raise invalid_grant("invalid authorization code")
    if row.client_id != client_id:
        raise invalid_grant("invalid authorization code")
    if row.expires_at <= now:
        raise invalid_grant("expired authorization code")
    if row.redirect_uri != redirect_uri:
        raise GrantError("redirect_uri_mismatch", "redirect_uri must match configuration")
    if row.challenge is not None and not (verifier and pkce_matches(str(row.challenge),
                                                                     str(row.challenge_method), verifier)):
        raise invalid_grant("invalid code verifier")
    return Redeemed(int(row.user_id), str(row.scope), row.challenge is not None)
