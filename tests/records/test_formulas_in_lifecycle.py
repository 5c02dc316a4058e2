"""Formula defaults, validation rules, formula fields in SOQL and roll-ups, through the lifecycle."""

from __future__ import annotations

from typing import Any

import pytest

from keel.context import Context
from keel.errors import BatchError
from keel.metadata.apply import apply_plan
from keel.metadata.package import parse_object
from keel.metadata.plan import plan
from keel.metadata.store import load_snapshot
from keel.records import delete_many, save_many, undelete_many
from keel.services.query import query

BUDGET = {
    "object": "Budget__c",
    "fields": [
        {"name": "Min_Pay__c", "type": "currency"},
        {"name": "Max_Pay__c", "type": "currency"},
        {"name": "Code__c", "type": "text", "length": 20, "default": {"formula": "'B-' & TEXT(YEAR(TODAY()))"}},
        {"name": "Spread__c", "type": "formula", "returns": "currency", "formula": "Max_Pay__c - Min_Pay__c"},
        {"name": "Lines__c", "type": "rollup", "function": "COUNT", "child": "Budget_Lines__r"},
        {"name": "Total__c", "type": "rollup", "function": "SUM", "child": "Budget_Lines__r", "field": "Amount__c",
         "filter": "Approved__c"},
    ],
    "validation_rules": [
        {"name": "Pay_Range", "condition": "Max_Pay__c < Min_Pay__c", "message": "Max pay is below min pay",
         "field": "Max_Pay__c"},
        {"name": "No_Lowering", "condition": "AND(NOT(ISNEW()), ISCHANGED(Max_Pay__c), "
         "Max_Pay__c < PRIORVALUE(Max_Pay__c))", "message": "Max pay cannot go down"},
    ],
}
LINE = {
    "object": "Budget_Line__c",
    "sharing": "controlled_by_parent",
    "fields": [
        {"name": "Budget__c", "type": "master_detail", "to": "Budget__c", "child_relationship_name": "Budget_Lines__r"},
        {"name": "Amount__c", "type": "currency"},
        {"name": "Approved__c", "type": "checkbox"},
    ],
}


@pytest.fixture
def budgets(org: Context) -> Context:
    with org.db.read() as conn:
        p = plan(load_snapshot(conn), [parse_object(BUDGET), parse_object(LINE)])
    apply_plan(org.db, p, org.metadata)
    return org


def one(ctx: Context, soql: str) -> dict[str, Any]:
    records = query(ctx, soql)["records"]
    assert len(records) == 1
    return dict(records[0])


def test_default_formula_and_formula_field(budgets: Context) -> None:
    bid = save_many(budgets, "Budget__c", [{"Name": "Ops", "Min_Pay__c": 100, "Max_Pay__c": 250}])[0].id
    rec = one(budgets, f"SELECT Code__c, Spread__c FROM Budget__c WHERE Id = '{bid}'")
    assert rec["Code__c"].startswith("B-20") and rec["Spread__c"] == 150
    hit = query(budgets, "SELECT Name FROM Budget__c WHERE Spread__c > 100 ORDER BY Spread__c DESC")
    assert [r["Name"] for r in hit["records"]] == ["Ops"]


def test_validation_rules_fail_with_message_and_field(budgets: Context) -> None:
    with pytest.raises(BatchError) as e:
        save_many(budgets, "Budget__c", [{"Name": "Bad", "Min_Pay__c": 300, "Max_Pay__c": 200}])
    err = e.value.results[0].errors[0]
    assert (err.code, err.message, err.fields) == ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Max pay is below min pay",
                                                    ("Max_Pay__c",))
    bid = save_many(budgets, "Budget__c", [{"Name": "Ok", "Min_Pay__c": 1, "Max_Pay__c": 200}])[0].id
    with pytest.raises(BatchError) as e2:
        save_many(budgets, "Budget__c", [{"Id": bid, "Max_Pay__c": 150}])
    assert e2.value.results[0].errors[0].message == "Max pay cannot go down"
    save_many(budgets, "Budget__c", [{"Id": bid, "Max_Pay__c": 300}])


