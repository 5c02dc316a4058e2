"""Login, sessions and API tokens, TOTP, lockout and connected apps.

- Tokens are random (``secrets``), shown once, and stored as SHA-256 digests: a leaked table grants nothing.
- Every login issues a new token and can retire the one the client held (no session fixation).
- A token dies at its absolute expiry, after ``session_idle_minutes`` without use, or when revoked: on password
  change, deactivation or an administrator's kill.
- Failures are throttled per user (lockout after ``login_max_failures``, lifted by time or an administrator) and
  per IP; failed attempts are committed and audited even though the login raises.
- Unknown users, wrong passwords and inactive users get the same error (no enumeration).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.context import Actor
from keel.errors import KeelError
from keel.security import totp
from keel.security.access import AccessCache, UserAccess
from keel.security.audit import audit
from keel.security.passwords import hash_password, verify_password
from keel.security.principals import col, live
from keel.security.tables import connected_apps, login_ip, sessions, totp_state
from keel.storage import system as S

if TYPE_CHECKING:
    from keel.context import Context

IP_MAX_FAILURES = 20
IP_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=30)
TOUCH_EVERY = timedelta(seconds=60)
REFRESH = "refresh"  # the kind of an OAuth refresh token (keel_session.kind)
@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against when the username is unknown, so that answer takes as long as a wrong password.
    Made on first use: hashing costs ~0.1-1 s of CPU, which every process start would otherwise pay."""
    return hash_password("keel-dummy-password-for-timing")


class LoginError(KeelError):
    code = "INVALID_LOGIN"


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # the secret; only its digest is stored
    user_id: int
    username: str
    kind: str
    expires_at: datetime


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def access_cache(ctx: Context) -> AccessCache:
    cache = ctx.extras.get("access_cache")
    if not isinstance(cache, AccessCache):
        cache = ctx.extras["access_cache"] = AccessCache()
    return cache


def access_for(ctx: Context, conn: Connection, user_pk: int) -> UserAccess:
    """The user's ``Access`` at the current security version (cached until a permission change)."""
    return access_cache(ctx).get(conn, ctx.schema(conn), user_pk)


def actor_for(ctx: Context, conn: Connection, user_pk: int, *, session_id: str | None = None) -> Actor | None:
    """An ``Actor`` for an active user, with its ``Access``; None for unknown or inactive users."""
    schema = ctx.schema(conn)
    ut = live(schema, "User")
    names = ("Username", "TimeZoneSidKey", "LocaleSidKey", "IsActive", "UserRoleId", "ProfileId")
    row = conn.execute(sa.select(*[col(schema, "User", n) for n in names])
                       .where(ut.c.id == user_pk, ut.c.is_deleted == sa.false())).first()
    if row is None or not row[3]:
        return None
    profile = None
    if row[5] is not None:
        pt = live(schema, "Profile")
        profile = conn.execute(sa.select(pt.c.name).where(pt.c.id == row[5])).scalar()
    return Actor(user_id=user_pk, username=str(row[0]), time_zone=str(row[1] or "UTC"), locale=str(row[2] or "en_US"),
                 access=access_for(ctx, conn, user_pk), profile=str(profile or ""),
                 role_id=int(row[4]) if row[4] is not None else None, session_id=session_id)


def _find_user(conn: Connection, ctx: Context, username: str) -> tuple[int, bool] | None:
    schema = ctx.schema(conn)
    ut = live(schema, "User")
    uname = col(schema, "User", "Username")
    row = conn.execute(sa.select(ut.c.id, col(schema, "User", "IsActive"))
                       .where(sa.func.lower(uname) == username.strip().lower(), ut.c.is_deleted == sa.false())).first()
    return (int(row[0]), bool(row[1])) if row is not None else None


