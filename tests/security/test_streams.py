"""Merged-stream pages (``query/arms.py``) against the same SOQL read as one filtered walk, and the lineage
predicate (``security/lineage.py``) against the owner list it replaces, over mixed data: ties, case, deleted rows,
queues, rules, unnamed records, deep role chains, role deletes and moves, concurrent saves."""

from __future__ import annotations

from typing import Any

import pytest

from keel.query import PlanCache, run_soql
from keel.query.emit import Emitter
from keel.query.run import fetch_more
from keel.records import save_many
from keel.services.security import share_record
from tests.security.test_sharing import Org, rid, role_id, world  # noqa: F401  (``world`` is the fixture)


def _run(w: Org, who: str, soql: str, *, query_all: bool = False, key: str = "Name") -> tuple[list[Any], bool]:
    ctx = w.ctx(who)
    access = ctx.actor.access
    cache = PlanCache()
    with ctx.db.read() as conn:
        schema = ctx.schema(conn)
        args: dict[str, Any] = {"dialect": conn.dialect.name, "row_filter": access.row_filter,
                                "security_key": access.security_key, "cache": cache}
        got = run_soql(conn, schema, soql, batch_size=200, query_all=query_all, **args)
        out = [r.get(key) for r in got["records"]]
        locator = got.get("nextRecordsUrl")
        while locator:
            got = fetch_more(conn, schema, locator.rsplit("/", 1)[1], **args)
            out += [r.get(key) for r in got["records"]]
            locator = got.get("nextRecordsUrl")
        plan = cache.get(soql, schema, dialect=conn.dialect.name, security_key=access.security_key,
                         query_all=query_all, row_filter=access.row_filter).plan
        conn.rollback()
    return out, plan.merge is not None