def test_rollups_follow_inserts_updates_reparenting_deletes_and_undeletes(budgets: Context) -> None:
    a, b = (r.id for r in save_many(budgets, "Budget__c", [{"Name": "A"}, {"Name": "B"}]))

    def totals() -> dict[str, tuple[Any, Any]]:
        rows = query(budgets, "SELECT Name, Lines__c, Total__c FROM Budget__c ORDER BY Name")["records"]
        return {r["Name"]: (r["Lines__c"], r["Total__c"]) for r in rows}

    lines = save_many(budgets, "Budget_Line__c", [
        {"Name": "l1", "Budget__c": a, "Amount__c": 10, "Approved__c": True},
        {"Name": "l2", "Budget__c": a, "Amount__c": 5, "Approved__c": False},
        {"Name": "l3", "Budget__c": b, "Amount__c": 7, "Approved__c": True},
    ])
    assert totals() == {"A": (2, 10), "B": (1, 7)}
    save_many(budgets, "Budget_Line__c", [{"Id": lines[1].id, "Approved__c": True}])
    assert totals() == {"A": (2, 15), "B": (1, 7)}
    save_many(budgets, "Budget_Line__c", [{"Id": lines[0].id, "Budget__c": b}])  # re-parent
    assert totals() == {"A": (1, 5), "B": (2, 17)}
    delete_many(budgets, "Budget_Line__c", [lines[2].id or ""])
    assert totals() == {"A": (1, 5), "B": (1, 10)}
    undelete_many(budgets, "Budget_Line__c", [lines[2].id or ""])
    assert totals() == {"A": (1, 5), "B": (2, 17)}


def test_maintained_rollups_equal_recalculated_after_random_writes(budgets: Context) -> None:
    import random

    import sqlalchemy as sa

    from keel.formula import recalc_all
    from keel.metadata.tables import table_for

    rnd = random.Random(11)
    parents = [r.id or "" for r in save_many(budgets, "Budget__c", [{"Name": f"P{i}"} for i in range(4)])]
    live: list[str] = []
    dead: list[str] = []
    for _ in range(60):
        op = rnd.choice(["insert", "insert", "update", "reparent", "delete", "undelete"])
        if op == "insert" or not live:
            res = save_many(budgets, "Budget_Line__c", [
                {"Name": "x", "Budget__c": rnd.choice(parents), "Amount__c": rnd.randint(-50, 500),
                 "Approved__c": rnd.random() < 0.6} for _ in range(rnd.randint(1, 4))])
            live += [r.id or "" for r in res]
        elif op == "update":
            save_many(budgets, "Budget_Line__c", [{"Id": rnd.choice(live), "Amount__c": rnd.randint(0, 99),
                                                    "Approved__c": rnd.random() < 0.5}])
        elif op == "reparent":
            save_many(budgets, "Budget_Line__c", [{"Id": rnd.choice(live), "Budget__c": rnd.choice(parents)}])
        elif op == "delete":
            victim = live.pop(rnd.randrange(len(live)))
            delete_many(budgets, "Budget_Line__c", [victim])
            dead.append(victim)
        elif dead:
            back = dead.pop()
            undelete_many(budgets, "Budget_Line__c", [back])
            live.append(back)
    schema = budgets.schema()
    obj = schema.get_object("Budget__c")
    t = table_for(schema, obj)
    cols = [t.c[obj.get_field(n).column or ""] for n in ("Lines__c", "Total__c")]

    def snapshot() -> list[tuple[Any, ...]]:
        with budgets.db.read() as conn:
            return [tuple(float(v or 0) for v in row) for row in conn.execute(sa.select(*cols).order_by(t.c.id))]

    maintained = snapshot()
    with budgets.db.transaction() as conn:
        for name in ("Lines__c", "Total__c"):
            recalc_all(conn, schema, obj, obj.get_field(name))
    assert snapshot() == maintained
    assert sum(m[0] for m in maintained) == len(live)


