"""Lookups with ``on_delete: set_null`` on both databases: a parent's delete clears them on every child, undelete
restores them, a hard delete clears them for good, and a failed all-or-none delete clears nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.errors import BatchError
from keel.metadata.tables import table_for
from keel.records import delete_many, hard_delete_many, save_many, undelete_many
from keel.security.package import parse_permission_set
from keel.services.security import deploy_permission_set, user_context
from keel.storage import system as S
from tests.records.test_lifecycle import read
from tests.security.conftest import deploy_objects, new_user

OBJECTS: list[dict[str, Any]] = [
    {"object": "Parent__c", "sharing": "private", "fields": []},
    {"object": "Line__c", "fields": [{"name": "Parent__c", "type": "master_detail", "to": "Parent__c"}]},
    {"object": "Child__c", "sharing": "private", "track_history": True, "fields": [
        {"name": "Parent__c", "type": "lookup", "to": "Parent__c"},
        {"name": "Line__c", "type": "lookup", "to": "Line__c"},
        {"name": "Note__c", "type": "text"},
    ]},
]


@pytest.fixture
def org2(org: Context, tmp_path: Path) -> Context:
    deploy_objects(org, OBJECTS, tmp_path)
    return org


def _parents(ctx: Context, n: int, **kw: Any) -> list[str]:
    return [r.id or "" for r in save_many(ctx, "Parent__c", [{"Name": f"P{i}", **kw} for i in range(n)])]


def _children(ctx: Context, drafts: list[dict[str, Any]]) -> list[str]:
    return [r.id or "" for r in save_many(ctx, "Child__c", [{"Name": f"C{i}", **d} for i, d in enumerate(drafts)])]


def _history(ctx: Context, field: str) -> list[tuple[str | None, str | None]]:
    with ctx.db.read() as conn:
        return [(o, n) for o, n in conn.execute(
            sa.select(S.history.c.old_value, S.history.c.new_value).where(S.history.c.field == field)
            .order_by(S.history.c.id))]


def _events(ctx: Context, obj: str) -> list[dict[str, Any]]:
    with ctx.db.read() as conn:
        payloads = [json.loads(p) for p in conn.execute(sa.select(S.outbox.c.payload).order_by(S.outbox.c.id))
                    .scalars()]
    return [p for p in payloads if p["entityName"] == obj]


def _remembered(ctx: Context) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(S.cleared_lookups)).scalar_one())


def test_delete_clears_the_lookup_and_undelete_restores_it(org2: Context) -> None:
    p, q = _parents(org2, 2)
    c1, c2, c3 = _children(org2, [{"Parent__c": p}, {"Parent__c": p}, {"Parent__c": q}])
    before = read(org2, "Child__c", c1)
    delete_many(org2, "Parent__c", [p])
    after = read(org2, "Child__c", c1)
    assert after["Parent__c"] is None and read(org2, "Child__c", c2)["Parent__c"] is None
    assert read(org2, "Child__c", c3)["Parent__c"] == q  # another parent's child is untouched
    assert after["SystemModstamp"] >= before["SystemModstamp"] and after["IsDeleted"] is False
    assert _history(org2, "Parent__c") == [(p, None), (p, None)]
    update = [e for e in _events(org2, "Child__c") if e["changeType"] == "UPDATE"]
    assert len(update) == 1 and update[0]["changedFields"] == ["Parent__c"] and len(update[0]["recordKeys"]) == 2
    assert _remembered(org2) == 2

    save_many(org2, "Child__c", [{"Id": c2, "Parent__c": q}])  # re-pointed while the parent is in the bin
    undelete_many(org2, "Parent__c", [p])
    assert read(org2, "Child__c", c1)["Parent__c"] == p
    assert read(org2, "Child__c", c2)["Parent__c"] == q  # keeps its new parent
    assert _history(org2, "Parent__c")[-1] == (None, p)
    assert _remembered(org2) == 0


def test_children_of_cascaded_records_are_cleared_and_restored(org2: Context) -> None:
    (p,) = _parents(org2, 1)
    line = save_many(org2, "Line__c", [{"Name": "L", "Parent__c": p}])[0].id or ""
    (c,) = _children(org2, [{"Line__c": line, "Parent__c": p}])
    delete_many(org2, "Parent__c", [p])
    assert read(org2, "Line__c", line)["IsDeleted"] is True
    assert read(org2, "Child__c", c)["Line__c"] is None and read(org2, "Child__c", c)["Parent__c"] is None
    undelete_many(org2, "Parent__c", [p])
    row = read(org2, "Child__c", c)
    assert row["Line__c"] == line and row["Parent__c"] == p and read(org2, "Line__c", line)["IsDeleted"] is False


def test_hard_delete_clears_the_lookup_for_good(org2: Context) -> None:
    (p,) = _parents(org2, 1)
    (c,) = _children(org2, [{"Parent__c": p}])
    hard_delete_many(org2, "Parent__c", [p])
    assert read(org2, "Child__c", c)["Parent__c"] is None
    assert _remembered(org2) == 0
    with pytest.raises(BatchError):
        undelete_many(org2, "Parent__c", [p])


def test_a_child_the_deleting_user_cannot_see_is_cleared(org2: Context) -> None:
    with org2.db.transaction() as conn:
        deploy_permission_set(org2, conn, parse_permission_set({
            "name": "Parent Keeper", "profile": True,
            "objects": {"Parent__c": ["read", "create", "edit", "delete"], "Child__c": ["read"]}}))
    keeper = new_user(org2, "kim@example.com", "Parent Keeper")
    as_keeper = user_context(org2, keeper)
    (p,) = _parents(as_keeper, 1)
    (c,) = _children(org2, [{"Parent__c": p}])  # owned by the system user; Child__c is private
    with as_keeper.db.read() as conn:
        schema = org2.schema()
        t = table_for(schema, schema.get_object("Child__c"))
        pred = as_keeper.actor.access.record_filter(schema.get_object("Child__c"), t, "read")
        assert pred is not None and conn.execute(sa.select(sa.func.count()).select_from(t).where(pred)).scalar() == 0
    delete_many(as_keeper, "Parent__c", [p])
    assert read(org2, "Child__c", c)["Parent__c"] is None
    undelete_many(as_keeper, "Parent__c", [p])
    assert read(org2, "Child__c", c)["Parent__c"] == p


def test_a_failed_all_or_none_delete_clears_nothing(org2: Context) -> None:
    p, q = _parents(org2, 2)
    c1, c2 = _children(org2, [{"Parent__c": p}, {"Parent__c": q}])
    versions = [read(org2, "Child__c", c)["SystemModstamp"] for c in (c1, c2)]
    with pytest.raises(BatchError):
        delete_many(org2, "Parent__c", [p, q, "a00000000000000AAA"])
    assert [read(org2, "Child__c", c)["Parent__c"] for c in (c1, c2)] == [p, q]
    assert [read(org2, "Child__c", c)["SystemModstamp"] for c in (c1, c2)] == versions
    assert _history(org2, "Parent__c") == [] and _remembered(org2) == 0
    assert [e for e in _events(org2, "Child__c") if e["changeType"] == "UPDATE"] == []
    res = delete_many(org2, "Parent__c", [p, q, "a00000000000000AAA"], all_or_none=False)
    assert [bool(r.errors) for r in res] == [False, False, True]
    assert [read(org2, "Child__c", c)["Parent__c"] for c in (c1, c2)] == [None, None]
