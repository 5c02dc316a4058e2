"""Every record carries its owner's place in the role tree (``security/lineage.py``), kept by every path that changes
an owner, a user's role or activity, or the tree; managers' sorted pages are read as merged streams over it
(``query/arms.py``) and equal what the plain predicate returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keel.metadata.tables import LINEAGE_COLUMNS, table_for
from keel.query import PlanCache, run_soql
from keel.query.run import fetch_more
from keel.records import save_many
from keel.security import lineage
from keel.security.access import load_access
from keel.services.security import recalculate_sharing, share_record, sharing_unfilled
from keel.storage import ids
from tests.security.test_inherited import round_trip
from tests.security.test_sharing import Org, rid, role_id, world  # noqa: F401  (``world`` is the fixture)


def role_pk(w: Org, name: str) -> int:
    return ids.split(role_id(w, name))[1]


def stamps(w: Org, obj: str = "Case_File__c") -> dict[str, tuple[Any, ...]]:
    """Per record name, its lineage columns (role_depth, role_1 .. role_4)."""
    with w.admin.db.read() as conn:
        schema = w.admin.schema(conn)
        t = table_for(schema, schema.get_object(obj))
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa.select(t.c.name, *[t.c[c] for c in LINEAGE_COLUMNS]))}


def assert_matches_restamp(w: Org) -> None:
    """What the writes left equals stamping every record afresh from the owners' lineage (rolled back)."""
    before = {o: stamps(w, o) for o in ("Case_File__c", "Memo__c")}
    with w.admin.db.engine.connect() as conn:
        tx = conn.begin()
        schema = w.admin.schema(conn)
        lineage.restamp_all(conn, schema)
        after = {}
        for o in ("Case_File__c", "Memo__c"):
            t = table_for(schema, schema.get_object(o))
            after[o] = {r[0]: tuple(r[1:]) for r in conn.execute(sa.select(t.c.name, *[t.c[c] for c in
                                                                                     LINEAGE_COLUMNS]))}
        tx.rollback()
    assert before == after


def test_of_role_walks_to_the_root() -> None:
    parents: dict[int, int | None] = {1: None, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 9: 99}  # 9's parent is unknown
    assert lineage.of_role(parents, 1) == (0, None, None, None, None)
    assert lineage.of_role(parents, 3) == (2, 2, 3, None, None)
    assert lineage.of_role(parents, 6) == (5, 2, 3, 4, 5)  # deeper than 4: the depth, and the first four levels
    assert lineage.of_role(parents, 9) == (0, None, None, None, None)  # a root, as the closure treats it
    # 7 is no role; 12 has none: both get a row of NULLs (so that getting a role changes a row)
    assert lineage.compute(parents, {10: 3, 11: 7, 12: None}) == {10: (2, 2, 3, None, None), 11: lineage.NONE,
                                                                  12: lineage.NONE}


def test_records_carry_their_owners_place(world: Org) -> None:  # noqa: F811
    mgr, agent = role_pk(world, "Manager"), role_pk(world, "Field Agent")
    assert stamps(world) == {"case-a1": (2, mgr, agent, None, None), "case-a2": (2, mgr, agent, None, None),
                             "case-mgr": (1, mgr, None, None, None), "case-aud": (0, None, None, None, None)}
    # A new owner: the record takes theirs, in the same save.
    save_many(world.admin, "Case_File__c", [{"Id": rid(world, "Case_File__c", "case-aud"),
                                             "OwnerId": world.users["a1"]}])
    assert stamps(world)["case-aud"] == (2, mgr, agent, None, None)
    assert "case-aud" in world.visible("mgr") and "case-aud" in world.visible("dir")
    # A user changes role: every record they own follows, on every object.
    save_many(world.admin, "User", [{"Id": world.users["a1"], "UserRoleId": role_id(world, "Auditor")}])
    assert stamps(world)["case-a1"] == stamps(world)["case-aud"] == (0, None, None, None, None)
    assert stamps(world, "Memo__c")["memo-a1"] == (0, None, None, None, None)
    assert "case-a1" not in world.visible("mgr")
    assert_matches_restamp(world)
    # A role moves: the records of everyone in its subtree are restamped.
    save_many(world.admin, "UserRole", [{"Id": role_id(world, "Field Agent"),
                                         "ParentRoleId": role_id(world, "Auditor")}])
    aud = role_pk(world, "Auditor")
    assert stamps(world)["case-a2"] == (1, agent, None, None, None)
    assert "case-a2" not in world.visible("mgr") and "case-a2" in world.visible("aud")
    assert world.visible("aud") >= {"case-a2"} and aud != agent
    save_many(world.admin, "UserRole", [{"Id": role_id(world, "Field Agent"),
                                         "ParentRoleId": role_id(world, "Manager")}])
    assert stamps(world)["case-a2"] == (2, mgr, agent, None, None) and "case-a2" in world.visible("mgr")
    # A deactivated user leaves the hierarchy, as the closures treat them.
    save_many(world.admin, "User", [{"Id": world.users["a2"], "IsActive": False}])
    assert stamps(world)["case-a2"] == (None,) * 5
    assert "case-a2" not in world.visible("mgr")
    assert_matches_restamp(world)


