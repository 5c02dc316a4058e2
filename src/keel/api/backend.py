"""The seam between the API and the layers that authenticate users and run queries.

The API never stores sessions or checks passwords itself: it asks an ``AuthBackend`` (implemented over
``keel.security`` / ``keel.services.security``) and runs every read through the SOQL engine, whose compiler ANDs in
the acting user's visibility predicate and field mask. Keeping the calls behind one small protocol lets the HTTP
layer be tested on its own, and keeps the wiring to the security layer in one file.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from keel.context import Actor, Context

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection



@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated API session: the bearer token and the user it acts as."""

    token: str
    actor: Actor
    user_id: str  # 18-character User id
    org_id: str  # 18-character Organization id
    username: str
    refresh_token: str | None = None
    api_enabled: bool = True
    client_id: str | None = None


class AuthBackend(Protocol):
    """What the API needs from the security layer. Failures raise ``KeelError`` (never return a half session)."""

    def login(self, ctx: Context, username: str, password: str, *, ip: str, refresh: bool = False,
              client_id: str | None = None) -> Session: ...

    def resolve(self, ctx: Context, token: str) -> Session | None: ...

    def revoke(self, ctx: Context, token: str) -> None: ...

    def refresh(self, ctx: Context, refresh_token: str, client_id: str | None, *, ip: str) -> Session: ...

    def verify_client(self, ctx: Context, client_id: str, client_secret: str | None) -> bool:
        """Whether the connected app exists and is active (and, when given, the secret matches)."""
        ...

    def client_login(self, ctx: Context, client_id: str, client_secret: str, *, ip: str) -> Session:
        """The client_credentials grant: a session as the connected app's run-as user."""
        ...

    def jwt_login(self, ctx: Context, assertion: str, audiences: Sequence[str], *, ip: str) -> Session:
        """The JWT bearer grant (no refresh token). Raises ``GrantError`` with OAuth2's error and description."""
        ...

    def code_login(self, ctx: Context, code: str, client_id: str, redirect_uri: str, verifier: str | None, *,
                   ip: str) -> tuple[Session, str, bool]:
        """The authorization_code grant: (session, scope, whether PKCE bound the code); ``GrantError`` on refusal."""
        ...


