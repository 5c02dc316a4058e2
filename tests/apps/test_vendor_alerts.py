"""Vendor expiry alerts: the 90/60/30/7-day scheduled paths of contracts (from the current end date, options
included) and insurance certificates fire on their day, under a controllable clock, and land in the outbox."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from keel.context import Context
from keel.records import save_many
from keel.services.apps import install_app
from keel.services.automation import fire_due_scheduled, pending_scheduled, wire_automation
from keel.services.query import query
from keel.services.users import create_user
from tests.apps.conftest import outbox_emails
from tests.automation.conftest import Clock

START = dt.datetime.combine(dt.date.today(), dt.time(9))


def test_contract_and_certificate_expiry_alerts(org: Context) -> None:
    clock = Clock(START)
    ctx = replace(org, clock=clock)
    install_app(ctx, "vendors")
    ctx = wire_automation(ctx)
    officer = create_user(ctx, username="co@test.local", password=None, last_name="Officer", email="co@test.local")
    v = save_many(ctx, "Account", [{"Name": "Salt Co", "Type": "Vendor", "Vendor_Status__c": "Active"}])[0].id
    end = START.date() + dt.timedelta(days=100)
    cert = save_many(ctx, "Insurance_Certificate__c", [{
        "Vendor__c": v, "Coverage_Type__c": "General Liability", "Status__c": "Verified", "OwnerId": officer,
        "Each_Occurrence_Limit__c": 1000000, "Expiration_Date__c": str(end)}])[0].id
    # the base period ended long ago; one option year exercised runs the contract to its current end date, which
    # is what the alerts count down to
    base_end = end + dt.timedelta(days=20 - 365)
    try:
        contract_end = base_end.replace(year=base_end.year + 1)
    except ValueError:  # 29 February: ADDMONTHS lands on the 28th
        contract_end = base_end.replace(year=base_end.year + 1, day=28)
    c = save_many(ctx, "Contract__c", [{
        "Vendor__c": v, "Title__c": "Road salt", "Contracting_Officer__c": officer, "Options_Exercised__c": 1,
        "Start_Date__c": str(base_end - dt.timedelta(days=400)), "End_Date__c": str(base_end),
        "Option_Periods__c": 2, "Option_Period_Months__c": 12}])[0].id
    save_many(ctx, "Contract__c", [{"Id": c, "Status__c": "In Approval"}])
    save_many(ctx, "Contract__c", [{"Id": c, "Status__c": "Activated", "Approved__c": True}])
    midnight = dt.time()
    expected: list[tuple[dt.datetime, str | None]] = sorted(
        [(dt.datetime.combine(contract_end - dt.timedelta(days=d), midnight), f"ends in {d} days")
         for d in (90, 60, 30, 7)] +
        [(dt.datetime.combine(end - dt.timedelta(days=d), midnight), f"expires in {d} days") for d in (90, 60, 30, 7)] +
        [(dt.datetime.combine(end + dt.timedelta(days=1), midnight), None)])  # the day after, it is marked Expired
    assert [r["due_at"] for r in pending_scheduled(ctx)] == [when for when, _ in expected]
    for when, subject in expected:
        clock.now = when - dt.timedelta(minutes=1)
        sent = len(outbox_emails(ctx))
        assert fire_due_scheduled(ctx) == 0
        clock.now = when
        assert fire_due_scheduled(ctx) == 1
        mails = outbox_emails(ctx)[sent:]
        if subject is None:
            assert mails == []
            status = query(ctx, f"SELECT Status__c FROM Insurance_Certificate__c WHERE Id = '{cert}'")["records"][0]
            assert status["Status__c"] == "Expired"
        else:
            (mail,) = mails
            assert subject in mail["subject"] and mail["to"] == ["co@test.local"], mail
    # the contract alert names the current end date (the option year), not the base period's
    assert str(contract_end) in outbox_emails(ctx)[-1]["body"]
    assert pending_scheduled(ctx) == []