@pytest.mark.parametrize(("fields", "message"), [
    ([{"name": "A__c", "type": "formula", "returns": "number", "formula": "B__c + 1"},
      {"name": "B__c", "type": "formula", "returns": "number", "formula": "A__c * 2"}], "A__c"),
    ([{"name": "A__c", "type": "formula", "returns": "number", "formula": "Name + 1"}], "number"),
    ([{"name": "A__c", "type": "formula", "returns": "date", "formula": "IF(1,"}], "A__c"),
])
def test_bad_formulas_are_refused_at_plan_time(org: Context, tmp_path: Any, fields: list[dict[str, Any]],
                                               message: str) -> None:
    import yaml

    from keel.errors import MetadataError
    from keel.services.metadata import apply_package

    (tmp_path / "Calc__c.yaml").write_text(yaml.safe_dump({"object": "Calc__c", "fields": fields}))
    before = org.schema().version
    with pytest.raises(MetadataError) as e:
        apply_package(org, tmp_path)
    assert "Calc__c" in str(e.value) and message in str(e.value)
    assert org.schema().version == before


def test_rollups_stay_correct_under_concurrent_child_writes(budgets: Context) -> None:
    """Two connections add children to the same parent at once: A writes and holds its transaction open, B writes
    (and waits for A), then A commits. Each transaction recomputes the parent's roll-ups; B must compute after A's
    child is visible, or B's commit would overwrite the total with one that misses A's child (the lost update
    PostgreSQL's READ COMMITTED allows when the value is read before the parent row is locked)."""
    import threading
    import time

    parent = save_many(budgets, "Budget__c", [{"Name": "Shared"}])[0].id
    line = {"Budget__c": parent, "Approved__c": True}
    b_done = threading.Event()
    failures: list[BaseException] = []

    def writer_b() -> None:
        try:
            save_many(budgets, "Budget_Line__c", [{**line, "Name": "b", "Amount__c": 20}])
        except BaseException as e:  # an assertion in a thread would be lost
            failures.append(e)
        b_done.set()

    with budgets.db.transaction() as conn:
        save_many(budgets, "Budget_Line__c", [{**line, "Name": "a", "Amount__c": 10}], conn=conn)
        b = threading.Thread(target=writer_b)
        b.start()
        time.sleep(1.0)  # B reaches the point where it waits for A
        assert not b_done.is_set()
    b.join(30)
    assert b_done.is_set() and not failures, failures
    rec = one(budgets, f"SELECT Lines__c, Total__c FROM Budget__c WHERE Id = '{parent}'")
    assert (rec["Lines__c"], rec["Total__c"]) == (2, 30)


def test_a_batch_loads_only_the_parents_its_rules_read(budgets: Context) -> None:
    from dataclasses import replace

    from keel.metadata.model import ValidationRule
    from keel.records.rules import rule_parents

    schema = budgets.schema()
    line = schema.get_object("Budget_Line__c")
    assert rule_parents(schema, schema.get_object("Budget__c")) == frozenset()
    reads = replace(line, validation_rules=(ValidationRule("Cap", "Amount__c > budget__R . Max_Pay__c", "Over"),))
    assert rule_parents(schema, reads) == {"Budget__c"}