def both(w: Org, who: str, soql: str, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> tuple[list[Any], list[Any]]:
    """(merged, plain): the rows with the merge, and with it switched off. Asserts the merge was planned."""
    merged, was = _run(w, who, soql, **kw)
    assert was, soql
    with monkeypatch.context() as m:
        m.setattr(Emitter, "merge", lambda *a, **k: None)
        plain, was = _run(w, who, soql, **kw)
    assert not was
    return merged, plain


def people(w: Org, tmp_path: Any) -> None:
    """Person__c, private, whose composite Name is NULL when both parts are empty, readable by the agents."""
    from keel.security.package import parse_permission_set
    from keel.services.security import deploy_permission_set
    from tests.security.conftest import deploy_objects
    from tests.security.test_sharing import AGENT

    deploy_objects(w.admin, [{"object": "Person__c", "sharing": "private", "name_field": {
        "type": "composite", "parts": ["First__c", "Last__c"]}, "fields": [
        {"name": "First__c", "type": "text", "length": 40}, {"name": "Last__c", "type": "text", "length": 40}]}],
        tmp_path)
    with w.admin.db.transaction() as conn:
        deploy_permission_set(w.admin, conn, parse_permission_set({
            **AGENT, "objects": {**AGENT["objects"], "Person__c": ["read", "create", "edit", "delete"]},
            "fields": {**AGENT["fields"], "Person__c.First__c": ["edit"], "Person__c.Last__c": ["edit"]}}))


def test_desc_page_with_unnamed_lead_rows_keeps_shared_rows(world: Org, tmp_path: Any,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """ORDER BY Name DESC (NULLS LAST): the lead stream's first n rows end with unnamed records. A shared record
    named below the lead's last *named* row still sorts before those unnamed rows and belongs on the page."""
    people(world, tmp_path)
    save_many(world.ctx("a1"), "Person__c", [{"Last__c": "m-1"}, {}, {}, {}, {}])
    shared = save_many(world.ctx("aud"), "Person__c", [{"Last__c": "c-1"}])[0].id
    assert shared
    share_record(world.ctx("aud"), "Person__c", shared, world.users["mgr"])
    for soql in ("SELECT Name FROM Person__c ORDER BY Name DESC LIMIT 3",
                 "SELECT Name FROM Person__c ORDER BY Name DESC LIMIT 2 OFFSET 1"):
        merged, plain = both(world, "mgr", soql, monkeypatch)
        assert plain[:2] in (["m-1", "c-1"], ["c-1", None])
        assert merged == plain, soql


def _crowd(w: Org) -> None:
    """Records of every owner with mixed case and tied names; some of the auditor's shared with the manager, a
    criteria rule sharing 'East' records with the manager's role, and a queue with a1 as member."""
    from keel.records import delete_many
    from tests.security.test_queues import make_queue

    owners = ["a1", "a2", "mgr", "aud", "dir"]
    rows = [{"Name": (f"Tie-{i % 7}" if i % 5 == 0 else f"{'AbCd'[i % 4]}x-{(i * 37) % 101:03d}"),
             "OwnerId": w.users[owners[i % 5]], "Region__c": ("North", "South", "East")[i % 3],
             "Amount__c": i} for i in range(260)]
    done = save_many(w.admin, "Case_File__c", rows)
    for r, d in zip(rows, done, strict=True):
        if r["OwnerId"] == w.users["aud"] and r["Amount__c"] % 3 == 1:
            assert d.id
            share_record(w.ctx("aud"), "Case_File__c", d.id, w.users["mgr"])
    save_many(w.admin, "SharingRule", [{
        "Name": "East to managers", "SobjectType": "Case_File__c", "RuleType": "Criteria",
        "CriteriaField": "Region__c", "CriteriaOperator": "equals", "CriteriaValue": "East",
        "TargetId": role_id(w, "Manager"), "AccessLevel": "Read"}])
    queue = make_queue(w, "Intake", ["Case_File__c"], [(w.users["a1"], False)])
    save_many(w.admin, "Case_File__c", [{"Name": f"q-{i}", "OwnerId": queue, "Region__c": "West"}
                                        for i in range(5)])
    delete_many(w.admin, "Case_File__c", [d.id for d in done[:40:4] if d.id])


QUERIES = [
    "SELECT Name FROM Case_File__c ORDER BY Name",
    "SELECT Name FROM Case_File__c ORDER BY Name DESC",
    "SELECT Name FROM Case_File__c ORDER BY Name, Id",
    "SELECT Name FROM Case_File__c ORDER BY Name DESC, Id",
    "SELECT Name FROM Case_File__c ORDER BY Name, Id DESC",
    "SELECT Name FROM Case_File__c ORDER BY Name LIMIT 10 OFFSET 5",
    "SELECT Name FROM Case_File__c ORDER BY Name DESC LIMIT 15 OFFSET 40",
    "SELECT Name FROM Case_File__c ORDER BY Name LIMIT 3",
    "SELECT Name FROM Case_File__c WHERE Region__c = 'East' ORDER BY Name",
    "SELECT Name FROM Case_File__c WHERE Amount__c > 100 ORDER BY Name DESC LIMIT 30",
    "SELECT Name FROM Case_File__c WHERE Region__c != 'North' OR Amount__c < 5 ORDER BY Name LIMIT 25",
    "SELECT Name, Owner.Name FROM Case_File__c ORDER BY Name",
    "SELECT Name FROM Case_File__c WHERE Owner.Name LIKE 'a%' ORDER BY Name",
    "SELECT Name FROM Case_File__c WHERE Id IN (SELECT Id FROM Case_File__c WHERE Region__c = 'South') "
    "ORDER BY Name",
    "SELECT Name FROM Case_File__c WHERE Name LIKE 'a%' ORDER BY Name LIMIT 12",
    "SELECT Name FROM Case_File__c WHERE Name > 'c' ORDER BY Name LIMIT 12",
]


def test_merged_equals_plain(world: Org, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Every query, then the first seven with queryAll (deleted rows too), merged and as one filtered walk."""
    _crowd(world)
    for soql in QUERIES:
        merged, plain = both(world, "mgr", soql, monkeypatch)
        assert len(plain) > 0, soql
        assert merged == plain, soql
    for soql in QUERIES[:7]:
        merged, plain = both(world, "mgr", soql, monkeypatch, query_all=True)
        assert merged == plain, soql


def _vis(w: Org, who: str, obj: str = "Case_File__c") -> tuple[set[str], set[str], bool]:
    """(with lineage, with the owner list, whether lineage was used) for ``who``'s readable record names."""
    import sqlalchemy as sa

    from keel.metadata.tables import table_for
    from keel.security.access import load_access
    from keel.storage import ids

    with w.admin.db.read() as conn:
        schema = w.admin.schema(conn)
        o = schema.get_object(obj)
        t = table_for(schema, o)
        access = load_access(conn, schema, ids.split(w.users[who])[1])
        used = access.role_depth is not None
        out = []
        for depth in (access.role_depth, None):
            access.role_depth = depth
            pred = access.record_filter(o, t, "read")
            q = sa.select(t.c.name)
            out.append(set(conn.execute(q.where(pred) if pred is not None else q).scalars()))
    return out[0], out[1], used


def _agree(w: Org, who: list[str]) -> None:
    for u in who:
        new, old, _ = _vis(w, u)
        assert new == old, u


def test_lineage_agrees_with_owner_list_on_crowd(world: Org) -> None:  # noqa: F811
    _crowd(world)
    _agree(world, ["mgr", "dir", "a1", "aud"])


def test_lineage_after_role_deleted(world: Org) -> None:  # noqa: F811
    from keel.records import delete_many

    save_many(world.admin, "User", [{"Id": world.users[u], "UserRoleId": role_id(world, "Manager")}
                                    for u in ("a2",)])
    delete_many(world.admin, "UserRole", [role_id(world, "Field Agent")])
    _agree(world, ["mgr", "dir", "a1", "a2"])


def test_lineage_deep_chain(world: Org) -> None:  # noqa: F811
    """Managers at depths 1..6 of a chain Director > Manager > Field Agent > L3 > L4 > L5 > L6, one user and one
    record per level: each manager sees exactly the records below them, at depth 4 and 5 alike."""
    from keel.services.security import create_role
    from tests.security.conftest import new_user

    with world.admin.db.transaction() as conn:
        parent = "Field Agent"
        for d in range(3, 8):
            create_role(world.admin, conn, f"L{d}", parent)
            parent = f"L{d}"
    for d in range(3, 8):
        world.users[f"u{d}"] = new_user(world.admin, f"u{d}@example.com", "Agent", f"L{d}")
        save_many(world.ctx(f"u{d}"), "Case_File__c", [{"Name": f"case-u{d}", "Region__c": "North"}])
    for d in range(3, 8):
        new, old, _ = _vis(world, f"u{d}")
        assert new == old == {f"case-u{e}" for e in range(d, 8)}, d
    # Move L4 (and everything below) directly under the Director: depths shrink, lineage follows.
    save_many(world.admin, "UserRole", [{"Id": role_id(world, "L4"), "ParentRoleId": role_id(world, "Director")}])
    _agree(world, ["dir", "mgr", "a1", "u3", "u4", "u5", "u6"])
    assert "case-u6" not in _vis(world, "u3")[0] and "case-u6" in _vis(world, "u4")[0]


PEOPLE = [
    "SELECT Name FROM Person__c ORDER BY Name",
    "SELECT Id FROM Person__c ORDER BY Name",
    "SELECT Name FROM Person__c ORDER BY Name LIMIT 5",
    "SELECT Name FROM Person__c ORDER BY Name LIMIT 30",
    "SELECT Name FROM Person__c ORDER BY Name LIMIT 10 OFFSET 25",
    "SELECT Name FROM Person__c ORDER BY Name, Id DESC LIMIT 30",
    "SELECT Name FROM Person__c WHERE First__c = null ORDER BY Name LIMIT 40",
    "SELECT Name FROM Person__c ORDER BY Name DESC",
    "SELECT Name FROM Person__c ORDER BY Name DESC LIMIT 10 OFFSET 100",
]


def test_people_with_unnamed(world: Org, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Unnamed records among the lead's and the shared stream's, ascending (NULLS FIRST), first and next pages."""
    people(world, tmp_path)
    for who, n in (("a1", 140), ("a2", 30), ("aud", 120), ("dir", 20)):
        rows = [{"Last__c": f"{'xYaB'[i % 4]}-{(i * 13) % 50:02d}"} if i % 6 else {} for i in range(n)]
        done = save_many(world.ctx(who), "Person__c", rows)
        if who == "aud":
            for d in done[::2]:
                assert d.id
                share_record(world.ctx("aud"), "Person__c", d.id, world.users["mgr"])
    for soql in PEOPLE:
        merged, plain = both(world, "mgr", soql, monkeypatch, key="Id" if soql.startswith("SELECT Id") else "Name")
        assert len(plain) > 0, soql
        assert merged == plain, soql


def test_concurrent_saves_that_recalculate_do_not_deadlock(world: Org) -> None:  # noqa: F811
    """Two transactions each insert an owned record (reading their owners' lineage) and then add a group member (a
    recalculation that changes no lineage). On PostgreSQL they overlap: a lock on the whole lineage table made
    one of them a deadlock victim. On SQLite they take turns (one writer at a time)."""
    import threading

    overlap = world.admin.db.dialect == "postgresql"
    g1 = save_many(world.admin, "Group", [{"Name": "G1", "DeveloperName": "G1"}])[0].id
    g2 = save_many(world.admin, "Group", [{"Name": "G2", "DeveloperName": "G2"}])[0].id
    save_many(world.admin, "GroupMember", [{"GroupId": g1, "UserOrGroupId": world.users["dir"]}])  # warm sequences
    save_many(world.ctx("a1"), "Case_File__c", [{"Name": "warm", "Region__c": "North"}])
    bar = threading.Barrier(2)
    errs: list[str] = []

    def work(who: str, group: str | None) -> None:
        try:
            with world.admin.db.engine.connect() as conn:
                tx = conn.begin()
                save_many(world.ctx(who), "Case_File__c", [{"Name": f"x-{who}", "Region__c": "North"}], conn=conn)
                if overlap:
                    bar.wait(10)
                save_many(world.admin, "GroupMember", [{"GroupId": group, "UserOrGroupId": world.users[who]}],
                          conn=conn)
                tx.commit()
        except Exception as e:
            errs.append(repr(e)[:200])

    threads = [threading.Thread(target=work, args=a) for a in (("a1", g1), ("a2", g2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errs == []
