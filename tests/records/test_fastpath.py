"""The generated per-object functions give exactly what the generic per-field loops give, on any input."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.context import Context
from keel.metadata.model import ObjectDef
from keel.metadata.types import FieldValueError
from keel.records import fastpath, save_many
from keel.records.hooks import RowState
from keel.records.prepare import WritePlan, write_plan
from keel.records.save import _apply_defaults
from keel.services.query import query_all_records
from keel.storage import ids

KEYS = ["OwnerId", "Name", "Department__c", "Max_Pay__c", "Summary__c", "Contact_Email__c", "Headcount__c", "Remote__c",
        "Open_Date__c", "Review_At__c", "Shift_Start__c", "Languages__c", "Hiring_Manager__c"]
ANY = st.one_of(
    st.none(), st.text(max_size=90), st.integers(-10**6, 10**6), st.booleans(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**7, max_value=10**7),
    st.sampled_from(["", "true", "False", "0", "2024-02-29", "2024-02-30", "2024-05-01T10:11:12.000+0000",
                     "2024-05-01T10:11:12-0530", "10:30", "Field", "field", "Sales", "English;french", "x" * 80,
                     "x" * 81, "a@example.org", "not an email", "12.345", "1e3", "1,000"]),
    st.lists(st.sampled_from(["English", "Arabic", "Klingon"]), max_size=3),
)


def _plan(org: Context, dialect: str = "sqlite") -> tuple[ObjectDef, WritePlan]:
    schema = org.schema()
    obj = schema.get_object("Position__c")
    return obj, write_plan(schema, obj, dialect)


def _slots(plan: WritePlan, keys: list[str]) -> list[fastpath.Slot]:
    out: list[fastpath.Slot] = []
    for key in keys:
        f = plan.by_key[key.lower()]
        coerce = plan.coercers.get(f.api_name)
        out.append((key, f.api_name, coerce, plan.text_limit(f.api_name) if coerce is not None else None))
    return out


def _reference(slots: list[fastpath.Slot], draft: dict[str, Any]) -> dict[str, Any] | str:
    """The generic loop: each field through its coercer, in the draft's order; an error's code on failure."""
    by_key = {s[0]: s for s in slots}
    values: dict[str, Any] = {}
    for key, raw in draft.items():
        _, name, coerce, _ = by_key[key]
        try:
            values[name] = coerce(raw) if coerce is not None else raw
        except FieldValueError as e:
            return e.code
    return values


@pytest.fixture
def positions(crm: Context) -> Context:
    return crm


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_coercer_matches_the_generic_loop(positions: Context, data: st.DataObject) -> None:
    _, plan = _plan(positions)
    keys = data.draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=len(KEYS), unique=True))
    drafts = data.draw(st.lists(st.fixed_dictionaries({k: ANY for k in keys}), min_size=1, max_size=6))
    # Some drafts with another shape (a missing or an extra key) must go the generic way too.
    drafts += data.draw(st.lists(st.dictionaries(st.sampled_from(KEYS), ANY, max_size=4), max_size=2))
    slots = _slots(plan, keys)
    slow_seen: list[int] = []

    def slow(i: int, d: Any) -> RowState | None:
        slow_seen.append(i)
        ref = _reference(_slots(plan, list(d)), d)
        return RowState(i, ref) if isinstance(ref, dict) else None

    owner = ids.encode("005", 1)
    rows = plan.draft_coercer(slots, owner)(drafts, range(len(drafts)), slow)
    for r in rows:  # as the lifecycle does next: rows from the generic path get their defaults now
        if not r.changed:
            _apply_defaults(plan, r, owner)
    expected = []
    for i, d in enumerate(drafts):
        ref = _reference(_slots(plan, list(d)), d)
        if isinstance(ref, dict):
            r = RowState(i, ref)
            _apply_defaults(plan, r, owner)
            expected.append((i, r.values, r.changed))
    assert [(r.index, r.values, r.changed) for r in rows] == expected
    for i, d in enumerate(drafts):
        if set(d) != set(keys):
            assert i in slow_seen


TYPED = {
    "Name": st.one_of(st.none(), st.text(max_size=20)),
    "Max_Pay__c": st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=2,
                                                  min_value=-10**9, max_value=10**9)),
    "Headcount__c": st.one_of(st.none(), st.integers(0, 99999)),
    "Remote__c": st.one_of(st.none(), st.booleans()),
    "Open_Date__c": st.one_of(st.none(), st.dates()),
    "Review_At__c": st.one_of(st.none(), st.datetimes(),
                              st.datetimes(timezones=st.just(timezone(timedelta(hours=2))))),
    "Shift_Start__c": st.one_of(st.none(), st.times()),
    "Hiring_Manager__c": st.one_of(st.none(), st.integers(1, 10**9).map(lambda n: ids.encode("005", n))),
    "Account__c": st.one_of(st.none(), st.integers(1, 10**9).map(lambda n: ids.encode("001", n))),
}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.fixed_dictionaries({}, optional=TYPED), dialect=st.sampled_from(["sqlite", "postgresql"]))
def test_generated_row_builder_matches_the_encoders(positions: Context, values: dict[str, Any],
                                                     dialect: str) -> None:
    _, plan = _plan(positions, dialect)
    stamp = datetime(2026, 1, 2, 3, 4, 5, 6)
    expected: list[Any] = [42, stamp, 7, stamp, 7, stamp, 0, 1]
    for f in plan.writable:
        raw = values.get(f.api_name)
        if f.is_relationship:
            expected.append(None if raw is None else ids.split(raw)[1])
        elif dialect == "postgresql" and isinstance(raw, datetime) and raw.tzinfo is not None:
            expected.append(raw.astimezone(UTC).replace(tzinfo=None))  # binary COPY takes naive UTC only
        else:
            expected.append(plan.encoders[f.api_name](raw))
    assert plan.build_row(values, 42, stamp, 7, 0) == expected


def test_postgresql_rows_carry_each_columns_exact_type(positions: Context) -> None:
    """Binary COPY refuses a value of another Python type, so values set by automation in other forms (a float
    amount, a date as text, a datetime for a date) are converted by the row builder."""
    _, plan = _plan(positions, "postgresql")
    values = {"Max_Pay__c": 1234.5, "Headcount__c": True, "Open_Date__c": "2024-02-29",
              "Review_At__c": date(2024, 5, 1), "Shift_Start__c": "22:30:00", "Remote__c": 1, "Name": 7,
              "Summary__c": None}
    row = plan.build_row(values, 42, datetime(2026, 1, 1), 7, False)
    got = {f.api_name: row[8 + i] for i, f in enumerate(plan.writable) if not f.is_relationship}
    assert got["Max_Pay__c"] == Decimal("1234.5") and type(got["Max_Pay__c"]) is Decimal
    assert got["Headcount__c"] == 1 and type(got["Headcount__c"]) is int
    assert got["Open_Date__c"] == date(2024, 2, 29)
    assert got["Review_At__c"] == datetime(2024, 5, 1) and type(got["Review_At__c"]) is datetime
    assert got["Shift_Start__c"] == time(22, 30)
    assert got["Remote__c"] is True
    assert got["Name"] == "7"
    assert got["Summary__c"] is None


def test_bulk_rows_read_back_as_written(positions: Context) -> None:
    """What the generated builder writes for dates, datetimes (offsets included), times, money and booleans reads
    back through SOQL as the same values, on both databases."""
    drafts = [{"Name": f"Night shift {i:03d}", "Department__c": "field", "Open_Date__c": "2024-02-29",
               "Review_At__c": "2024-05-01T12:11:12.250+0200", "Shift_Start__c": "22:30", "Max_Pay__c": "1234.5",
               "Remote__c": "true" if i % 2 else False} for i in range(250)]  # enough for COPY on PostgreSQL
    res = save_many(positions, "Position__c", drafts)
    assert all(r.success for r in res)
    got = list(query_all_records(positions, "SELECT Name, Department__c, Open_Date__c, Review_At__c, Shift_Start__c, "
                                            "Max_Pay__c, Remote__c FROM Position__c WHERE Name LIKE 'Night shift %' "
                                            "ORDER BY Name"))
    assert len(got) == 250
    first, second = got[0], got[1]
    assert first["Department__c"] == "Field"
    assert first["Open_Date__c"] == "2024-02-29"
    assert first["Review_At__c"].startswith("2024-05-01T10:11:12.250")
    assert first["Shift_Start__c"].startswith("22:30:00")
    assert float(first["Max_Pay__c"]) == 1234.5
    assert (first["Remote__c"], second["Remote__c"]) == (False, True)


def test_a_batch_of_several_shapes_keeps_its_order_and_defaults(positions: Context) -> None:
    """Drafts with different keys (a CSV with empty cells) are coerced per shape and come back in input order,
    new ids ascending with it, each missing field defaulted and each bad row failing alone."""
    drafts: list[dict[str, Any]] = []
    for i in range(30):
        d: dict[str, Any] = {"Name": f"Shape {i:02d}", "Department__c": "Support"}
        if i % 3 == 1:
            d["Headcount__c"] = "4"
        if i % 3 == 2:
            d["Remote__c"] = "true"
        drafts.append(d)
    drafts[17]["Headcount__c"] = "many"
    res = save_many(positions, "Position__c", drafts, all_or_none=False)
    assert [r.success for r in res] == [i != 17 for i in range(30)]
    assert res[17].errors[0].code == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    got = {r["Name"]: r for r in query_all_records(
        positions, "SELECT Id, Name, Headcount__c, Remote__c FROM Position__c WHERE Name LIKE 'Shape %'")}
    ok = [i for i in range(30) if i != 17]
    numbers = [ids.split(got[f"Shape {i:02d}"]["Id"])[1] for i in ok]
    assert numbers == sorted(numbers)
    for i in ok:
        rec = got[f"Shape {i:02d}"]
        assert rec["Id"] == res[i].id
        assert float(rec["Headcount__c"]) == (4 if i % 3 == 1 else 1)  # the field's default is 1
        assert rec["Remote__c"] is (i % 3 == 2)