def test_group_and_order_by_a_formula_that_reads_today(org: Context) -> None:
    """TODAY() is a value bound when the query runs; PostgreSQL must still see GROUP BY and ORDER BY as the
    selected expression."""
    with org.db.read() as conn:
        p = plan(load_snapshot(conn), [parse_object({"object": "Dated__c", "fields": [
            {"name": "D__c", "type": "date"},
            {"name": "Age__c", "type": "formula", "returns": "text",
             "formula": "IF(D__c < TODAY(), 'past', 'future')"},
            {"name": "Days__c", "type": "formula", "returns": "number", "formula": "TODAY() - D__c"}]})])
    apply_plan(org.db, p, org.metadata)
    save_many(org, "Dated__c", [{"Name": "a", "D__c": "2020-01-01"}, {"Name": "b", "D__c": "2020-01-01"},
                                 {"Name": "c", "D__c": "2199-01-01"}])
    by_age = query(org, "SELECT Age__c, COUNT(Id) n FROM Dated__c GROUP BY Age__c ORDER BY Age__c")["records"]
    assert [(r["Age__c"], r["n"]) for r in by_age] == [("future", 1), ("past", 2)]
    by_days = query(org, "SELECT Days__c, COUNT(Id) n FROM Dated__c GROUP BY Days__c "
                         "ORDER BY Days__c DESC")["records"]
    assert [r["n"] for r in by_days] == [2, 1] and by_days[0]["Days__c"] > 0 > by_days[1]["Days__c"]


SHIPMENT = {
    "object": "Shipment__c",
    "fields": [
        {"name": "Min_Weight__c", "type": "rollup", "function": "MIN", "child": "Parcels__r", "field": "Weight__c"},
        {"name": "Max_Weight__c", "type": "rollup", "function": "MAX", "child": "Parcels__r", "field": "Weight__c"},
        {"name": "Max_Fragile__c", "type": "rollup", "function": "MAX", "child": "Parcels__r", "field": "Weight__c",
         "filter": "Fragile__c"},
        {"name": "First_Sent__c", "type": "rollup", "function": "MIN", "child": "Parcels__r", "field": "Sent__c"},
        {"name": "Last_Sent__c", "type": "rollup", "function": "MAX", "child": "Parcels__r", "field": "Sent__c"},
    ],
}
PARCEL = {
    "object": "Parcel__c",
    "sharing": "controlled_by_parent",
    "fields": [
        {"name": "Shipment__c", "type": "master_detail", "to": "Shipment__c", "child_relationship_name": "Parcels__r"},
        {"name": "Weight__c", "type": "number", "precision": 10, "scale": 2},
        {"name": "Fragile__c", "type": "checkbox"},
        {"name": "Sent__c", "type": "date"},
    ],
}


@pytest.fixture
def shipments(org: Context) -> Context:
    with org.db.read() as conn:
        p = plan(load_snapshot(conn), [parse_object(SHIPMENT), parse_object(PARCEL)])
    apply_plan(org.db, p, org.metadata)
    return org


