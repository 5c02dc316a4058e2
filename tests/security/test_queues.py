"""Queues own records (issue 5): a Group of type Queue with QueueSobject rows; its members (users, groups, roles)
and the managers above them get full access to what it owns; a member accepts a record by taking ownership; a
queue that does not support the object is refused with a stable code."""

from __future__ import annotations

import pytest

from keel.errors import BatchError
from keel.records import save_many
from keel.services.query import query
from keel.storage import ids
from tests.security.test_sharing import Org, rid, role_id, world  # noqa: F401  (``world`` is the fixture)


def make_queue(w: Org, name: str, objects: list[str], members: list[tuple[str, bool]]) -> str:
    """A queue supporting ``objects`` whose members are user or role ids (bool: include subordinates)."""
    queue = save_many(w.admin, "Group", [{"Name": name, "DeveloperName": name.replace(" ", "_"),
                                          "Type": "Queue"}])[0].id
    assert queue
    if objects:
        save_many(w.admin, "QueueSobject", [{"QueueId": queue, "SobjectType": o} for o in objects])
    if members:
        save_many(w.admin, "GroupMember", [{"GroupId": queue, "UserOrGroupId": m, "IncludeSubordinates": s}
                                           for m, s in members])
    return queue


def test_queue_members_and_their_managers_own_queue_records(world: Org) -> None:  # noqa: F811
    queue = make_queue(world, "Intake", ["Case_File__c", "Memo__c"], [(world.users["a1"], False)])
    case = rid(world, "Case_File__c", "case-aud")
    save_many(world.ctx("aud"), "Case_File__c", [{"Id": case, "OwnerId": queue}])
    save_many(world.ctx("aud"), "Memo__c", [{"Id": rid(world, "Memo__c", "memo-aud"), "OwnerId": queue}])
    # OwnerId reads back as the queue's id on every read path, and filters by it.
    got = query(world.admin, f"SELECT Name, OwnerId FROM Case_File__c WHERE OwnerId = '{queue}'")["records"]
    assert [(r["Name"], r["OwnerId"]) for r in got] == [("case-aud", queue)]
    assert query(world.admin, f"SELECT Name FROM Case_File__c WHERE OwnerId IN ('{queue}', "
                              f"'{world.users['a2']}') ORDER BY Name")["records"][1]["Name"] == "case-aud"
    assert query(world.admin, f"SELECT Name FROM Case_File__c WHERE OwnerId = '{world.users['aud']}'")[
        "records"] == []
    # Owner joins User only (a documented limit): a queue-owned record's Owner path is null.
    assert query(world.admin, f"SELECT Owner.Name FROM Case_File__c WHERE Id = '{case}'")["records"][0][
        "Owner"] is None
    # The former owner lost the record; the member and the managers above the member see it.
    assert "case-aud" not in world.visible("aud")
    assert world.visible("a1") == {"case-a1", "case-aud"}
    assert "case-aud" in world.visible("mgr") and "case-aud" in world.visible("dir")
    assert "case-aud" not in world.visible("a2")  # a peer of the member is not a member
    assert world.visible("a1", "Memo__c") == {"memo-a1", "memo-aud"}
    assert "memo-aud" not in world.visible("mgr", "Memo__c")  # no access through hierarchies on Memo__c
    # Members have full access: edit and share; then one accepts the record by taking ownership.
    save_many(world.ctx("a1"), "Case_File__c", [{"Id": case, "Amount__c": 7}])
    save_many(world.ctx("a1"), "Case_File__c", [{"Id": case, "OwnerId": world.users["a1"]}])
    assert world.visible("a1") == {"case-a1", "case-aud"} and "case-aud" not in world.visible("aud")
    assert query(world.admin, f"SELECT OwnerId FROM Case_File__c WHERE Id = '{case}'")["records"][0][
        "OwnerId"] == world.users["a1"]
    with pytest.raises(BatchError):  # a2 is no member: the queue's records are not theirs to edit
        save_many(world.ctx("a2"), "Memo__c", [{"Id": rid(world, "Memo__c", "memo-aud"), "Name": "mine"}])


def test_role_members_and_leaving_the_queue(world: Org) -> None:  # noqa: F811
    """A role with subordinates as a member: everyone in it and below; removing the membership takes the
    access away at once (the closure is rebuilt in the same transaction)."""
    queue = make_queue(world, "Field desk", ["Case_File__c"], [(role_id(world, "Manager"), True)])
    case = rid(world, "Case_File__c", "case-aud")
    save_many(world.ctx("aud"), "Case_File__c", [{"Id": case, "OwnerId": queue}])
    for who in ("mgr", "a1", "a2", "dir"):
        assert "case-aud" in world.visible(who), who
    member = query(world.admin, f"SELECT Id FROM GroupMember WHERE GroupId = '{queue}'")["records"][0]["Id"]
    from keel.records import delete_many
    delete_many(world.admin, "GroupMember", [member])
    for who in ("mgr", "a1", "a2", "dir", "aud"):
        assert "case-aud" not in world.visible(who), who


def test_queue_must_support_the_object(world: Org) -> None:  # noqa: F811
    queue = make_queue(world, "Memos only", ["Memo__c"], [(world.users["a1"], False)])
    group = save_many(world.admin, "Group", [{"Name": "Plain", "DeveloperName": "Plain"}])[0].id
    case = rid(world, "Case_File__c", "case-a1")
    for owner in (queue, group):
        with pytest.raises(BatchError) as e:
            save_many(world.ctx("a1"), "Case_File__c", [{"Id": case, "OwnerId": owner}])
        err = e.value.results[0].errors[0]
        assert (err.code, err.fields) == ("INVALID_CROSS_REFERENCE_KEY", ("OwnerId",)), err
        assert "QueueSobject" in err.message
    with pytest.raises(BatchError) as e:  # and on create
        save_many(world.ctx("a1"), "Case_File__c", [{"Name": "new", "OwnerId": queue}])
    assert e.value.results[0].errors[0].code == "INVALID_CROSS_REFERENCE_KEY"
    # Partial saves fail only the rows naming the queue.
    res = save_many(world.ctx("a1"), "Case_File__c", [{"Name": "ok"}, {"Name": "bad", "OwnerId": queue}],
                    all_or_none=False)
    assert res[0].success and not res[1].success
    # Adding the object to the queue makes it a valid owner; QueueSobject is queryable like Group.
    save_many(world.admin, "QueueSobject", [{"QueueId": queue, "SobjectType": "Case_File__c"}])
    save_many(world.ctx("a1"), "Case_File__c", [{"Id": case, "OwnerId": queue}])
    rows = query(world.admin, f"SELECT SobjectType FROM QueueSobject WHERE QueueId = '{queue}' "
                              "ORDER BY SobjectType")["records"]
    assert [r["SobjectType"] for r in rows] == ["Case_File__c", "Memo__c"]
    with pytest.raises(BatchError):  # only administrators (Manage Users) write queue set-up
        save_many(world.ctx("a1"), "QueueSobject", [{"QueueId": queue, "SobjectType": "Memo__c"}])
    assert ids.split(queue)[0] == "00G"
