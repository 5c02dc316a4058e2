"""The Recruiting app ships a queue (app.yaml ``queues:``): new interviews can wait in the Interview Pool, its
members see and accept them, other interviewers do not see them; reinstalling keeps one queue."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keel.context import Context
from keel.errors import BatchError
from keel.records import save_many
from keel.services.apps import install_app
from keel.services.query import query
from keel.services.security import user_context
from keel.storage import ids
from tests.apps.conftest import uid
from tests.apps.test_recruiting import setup_pipeline


def test_interview_pool(apps: Context, persona: Callable[..., Context]) -> None:
    pools = query(apps, "SELECT Id, Type FROM Group WHERE Name = 'Interview Pool'")["records"]
    assert [p["Type"] for p in pools] == ["Queue"]
    pool = pools[0]["Id"]
    assert [r["SobjectType"] for r in query(apps, f"SELECT SobjectType FROM QueueSobject WHERE QueueId = '{pool}'")[
        "records"]] == ["Interview__c"]
    member = persona("pooled", "Recruiting_Interviewer")
    other = persona("other", "Recruiting_Interviewer")
    save_many(apps, "GroupMember", [{"GroupId": pool, "UserOrGroupId": uid(member)}])
    member = user_context(apps, uid(member))  # the next request reads the new membership
    rec = persona("rec", "Recruiting_Recruiter")
    pos, _, app = setup_pipeline(apps, uid(rec), uid(rec))
    iv = save_many(apps, "Interview__c", [{"Job_Application__c": app, "OwnerId": pool}])[0].id
    assert [r["OwnerId"] for r in query(member, "SELECT OwnerId FROM Interview__c")["records"]] == [pool]
    assert query(other, "SELECT Id FROM Interview__c")["records"] == []
    save_many(member, "Interview__c", [{"Id": iv, "OwnerId": uid(member)}])  # accept it
    assert query(apps, f"SELECT OwnerId FROM Interview__c WHERE Id = '{iv}'")["records"][0]["OwnerId"] == uid(member)
    with pytest.raises(BatchError):  # the pool owns interviews only
        save_many(apps, "Position__c", [{"Id": pos, "OwnerId": pool}])
    install_app(apps, "recruiting")  # an upgrade finds the queue and keeps its members
    assert len(query(apps, "SELECT Id FROM Group WHERE Name = 'Interview Pool'")["records"]) == 1
    assert ids.split(pool)[0] == "00G"
    assert query(apps, f"SELECT UserOrGroupId FROM GroupMember WHERE GroupId = '{pool}' AND UserOrGroupId = "
                       f"'{uid(member)}'")["records"]