def _pages(w: Org, who: str, soql: str, cache: PlanCache) -> tuple[list[str], bool]:
    """Every row of ``soql`` as ``who``, following nextRecordsUrl; and whether the plan was a merge."""
    ctx = w.ctx(who)
    access = ctx.actor.access
    with ctx.db.read() as conn:
        schema = ctx.schema(conn)
        args: dict[str, Any] = {"dialect": conn.dialect.name, "row_filter": access.row_filter,
                                "security_key": access.security_key, "cache": cache}
        got = run_soql(conn, schema, soql, batch_size=200, **args)
        names = [r["Name"] for r in got["records"]]
        locator = got.get("nextRecordsUrl")
        while locator:
            got = fetch_more(conn, schema, locator.rsplit("/", 1)[1], **args)
            names += [r["Name"] for r in got["records"]]
            locator = got.get("nextRecordsUrl")
        plan = cache.get(soql, schema, dialect=conn.dialect.name, security_key=access.security_key,
                         row_filter=access.row_filter).plan
        conn.rollback()
    return names, plan.merge is not None


def test_sorted_pages_are_merged_streams(world: Org) -> None:  # noqa: F811
    """A manager's pages sorted by Name, first and next, ascending and descending, with OFFSET, equal the visible
    records sorted in Python; shares of records the manager cannot see (flagged, walked and refused) change
    nothing."""
    owners = ["a1", "a2", "mgr", "aud", "dir"]
    rows = [{"Name": f"bulk-{(i * 7919) % 1000:03d}-{i}", "OwnerId": world.users[owners[i % 5]],
             "Region__c": "North"} for i in range(460)]
    save_many(world.admin, "Case_File__c", rows)
    by_name = {r["Name"]: r for r in rows}
    for i, name in enumerate(sorted(by_name)):
        if by_name[name]["OwnerId"] == world.users["aud"]:  # the auditor shares some with the manager, some not
            share_record(world.ctx("aud"), "Case_File__c", rid(world, "Case_File__c", name),
                         world.users["mgr" if i % 3 else "dir"])
    visible = sorted(world.visible("mgr"), key=str.lower)
    assert len(visible) > 300 and any(n.startswith("bulk") and by_name[n]["OwnerId"] == world.users["aud"]
                                      for n in visible)
    cache = PlanCache()
    names, merged = _pages(world, "mgr", "SELECT Name FROM Case_File__c ORDER BY Name", cache)
    assert merged and names == visible
    names, merged = _pages(world, "mgr", "SELECT Name FROM Case_File__c ORDER BY Name DESC", cache)
    assert merged and names == visible[::-1]
    names, merged = _pages(world, "mgr", "SELECT Name FROM Case_File__c ORDER BY Name LIMIT 20 OFFSET 30", cache)
    assert merged and names == visible[30:50]
    names, merged = _pages(world, "mgr", "SELECT Name FROM Case_File__c WHERE Region__c = 'North' "
                                         "ORDER BY Name LIMIT 7", cache)
    assert merged and names == [n for n in visible if n != "case-a2" and n != "case-aud"][:7]
    # Other orders, and users without a role below them, keep the single filtered walk.
    names, merged = _pages(world, "mgr", "SELECT Name FROM Case_File__c ORDER BY Name NULLS LAST", cache)
    assert not merged and names == visible
    names, merged = _pages(world, "dir", "SELECT Name FROM Case_File__c ORDER BY Name", cache)
    assert not merged and names == sorted(world.visible("dir"), key=str.lower)
    names, merged = _pages(world, "a1", "SELECT Name FROM Case_File__c ORDER BY Name", cache)
    assert not merged and names == sorted(world.visible("a1"), key=str.lower)


