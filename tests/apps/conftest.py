"""An organisation with the three apps installed (flows wired), and persona users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.errors import BatchError, KeelError
from keel.records import save_many
from keel.services.apps import install_app
from keel.services.automation import wire_automation
from keel.services.security import assign_permission_set, user_context
from keel.services.users import create_user
from keel.storage import ids
from keel.storage import system as S
from tests.apps.rest import Rest, rest_session


@pytest.fixture
def apps(org: Context) -> Context:
    for name in ("recruiting", "vendors", "philanthropy"):
        install_app(org, name)
    return wire_automation(org)


@pytest.fixture
def persona(apps: Context) -> Callable[..., Context]:
    """``persona("hm", "Recruiting_Hiring_Manager")``: a new user with those permission sets, as a Context."""
    def make(name: str, *sets: str, role: str | None = None) -> Context:
        uid = create_user(apps, username=f"{name}@test.local", password=None, last_name=name,
                          email=f"{name}@test.local", role=role)
        with apps.db.transaction() as conn:
            for s in sets:
                assign_permission_set(apps, conn, uid, s)
        return user_context(apps, uid)
    return make


def uid(ctx: Context) -> str:
    return ids.encode("005", ctx.actor.user_id)


def refused(ctx: Context, obj: str, drafts: list[dict], needle: str) -> None:
    """The save is refused and the message contains ``needle``."""
    with pytest.raises((BatchError, KeelError)) as exc:
        save_many(ctx, obj, drafts)
    assert needle in str(exc.value) or any(needle in e.message for r in getattr(exc.value, "results", [])
                                           for e in r.errors), str(exc.value)


def outbox_emails(ctx: Context) -> list[dict[str, Any]]:
    """The email payloads written to the outbox so far, oldest first (what the dispatcher would send)."""
    o = S.outbox
    with ctx.db.read() as conn:
        rows = conn.execute(sa.select(o.c.payload).where(o.c.topic == "email").order_by(o.c.id)).scalars().all()
    return [orjson.loads(p) for p in rows]


@pytest.fixture
def rest(apps: Context) -> Iterator[Rest]:
    """Persona users logged in to the REST API (``tests/apps/rest.py``), on an app built like ``keel up``'s."""
    yield from rest_session(apps)