def authenticate(ctx: Context, username: str, password: str, *, ip: str, totp_code: str | None = None,
                 previous_token: str | None = None, kind: str = "session") -> Session:
    """Check credentials (and the second factor) and issue a new token. Raises ``LoginError`` subclasses:
    INVALID_LOGIN, LOGIN_RATE_EXCEEDED, LOGIN_LOCKED, MFA_REQUIRED, INVALID_TOTP."""
    now = ctx.clock()
    failure: tuple[str, str, int | None] | None = None
    with ctx.db.transaction() as conn:
        ipr = conn.execute(sa.select(login_ip).where(login_ip.c.ip == ip)).first()
        if ipr is not None and ipr.window_start > now - IP_WINDOW and ipr.failures >= IP_MAX_FAILURES:
            audit(conn, "login_throttled", actor_id=None, result="failure", detail={"ip": ip, "username": username},
                  at=now)
            failure = ("LOGIN_RATE_EXCEEDED", "Too many failed logins from this address; try again later.", None)
        else:
            failure = _check(ctx, conn, now, username, password, ip, totp_code)
        if failure is None:
            user_pk, _active = _find_user(conn, ctx, username) or (0, False)
            session = _issue(ctx, conn, user_pk, username, kind, ip, now)
            if previous_token:
                conn.execute(sa.update(sessions).where(sessions.c.token_hash == digest(previous_token),
                                                       sessions.c.revoked_at.is_(None)).values(revoked_at=now))
            audit(conn, "login", actor_id=user_pk, detail={"ip": ip, "kind": kind}, at=now)
            schema = ctx.schema(conn)
            ut = live(schema, "User")
            conn.execute(sa.update(ut).where(ut.c.id == user_pk).values(
                {col(schema, "User", "LastLoginDate").key: now}))
            return session
    raise LoginError(failure[1], code=failure[0])


def _check(ctx: Context, conn: Connection, now: datetime, username: str, password: str, ip: str,
           code: str | None) -> tuple[str, str, int | None] | None:
    """None on success; otherwise (code, message, user pk), with the failure already counted and audited."""
    generic = ("INVALID_LOGIN", "Invalid username, password, security token; or user locked out.")
    found = _find_user(conn, ctx, username)
    cred = None
    if found is not None:
        cred = conn.execute(sa.select(S.credentials).where(S.credentials.c.user_id == found[0])).first()
    if found is None or cred is None or not found[1]:
        verify_password(_dummy_hash(), password)  # same cost as a real check
        _fail_ip(conn, ip, now)
        audit(conn, "login_failure", actor_id=found[0] if found else None, result="failure",
              detail={"ip": ip, "username": username, "reason": "unknown or inactive user"}, at=now)
        return (*generic, None)
    user_pk = found[0]
    if cred.locked_until is not None and cred.locked_until > now:
        audit(conn, "login_failure", actor_id=user_pk, result="failure", detail={"ip": ip, "reason": "locked"}, at=now)
        return ("LOGIN_LOCKED", "This user is locked out after repeated failed logins; ask an administrator to "
                "unlock it.", user_pk)
    if not verify_password(cred.password_hash, password):
        failures = int(cred.failed_attempts or 0) + 1
        locked = now + LOCKOUT if failures >= ctx.settings.login_max_failures else None
        conn.execute(sa.update(S.credentials).where(S.credentials.c.user_id == user_pk).values(
            failed_attempts=failures, locked_until=locked))
        _fail_ip(conn, ip, now)
        audit(conn, "login_failure", actor_id=user_pk, result="failure",
              detail={"ip": ip, "reason": "bad password", "failures": failures}, at=now)
        if locked is not None:
            audit(conn, "lockout", actor_id=user_pk, result="failure", detail={"until": locked.isoformat()}, at=now)
        return (*generic, user_pk)
    needs = cred.totp_secret is not None or _forced_two_factor(ctx, conn, user_pk)
    if needs:
        if cred.totp_secret is None:
            audit(conn, "login_failure", actor_id=user_pk, result="failure", detail={"reason": "mfa not enrolled"},
                  at=now)
            return ("MFA_REQUIRED", "Your profile requires a second factor; ask an administrator to enrol one.",
                    user_pk)
        if not code:
            return ("MFA_REQUIRED", "Enter the 6-digit code from your authenticator app.", user_pk)
        step = totp.verify(str(cred.totp_secret), code, now.timestamp() if now.tzinfo else
                           (now - datetime(1970, 1, 1)).total_seconds())
        last = conn.execute(sa.select(totp_state.c.last_step).where(totp_state.c.user_id == user_pk)).scalar()
        if step is None or (last is not None and step <= last):
            failures = int(cred.failed_attempts or 0) + 1
            conn.execute(sa.update(S.credentials).where(S.credentials.c.user_id == user_pk).values(
                failed_attempts=failures,
                locked_until=now + LOCKOUT if failures >= ctx.settings.login_max_failures else None))
            audit(conn, "login_failure", actor_id=user_pk, result="failure", detail={"reason": "bad totp"}, at=now)
            return ("INVALID_TOTP", "That code is wrong or was already used.", user_pk)
        if last is None:
            conn.execute(sa.insert(totp_state).values(user_id=user_pk, last_step=step))
        else:
            conn.execute(sa.update(totp_state).where(totp_state.c.user_id == user_pk).values(last_step=step))
    conn.execute(sa.update(S.credentials).where(S.credentials.c.user_id == user_pk).values(
        failed_attempts=0, locked_until=None))
    return None