def test_min_and_max_rollups_follow_the_lifecycle(shipments: Context) -> None:
    """MIN and MAX are not running totals: deleting or re-parenting the extreme child must find the next one, and
    a parent left without children goes back to blank."""
    a, b = (r.id for r in save_many(shipments, "Shipment__c", [{"Name": "A"}, {"Name": "B"}]))

    def extremes() -> dict[str, tuple[Any, ...]]:
        rows = query(shipments, "SELECT Name, Min_Weight__c, Max_Weight__c, Max_Fragile__c, First_Sent__c, "
                                "Last_Sent__c FROM Shipment__c ORDER BY Name")["records"]
        return {r["Name"]: (r["Min_Weight__c"], r["Max_Weight__c"], r["Max_Fragile__c"], r["First_Sent__c"],
                            r["Last_Sent__c"]) for r in rows}

    assert extremes() == {"A": (None,) * 5, "B": (None,) * 5}
    parcels = save_many(shipments, "Parcel__c", [
        {"Name": "p1", "Shipment__c": a, "Weight__c": 2.5, "Fragile__c": True, "Sent__c": "2024-02-29"},
        {"Name": "p2", "Shipment__c": a, "Weight__c": 9.75, "Fragile__c": False, "Sent__c": "2024-03-01"},
        {"Name": "p3", "Shipment__c": a, "Weight__c": -1, "Fragile__c": False, "Sent__c": "2023-12-31"},
        {"Name": "p4", "Shipment__c": b, "Weight__c": 4, "Fragile__c": True},
    ])
    p1, p2, p3, p4 = (r.id or "" for r in parcels)
    assert extremes() == {"A": (-1, 9.75, 2.5, "2023-12-31", "2024-03-01"), "B": (4, 4, 4, None, None)}
    save_many(shipments, "Parcel__c", [{"Id": p2, "Weight__c": 1, "Fragile__c": True, "Sent__c": "2025-01-01"}])
    assert extremes() == {"A": (-1, 2.5, 2.5, "2023-12-31", "2025-01-01"), "B": (4, 4, 4, None, None)}
    delete_many(shipments, "Parcel__c", [p3])  # the minimum goes: the next smallest takes its place
    assert extremes() == {"A": (1, 2.5, 2.5, "2024-02-29", "2025-01-01"), "B": (4, 4, 4, None, None)}
    save_many(shipments, "Parcel__c", [{"Id": p1, "Shipment__c": b}])  # re-parent the maximum
    assert extremes() == {"A": (1, 1, 1, "2025-01-01", "2025-01-01"), "B": (2.5, 4, 4, "2024-02-29", "2024-02-29")}
    undelete_many(shipments, "Parcel__c", [p3])
    assert extremes() == {"A": (-1, 1, 1, "2023-12-31", "2025-01-01"), "B": (2.5, 4, 4, "2024-02-29", "2024-02-29")}
    delete_many(shipments, "Parcel__c", [p2, p3])  # A has no children left: blank, not 0
    assert extremes() == {"A": (None,) * 5, "B": (2.5, 4, 4, "2024-02-29", "2024-02-29")}
    save_many(shipments, "Parcel__c", [{"Id": p4, "Fragile__c": False}])  # leaves the filter
    assert extremes()["B"] == (2.5, 4, 2.5, "2024-02-29", "2024-02-29")


def test_date_rollups_are_dates_in_storage_and_soql(shipments: Context) -> None:
    from keel.metadata.types import effective_type

    ship = shipments.schema().get_object("Shipment__c")
    assert [effective_type(ship.get_field(n)) for n in ("First_Sent__c", "Last_Sent__c", "Max_Weight__c")] == [
        "date", "date", "currency"]
    with shipments.db.read() as conn:  # the type plan records is stable: planning the same package again is a no-op
        assert plan(load_snapshot(conn), [parse_object(SHIPMENT), parse_object(PARCEL)]).ops == ()
    a, b = (r.id for r in save_many(shipments, "Shipment__c", [{"Name": "A"}, {"Name": "B"}]))
    save_many(shipments, "Parcel__c", [{"Name": "p1", "Shipment__c": a, "Sent__c": "2024-01-31"},
                                       {"Name": "p2", "Shipment__c": b, "Sent__c": "2023-06-30"}])
    late = query(shipments, "SELECT Name FROM Shipment__c WHERE Last_Sent__c > 2024-01-01 ORDER BY First_Sent__c")
    assert [r["Name"] for r in late["records"]] == ["A"]
    by_first = query(shipments, "SELECT Name FROM Shipment__c ORDER BY First_Sent__c DESC")["records"]
    assert [r["Name"] for r in by_first] == ["A", "B"]


def test_time_formula_fields_in_soql(org: Context) -> None:
    """A time formula is computed in the query: selected as HH:MM:SS.mmmZ, filtered and sorted in time order, and
    wrapped at midnight."""
    with org.db.read() as conn:
        p = plan(load_snapshot(conn), [parse_object({"object": "Shift__c", "fields": [
            {"name": "Starts__c", "type": "time"},
            {"name": "Ends__c", "type": "formula", "returns": "time", "formula": "Starts__c + 8 * 3600000"},
            {"name": "Label__c", "type": "formula", "returns": "text",
             "formula": "TEXT(HOUR(Ends__c)) & 'h' & IF(Ends__c < Starts__c, ' next day', '')"}]})])
    apply_plan(org.db, p, org.metadata)
    save_many(org, "Shift__c", [{"Name": "early", "Starts__c": "06:00:00.000Z"},
                                {"Name": "late", "Starts__c": "22:30:00.000Z"}, {"Name": "none"}])
    rows = query(org, "SELECT Name, Ends__c, Label__c FROM Shift__c WHERE Ends__c != null ORDER BY Ends__c")
    assert [(r["Name"], r["Ends__c"], r["Label__c"]) for r in rows["records"]] == [
        ("late", "06:30:00.000Z", "6h next day"), ("early", "14:00:00.000Z", "14h")]


