"""Record-triggered flows: conditions, before-save field updates, after-save actions, rollback, loops."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.errors import BatchError, KeelError
from keel.records import delete_many, save_many
from keel.services.automation import deliver_pending
from keel.services.query import query
from keel.storage import system as S
from tests.automation.conftest import Hooks, Inbox


def outbox_rows(ctx: Context, topic: str) -> list[dict]:
    with ctx.db.read() as conn:
        o = S.outbox
        return [dict(r) for r in conn.execute(sa.select(o).where(o.c.topic == topic).order_by(o.c.id)).mappings()]


def test_offer_flow_sets_field_emails_and_calls_webhook(auto: Context, smtp: tuple[Inbox, int],
                                                         receiver: tuple[Hooks, str]) -> None:
    pos = save_many(auto, "Position__c", [{"Name": "Officer"}])[0].id
    app = save_many(auto, "Applicant__c", [{"Name": "Ann", "Email__c": "ann@example.com", "Stage__c": "Applied",
                                             "Position__c": pos, "Ssn__c": "123-45-6789"}])[0].id
    assert outbox_rows(auto, "email") == []
    save_many(auto, "Applicant__c", [{"Id": app, "Stage__c": "Offer"}])
    rec = query(auto, f"SELECT Flag__c FROM Applicant__c WHERE Id = '{app}'")["records"][0]
    assert rec["Flag__c"] == "offer for Ann"
    assert len(outbox_rows(auto, "email")) == 1 and len(outbox_rows(auto, "webhook")) == 1
    # only when changed to meet the condition: a second save while still Offer sends nothing
    save_many(auto, "Applicant__c", [{"Id": app, "Email__c": "ann2@example.com"}])
    assert len(outbox_rows(auto, "email")) == 1
    stats = deliver_pending(auto)
    assert stats.delivered == 2
    inbox, _ = smtp
    msg = inbox.messages[0]
    assert msg["Subject"] == "Offer: Officer" and msg["To"] == "ann@example.com"
    key = outbox_rows(auto, "email")[0]["idempotency_key"]
    assert msg["Message-ID"] == f"<{key}@keel>" and msg["X-Keel-Idempotency-Key"] == key
    hooks, _ = receiver
    headers, body = hooks.requests[0]
    from keel.automation.senders import verify

    assert verify("s3cret", headers["X-Keel-Signature"], body)
    assert not verify("wrong", headers["X-Keel-Signature"], body)
    assert headers["Idempotency-Key"] == outbox_rows(auto, "webhook")[0]["idempotency_key"]
    assert b'"Stage__c":"Offer"' in body


def test_child_create_and_failing_child_rolls_back_everything(auto: Context) -> None:
    ok, bad = (r.id for r in save_many(auto, "Applicant__c", [
        {"Name": "Bob", "Stage__c": "Applied", "Email__c": "b@example.com"},
        {"Name": "Broken Bea", "Stage__c": "Applied", "Email__c": "bea@example.com"}]))
    save_many(auto, "Applicant__c", [{"Id": ok, "Stage__c": "Interview"}])
    kids = query(auto, f"SELECT Name, Detail__c FROM Condition__c WHERE Applicant__c = '{ok}'")["records"]
    assert [k["Detail__c"] for k in kids] == ["Prepare interview for Bob"]
    before = len(outbox_rows(auto, "change"))
    with pytest.raises(BatchError) as e:  # the child misses a required field: the whole save rolls back
        save_many(auto, "Applicant__c", [{"Id": bad, "Stage__c": "Offer"}, {"Id": bad, "Stage__c": "Interview"}][1:])
    assert e.value.code == "CANNOT_EXECUTE_FLOW_TRIGGER" and "REQUIRED_FIELD_MISSING" in e.value.message
    rec = query(auto, f"SELECT Stage__c FROM Applicant__c WHERE Id = '{bad}'")["records"][0]
    assert rec["Stage__c"] == "Applied"
    assert len(outbox_rows(auto, "change")) == before


def test_failing_action_sends_nothing(auto: Context, smtp: tuple[Inbox, int]) -> None:
    """One batch: the Offer row queues an email, the Interview row's child fails; nothing commits or is sent."""
    a, b = (r.id for r in save_many(auto, "Applicant__c", [
        {"Name": "Cy", "Stage__c": "Applied", "Email__c": "cy@example.com"},
        {"Name": "Broken Bo", "Stage__c": "Applied", "Email__c": "bo@example.com"}]))
    with pytest.raises(BatchError):
        save_many(auto, "Applicant__c", [{"Id": a, "Stage__c": "Offer"}, {"Id": b, "Stage__c": "Interview"}])
    assert outbox_rows(auto, "email") == []
    deliver_pending(auto)
    assert smtp[0].messages == []


def test_note_and_loop_error(auto: Context) -> None:
    acc = save_many(auto, "Account", [{"Name": "Helping Hands", "Type": "Charity"}])[0].id
    notes = query(auto, f"SELECT Name, Body FROM Note WHERE ParentId = '{acc}'")["records"]
    assert [(n["Name"], n["Body"]) for n in notes] == [("Welcome Helping Hands", "Charity onboarded.")]
    with pytest.raises(KeelError) as e:
        save_many(auto, "Account", [{"Id": acc, "Description": "loop", "NumberOfEmployees": 1}])
    assert e.value.code == "AUTOMATION_LOOP"
    rec = query(auto, f"SELECT NumberOfEmployees FROM Account WHERE Id = '{acc}'")["records"][0]
    assert rec["NumberOfEmployees"] is None


def test_delete_flow(auto: Context, receiver: tuple[Hooks, str]) -> None:
    pos = save_many(auto, "Position__c", [{"Name": "Gone"}])[0].id
    assert pos
    delete_many(auto, "Position__c", [pos])
    assert len(outbox_rows(auto, "webhook")) == 1
    deliver_pending(auto)
    assert b'"Gone"' in receiver[0].requests[0][1]