def _forced_two_factor(ctx: Context, conn: Connection, user_pk: int) -> bool:
    return access_for(ctx, conn, user_pk).has("ForceTwoFactor")


def _fail_ip(conn: Connection, ip: str, now: datetime) -> None:
    row = conn.execute(sa.select(login_ip).where(login_ip.c.ip == ip)).first()
    if row is None:
        conn.execute(sa.insert(login_ip).values(ip=ip, window_start=now, failures=1))
    elif row.window_start <= now - IP_WINDOW:
        conn.execute(sa.update(login_ip).where(login_ip.c.ip == ip).values(window_start=now, failures=1))
    else:
        conn.execute(sa.update(login_ip).where(login_ip.c.ip == ip).values(failures=login_ip.c.failures + 1))


def _issue(ctx: Context, conn: Connection, user_pk: int, username: str, kind: str, ip: str | None,
           now: datetime, *, client_id: str | None = None, lifetime: timedelta | None = None) -> Session:
    token = secrets.token_urlsafe(32)
    expires = now + (lifetime or timedelta(hours=ctx.settings.session_absolute_hours))
    conn.execute(sa.insert(sessions).values(token_hash=digest(token), user_id=user_pk, kind=kind, client_id=client_id,
                                            created_date=now, last_seen=now, expires_at=expires, ip=ip))
    return Session(token, user_pk, username, kind, expires)


def issue_token(ctx: Context, conn: Connection, user_pk: int, *, kind: str = "api", client_id: str | None = None,
                ip: str | None = None) -> Session:
    """A token for an already-authenticated principal (OAuth client credentials, ``keel`` CLI); audited."""
    now = ctx.clock()
    lifetime = timedelta(days=ctx.settings.refresh_token_days) if kind == REFRESH else None
    session = _issue(ctx, conn, user_pk, "", kind, ip, now, client_id=client_id, lifetime=lifetime)
    audit(conn, "token_issued", actor_id=user_pk, detail={"kind": kind, "client_id": client_id}, at=now)
    return session


def resolve_token(ctx: Context, token: str, *, refresh_for: str | None = None) -> Actor | None:
    """The ``Actor`` behind a bearer token, or None if it is unknown, revoked, expired, idle too long, or its
    user is inactive. Its ``Access`` reflects permissions as of this request.

    A refresh token is not a bearer token: it resolves only with ``refresh_for`` (the OAuth refresh grant's
    ``client_id``), and only for the connected app it was issued to; nothing else resolves that way. Otherwise
    a leaked access token could be refreshed forever, past the absolute timeout, and a refresh token, which
    lives for ``refresh_token_days`` without an idle timeout, could call the API.

    Every call reads the session row, the user's row version and active flag, and the security and schema
    versions in one indexed statement; the ``Actor`` built for a token is reused while all of those are unchanged
    (``TokenCache``). Revocation, expiry, deactivation, any change to the user row and any permission change
    (which bumps ``security_version``) therefore take effect on the very next request, in every process."""
    if not token:
        return None
    now = ctx.clock()
    h = digest(token)
    idle = timedelta(minutes=ctx.settings.session_idle_minutes)
    cache = token_cache(ctx)
    state = cache.state(ctx, h)
    if state is None:
        return None
    _user, revoked, expires, last_seen, stamp, kind, client_id = state
    if refresh_for is None:
        if kind == REFRESH:
            return None
    elif kind != REFRESH or (client_id is not None and client_id != refresh_for):
        return None
    else:
        idle = expires - last_seen  # a refresh token has no idle timeout, only its absolute expiry
    if revoked is not None or expires <= now or last_seen + idle <= now or stamp is None:
        return None
    actor = cache.get(h, stamp)
    if actor is not None:
        _touch(ctx, h, now, last_seen)
        return actor
    with ctx.db.read() as conn:
        row = conn.execute(sa.select(sessions).where(sessions.c.token_hash == h)).first()
        if row is None or row.revoked_at is not None or row.expires_at <= now or row.last_seen + idle <= now:
            return None
        actor = actor_for(ctx, conn, int(row.user_id), session_id=h[:16])
        if actor is not None:
            cache.put(h, stamp, actor)
    if actor is not None:
        _touch(ctx, h, now, row.last_seen)
    return actor


