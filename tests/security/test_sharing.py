"""Record visibility: role hierarchy (and its per-object toggle), sharing rules (owner and criteria based, to roles,
roles-and-subordinates and groups), manual and programmatic shares, recalculation, deny by default."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.errors import BatchError, KeelError
from keel.metadata.tables import table_for
from keel.records import save_many
from keel.security.access import load_access
from keel.security.audit import audit_rows
from keel.security.package import parse_permission_set
from keel.services.security import (
    assign_permission_set,
    create_role,
    deploy_permission_set,
    ensure_share_objects,
    read_record,
    recalculate_sharing,
    share_record,
    system_context,
    unshare_record,
    user_context,
)
from keel.storage import ids
from keel.storage import system as S
from tests.security.conftest import deploy_objects, new_user

OBJECTS: list[dict[str, Any]] = [
    {"object": "Case_File__c", "sharing": "private", "name_field": {"type": "text"}, "fields": [
        {"name": "Region__c", "type": "text", "length": 20},
        {"name": "Amount__c", "type": "number"},
        {"name": "Secret__c", "type": "text", "length": 40, "sensitive": True},
    ]},
    {"object": "Memo__c", "sharing": "private", "role_hierarchy": False, "name_field": {"type": "text"}},
]
AGENT = {"name": "Agent", "profile": True, "objects": {
    "Case_File__c": ["read", "create", "edit", "delete"], "Memo__c": ["read", "create", "edit", "delete"]},
    "fields": {"Case_File__c.Region__c": ["edit"], "Case_File__c.Amount__c": ["edit"],
               "Case_File__c.Secret__c": ["edit"]}}


@dataclass
class Org:
    admin: Context
    users: dict[str, str]

    def ctx(self, who: str) -> Context:
        return user_context(self.admin, self.users[who])

    def visible(self, who: str, obj: str = "Case_File__c") -> set[str]:
        ctx = self.ctx(who)
        with ctx.db.read() as conn:
            schema = ctx.schema(conn)
            o = schema.get_object(obj)
            t = table_for(schema, o)
            pred = ctx.actor.access.record_filter(o, t, "read")
            q = sa.select(t.c.name)
            return set(conn.execute(q.where(pred) if pred is not None else q).scalars())


@pytest.fixture
def world(org: Context, tmp_path: Path) -> Iterator[Org]:
    deploy_objects(org, OBJECTS, tmp_path)
    assert sorted(ensure_share_objects(org)) == ["Case_File__Share", "Memo__Share"]
    assert ensure_share_objects(org) == []
    with org.db.transaction() as conn:
        deploy_permission_set(org, conn, parse_permission_set(AGENT))
        create_role(org, conn, "Director")
        create_role(org, conn, "Manager", "Director")
        create_role(org, conn, "Field Agent", "Manager")
        create_role(org, conn, "Auditor")
    users = {
        "dir": new_user(org, "dir@example.com", "Agent", "Director"),
        "mgr": new_user(org, "mgr@example.com", "Agent", "Manager"),
        "a1": new_user(org, "a1@example.com", "Agent", "Field Agent"),
        "a2": new_user(org, "a2@example.com", "Agent", "Field Agent"),
        "aud": new_user(org, "aud@example.com", "Agent", "Auditor"),
    }
    w = Org(org, users)
    for who, region in (("a1", "North"), ("a2", "South"), ("mgr", "North"), ("aud", "East")):
        save_many(w.ctx(who), "Case_File__c", [{"Name": f"case-{who}", "Region__c": region, "Amount__c": 10}])
        save_many(w.ctx(who), "Memo__c", [{"Name": f"memo-{who}"}])
    yield w


def rid(w: Org, obj: str, name: str) -> str:
    with w.admin.db.read() as conn:
        schema = w.admin.schema(conn)
        o = schema.get_object(obj)
        pk = conn.execute(sa.text(f"SELECT id FROM {o.table} WHERE name = :n"), {"n": name}).scalar_one()
        return ids.encode(o.key_prefix, pk)


def role_id(w: Org, name: str) -> str:
    with w.admin.db.read() as conn:
        o = w.admin.schema(conn).get_object("UserRole")
        return ids.encode("00E", conn.execute(sa.text(f"SELECT id FROM {o.table} WHERE name = :n"),
                                              {"n": name}).scalar_one())


def test_role_hierarchy_and_toggle(world: Org) -> None:
    assert world.visible("a1") == {"case-a1"}  # peers in the same role do not see each other's records
    assert world.visible("mgr") == {"case-a1", "case-a2", "case-mgr"}
    assert world.visible("dir") == {"case-a1", "case-a2", "case-mgr"}
    assert world.visible("aud") == {"case-aud"}
    assert world.visible("dir", "Memo__c") == set()  # hierarchy switched off for this object
    assert world.visible("mgr", "Memo__c") == {"memo-mgr"}


def test_hierarchy_read_from_closure_when_too_many_to_list(world: Org) -> None:
    """A manager over more than OWNER_LIST_MAX users gets the subordinates' ids from the closure table in the
    statement instead of a list in it; both forms grant the same records."""
    with world.admin.db.read() as conn:
        schema = world.admin.schema(conn)
        o = schema.get_object("Case_File__c")
        t = table_for(schema, o)
        for who, want in (("mgr", {"case-a1", "case-a2", "case-mgr"}), ("dir", {"case-a1", "case-a2", "case-mgr"}),
                          ("a1", {"case-a1"})):
            pk = ids.split(world.users[who])[1]
            listed, closure = (load_access(conn, schema, pk, owner_list_max=n) for n in (1000, 0))
            assert listed.owners_below is not None
            if who != "a1":
                assert closure.owners_below is None
            for access in (listed, closure):
                pred = access.record_filter(o, t, "read")
                assert pred is not None
                assert set(conn.execute(sa.select(t.c.name).where(pred)).scalars()) == want, (who, access)


def test_role_move_recalculates_atomically(world: Org) -> None:
    save_many(world.admin, "UserRole", [{"Id": role_id(world, "Auditor"), "ParentRoleId": role_id(world, "Manager")}])
    assert world.visible("mgr") == {"case-a1", "case-a2", "case-mgr", "case-aud"}
    assert world.visible("dir") == {"case-a1", "case-a2", "case-mgr", "case-aud"}
    with pytest.raises(KeelError):  # Director under Field Agent would be a cycle: nothing changes
        save_many(world.admin, "UserRole", [{"Id": role_id(world, "Director"),
                                            "ParentRoleId": role_id(world, "Field Agent")}])
    assert world.visible("dir") == {"case-a1", "case-a2", "case-mgr", "case-aud"}
    save_many(world.admin, "User", [{"Id": world.users["a2"], "UserRoleId": role_id(world, "Auditor")}])
    assert world.visible("a2") == {"case-a2"}
    assert "case-a2" in world.visible("mgr")  # Auditor is below Manager now


def test_owner_based_rule_to_role(world: Org) -> None:
    save_many(world.admin, "SharingRule", [{
        "Name": "Agents to auditors", "SobjectType": "Case_File__c", "RuleType": "Owner",
        "SourceId": role_id(world, "Field Agent"), "TargetId": role_id(world, "Auditor"), "AccessLevel": "Read"}])
    assert world.visible("aud") == {"case-aud", "case-a1", "case-a2"}
    with pytest.raises(BatchError):
        save_many(world.ctx("aud"), "Case_File__c", [{"Id": rid(world, "Case_File__c", "case-a1"), "Amount__c": 1}])
    save_many(world.admin, "SharingRule", [{
        "Name": "Managers edit", "SobjectType": "Case_File__c", "RuleType": "Owner",
        "SourceId": role_id(world, "Manager"), "SourceIncludeSubordinates": True,
        "TargetId": role_id(world, "Auditor"), "AccessLevel": "Edit"}])
    save_many(world.ctx("aud"), "Case_File__c", [{"Id": rid(world, "Case_File__c", "case-a1"), "Amount__c": 1}])


def test_criteria_rule_to_nested_group(world: Org) -> None:
    inner = save_many(world.admin, "Group", [{"Name": "North desk", "DeveloperName": "North_desk"}])[0].id
    outer = save_many(world.admin, "Group", [{"Name": "All desks", "DeveloperName": "All_desks"}])[0].id
    assert inner and outer
    save_many(world.admin, "GroupMember", [{"GroupId": inner, "UserOrGroupId": world.users["aud"]},
                                           {"GroupId": outer, "UserOrGroupId": inner}])
    save_many(world.admin, "SharingRule", [{
        "Name": "North cases", "SobjectType": "Case_File__c", "RuleType": "Criteria", "CriteriaField": "Region__c",
        "CriteriaOperator": "equals", "CriteriaValue": "North", "TargetId": outer, "AccessLevel": "Read"}])
    assert world.visible("aud") == {"case-aud", "case-a1", "case-mgr"}
    assert world.visible("a2") == {"case-a2"}
    # Removing the membership revokes at once.
    with world.admin.db.read() as conn:
        o = world.admin.schema(conn).get_object("GroupMember")
        gm = conn.execute(sa.text(f"SELECT id FROM {o.table} ORDER BY id")).scalars().first()
    from keel.records import delete_many
    delete_many(world.admin, "GroupMember", [ids.encode("011", gm)])
    assert world.visible("aud") == {"case-aud"}


def test_role_and_subordinates_target(world: Org) -> None:
    save_many(world.admin, "SharingRule", [{
        "Name": "Auditor cases to managers", "SobjectType": "Case_File__c", "RuleType": "Owner",
        "SourceId": role_id(world, "Auditor"), "TargetId": role_id(world, "Manager"),
        "TargetIncludeSubordinates": True}])
    assert "case-aud" in world.visible("a1") and "case-aud" in world.visible("mgr")
    # Director is above, not below, Manager: not a target, but it inherits what Manager is granted.
    assert "case-aud" in world.visible("dir")
    save_many(world.admin, "SharingRule", [{
        "Name": "Auditor memos to managers", "SobjectType": "Memo__c", "RuleType": "Owner",
        "SourceId": role_id(world, "Auditor"), "TargetId": role_id(world, "Manager"),
        "TargetIncludeSubordinates": True}])
    assert "memo-aud" in world.visible("mgr", "Memo__c")
    assert "memo-aud" not in world.visible("dir", "Memo__c")  # no access through hierarchies on Memo__c


def test_shares_on_two_objects_are_kept_apart(world: Org) -> None:
    """Case_File__Share and Memo__Share number their rows independently; mirroring or deleting the share row 1 of
    one object must not touch the share row 1 of the other (it once removed it from the predicate's table)."""
    share_record(world.ctx("aud"), "Case_File__c", rid(world, "Case_File__c", "case-aud"), world.users["a2"], "Read")
    share_record(world.ctx("aud"), "Memo__c", rid(world, "Memo__c", "memo-aud"), world.users["a2"], "Read")
    assert "case-aud" in world.visible("a2") and "memo-aud" in world.visible("a2", "Memo__c")
    assert unshare_record(world.ctx("aud"), "Memo__c", rid(world, "Memo__c", "memo-aud"), world.users["a2"]) == 1
    assert "memo-aud" not in world.visible("a2", "Memo__c")
    assert "case-aud" in world.visible("a2")


def test_managers_inherit_subordinates_shares_and_rule_grants(world: Org) -> None:
    """With "grant access using hierarchies" (on unless an object turns it off), whatever a user is granted by a
    share or a sharing rule reaches the users above them in the role hierarchy, as in Salesforce; peers and
    objects without hierarchy access get nothing."""
    share_record(world.ctx("aud"), "Case_File__c", rid(world, "Case_File__c", "case-aud"), world.users["a1"], "Read")
    share_record(world.ctx("aud"), "Memo__c", rid(world, "Memo__c", "memo-aud"), world.users["a1"], "Read")
    assert "case-aud" in world.visible("a1") and "memo-aud" in world.visible("a1", "Memo__c")
    assert "case-aud" in world.visible("mgr") and "case-aud" in world.visible("dir")
    assert "case-aud" not in world.visible("a2")  # a peer of the grantee
    assert "memo-aud" not in world.visible("mgr", "Memo__c")
    with pytest.raises(BatchError):  # a Read share is inherited as Read
        save_many(world.ctx("mgr"), "Case_File__c", [{"Id": rid(world, "Case_File__c", "case-aud"), "Amount__c": 2}])
    # A rule to a group holding only a2 reaches a2's managers, not a1.
    desk = save_many(world.admin, "Group", [{"Name": "South desk", "DeveloperName": "South_desk"}])[0].id
    assert desk
    save_many(world.admin, "GroupMember", [{"GroupId": desk, "UserOrGroupId": world.users["a2"]}])
    save_many(world.admin, "SharingRule", [{
        "Name": "East cases", "SobjectType": "Case_File__c", "RuleType": "Criteria", "CriteriaField": "Region__c",
        "CriteriaOperator": "equals", "CriteriaValue": "East", "TargetId": desk, "AccessLevel": "Edit"}])
    save_many(world.ctx("dir"), "Case_File__c", [{"Id": rid(world, "Case_File__c", "case-aud"), "Amount__c": 3}])
    assert "case-aud" in world.visible("a2")
    assert world.visible("a1") == {"case-a1", "case-aud"}  # still only through the manual share


def test_manual_and_programmatic_shares(world: Org) -> None:
    case = rid(world, "Case_File__c", "case-a1")
    share_record(world.ctx("a1"), "Case_File__c", case, world.users["aud"], "Read")
    assert "case-a1" in world.visible("aud")
    with pytest.raises(KeelError):  # read access is not full access: the auditor cannot re-share
        share_record(world.ctx("aud"), "Case_File__c", case, world.users["a2"], "Read")
    with pytest.raises(KeelError):  # programmatic shares need Modify All Data
        share_record(world.ctx("a1"), "Case_File__c", case, world.users["a2"], "Read", reason="Team")
    share_record(world.admin, "Case_File__c", case, world.users["a2"], "Edit", reason="Team")
    save_many(world.ctx("a2"), "Case_File__c", [{"Id": case, "Amount__c": 5}])
    save_many(world.ctx("a1"), "Case_File__c", [{"Id": case, "OwnerId": world.users["mgr"]}])  # transfer
    assert "case-a1" not in world.visible("aud")  # the manual share went with the old owner
    assert "case-a1" in world.visible("a2")  # the programmatic share survived
    assert "case-a1" not in world.visible("a1")


def test_deny_by_default_for_new_objects_and_fields(world: Org, tmp_path: Path) -> None:
    deploy_objects(world.admin, [{"object": "Vault__c", "sharing": "public_read_write", "name_field": {"type": "text"},
                                  "fields": [{"name": "Code__c", "type": "text", "length": 10}]}], tmp_path / "x")
    save_many(world.admin, "Vault__c", [{"Name": "v1", "Code__c": "k"}])
    a1 = world.ctx("a1")
    assert not a1.actor.access.can("Vault__c", "read")
    assert world.visible("a1", "Vault__c") == set()
    with pytest.raises(BatchError):
        save_many(a1, "Vault__c", [{"Name": "v2"}])
    # Granting the object through a permission set group does not grant the new field.
    with world.admin.db.transaction() as conn:
        deploy_permission_set(world.admin, conn, parse_permission_set(
            {"name": "Vault_Reader", "objects": {"Vault__c": ["read"]}}))
    psg = save_many(world.admin, "PermissionSetGroup", [{"Name": "Vault", "DeveloperName": "Vault"}])[0].id
    with world.admin.db.read() as conn:
        ps = conn.execute(sa.text(f"SELECT id FROM {world.admin.schema(conn).get_object('PermissionSet').table} "
                                  "WHERE name = 'Vault_Reader'")).scalar_one()
    save_many(world.admin, "PermissionSetGroupComponent", [{"PermissionSetGroupId": psg,
                                                            "PermissionSetId": ids.encode("0PS", ps)}])
    save_many(world.admin, "PermissionSetAssignment", [{"AssigneeId": world.users["a1"], "PermissionSetGroupId": psg}])
    a1 = world.ctx("a1")
    assert a1.actor.access.can("Vault__c", "read") and not a1.actor.access.can("Vault__c", "create")
    assert world.visible("a1", "Vault__c") == {"v1"}
    assert not a1.actor.access.field_readable("Vault__c", "Code__c")
    got = read_record(a1, "Vault__c", rid(world, "Vault__c", "v1"))
    assert "Code__c" not in got and got["Name"] == "v1"
    with world.admin.db.transaction() as conn:
        assign_permission_set(world.admin, conn, world.users["a2"], "Vault_Reader")
    assert world.ctx("a2").actor.access.can("Vault__c", "read")


def test_audit_log(world: Org) -> None:
    case = rid(world, "Case_File__c", "case-a1")
    save_many(world.ctx("a1"), "Case_File__c", [{"Id": case, "Secret__c": "polygraph: pass"}])
    read_record(world.ctx("a1"), "Case_File__c", case)
    read_record(world.ctx("a1"), "Case_File__c", case, ["Name"])  # no sensitive field, no entry
    system_context(world.ctx("a1"), "nightly rollup")
    recalculate_sharing(world.admin, lambda step, done, total: None)
    with world.admin.db.read() as conn:
        reads = audit_rows(conn, action="sensitive_read")
        sys_uses = audit_rows(conn, action="system_context")
        perms = audit_rows(conn, action="permission_change")
    a1 = ids.decode(world.users["a1"], "005")
    assert [(r["actor_id"], r["object"], r["record_id"], orjson.loads(r["detail"])) for r in reads] == [
        (a1, "Case_File__c", ids.split(case)[1],
         {"fields": ["Secret__c"], "count": 1, "ids": [case], "surface": "record"})]
    assert sys_uses and sys_uses[-1]["on_behalf_of_id"] == a1 and "nightly rollup" in str(sys_uses[-1]["detail"])
    assert any(r["object"] == "UserRole" for r in perms)
    for stmt in (sa.update(S.audit).values(result="tampered"), sa.delete(S.audit)):
        with pytest.raises(sa.exc.DatabaseError), world.admin.db.transaction() as conn:
            conn.execute(stmt)
    with world.admin.db.read() as conn:
        assert audit_rows(conn, action="sensitive_read") == reads


def test_recalculation_reports_progress(world: Org) -> None:
    seen: list[tuple[str, int, int]] = []
    result = recalculate_sharing(world.admin, lambda step, done, total: seen.append((step, done, total)))
    assert result.roles == 4 and {s for s, _, _ in seen} == {"roles", "groups", "members", "lineage", "shares"}
    with pytest.raises(KeelError):
        recalculate_sharing(world.ctx("a1"))


def test_share_sobjects(world: Org) -> None:
    """Shares are records: written through the lifecycle, queryable, visible only with their parent."""
    from keel.services.query import query

    case = rid(world, "Case_File__c", "case-a1")
    a1, aud = world.ctx("a1"), world.ctx("aud")
    share = save_many(a1, "Case_File__Share", [{"ParentId": case, "UserOrGroupId": world.users["aud"],
                                                "AccessLevel": "Read"}])[0].id
    assert share and "case-a1" in world.visible("aud")
    rows = query(aud, "SELECT ParentId, UserOrGroupId, AccessLevel, RowCause FROM Case_File__Share")["records"]
    assert [(r["ParentId"], r["AccessLevel"], r["RowCause"]) for r in rows] == [(case, "Read", "Manual")]
    assert query(world.ctx("a2"), "SELECT Id FROM Case_File__Share")["records"] == []
    for who, draft in (("aud", {"AccessLevel": "Edit"}), ("a2", {"AccessLevel": "Read"})):
        with pytest.raises(KeelError):  # read access is not full access; a2 cannot even see the record
            save_many(world.ctx(who), "Case_File__Share", [{"ParentId": case, "UserOrGroupId": world.users[who],
                                                            **draft}])
    with pytest.raises(KeelError):  # programmatic row causes need Modify All Data
        save_many(a1, "Case_File__Share", [{"ParentId": case, "UserOrGroupId": world.users["a2"],
                                            "AccessLevel": "Read", "RowCause": "Team"}])
    save_many(a1, "Case_File__Share", [{"Id": share, "AccessLevel": "Edit"}])
    save_many(aud, "Case_File__c", [{"Id": case, "Amount__c": 7}])
    from keel.records import delete_many
    delete_many(a1, "Case_File__Share", [share])
    assert "case-a1" not in world.visible("aud")
    share_record(a1, "Case_File__c", case, world.users["aud"], "Read")
    save_many(a1, "Case_File__c", [{"Id": case, "OwnerId": world.users["a2"]}])
    assert "case-a1" not in world.visible("aud")
    assert query(world.admin, "SELECT Id FROM Case_File__Share WHERE RowCause = 'Manual'")["records"] == []
