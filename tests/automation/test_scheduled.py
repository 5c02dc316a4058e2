"""Scheduled paths under a controllable clock: fire at the right time, move when the date changes, cancel when
the condition stops holding."""

from __future__ import annotations

import datetime as dt

from keel.context import Context
from keel.records import save_many
from keel.services.automation import deliver_pending, fire_due_scheduled, pending_scheduled
from keel.services.query import query
from tests.automation.conftest import Clock, Inbox


def test_scheduled_path_fires_moves_and_cancels(auto: Context, clock: Clock, smtp: tuple[Inbox, int]) -> None:
    a = save_many(auto, "Applicant__c", [{"Name": "Dee", "Stage__c": "Hired", "Start_Date__c": "2026-03-10"}])[0].id
    due = {r["path"]: r["due_at"] for r in pending_scheduled(auto)}
    assert due == {"Two_Days_Before": dt.datetime(2026, 3, 8), "After_Hire": dt.datetime(2026, 3, 2, 12)}
    # the date moves: the due row moves with it
    save_many(auto, "Applicant__c", [{"Id": a, "Start_Date__c": "2026-03-20"}])
    due = {r["path"]: r["due_at"] for r in pending_scheduled(auto)}
    assert due["Two_Days_Before"] == dt.datetime(2026, 3, 18)
    clock.advance(hours=2, minutes=59)
    assert fire_due_scheduled(auto) == 0
    clock.advance(minutes=1)
    assert fire_due_scheduled(auto) == 1
    rec = query(auto, f"SELECT Flag__c FROM Applicant__c WHERE Id = '{a}'")["records"][0]
    assert rec["Flag__c"] == "welcomed"
    clock.now = dt.datetime(2026, 3, 17, 23, 59)
    assert fire_due_scheduled(auto) == 0
    clock.now = dt.datetime(2026, 3, 18, 0, 0)
    assert fire_due_scheduled(auto) == 1
    deliver_pending(auto)
    assert [m["Subject"] for m in smtp[0].messages] == ["Dee starts soon"]
    assert pending_scheduled(auto) == []


def test_scheduled_path_cancelled_when_condition_stops(auto: Context, clock: Clock) -> None:
    a = save_many(auto, "Applicant__c", [{"Name": "Eve", "Stage__c": "Hired", "Start_Date__c": "2026-04-01"}])[0].id
    assert len(pending_scheduled(auto)) == 2
    save_many(auto, "Applicant__c", [{"Id": a, "Stage__c": "Rejected"}])
    assert pending_scheduled(auto) == []
    clock.now = dt.datetime(2026, 5, 1)
    assert fire_due_scheduled(auto) == 0
