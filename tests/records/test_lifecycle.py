"""The record lifecycle on both databases: coercion, defaults, validation, writes, history, outbox, concurrency."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from keel.context import Context
from keel.errors import ROLLED_BACK, BatchError
from keel.metadata.tables import table_for
from keel.records import delete_many, save_many, undelete_many, upsert_many
from keel.records.validate import row_to_values
from keel.storage import ids
from keel.storage import system as S


def read(ctx: Context, obj: str, record_id: str) -> dict[str, Any]:
    schema = ctx.schema()
    o = schema.get_object(obj)
    t = table_for(schema, o)
    with ctx.db.read() as conn:
        row = conn.execute(sa.select(t).where(t.c.id == ids.decode(record_id, o.key_prefix))).mappings().one()
        return row_to_values(schema, o, row)


def count(ctx: Context, obj: str, deleted: bool = False) -> int:
    schema = ctx.schema()
    t = table_for(schema, schema.get_object(obj))
    with ctx.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.is_deleted == deleted)).scalar())


def codes(e: BatchError) -> list[list[str]]:
    return [[d.code for d in r.errors] for r in e.results]


def position(**kw: Any) -> dict[str, Any]:
    return {"Name": "Officer", "Department__c": "field", **kw}


def test_insert_coerces_client_styles_and_applies_defaults(crm: Context) -> None:
    res = save_many(crm, "Position__c", [position(
        Max_Pay__c="85000.555", Bonus_Rate__c=1.5, Remote__c="true", Open_Date__c="2024-02-29",
        Review_At__c="2024-01-02T03:04:05.000+0100", Shift_Start__c="07:30:00.000Z", Languages__c="spanish;English",
        Job_Code__c="OPS-1", Contact_Email__c="hr@agency.gov", Headcount__c="3")])
    rec = read(crm, "Position__c", res[0].id or "")
    assert rec["Department__c"] == "Field"  # canonical picklist value
    assert Decimal(str(rec["Max_Pay__c"])) == Decimal("85000.56")  # half-up to scale 2
    assert rec["Remote__c"] is True
    assert rec["Open_Date__c"] == date(2024, 2, 29)
    assert rec["Review_At__c"] == datetime(2024, 1, 2, 2, 4, 5)  # +0100 normalised to UTC
    assert rec["Shift_Start__c"] == time(7, 30)
    assert rec["Languages__c"] == "English;Spanish"  # definition order
    assert rec["Headcount__c"] == 3
    assert rec["Requisition__c"] == "REQ-00001"
    assert rec["OwnerId"] == ids.encode("005", crm.actor.user_id)
    defaults = save_many(crm, "Position__c", [position()])
    rec2 = read(crm, "Position__c", defaults[0].id or "")
    assert rec2["Headcount__c"] == 1 and rec2["Remote__c"] is False and rec2["Requisition__c"] == "REQ-00002"


@pytest.mark.parametrize(
    ("draft", "code", "field"),
    [
        ({"Name": "x"}, "REQUIRED_FIELD_MISSING", "Department__c"),
        (position(Name=None), "REQUIRED_FIELD_MISSING", "Name"),
        (position(Department__c="Marketing"), "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "Department__c"),
        (position(Job_Code__c="x" * 21), "STRING_TOO_LONG", "Job_Code__c"),
        (position(Max_Pay__c="lots"), "INVALID_TYPE_ON_FIELD_IN_RECORD", "Max_Pay__c"),
        (position(Max_Pay__c=10**15), "NUMBER_OUTSIDE_VALID_RANGE", "Max_Pay__c"),
        (position(Headcount__c="99999.5"), "NUMBER_OUTSIDE_VALID_RANGE", "Headcount__c"),  # rounds to 6 digits
        (position(Max_Pay__c="NaN"), "INVALID_TYPE_ON_FIELD_IN_RECORD", "Max_Pay__c"),
        (position(Contact_Email__c="not-an-email"), "INVALID_EMAIL_ADDRESS", "Contact_Email__c"),
        (position(Open_Date__c="2024-02-30"), "INVALID_TYPE_ON_FIELD_IN_RECORD", "Open_Date__c"),
        (position(Remote__c="maybe"), "INVALID_TYPE_ON_FIELD_IN_RECORD", "Remote__c"),
        (position(Nope__c=1), "INVALID_FIELD", "Nope__c"),
        (position(CreatedDate="2024-01-01"), "INVALID_FIELD_FOR_INSERT_UPDATE", "CreatedDate"),
        (position(Requisition__c="REQ-9"), "INVALID_FIELD_FOR_INSERT_UPDATE", "Requisition__c"),
        (position(Hiring_Manager__c="001000000000001AAA"), "INVALID_CROSS_REFERENCE_KEY", "Hiring_Manager__c"),
        (position(Hiring_Manager__c="005000000000099AAA"), "INVALID_CROSS_REFERENCE_KEY", "Hiring_Manager__c"),
        (position(Hiring_Manager__c="garbage"), "MALFORMED_ID", "Hiring_Manager__c"),
    ],
)
def test_each_bad_value_gets_its_code_and_field(crm: Context, draft: dict[str, Any], code: str, field: str) -> None:
    with pytest.raises(BatchError) as e:
        save_many(crm, "Position__c", [position(Name="good"), draft])
    bad = e.value.results[1].errors
    assert (bad[0].code, bad[0].fields) == (code, (field,))
    assert [d.code for d in e.value.results[0].errors] == [ROLLED_BACK]
    assert count(crm, "Position__c") == 0


def test_all_errors_of_a_row_are_collected(crm: Context) -> None:
    with pytest.raises(BatchError) as e:
        save_many(crm, "Position__c", [{"Job_Code__c": "x" * 30, "Bogus__c": 1, "Remote__c": "?"}])
    assert sorted(codes(e.value)[0]) == ["INVALID_FIELD", "INVALID_TYPE_ON_FIELD_IN_RECORD", "STRING_TOO_LONG"]


def test_unique_is_case_insensitive_in_batch_and_against_table(crm: Context) -> None:
    save_many(crm, "Position__c", [position(Job_Code__c="ops-1")])
    with pytest.raises(BatchError) as e:
        save_many(crm, "Position__c", [position(Job_Code__c="OPS-1"), position(Job_Code__c="b"),
                                       position(Job_Code__c="B")])
    assert codes(e.value) == [["DUPLICATE_VALUE"], [ROLLED_BACK], ["DUPLICATE_VALUE"]]
    assert "duplicates value on record with id" in e.value.results[0].errors[0].message


def test_partial_success_commits_good_rows(crm: Context) -> None:
    res = save_many(crm, "Position__c", [position(), {"Name": "no dept"}, position()], all_or_none=False)
    assert [r.success for r in res] == [True, False, True]
    assert res[1].errors[0].code == "REQUIRED_FIELD_MISSING"
    assert count(crm, "Position__c") == 2


def test_update_history_and_outbox(crm: Context) -> None:
    pid = save_many(crm, "Position__c", [position(Max_Pay__c=100)])[0].id or ""
    save_many(crm, "Position__c", [{"Id": pid, "Max_Pay__c": 150, "Remote__c": True}])
    save_many(crm, "Position__c", [{"Id": pid[:15], "Max_Pay__c": "150.00"}])  # no change, 15-char id
    rec = read(crm, "Position__c", pid)
    assert float(rec["Max_Pay__c"]) == 150 and rec["Remote__c"] is True
    with crm.db.read() as conn:
        hist = conn.execute(sa.select(S.history.c.field, S.history.c.old_value, S.history.c.new_value)
                            .order_by(S.history.c.id)).all()
        events = [r[0] for r in conn.execute(sa.select(S.outbox.c.payload).order_by(S.outbox.c.id))]
    assert [tuple(h) for h in hist] == [("Max_Pay__c", "100", "150"),
                                        ("Remote__c", "false", "true")]
    assert any('"changeType":"UPDATE"' in p and str(ids.decode(pid, pid[:3])) in p for p in events)


def test_stale_version_is_a_conflict(crm: Context) -> None:
    pid = save_many(crm, "Position__c", [position()])[0].id or ""
    with pytest.raises(BatchError) as e:
        save_many(crm, "Position__c", [{"Id": pid, "Name": "x", "__version__": 7}])
    assert codes(e.value) == [["CONCURRENT_MODIFICATION"]]
    save_many(crm, "Position__c", [{"Id": pid, "Name": "y", "__version__": 1}])


def test_update_of_missing_or_deleted_record(crm: Context) -> None:
    pid = save_many(crm, "Position__c", [position()])[0].id or ""
    delete_many(crm, "Position__c", [pid])
    prefix = crm.schema().get_object("Position__c").key_prefix
    res = save_many(crm, "Position__c", [{"Id": pid, "Name": "z"}, {"Id": ids.encode(prefix, 999), "Name": "z"}],
                    all_or_none=False)
    assert [r.errors[0].code for r in res] == ["ENTITY_IS_DELETED", "NOT_FOUND"]


def test_upsert_on_external_id(crm: Context) -> None:
    res = upsert_many(crm, "Position__c", [position(Job_Code__c="A"), position(Job_Code__c="b")], "Job_Code__c")
    assert [r.created for r in res] == [True, True]
    res2 = upsert_many(crm, "Position__c", [position(Job_Code__c="a", Name="Renamed"), position(Job_Code__c="c")],
                       "job_code__c")
    assert [r.created for r in res2] == [False, True] and res2[0].id == res[0].id
    assert read(crm, "Position__c", res[0].id or "")["Name"] == "Renamed"


def test_master_detail_cascade_and_undelete(crm: Context) -> None:
    p1, p2 = (r.id for r in save_many(crm, "Position__c", [position(), position()]))
    kids = save_many(crm, "Posting__c", [{"Name": f"k{i}", "Position__c": p1} for i in range(3)])
    early = kids[0].id or ""
    delete_many(crm, "Posting__c", [early])  # deleted on its own before the parent
    delete_many(crm, "Position__c", [p1 or ""])
    assert count(crm, "Posting__c") == 0 and count(crm, "Posting__c", deleted=True) == 3
    undelete_many(crm, "Position__c", [p1 or ""])
    assert count(crm, "Posting__c") == 2  # the one deleted on its own stays in the bin
    assert read(crm, "Posting__c", early)["IsDeleted"] is True
    with pytest.raises(BatchError) as e:
        save_many(crm, "Posting__c", [{"Name": "orphan"}])
    assert codes(e.value) == [["REQUIRED_FIELD_MISSING"]]
    assert p2


def test_restrict_blocks_delete_of_referenced_parent(crm: Context) -> None:
    acc = save_many(crm, "Account", [{"Name": "Agency"}])[0].id
    pid = save_many(crm, "Position__c", [position(Account__c=acc)])[0].id or ""
    with pytest.raises(BatchError) as e:
        delete_many(crm, "Account", [acc or ""])
    assert codes(e.value) == [["DELETE_FAILED"]]
    delete_many(crm, "Position__c", [pid])
    delete_many(crm, "Account", [acc or ""])
    assert count(crm, "Account") == 0


def test_composite_name_and_lookup_within_batch(crm: Context) -> None:
    res = save_many(crm, "Contact", [{"FirstName": "Ada", "LastName": "Lovelace"}])
    assert read(crm, "Contact", res[0].id or "")["Name"] == "Ada Lovelace"
    save_many(crm, "Contact", [{"Id": res[0].id, "FirstName": "Augusta"}])
    assert read(crm, "Contact", res[0].id or "")["Name"] == "Augusta Lovelace"


def test_a_lookup_given_in_any_id_form_stores_the_same_parent(crm: Context) -> None:
    acct = save_many(crm, "Account", [{"Name": "Parent"}])[0].id or ""
    forms = [acct, acct[:15], acct.lower(), acct.upper(), ids.CanonicalId(acct)]
    res = save_many(crm, "Contact", [{"LastName": f"C{i}", "AccountId": f} for i, f in enumerate(forms)])
    stored = [read(crm, "Contact", r.id or "")["AccountId"] for r in res]
    assert stored == [acct] * len(forms)
    # a well-formed id of another object is refused, whatever its form
    user = ids.encode("005", crm.actor.user_id)
    for bad in (user, ids.CanonicalId(user), user.lower()):
        with pytest.raises(BatchError) as e:
            save_many(crm, "Contact", [{"LastName": "X", "AccountId": bad}])
        assert codes(e.value) == [["INVALID_CROSS_REFERENCE_KEY"]]