def _touch(ctx: Context, h: str, now: datetime, last_seen: datetime) -> None:
    if now - last_seen >= TOUCH_EVERY:
        with ctx.db.transaction() as conn:
            conn.execute(sa.update(sessions).where(sessions.c.token_hash == h).values(last_seen=now))


Stamp = tuple[int, int, int, int]  # user row version, user pk, security version, schema version
# user pk, revoked at, expires at, last seen, stamp, kind, connected app
TokenState = tuple[int, "datetime | None", datetime, datetime, "Stamp | None", str, "str | None"]


def _as_datetime(v: object) -> datetime | None:
    if v is None or isinstance(v, datetime):
        return v
    return datetime.fromisoformat(str(v))


class TokenCache:
    """Per-process cache of the ``Actor`` resolved for a token digest, valid for one ``Stamp``: the user row's
    version, the security version and the schema version, all read with the session row on every request (one
    indexed statement on the driver's cursor, no transaction). Lives in ``ctx.extras['token_cache']``."""

    def __init__(self, size: int = 4096) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[Stamp, Actor]] = OrderedDict()
        self._size = size
        self._sql: tuple[str, str] | None = None  # (User table, statement)

    def _statement(self, ctx: Context) -> str:
        schema = ctx.schema()
        ut = live(schema, "User")
        if self._sql is None or self._sql[0] != ut.name:
            active = col(schema, "User", "IsActive").name
            m = S.meta.name
            sql = ("SELECT s.user_id, s.revoked_at, s.expires_at, s.last_seen, s.kind, s.client_id, u.version, "
                   f'u."{active}", (SELECT value FROM {m} WHERE key = \'security_version\'), '
                   f"(SELECT value FROM {m} WHERE key = 'schema_version') "
                   f'FROM {sessions.name} s LEFT JOIN "{ut.name}" u ON u.id = s.user_id AND u.is_deleted = ? '
                   "WHERE s.token_hash = ?")
            self._sql = (ut.name, sql)
        return self._sql[1]

    def state(self, ctx: Context, h: str) -> TokenState | None:
        """The session's (user, revoked_at, expires_at, last_seen, stamp, kind, client_id); the stamp is None when
        the user row is gone or inactive. None when the token is unknown."""
        sql = self._statement(ctx)
        postgres = ctx.db.dialect == "postgresql"
        raw = ctx.db.engine.raw_connection()
        try:
            cur = raw.cursor()
            try:
                cur.execute(sql.replace("?", "%s") if postgres else sql, (False if postgres else 0, h))
                row = cur.fetchone()
            finally:
                cur.close()
        finally:
            raw.close()
        if row is None:
            return None
        user_pk, revoked, expires, last_seen, kind, client_id, version, active, sec, schema_version = row
        expires_at, seen = _as_datetime(expires), _as_datetime(last_seen)
        assert expires_at is not None and seen is not None
        stamp = None if version is None or not active else (int(version), int(user_pk), int(sec or 0),
                                                            int(schema_version or 0))
        return int(user_pk), _as_datetime(revoked), expires_at, seen, stamp, str(kind), client_id

    def get(self, h: str, stamp: Stamp) -> Actor | None:
        with self._lock:
            hit = self._items.get(h)
            if hit is None or hit[0] != stamp:
                return None
            self._items.move_to_end(h)
            return hit[1]

    def put(self, h: str, stamp: Stamp, actor: Actor) -> None:
        access = actor.access
        version = getattr(access, "version", None)
        schema = getattr(access, "schema", None)
        # Only cache an actor built at exactly the versions of the stamp (a permission change may commit between
        # the stamp read and the build; then the next request simply builds again).
        if version is None or schema is None or (version, schema.version) != stamp[2:]:
            return
        with self._lock:
            self._items[h] = (stamp, actor)
            self._items.move_to_end(h)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def token_cache(ctx: Context) -> TokenCache:
    cache = ctx.extras.get("token_cache")
    if not isinstance(cache, TokenCache):
        cache = ctx.extras.setdefault("token_cache", TokenCache())
    assert isinstance(cache, TokenCache)
    return cache


