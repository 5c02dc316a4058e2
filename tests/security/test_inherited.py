"""Managers inherit their subordinates' shares through ``keel_share_reach``, kept in step by every share write and
by the recalculation after role and membership changes: the incremental rows always equal a full rebuild."""

from __future__ import annotations

import sqlalchemy as sa

from keel.metadata.tables import table_for
from keel.records import delete_many, save_many
from keel.security import reach
from keel.security.tables import share_reach, shares
from keel.services.query import query
from keel.services.security import recalculate_sharing, share_record, unshare_record
from keel.storage import ids, migrate
from tests.security.test_sharing import Org, rid, role_id, world  # noqa: F401  (``world`` is the fixture)


def reach_rows(w: Org) -> set[tuple[int, ...]]:
    with w.admin.db.read() as conn:
        return {tuple(r) for r in conn.execute(sa.select(share_reach))}


def shared_flags(w: Org) -> dict[str, set[int]]:
    """Per object, the records whose ``is_shared`` flag is set."""
    out: dict[str, set[int]] = {}
    with w.admin.db.read() as conn:
        schema = w.admin.schema(conn)
        for obj in schema.objects:
            t = table_for(schema, obj)
            out[obj.api_name] = set(conn.execute(sa.select(t.c.id).where(t.c.is_shared == sa.true())).scalars())
    return out


def assert_matches_rebuild(w: Org) -> None:
    """What the writes left equals what a full rebuild computes (the rebuild is rolled back): the reach rows, and
    the shared flags, which must be set exactly on the records that have a share row."""
    before, flags = reach_rows(w), shared_flags(w)
    with w.admin.db.engine.connect() as conn:
        tx = conn.begin()
        schema = w.admin.schema(conn)
        expected = {o.api_name: set(conn.execute(sa.select(shares.c.record_id).where(shares.c.object_id == o.id))
                                    .scalars()) for o in schema.objects}
        reach.rebuild(conn, schema)
        rebuilt = {tuple(r) for r in conn.execute(sa.select(share_reach))}
        tx.rollback()
    assert before == rebuilt
    assert {k: v for k, v in flags.items() if v} == {k: v for k, v in expected.items() if v}


def test_inherited_shares_follow_role_changes(world: Org) -> None:  # noqa: F811
    case = rid(world, "Case_File__c", "case-aud")
    share_record(world.ctx("aud"), "Case_File__c", case, world.users["a1"], "Edit")
    assert {"case-aud"} <= world.visible("mgr") & world.visible("dir")
    save_many(world.ctx("mgr"), "Case_File__c", [{"Id": case, "Amount__c": 4}])  # Edit is inherited as Edit
    assert_matches_rebuild(world)
    # The grantee changes role: the old managers lose what they inherited.
    save_many(world.admin, "User", [{"Id": world.users["a1"], "UserRoleId": role_id(world, "Auditor")}])
    assert "case-aud" not in world.visible("mgr") and "case-aud" not in world.visible("dir")
    assert "case-aud" in world.visible("a1")
    save_many(world.admin, "User", [{"Id": world.users["a1"], "UserRoleId": role_id(world, "Field Agent")}])
    assert "case-aud" in world.visible("mgr")
    # A role moves under another branch: the tree is renumbered and the reach follows.
    save_many(world.admin, "UserRole", [{"Id": role_id(world, "Field Agent"),
                                         "ParentRoleId": role_id(world, "Auditor")}])
    assert "case-aud" not in world.visible("mgr") and "case-aud" not in world.visible("dir")
    assert_matches_rebuild(world)
    save_many(world.admin, "UserRole", [{"Id": role_id(world, "Field Agent"),
                                         "ParentRoleId": role_id(world, "Manager")}])
    assert "case-aud" in world.visible("dir")
    # Unsharing takes the inherited access away too.
    assert unshare_record(world.ctx("aud"), "Case_File__c", case, world.users["a1"]) == 1
    assert "case-aud" not in world.visible("dir") and "case-aud" not in world.visible("a1")
    assert reach_rows(world) == set()


