"""Fixtures for operations tests: a populated organisation and target databases on either backend."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path

from keel.context import Context
from keel.records import save_many
from keel.records.delete import delete_many
from keel.services.metadata import apply_package

EVERY_TYPE = Path(__file__).parent.parent / "fixtures" / "every_type"


def populate(ctx: Context) -> None:
    """Standard and custom records with every field type, lookups, master-detail, history and the recycle bin."""
    apply_package(ctx, EVERY_TYPE)
    accounts = [r.id for r in save_many(ctx, "Account", [{"Name": "Acme"}, {"Name": "Globex, \"Inc\"\nNorth"}])]
    save_many(ctx, "Contact", [{"LastName": "Ng", "AccountId": accounts[0], "Email": "ng@example.com"}])
    positions = [r.id for r in save_many(ctx, "Position__c", [{
        "Name": f"Officer {i}", "Department__c": "Field", "Max_Pay__c": Decimal("123456.78") + i,
        "Job_Code__c": f"JC-{i}", "Summary__c": "=cmd|' /C calc'!A0", "Description__c": "long\ntext ü",
        "Contact_Email__c": "hr@example.com", "Contact_Phone__c": "+1 555 0100", "Posting_Url__c": "https://x.y",
        "Headcount__c": 3, "Bonus_Rate__c": Decimal("12.5"), "Remote__c": i % 2 == 0,
        "Open_Date__c": date(2026, 1, 1 + i), "Review_At__c": datetime(2026, 2, 3, 4, 5, 6, 789000),
        "Shift_Start__c": time(8, 30), "Languages__c": "English;Spanish", "Account__c": accounts[i % 2],
    } for i in range(4)])]
    save_many(ctx, "Posting__c", [{"Name": f"P{i}", "Position__c": p, "Channel__c": "Web"}
                                for i, p in enumerate(positions + positions)])
    save_many(ctx, "Position__c", [{"Id": positions[0], "Max_Pay__c": Decimal("1.5"), "Department__c": "Support"}])
    delete_many(ctx, "Position__c", [str(positions[3])])


