"""Identity end to end: hashed tokens, rotation, idle/absolute timeouts, revocation, lockout, IP throttling,
TOTP and connected apps."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.errors import KeelError
from keel.records import save_many
from keel.security import totp
from keel.security.audit import audit_rows
from keel.security.sessions import (
    LoginError,
    authenticate,
    create_connected_app,
    digest,
    resolve_token,
    verify_client,
)
from keel.security.tables import sessions
from keel.services.security import enroll_totp, kill_sessions, unlock_user, user_context
from keel.services.users import deactivate_user, set_password
from keel.storage import ids
from tests.security.conftest import PASSWORD, new_user

T0 = datetime(2026, 3, 2, 9, 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clocked(org: Context) -> tuple[Context, Clock]:
    clock = Clock()
    return replace(org, clock=clock), clock


def test_rfc6238_vectors() -> None:
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp.totp(secret, 59, digits=8) == "94287082"
    assert totp.totp(secret, 1111111109, digits=8) == "07081804"
    assert totp.totp(secret, 2000000000, digits=8) == "69279037"


def test_token_is_stored_hashed_and_resolves(clocked: tuple[Context, Clock]) -> None:
    ctx, _ = clocked
    uid = new_user(ctx, "sam@example.com", "Standard User")
    s = authenticate(ctx, "SAM@example.com", PASSWORD, ip="10.0.0.1")
    with ctx.db.read() as conn:
        stored = conn.execute(sa.select(sessions.c.token_hash)).scalars().all()
    assert digest(s.token) in stored and s.token not in stored
    actor = resolve_token(ctx, s.token)
    assert actor is not None and actor.user_id == ids.decode(uid, "005") and actor.profile == "Standard User"
    assert resolve_token(ctx, s.token + "x") is None


def test_rotation_idle_and_absolute_timeouts(clocked: tuple[Context, Clock]) -> None:
    ctx, clock = clocked
    new_user(ctx, "sam@example.com", "Standard User")
    first = authenticate(ctx, "sam@example.com", PASSWORD, ip="10.0.0.1")
    second = authenticate(ctx, "sam@example.com", PASSWORD, ip="10.0.0.1", previous_token=first.token)
    assert first.token != second.token
    assert resolve_token(ctx, first.token) is None  # the pre-login token is retired: no fixation
    assert resolve_token(ctx, second.token) is not None
    idle = ctx.settings.session_idle_minutes
    clock.now += timedelta(minutes=idle - 1)
    assert resolve_token(ctx, second.token) is not None  # use refreshes the idle timer
    clock.now += timedelta(minutes=idle - 1)
    assert resolve_token(ctx, second.token) is not None
    clock.now += timedelta(minutes=idle + 1)
    assert resolve_token(ctx, second.token) is None  # idle too long
    third = authenticate(ctx, "sam@example.com", PASSWORD, ip="10.0.0.1")
    for _ in range(ctx.settings.session_absolute_hours):
        clock.now += timedelta(minutes=59)
        resolve_token(ctx, third.token)
    clock.now += timedelta(hours=1)
    assert resolve_token(ctx, third.token) is None  # absolute lifetime over, however active


def test_revocation_on_password_change_deactivation_and_kill(clocked: tuple[Context, Clock]) -> None:
    ctx, _ = clocked
    uid = new_user(ctx, "sam@example.com", "Standard User")
    s = authenticate(ctx, "sam@example.com", PASSWORD, ip="10.0.0.1")
    with ctx.db.transaction() as conn:
        set_password(ctx, conn, uid, "another long passphrase 42")
    assert resolve_token(ctx, s.token) is None
    s = authenticate(ctx, "sam@example.com", "another long passphrase 42", ip="10.0.0.1")
    assert kill_sessions(ctx, uid) == 1
    assert resolve_token(ctx, s.token) is None
    s = authenticate(ctx, "sam@example.com", "another long passphrase 42", ip="10.0.0.1")
    deactivate_user(ctx, "sam@example.com")
    assert resolve_token(ctx, s.token) is None
    with pytest.raises(LoginError) as e:
        authenticate(ctx, "sam@example.com", "another long passphrase 42", ip="10.0.0.1")
    assert e.value.code == "INVALID_LOGIN"


def test_kill_needs_manage_users(clocked: tuple[Context, Clock]) -> None:
    ctx, _ = clocked
    a = new_user(ctx, "sam@example.com", "Standard User")
    b = new_user(ctx, "kim@example.com", "Standard User")
    with pytest.raises(KeelError):
        kill_sessions(user_context(ctx, a), b)


def test_lockout_and_admin_unlock(clocked: tuple[Context, Clock]) -> None:
    ctx, clock = clocked
    uid = new_user(ctx, "sam@example.com", "Standard User")
    unknown = None
    for _ in range(ctx.settings.login_max_failures):
        with pytest.raises(LoginError) as e:
            authenticate(ctx, "sam@example.com", "wrong password guess", ip="10.0.0.2")
        assert e.value.code == "INVALID_LOGIN"
    with pytest.raises(LoginError) as e:
        authenticate(ctx, "nobody@example.com", "wrong password guess", ip="10.0.0.3")
    unknown = e.value
    assert unknown.code == "INVALID_LOGIN"  # unknown users look like wrong passwords
    with pytest.raises(LoginError) as e:
        authenticate(ctx, "sam@example.com", PASSWORD, ip="10.0.0.2")
    assert e.value.code == "LOGIN_LOCKED"
    clock.now += timedelta(minutes=5)
    with pytest.raises(LoginError):
        authenticate(ctx, "sam@example.com", PASSWORD, ip="10.0.0.2")
    unlock_user(ctx, uid)
    assert authenticate(ctx, "sam@example.com", PASSWORD, ip="10.0.0.2").token
    with ctx.db.read() as conn:
        actions = [r["action"] for r in audit_rows(conn, actor_id=ids.decode(uid, "005"))]
    assert actions.count("login_failure") >= ctx.settings.login_max_failures
    assert "lockout" in actions and "login" in actions


def test_ip_throttling(clocked: tuple[Context, Clock]) -> None:
    ctx, clock = clocked
    new_user(ctx, "sam@example.com", "Standard User")
    for i in range(20):
        with pytest.raises(LoginError):
            authenticate(ctx, f"guess{i}@example.com", "whatever password", ip="203.0.113.9")
    with pytest.raises(LoginError) as e:
        authenticate(ctx, "sam@example.com", PASSWORD, ip="203.0.113.9")
    assert e.value.code == "LOGIN_RATE_EXCEEDED"
    assert authenticate(ctx, "sam@example.com", PASSWORD, ip="198.51.100.1").token  # other addresses unaffected
    clock.now += timedelta(minutes=16)
    assert authenticate(ctx, "sam@example.com", PASSWORD, ip="203.0.113.9").token


def test_totp_required_by_profile(clocked: tuple[Context, Clock], tmp_path: object) -> None:
    ctx, clock = clocked
    from keel.security.package import parse_permission_set
    from keel.services.security import deploy_permission_set

    with ctx.db.transaction() as conn:
        deploy_permission_set(ctx, conn, parse_permission_set(
            {"name": "Investigator", "profile": True, "system": ["ForceTwoFactor"], "objects": {"Account": ["read"]}}))
    uid = new_user(ctx, "ines@example.com", "Investigator")
    with pytest.raises(LoginError) as e:
        authenticate(ctx, "ines@example.com", PASSWORD, ip="10.0.0.1")
    assert e.value.code == "MFA_REQUIRED"  # not enrolled yet
    secret = enroll_totp(ctx, uid)
    with pytest.raises(LoginError) as e:
        authenticate(ctx, "ines@example.com", PASSWORD, ip="10.0.0.1")
    assert e.value.code == "MFA_REQUIRED"
    epoch = (clock.now - datetime(1970, 1, 1)).total_seconds()
    wrong = str((int(totp.totp(secret, epoch)) + 1) % 1_000_000).zfill(6)
    with pytest.raises(LoginError) as e:
        authenticate(ctx, "ines@example.com", PASSWORD, ip="10.0.0.1", totp_code=wrong)
    assert e.value.code == "INVALID_TOTP"
    code = totp.totp(secret, epoch)
    s = authenticate(ctx, "ines@example.com", PASSWORD, ip="10.0.0.1", totp_code=code)
    assert resolve_token(ctx, s.token) is not None
    with pytest.raises(LoginError) as e:  # a code works once
        authenticate(ctx, "ines@example.com", PASSWORD, ip="10.0.0.1", totp_code=code)
    assert e.value.code == "INVALID_TOTP"
    clock.now += timedelta(seconds=30)
    epoch += 30
    assert authenticate(ctx, "ines@example.com", PASSWORD, ip="10.0.0.1", totp_code=totp.totp(secret, epoch)).token


def test_permission_change_applies_on_next_request(clocked: tuple[Context, Clock]) -> None:
    ctx, _ = clocked
    new_user(ctx, "sam@example.com", "Standard User")
    s = authenticate(ctx, "sam@example.com", PASSWORD, ip="10.0.0.1")
    actor = resolve_token(ctx, s.token)
    assert actor is not None and actor.access.can("Account", "read")
    with ctx.db.read() as conn:
        schema = ctx.schema(conn)
        op = schema.get_object("ObjectPermissions")
        t = conn.execute(sa.text(f"SELECT id FROM {op.table} WHERE {op.get_field('SobjectType').column} = 'Account'"))
        rows = [r[0] for r in t]
    save_many(ctx, "ObjectPermissions", [{"Id": ids.encode("110", pk), "PermissionsRead": False,
                                          "PermissionsCreate": False, "PermissionsEdit": False} for pk in rows])
    actor = resolve_token(ctx, s.token)
    assert actor is not None and not actor.access.can("Account", "read")


def test_connected_app(clocked: tuple[Context, Clock]) -> None:
    ctx, _ = clocked
    with ctx.db.transaction() as conn:
        client_id, secret = create_connected_app(ctx, conn, "Integration")
    app = verify_client(ctx, client_id, secret)
    assert app is not None and app.name == "Integration"
    assert verify_client(ctx, client_id, secret + "0") is None
    assert verify_client(ctx, "3MVGnope", secret) is None