def test_group_shares_owner_changes_and_deletes(world: Org) -> None:  # noqa: F811
    desk = save_many(world.admin, "Group", [{"Name": "Desk", "DeveloperName": "Desk"}])[0].id
    assert desk
    save_many(world.admin, "GroupMember", [{"GroupId": desk, "UserOrGroupId": world.users["aud"]}])
    case = rid(world, "Case_File__c", "case-mgr")
    share_record(world.ctx("mgr"), "Case_File__c", case, desk, "Read")
    assert "case-mgr" in world.visible("aud") and "case-mgr" not in world.visible("a1")
    # A user below the director joins the group: the director inherits nothing new (the record is the
    # manager's, below the director anyway), but a record of the auditor's shared with the group does reach him.
    aud_case = rid(world, "Case_File__c", "case-aud")
    share_record(world.ctx("aud"), "Case_File__c", aud_case, desk, "Read")
    assert "case-aud" not in world.visible("dir")
    save_many(world.admin, "GroupMember", [{"GroupId": desk, "UserOrGroupId": world.users["a2"]}])
    assert "case-aud" in world.visible("dir") and "case-aud" in world.visible("mgr")
    assert "case-aud" not in world.visible("a1")  # a peer of the member
    assert_matches_rebuild(world)
    # An owner change drops manual shares, and what managers inherited from them.
    save_many(world.admin, "Case_File__c", [{"Id": aud_case, "OwnerId": world.users["a1"]}])
    save_many(world.admin, "Case_File__c", [{"Id": aud_case, "OwnerId": world.users["aud"]}])
    assert "case-aud" not in world.visible("dir") and "case-aud" not in world.visible("a2")
    assert_matches_rebuild(world)
    # Share records written through the API are mirrored with their reach; deleting the record cleans up.
    save_many(world.ctx("aud"), "Case_File__Share", [{"ParentId": aud_case, "UserOrGroupId": world.users["a2"],
                                                      "AccessLevel": "Read"}])
    assert "case-aud" in world.visible("mgr")
    assert_matches_rebuild(world)
    delete_many(world.ctx("aud"), "Case_File__c", [aud_case])
    assert_matches_rebuild(world)
    assert query(world.ctx("mgr"), "SELECT Name FROM Case_File__c WHERE Name = 'case-aud'")["records"] == []


def test_migration_0004_creates_the_tables_and_a_recalculation_fills_them(world: Org) -> None:  # noqa: F811
    """An organisation from before 0004 gets the two tables empty: managers inherit nothing (as before) and
    nothing breaks until a recalculation fills them."""
    from alembic import command

    share_record(world.ctx("aud"), "Case_File__c", rid(world, "Case_File__c", "case-aud"), world.users["a1"])
    with world.admin.db.transaction() as conn:
        command.downgrade(migrate._config(conn), "0003")
    with world.admin.db.read() as conn:
        assert not {"keel_role_span", "keel_share_reach"} & set(sa.inspect(conn).get_table_names())
    migrate.upgrade(world.admin.db)
    assert migrate.status(world.admin.db).up_to_date
    assert reach_rows(world) == set()
    assert "case-aud" in world.visible("a1") and "case-aud" not in world.visible("mgr")
    recalculate_sharing(world.admin)
    assert "case-aud" in world.visible("mgr")
    assert_matches_rebuild(world)


def round_trip(w: Org, revision: str) -> set[str]:
    """Downgrade to ``revision`` and upgrade again; the columns ``Case_File__c``'s table had in between."""
    from alembic import command

    with w.admin.db.transaction() as conn:
        command.downgrade(migrate._config(conn), revision)
    with w.admin.db.read() as conn:
        table = w.admin.schema(conn).get_object("Case_File__c").table
        columns = {c["name"] for c in sa.inspect(conn).get_columns(table)}
    migrate.upgrade(w.admin.db)
    assert migrate.status(w.admin.db).up_to_date
    return columns


def test_migration_0006_adds_and_fills_the_shared_flag(world: Org) -> None:  # noqa: F811
    """An organisation from before 0006 has no flag: the upgrade adds it, sets it from the share rows and rebuilds
    each Name index to carry it, so managers keep seeing their shared records."""
    share_record(world.ctx("aud"), "Case_File__c", rid(world, "Case_File__c", "case-aud"), world.users["a1"])
    assert "is_shared" not in round_trip(world, "0005")
    with world.admin.db.read() as conn:
        table = world.admin.schema(conn).get_object("Case_File__c").table
    assert shared_flags(world)["Case_File__c"] == {rid_pk(world, "case-aud")}
    with world.admin.db.read() as conn:
        if conn.dialect.name == "sqlite":
            ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (f"ix_{table}_name",)).scalar()
        else:
            ddl = conn.exec_driver_sql("SELECT indexdef FROM pg_indexes WHERE indexname = %s "
                                       "AND schemaname = current_schema()", (f"ix_{table}_name",)).scalar()
    assert ddl is not None and "is_shared" in ddl
    assert "case-aud" in world.visible("mgr") and "case-aud" in world.visible("a1")
    assert_matches_rebuild(world)


def rid_pk(w: Org, name: str) -> int:
    return ids.split(rid(w, "Case_File__c", name))[1]