class SecurityAuth:
    """``AuthBackend`` over ``keel.security.sessions``: argon2 passwords, throttling and lockout, hashed tokens.

    The org id is read once per app; everything else is asked of the security layer on each call, so a revoked
    token or a removed permission takes effect on the next request.
    """

    def __init__(self) -> None:
        self._org: str | None = None

    def org_id(self, ctx: Context) -> str:
        if self._org is None:
            from keel.storage import system as S

            with ctx.db.read() as conn:
                self._org = S.get_meta(conn, "org_id") or ""
        return self._org

    def _session(self, ctx: Context, token: str, actor: Actor, refresh_token: str | None = None,
                 client_id: str | None = None) -> Session:
        from keel.storage import ids

        has = getattr(actor.access, "has", None)
        api = actor.is_system or bool(has is not None and (has("ApiEnabled") or has("ModifyAllData")))
        return Session(token, actor, ids.encode("005", actor.user_id), self.org_id(ctx), actor.username,
                       refresh_token, api, client_id)

    def _actor(self, ctx: Context, token: str) -> Actor:
        from keel.errors import AuthenticationError
        from keel.security import sessions

        actor = sessions.resolve_token(ctx, token)
        if actor is None:
            raise AuthenticationError("Invalid username, password, security token; or user locked out.")
        return actor

    def login(self, ctx: Context, username: str, password: str, *, ip: str, refresh: bool = False,
              client_id: str | None = None) -> Session:
        from keel.security import sessions

        s = sessions.authenticate(ctx, username, password, ip=ip, kind="api")
        refresh_token = None
        if refresh:  # bound to the connected app that asked: only it can refresh with it
            with ctx.db.transaction() as conn:
                refresh_token = sessions.issue_token(ctx, conn, s.user_id, kind=sessions.REFRESH, ip=ip,
                                                     client_id=client_id or None).token
        return self._session(ctx, s.token, self._actor(ctx, s.token), refresh_token)

    def resolve(self, ctx: Context, token: str) -> Session | None:
        from keel.security import sessions

        actor = sessions.resolve_token(ctx, token)
        return None if actor is None else self._session(ctx, token, actor)

    def revoke(self, ctx: Context, token: str) -> None:
        from keel.security import sessions

        sessions.revoke_token(ctx, token)

    def refresh(self, ctx: Context, refresh_token: str, client_id: str | None, *, ip: str) -> Session:
        from keel.security import oauth_flows, sessions

        actor = sessions.resolve_token(ctx, refresh_token, refresh_for=client_id or "")
        if actor is None:  # unknown, expired, revoked, an access token, or another app's: Salesforce's words
            raise oauth_flows.invalid_grant("expired access/refresh token")
        with ctx.db.transaction() as conn:
            s = sessions.issue_token(ctx, conn, actor.user_id, kind="api", client_id=client_id, ip=ip)
        return self._session(ctx, s.token, self._actor(ctx, s.token), client_id=client_id)

    def verify_client(self, ctx: Context, client_id: str, client_secret: str | None) -> bool:
        from keel.security import sessions

        return sessions.verify_client(ctx, client_id, client_secret) is not None

    def client_login(self, ctx: Context, client_id: str, client_secret: str, *, ip: str) -> Session:
        from keel.errors import AuthenticationError
        from keel.security import sessions

        app = sessions.verify_client(ctx, client_id, client_secret)
        if app is None or app.run_as_user_id is None:
            raise AuthenticationError("The connected app has no run-as user for the client_credentials flow.")
        with ctx.db.transaction() as conn:
            s = sessions.issue_token(ctx, conn, app.run_as_user_id, kind="api", client_id=client_id, ip=ip)
        return self._session(ctx, s.token, self._actor(ctx, s.token), client_id=client_id)


    def jwt_login(self, ctx: Context, assertion: str, audiences: Sequence[str], *, ip: str) -> Session:
        from keel.security import oauth_flows, sessions

        app, user_pk = oauth_flows.verify_assertion(ctx, assertion, audiences)
        with ctx.db.transaction() as conn:
            s = sessions.issue_token(ctx, conn, user_pk, kind="api", client_id=app.client_id, ip=ip)
        return self._session(ctx, s.token, self._actor(ctx, s.token), client_id=app.client_id)

    def code_login(self, ctx: Context, code: str, client_id: str, redirect_uri: str, verifier: str | None, *,
                   ip: str) -> tuple[Session, str, bool]:
        from keel.security import oauth_flows, sessions

        got = oauth_flows.redeem_code(ctx, code, client_id, redirect_uri, verifier)
        refresh_token = None
        with ctx.db.transaction() as conn:
            s = sessions.issue_token(ctx, conn, got.user_id, kind="api", client_id=client_id, ip=ip)
            if {"refresh_token", "offline_access", "full"} & set(got.scope.split()):
                refresh_token = sessions.issue_token(ctx, conn, got.user_id, kind=sessions.REFRESH,
                                                     client_id=client_id, ip=ip).token
        actor = sessions.resolve_token(ctx, s.token)
        if actor is None:  # deactivated between approving and exchanging
            raise oauth_flows.invalid_grant("inactive user")
        return self._session(ctx, s.token, actor, refresh_token, client_id), got.scope, got.pkce


def default_auth(ctx: Context) -> AuthBackend:
    return SecurityAuth()


def security_key(actor: Actor) -> Hashable:
    """Compiled plans embed the user's predicate, so the plan cache must never share them between users or
    across security versions. ``UserAccess`` objects are cached per (user, security version), so their identity
    (kept alive by that cache) tells versions apart."""
    if actor.is_system:
        return ("system",)
    key = getattr(actor.access, "cache_key", None)
    return ("user", actor.user_id, key if key is not None else id(actor.access))


def run_soql(ctx: Context, conn: Connection, text: str, *, query_all: bool = False, api_version: str = "59.0",
             batch_size: int = 2000) -> dict[str, Any]:
    """The first page of a SOQL query as the acting user, through the one service every read surface uses."""
    from keel.services.query import query

    return query(ctx, text, query_all=query_all, api_version=api_version, batch_size=batch_size, conn=conn)


def fetch_more(ctx: Context, conn: Connection, locator: str, *, api_version: str = "59.0") -> dict[str, Any]:
    from keel.services.query import query_more

    return query_more(ctx, locator, api_version=api_version, conn=conn)
