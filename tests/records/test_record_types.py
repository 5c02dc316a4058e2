"""Record types: declared in YAML, stored as RecordType rows by the deploy, defaulted and enforced by the lifecycle,
and reachable from SOQL through ``RecordType.DeveloperName``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from keel.context import Context
from keel.errors import BatchError, MetadataError
from keel.metadata.package import parse_object
from keel.records import delete_many, save_many
from keel.services.metadata import apply_package
from keel.services.query import query
from keel.services.security import user_context
from keel.services.users import create_user
from tests.conftest import ADMIN


def ticket(types: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "Ticket__c", "fields": [
        {"name": "Kind__c", "type": "picklist", "values": ["Bug", "Feature", "Refund", "Question"]},
        {"name": "Tags__c", "type": "multipicklist", "values": ["UI", "API", "Billing"]},
    ], "record_types": types}


SUPPORT = {"name": "Support", "label": "Support Case", "default": True,
           "picklists": {"Kind__c": {"values": ["Bug", "Question"], "default": "Question"},
                         "Tags__c": ["UI", "API"]}}
BILLING = {"name": "Billing", "label": "Billing", "picklists": {"Kind__c": ["Refund", "Question"]}}


def deploy(org: Context, tmp_path: Path, *docs: dict[str, Any]) -> None:
    for doc in docs:
        (tmp_path / f"{doc['object']}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    apply_package(org, tmp_path)


def codes(exc: BatchError) -> list[str]:
    return [e.code for r in exc.results for e in r.errors]


@pytest.mark.parametrize(("types", "needle"), [
    ([{**SUPPORT, "picklists": {"Kind__c": ["Bug", "Chore"]}}], "'Chore' is not a value"),
    ([SUPPORT, {**BILLING, "default": True}], "at most one record type is the default"),
    ([{**SUPPORT, "picklists": {"Name": ["x"]}}], "'Name' is not a picklist field"),
    ([SUPPORT, {**SUPPORT, "label": "Again"}], "developer name twice"),
    ([{"name": "Master", "label": "M"}], "not Master"),
    ([{**SUPPORT, "picklists": {"Kind__c": {"values": ["Bug"], "default": "Refund"}}}], "default 'Refund'"),
])
def test_declarations_are_checked_at_plan_time(types: list[dict[str, Any]], needle: str) -> None:
    with pytest.raises(MetadataError) as e:
        parse_object(ticket(types))
    assert needle in str(e.value)


def test_record_types_are_rows_defaulted_and_enforced(org: Context, tmp_path: Path) -> None:
    deploy(org, tmp_path, ticket([SUPPORT, BILLING]),
           {"object": "Note__c", "record_types": [{"name": "Support", "label": "Other object's Support"}]})
    rows = query(org, "SELECT Id, DeveloperName, SobjectType, Name, IsActive FROM RecordType ORDER BY Name")
    by_key = {(r["SobjectType"], r["DeveloperName"]): r for r in rows["records"]}
    assert set(by_key) == {("Ticket__c", "Support"), ("Ticket__c", "Billing"), ("Note__c", "Support")}
    assert all(r["Id"].startswith("012") and r["IsActive"] for r in rows["records"])
    support, billing = by_key["Ticket__c", "Support"]["Id"], by_key["Ticket__c", "Billing"]["Id"]
    foreign = by_key["Note__c", "Support"]["Id"]

    # a new record gets the default record type and that type's picklist default
    made = save_many(org, "Ticket__c", [{"Name": "t1"}, {"Name": "t2", "RecordTypeId": billing, "Kind__c": "Refund"}])
    got = query(org, f"SELECT Name, RecordTypeId, Kind__c, RecordType.DeveloperName FROM Ticket__c "
                     f"WHERE Id = '{made[0].id}'")["records"][0]
    assert (got["RecordTypeId"], got["Kind__c"], got["RecordType"]["DeveloperName"]) == (support, "Question",
                                                                                         "Support")
    refunds = query(org, "SELECT Name FROM Ticket__c WHERE RecordType.DeveloperName = 'Billing'")["records"]
    assert [r["Name"] for r in refunds] == ["t2"]

    # a value the record's type does not offer is refused, on create and on update, for multi-select too
    for draft in ({"Name": "x", "Kind__c": "Refund"}, {"Name": "x", "Tags__c": "UI;Billing"},
                  {"Id": made[0].id, "Kind__c": "Feature"}, {"Id": made[1].id, "RecordTypeId": support}):
        with pytest.raises(BatchError) as e:
            save_many(org, "Ticket__c", [draft])
        assert codes(e.value) == ["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"], draft
        assert "not available for record type" in str(e.value.results[0].errors[0].message)
    # moving to a type that offers the value is fine
    save_many(org, "Ticket__c", [{"Id": made[1].id, "RecordTypeId": support, "Kind__c": "Bug"}])

    # another object's record type, or an id that is no record type, is a bad cross reference
    with pytest.raises(BatchError) as e:
        save_many(org, "Ticket__c", [{"Name": "x", "RecordTypeId": foreign}])
    assert codes(e.value) == ["INVALID_CROSS_REFERENCE_KEY"]
    assert "is not a record type of Ticket" in e.value.results[0].errors[0].message

    # dropping a type from the YAML deactivates its row (records keep it); new records cannot pick it
    deploy(org, tmp_path, ticket([SUPPORT]))
    assert query(org, "SELECT IsActive FROM RecordType WHERE Id = '" + billing + "'")["records"][0]["IsActive"] is False
    with pytest.raises(BatchError) as e:
        save_many(org, "Ticket__c", [{"Name": "x", "RecordTypeId": billing}])
    assert codes(e.value) == ["INVALID_CROSS_REFERENCE_KEY"] and "is inactive" in str(e.value.results[0].errors[0])
    # … and bringing it back reactivates the same row
    deploy(org, tmp_path, ticket([SUPPORT, BILLING]))
    assert query(org, "SELECT Id FROM RecordType WHERE IsActive = true AND SobjectType = 'Ticket__c' "
                      "AND DeveloperName = 'Billing'")["records"][0]["Id"] == billing


def test_record_type_rows_are_metadata_not_data(org: Context, tmp_path: Path) -> None:
    deploy(org, tmp_path, ticket([SUPPORT]))
    admin = user_context(org, query(org, f"SELECT Id FROM User WHERE Username = '{ADMIN}'")["records"][0]["Id"])
    with pytest.raises(BatchError) as e:
        save_many(admin, "RecordType", [{"Name": "Sneaky", "DeveloperName": "Sneaky", "SobjectType": "Ticket__c"}])
    assert codes(e.value) == ["INSUFFICIENT_ACCESS_OR_READONLY"]
    support = query(org, "SELECT Id FROM RecordType WHERE SobjectType = 'Ticket__c'")["records"][0]["Id"]
    with pytest.raises(BatchError) as e:
        delete_many(admin, "RecordType", [support])
    assert codes(e.value) == ["INSUFFICIENT_ACCESS_OR_READONLY"]
    # and every user can read them, as the SOQL parent path needs
    uid = create_user(org, username="u@rt.test", password=None, last_name="U", email="u@rt.test")
    rows = query(user_context(org, uid), "SELECT DeveloperName FROM RecordType WHERE SobjectType = 'Ticket__c'")
    assert [r["DeveloperName"] for r in rows["records"]] == ["Support"]