def revoke_sessions(ctx: Context, conn: Connection, user_pk: int) -> int:
    """Revoke every live session and token of a user (password change, deactivation, admin kill)."""
    now = ctx.clock()
    n = conn.execute(sa.update(sessions).where(sessions.c.user_id == user_pk, sessions.c.revoked_at.is_(None))
                     .values(revoked_at=now)).rowcount
    audit(conn, "sessions_revoked", actor_id=ctx.actor.user_id, on_behalf_of_id=user_pk, detail={"count": n}, at=now)
    return int(n or 0)


def revoke_token(ctx: Context, token: str) -> bool:
    """Log out one token."""
    with ctx.db.transaction() as conn:
        return bool(conn.execute(sa.update(sessions).where(sessions.c.token_hash == digest(token),
                                                           sessions.c.revoked_at.is_(None))
                                 .values(revoked_at=ctx.clock())).rowcount)


def unlock_user(ctx: Context, conn: Connection, user_pk: int) -> None:
    conn.execute(sa.update(S.credentials).where(S.credentials.c.user_id == user_pk).values(
        failed_attempts=0, locked_until=None))
    audit(conn, "unlock", actor_id=ctx.actor.user_id, on_behalf_of_id=user_pk, at=ctx.clock())


def enroll_totp(ctx: Context, conn: Connection, user_pk: int) -> str:
    """Give a user a new TOTP secret (returned once, for the QR code); older codes stop working."""
    secret = totp.new_secret()
    if not conn.execute(sa.update(S.credentials).where(S.credentials.c.user_id == user_pk)
                        .values(totp_secret=secret)).rowcount:
        raise KeelError("The user has no credentials; set a password first.", code="INVALID_OPERATION")
    conn.execute(sa.delete(totp_state).where(totp_state.c.user_id == user_pk))
    audit(conn, "totp_enrolled", actor_id=ctx.actor.user_id, on_behalf_of_id=user_pk, at=ctx.clock())
    return secret


@dataclass(frozen=True, slots=True)
class ConnectedApp:
    id: int
    name: str
    client_id: str
    run_as_user_id: int | None


def create_connected_app(ctx: Context, conn: Connection, name: str, *,
                         run_as_user_id: int | None = None) -> tuple[str, str]:
    """Register an OAuth2 client; returns (client_id, client_secret). Only the secret's argon2 hash is kept."""
    client_id = "3MVG" + secrets.token_urlsafe(36)
    secret = secrets.token_hex(32)
    conn.execute(sa.insert(connected_apps).values(name=name, client_id=client_id, secret_hash=hash_password(secret),
                                                  run_as_user_id=run_as_user_id, created_date=ctx.clock()))
    audit(conn, "connected_app_created", actor_id=ctx.actor.user_id, detail={"name": name}, at=ctx.clock())
    return client_id, secret


def verify_client(ctx: Context, client_id: str, client_secret: str | None) -> ConnectedApp | None:
    """The active connected app with this id (and secret, when given), or None."""
    with ctx.db.read() as conn:
        row = conn.execute(sa.select(connected_apps).where(connected_apps.c.client_id == client_id,
                                                           connected_apps.c.is_active == sa.true())).first()
    if row is None or (client_secret is not None and not verify_password(row.secret_hash, client_secret)):
        return None
    return ConnectedApp(int(row.id), str(row.name), str(row.client_id),
                        int(row.run_as_user_id) if row.run_as_user_id is not None else None)