def test_an_update_recomputes_only_the_rollups_whose_inputs_it_changed(budgets: Context) -> None:
    """``Lines__c`` (COUNT) reads only the link; ``Total__c`` reads the link, Amount__c and Approved__c. Renaming
    a line touches neither; approving, adding or moving lines changes the totals by the difference, with no
    aggregate over the children."""
    from sqlalchemy import event

    from keel.formula.rollup import inputs, resolve_rollup

    schema = budgets.schema()
    budget = schema.get_object("Budget__c")
    assert inputs(resolve_rollup(budget, budget.get_field("Lines__c"), schema), schema) == {
        "Budget__c", "IsDeleted"}
    assert inputs(resolve_rollup(budget, budget.get_field("Total__c"), schema), schema) == {
        "Budget__c", "IsDeleted", "Amount__c", "Approved__c"}
    bid = save_many(budgets, "Budget__c", [{"Name": "B", "Min_Pay__c": 1, "Max_Pay__c": 2}])[0].id
    line = save_many(budgets, "Budget_Line__c", [{"Name": "L1", "Budget__c": bid, "Amount__c": 40}])[0].id
    seen: list[str] = []

    def watch(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "count(*)" in statement.lower() or "sum(" in statement.lower():
            seen.append(statement)

    event.listen(budgets.db.engine, "before_cursor_execute", watch)
    try:
        save_many(budgets, "Budget_Line__c", [{"Id": line, "Name": "renamed"}])
        assert seen == []
        # approving, inserting, moving: each total changes by the difference, without re-aggregating children
        save_many(budgets, "Budget_Line__c", [{"Id": line, "Approved__c": True}])
        save_many(budgets, "Budget_Line__c", [{"Name": f"N{i}", "Budget__c": bid, "Amount__c": 5,
                                               "Approved__c": i % 2 == 0} for i in range(5)])
        assert seen == []
        other = save_many(budgets, "Budget__c", [{"Name": "B2", "Min_Pay__c": 1, "Max_Pay__c": 2}])[0].id
        save_many(budgets, "Budget_Line__c", [{"Id": line, "Budget__c": other, "Amount__c": 7}])
        assert seen == []
    finally:
        event.remove(budgets.db.engine, "before_cursor_execute", watch)
    got = one(budgets, f"SELECT Lines__c, Total__c FROM Budget__c WHERE Id = '{bid}'")
    assert (got["Lines__c"], got["Total__c"]) == (5, 15)
    got = one(budgets, f"SELECT Lines__c, Total__c FROM Budget__c WHERE Id = '{other}'")
    assert (got["Lines__c"], got["Total__c"]) == (1, 7)


def test_rollup_inputs_are_unknown_when_a_filter_reads_a_parent_or_the_clock(budgets: Context) -> None:
    from keel.formula.rollup import RollupSpec, inputs

    schema = budgets.schema()
    line = schema.get_object("Budget_Line__c")
    link = line.get_field("Budget__c")
    for flt in ("Budget__r.Max_Pay__c > 10", "Amount__c > 0 && TODAY() > DATE(2020, 1, 1)", "$User.IsActive"):
        assert inputs(RollupSpec("COUNT", line, link, None, flt), schema) is None, flt
    assert inputs(RollupSpec("COUNT", line, link, None, "Amount__c > 0"), schema) == {
        "Budget__c", "IsDeleted", "Amount__c"}
