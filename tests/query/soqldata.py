"""Test data for the SOQL tests: a schema (standard objects plus a custom object), and the same seeded rows
in SQLite and (when KEEL_TEST_PG is set) PostgreSQL. Seed rows are addressed by labels such as ``acc1``."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

from keel.errors import MetadataError
from keel.metadata.model import FieldDef, ObjectDef, PicklistValue, SchemaSnapshot
from keel.metadata.package import parse_object, parse_object_file
from keel.metadata.plan import plan
from keel.metadata.tables import index_specs, table_for
from keel.query import create_cursor_tables
from keel.storage import ddl, ids
from keel.storage.engine import Database

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2024, 6, 15, 12, 0, 0, tzinfo=dt.UTC)  # a Saturday

POSITION = {
    "object": "Position__c", "label": "Position", "plural_label": "Positions",
    "name_field": {"type": "text", "label": "Position Name"},
    "fields": [
        {"name": "Title__c", "type": "text", "indexed": True},
        {"name": "Account__c", "type": "lookup", "to": "Account", "relationship_name": "Account__r",
         "child_relationship_name": "Positions__r"},
        {"name": "Salary__c", "type": "currency", "precision": 18, "scale": 2},
        {"name": "Open__c", "type": "checkbox"},
        {"name": "Start__c", "type": "date"},
        {"name": "Tags__c", "type": "multipicklist", "values": ["Remote", "Senior", "Urgent"]},
        {"name": "Level__c", "type": "picklist", "values": ["Junior", "Mid", "Senior"]},
        {"name": "Secret__c", "type": "text"},
        {"name": "Notes__c", "type": "longtext", "length": 5000},
        {"name": "Interview__c", "type": "datetime"},
    ],
}


BASE_OBJECTS = ("Account", "Attachment", "Case", "Contact", "Event", "Lead", "Note", "Opportunity", "Organization",
                "Task", "User")


def standard_objects(names: tuple[str, ...] = BASE_OBJECTS) -> list[ObjectDef]:
    """The named standard objects plus everything they reference, parsed file by file, so another package being
    edited in the same tree cannot break these tests."""
    folder = ROOT / "src/keel/metadata/standard"
    parsed: dict[str, ObjectDef] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            o = parse_object_file(path, standard=True)
        except MetadataError:
            continue
        parsed[o.key] = o
    want: list[str] = [n.lower() for n in names]
    seen: set[str] = set()
    while want:
        k = want.pop()
        if k in seen:
            continue
        seen.add(k)
        for f in parsed[k].fields:
            want.extend(t.lower() for t in f.reference_to)
    return [o for k, o in parsed.items() if k in seen]


def make_schema() -> SchemaSnapshot:
    std = standard_objects()
    out: list[ObjectDef] = []
    for o in std:
        if o.api_name == "Contact":
            tags = FieldDef("Tags__c", "multipicklist", "Tags", column="",
                            values=tuple(PicklistValue(v, v) for v in ("a", "b", "c")))
            o = o.with_fields((*o.fields, tags))
        if o.api_name == "Opportunity":
            fields = tuple(replace(f, values=tuple(PicklistValue(v.value, "Won!" if v.value == "Closed Won"
                                                                  else v.label) for v in f.values))
                           if f.api_name == "StageName" else f for f in o.fields)
            o = o.with_fields(fields)
        out.append(o)
    out.append(parse_object(POSITION))
    return plan(SchemaSnapshot(0, ()), out).after


def _d(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)


def seed_rows() -> dict[str, list[dict[str, Any]]]:
    """Rows per object, with API-name keys; references are labels resolved at insert time."""
    return {
        "User": [
            {"_l": "u1", "FirstName": "Ann", "LastName": "Admin", "Username": "ann@x", "Email": "ann@x.org",
             "IsActive": True},
            {"_l": "u2", "FirstName": "Bob", "LastName": "Builder", "Username": "bob@x", "Email": "bob@x.org",
             "IsActive": True, "ManagerId": "u1"},
            {"_l": "u3", "FirstName": "Cy", "LastName": "Cole", "Username": "cy@x", "Email": "cy@x.org",
             "IsActive": False, "ManagerId": "u2"},
        ],
        "Account": [
            {"_l": "acc1", "Name": "Acme", "Type": "Customer", "Industry": "Technology", "AnnualRevenue": 1000000,
             "NumberOfEmployees": 100, "OwnerId": "u1", "BillingCity": "Paris", "Rating": "Hot",
             "CreatedDate": _d("2024-06-15T10:00:00")},
            {"_l": "acc2", "Name": "Globex", "Type": "Partner", "Industry": "Banking", "AnnualRevenue": 500000,
             "NumberOfEmployees": 50, "OwnerId": "u2", "BillingCity": "London", "Rating": "Warm",
             "CreatedDate": _d("2024-06-14T23:30:00")},
            {"_l": "acc3", "Name": "Initech", "Type": "Customer", "Industry": "Technology",
             "NumberOfEmployees": 20, "OwnerId": "u1", "Rating": "Cold", "CreatedDate": _d("2024-05-01T08:00:00"),
             "ParentId": "acc1"},
            {"_l": "acc4", "Name": "Umbrella", "Type": "Prospect", "Industry": "Healthcare",
             "AnnualRevenue": 2000000, "NumberOfEmployees": 500, "OwnerId": "u2", "BillingCity": "Raccoon City",
             "CreatedDate": _d("2023-12-31T23:00:00"), "ParentId": "acc1"},
            {"_l": "acc5", "Name": "O'Reilly Media", "Type": "Vendor", "Industry": "Retail", "AnnualRevenue": 75000,
             "NumberOfEmployees": 5, "OwnerId": "u1", "BillingCity": "paris", "Rating": "Warm",
             "CreatedDate": _d("2024-01-15T12:00:00")},
            {"_l": "acc6", "Name": "Deleted Co", "Type": "Customer", "OwnerId": "u1", "IsDeleted": True,
             "CreatedDate": _d("2024-02-01T00:00:00")},
            {"_l": "acc7", "Name": "acme labs", "Type": "Customer", "Industry": "Technology", "AnnualRevenue": 300000,
             "NumberOfEmployees": 30, "OwnerId": "u3", "BillingCity": "Berlin", "Rating": "Hot",
             "CreatedDate": _d("2024-06-10T09:00:00"), "ParentId": "acc2"},
        ],
        "Contact": [
            {"_l": "con1", "FirstName": "John", "LastName": "Smith", "AccountId": "acc1", "Email": "john@acme.com",
             "Title": "CEO", "Birthdate": dt.date(1970, 1, 1), "Tags__c": "a;b", "LeadSource": "Web",
             "OwnerId": "u1", "CreatedDate": _d("2024-06-01T00:00:00")},
            {"_l": "con2", "FirstName": "Jane", "LastName": "Doe", "AccountId": "acc1", "Email": "jane@acme.com",
             "Title": "CTO", "Birthdate": dt.date(1980, 5, 5), "Tags__c": "b;c", "LeadSource": "Phone Inquiry",
             "ReportsToId": "con1", "OwnerId": "u2", "CreatedDate": _d("2024-06-02T00:00:00")},
            {"_l": "con3", "FirstName": "Jim", "LastName": "Beam", "AccountId": "acc2", "Title": "Sales",
             "Tags__c": "c", "LeadSource": "Web", "OwnerId": "u2", "CreatedDate": _d("2024-06-03T00:00:00")},
            {"_l": "con4", "FirstName": "Ann", "LastName": "Other", "AccountId": "acc3", "Email": "ann@initech.com",
             "Birthdate": dt.date(1990, 12, 31), "OwnerId": "u1", "CreatedDate": _d("2024-06-04T00:00:00")},
            {"_l": "con5", "FirstName": "Zed", "LastName": "Null", "Email": "zed@x.org", "Title": "Intern",
             "Tags__c": "a", "LeadSource": "Other", "OwnerId": "u3", "CreatedDate": _d("2024-06-05T00:00:00")},
            {"_l": "con6", "FirstName": "Del", "LastName": "Eted", "AccountId": "acc1", "IsDeleted": True,
             "OwnerId": "u1", "CreatedDate": _d("2024-06-06T00:00:00")},
            {"_l": "con7", "FirstName": "Bo", "LastName": "O'Brien", "AccountId": "acc5", "Email": "bo@oreilly.com",
             "Title": "Editor", "Birthdate": dt.date(1985, 6, 15), "Tags__c": "a;c", "LeadSource": "Web",
             "OwnerId": "u1", "CreatedDate": _d("2024-06-07T00:00:00")},
        ],
        "Opportunity": [
            {"_l": "opp1", "Name": "Acme Deal", "AccountId": "acc1", "Amount": 10000, "CloseDate": dt.date(2024, 6, 30),
             "StageName": "Prospecting", "Probability": 10, "OwnerId": "u1"},
            {"_l": "opp2", "Name": "Acme Big", "AccountId": "acc1", "Amount": 250000,
             "CloseDate": dt.date(2024, 7, 15), "StageName": "Closed Won", "Probability": 100, "OwnerId": "u2"},
            {"_l": "opp3", "Name": "Globex Renewal", "AccountId": "acc2", "Amount": 50000,
             "CloseDate": dt.date(2024, 5, 31), "StageName": "Closed Lost", "Probability": 0, "OwnerId": "u2"},
            {"_l": "opp4", "Name": "Umbrella Pilot", "AccountId": "acc4", "CloseDate": dt.date(2024, 6, 15),
             "StageName": "Qualification", "Probability": 20, "OwnerId": "u1"},
            {"_l": "opp5", "Name": "Initech Upsell", "AccountId": "acc3", "Amount": 7500.5,
             "CloseDate": dt.date(2023, 12, 1), "StageName": "Closed Won", "Probability": 100, "OwnerId": "u1"},
        ],
        "Lead": [
            {"_l": "lead1", "FirstName": "Lisa", "LastName": "Lead", "Company": "LeadCo", "OwnerId": "u1"},
        ],
        "Case": [
            {"_l": "case1", "Name": "00001", "AccountId": "acc1", "ContactId": "con1", "Subject": "Broken",
             "OwnerId": "u1"},
            {"_l": "case2", "Name": "00002", "AccountId": "acc2", "ContactId": "con3", "Subject": "BROKEN",
             "OwnerId": "u1"},
        ],
        "Task": [
            {"_l": "task1", "Name": "Call John", "WhoId": "con1", "WhatId": "acc1",
             "ActivityDate": dt.date(2024, 6, 15), "Status": "Not Started", "Priority": "High", "OwnerId": "u1"},
            {"_l": "task2", "Name": "Email Globex", "WhatId": "acc2", "ActivityDate": dt.date(2024, 6, 20),
             "Status": "Completed", "Priority": "Normal", "OwnerId": "u2"},
            {"_l": "task3", "Name": "Follow deal", "WhoId": "con2", "WhatId": "opp2", "Status": "In Progress",
             "Priority": "Normal", "OwnerId": "u1"},
            {"_l": "task4", "Name": "Lonely task", "ActivityDate": dt.date(2024, 1, 1), "Status": "Completed",
             "Priority": "Low", "OwnerId": "u1"},
            {"_l": "task5", "Name": "Lead call", "WhoId": "lead1", "ActivityDate": dt.date(2024, 6, 14),
             "Status": "Not Started", "Priority": "Normal", "OwnerId": "u2"},
        ],
        "Position__c": [
            {"_l": "pos1", "Name": "POS-1", "Title__c": "Engineer", "Account__c": "acc1", "Salary__c": 120000,
             "Open__c": True, "Start__c": dt.date(2024, 7, 1), "Tags__c": "Remote;Senior", "Level__c": "Senior",
             "Secret__c": "s1", "OwnerId": "u1", "Interview__c": _d("2024-06-15T03:30:00")},
            {"_l": "pos2", "Name": "POS-2", "Title__c": "Designer", "Account__c": "acc1", "Salary__c": 90000.5,
             "Open__c": False, "Start__c": dt.date(2024, 6, 15), "Tags__c": "Remote", "Level__c": "Mid",
             "OwnerId": "u2", "Interview__c": _d("2024-06-16T01:00:00")},
            {"_l": "pos3", "Name": "POS-3", "Title__c": "Analyst", "Account__c": "acc2", "Open__c": True,
             "Level__c": "Junior", "OwnerId": "u2"},
            {"_l": "pos4", "Name": "POS-4", "Title__c": "engineer", "Account__c": "acc4", "Salary__c": 150000,
             "Open__c": True, "Start__c": dt.date(2024, 1, 10), "Tags__c": "Senior;Urgent", "Level__c": "Senior",
             "OwnerId": "u1", "Interview__c": _d("2024-06-14T22:00:00")},
        ],
        "Organization": [{"_l": "org1", "Name": "Keel Org", "IsSandbox": False, "OwnerId": "u1"}],
    }


class Seeded:
    """A seeded database plus the label <-> id maps the case runner needs."""

    def __init__(self, db: Database, schema: SchemaSnapshot) -> None:
        self.db = db
        self.schema = schema
        self.ids: dict[str, str] = {}
        self.labels: dict[str, str] = {}


def create_tables(db: Database, schema: SchemaSnapshot, *, indexes: bool = True) -> None:
    with db.transaction() as conn:
        for obj in schema.objects:
            t = table_for(schema, obj)
            t.create(conn, checkfirst=True)
            if indexes:
                for spec in index_specs(obj):
                    ddl.create_index(conn, obj.table, spec)
        create_cursor_tables(conn)


def seed(db: Database, schema: SchemaSnapshot) -> Seeded:
    out = Seeded(db, schema)
    rows = seed_rows()
    nums: dict[str, int] = {}
    for obj_name, recs in rows.items():
        obj = schema.get_object(obj_name)
        for i, r in enumerate(recs, start=1):
            nums[r["_l"]] = i
            out.ids[r["_l"]] = ids.encode(obj.key_prefix, i)
            out.labels[out.ids[r["_l"]]] = r["_l"]
    prefix_of = {lab: out.ids[lab][:3] for lab in out.ids}
    create_tables(db, schema)
    with db.transaction() as conn:
        for obj_name, recs in rows.items():
            obj = schema.get_object(obj_name)
            t = table_for(schema, obj)
            batch = []
            for r in recs:
                row: dict[str, Any] = {"id": nums[r["_l"]], "is_deleted": False, "version": 1,
                                       "created_date": _d("2024-06-01T00:00:00"), "created_by_id": 1,
                                       "last_modified_date": _d("2024-06-01T00:00:00"), "last_modified_by_id": 1,
                                       "system_modstamp": _d("2024-06-01T00:00:00"), "owner_id": 1}
                if obj_name in ("Contact", "Lead", "User"):
                    row["name"] = " ".join(x for x in (r.get("FirstName"), r.get("LastName")) if x)
                for f in obj.fields:
                    if not f.column or f.type == "id":
                        continue
                    if f.type == "checkbox" and f.column not in row:
                        row[f.column] = False
                for k, v in r.items():
                    if k == "_l":
                        continue
                    f = obj.get_field(k)
                    assert f.column
                    if f.is_relationship:
                        row[f.column] = nums[v]
                        if len(f.reference_to) > 1:
                            row[f.column + "_t"] = prefix_of[v]
                    else:
                        row[f.column] = v
                batch.append(row)
            keys = sorted({k for row in batch for k in row})
            conn.execute(t.insert(), [{k: row.get(k) for k in keys} for row in batch])
    return out


def label_ids(schema: SchemaSnapshot) -> dict[str, str]:
    """Seed label -> 18-character id, without a database (ids are the row position in ``seed_rows``)."""
    out: dict[str, str] = {}
    for obj_name, recs in seed_rows().items():
        prefix = schema.get_object(obj_name).key_prefix
        for i, r in enumerate(recs, start=1):
            out[r["_l"]] = ids.encode(prefix, i)
    return out