def test_migration_0007_then_recalculation(world: Org) -> None:  # noqa: F811
    """An organisation from before 0007 gets the columns empty: managers keep the owner-list test (and see what
    they saw) until ``keel migrate``'s recalculation stamps every record and builds the indexes."""
    from keel.metadata import index_sync

    seen = world.visible("mgr")
    assert "role_depth" not in round_trip(world, "0006")
    world.admin.metadata.invalidate()
    with world.admin.db.read() as conn:
        table = world.admin.schema(conn).get_object("Case_File__c").table
    assert set(stamps(world).values()) == {(None,) * 5}
    with world.admin.db.read() as conn:
        access = load_access(conn, world.admin.schema(conn), ids.split(world.users["mgr"])[1])
        assert access.role_depth is None  # no lineage yet: the owner list decides
        assert {p.table for p in index_sync.pending(conn)} >= {table}
    assert world.visible("mgr") == seen
    assert sharing_unfilled(world.admin)
    recalculate_sharing(world.admin)
    index_sync.sync(world.admin.db)
    assert not sharing_unfilled(world.admin)
    with world.admin.db.read() as conn:
        assert table not in {p.table for p in index_sync.pending(conn)}
    assert stamps(world)["case-a1"] == (2, role_pk(world, "Manager"), role_pk(world, "Field Agent"), None, None)
    assert world.visible("mgr") == seen
    assert_matches_restamp(world)


def test_a_save_racing_a_recalculation_keeps_no_stale_lineage(world: Org) -> None:  # noqa: F811
    """A save that read its owner's lineage before a concurrent role change commits first; the recalculation
    waits for it and restamps what it wrote. (On PostgreSQL the recalculation locks the lineage table; on SQLite
    writers take turns.)"""
    import threading

    with world.admin.db.engine.connect() as conn:
        tx = conn.begin()
        save_many(world.ctx("a1"), "Case_File__c", [{"Name": "case-racing", "Region__c": "North"}], conn=conn)
        moved = threading.Thread(target=save_many, args=(world.admin, "User", [
            {"Id": world.users["a1"], "UserRoleId": role_id(world, "Auditor")}]))
        moved.start()
        moved.join(0.5)
        assert moved.is_alive()  # waiting for the save
        tx.commit()
    moved.join(30)
    assert not moved.is_alive()
    assert stamps(world)["case-racing"] == (0, None, None, None, None) == stamps(world)["case-a1"]
    assert "case-racing" not in world.visible("mgr")
    assert_matches_restamp(world)


def test_records_without_a_name_are_their_own_stream(world: Org, tmp_path: Path) -> None:  # noqa: F811
    """Where Name may be empty (a composite name with no parts), shared records without one sort first (last when
    descending) and are read as a stream of their own, outside the bound that the named ones respect."""
    from tests.security.test_streams import people

    people(world, tmp_path)
    for who, n in (("a1", 30), ("aud", 12), ("dir", 5)):
        rows = [{"Last__c": f"{who}-{i:02d}"} if i % 4 else {} for i in range(n)]  # every fourth has no name
        for r in save_many(world.ctx(who), "Person__c", rows):
            assert r.id
            if who == "aud":
                share_record(world.ctx("aud"), "Person__c", r.id, world.users["mgr"])
    with world.admin.db.read() as conn:
        schema = world.admin.schema(conn)
        obj = schema.get_object("Person__c")
        t = table_for(schema, obj)
        pred = world.ctx("mgr").actor.access.record_filter(obj, t, "read")
        visible = [(ids.encode(obj.key_prefix, pk), name) for pk, name in conn.execute(sa.select(t.c.id, t.c.name)
                                                                                       .where(pred))]
    assert sum(1 for _, n in visible if n is None) == 8 + 3  # a1's and the shared ones of aud
    ascending = [i for i, _ in sorted(visible, key=lambda v: (v[1] is not None, (v[1] or "").lower(), v[0]))]
    cache = PlanCache()
    ctx = world.ctx("mgr")
    access = ctx.actor.access
    with ctx.db.read() as conn:
        for soql, want in (("SELECT Id FROM Person__c ORDER BY Name LIMIT 9", ascending[:9]),
                           ("SELECT Id FROM Person__c ORDER BY Name, Id", ascending),
                           ("SELECT Id FROM Person__c ORDER BY Name DESC LIMIT 40", _descending(visible)[:40])):
            got = run_soql(conn, schema, soql, dialect=conn.dialect.name, row_filter=access.row_filter,
                           security_key=access.security_key, cache=cache)
            assert [r["Id"] for r in got["records"]] == want, soql
            assert cache.get(soql, schema, dialect=conn.dialect.name, security_key=access.security_key,
                             row_filter=access.row_filter).plan.merge is not None


def _descending(visible: list[tuple[str, str | None]]) -> list[str]:
    """Name DESC NULLS LAST, then Id ascending (the id tiebreak is always ascending)."""
    named = sorted((v for v in visible if v[1] is not None), key=lambda v: v[0])
    named.sort(key=lambda v: (v[1] or "").lower(), reverse=True)
    return [i for i, _ in named] + sorted(i for i, n in visible if n is None)
