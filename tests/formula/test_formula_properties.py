"""Property tests: the parser never crashes on junk, and random arithmetic gives the same value in Python and SQL."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.formula import FormulaError, bind, compile_python, parse, to_sql
from keel.formula.context import FormulaContext
from keel.metadata.model import SchemaSnapshot
from keel.metadata.tables import table_for
from keel.storage.engine import Database

ALPHABET = st.sampled_from(list("()+-*/^&=!<>|,.\"' \n") + list("abcXYZ019_$") + ["IF", "AND", "Num__c", "TEXT",
                                                                               "NULL", "TRUE", "/*", "*/", "\\"])


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_parser_never_crashes(text: str) -> None:
    try:
        parse(text)
    except FormulaError as exc:
        assert exc.line >= 1 and exc.column >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40))
def test_checker_never_crashes(schema: SchemaSnapshot, text: str) -> None:
    with contextlib.suppress(FormulaError):
        bind(text, schema.get_object("Formula_Test__c"), schema)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(FormulaError):
        parse("(" * 5000 + "1" + ")" * 5000)
    with pytest.raises(FormulaError):
        parse("-" * 5000 + "1")


_numbers = st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False)
_leaves = st.one_of(_numbers.map(lambda d: f"({d})"), st.sampled_from(["Num__c", "Num2__c", "Amount__c"]))


def _combine(children: st.SearchStrategy[str], ops: list[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(children, st.sampled_from(ops), children).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    unary = st.tuples(st.sampled_from(["ABS", "-"]), children).map(lambda t: f"{t[0]}({t[1]})")
    pair = st.tuples(st.sampled_from(["MAX", "MIN"]), children, children).map(lambda t: f"{t[0]}({t[1]}, {t[2]})")
    cond = st.tuples(children, children, children).map(lambda t: f"IF({t[0]} > {t[1]}, {t[1]}, {t[2]})")
    return st.one_of(binary, unary, pair, cond)


# Step functions (FLOOR, CEILING, ROUND, MOD) jump at boundaries; fed a quotient like 13 / (13/28) they may fall
# on either side depending on the last digit of precision (28 digits in Python, 20 in PostgreSQL, 53 bits in
# SQLite). So they take division-free arguments, which every back end computes exactly or within 1e-10.
EXACT = st.recursive(_leaves, lambda c: _combine(c, ["+", "-", "*"]), max_leaves=5)
_nonzero = st.sampled_from(["Num__c", "Num2__c", "Amount__c", "(0.3)", "(-7)"])
STEPPED = st.one_of(
    EXACT,
    st.tuples(st.sampled_from(["FLOOR", "CEILING"]), EXACT).map(lambda t: f"{t[0]}({t[1]})"),
    st.tuples(EXACT, st.integers(0, 3)).map(lambda t: f"ROUND({t[0]}, {t[1]})"),
    st.tuples(EXACT, _nonzero).map(lambda t: f"MOD({t[0]}, {t[1]})"),
)
ARITHMETIC = st.recursive(STEPPED, lambda c: _combine(c, ["+", "-", "*", "/"]), max_leaves=8)
ROW = {"Num__c": Decimal("12.5"), "Num2__c": Decimal("-3.25"), "Amount__c": Decimal("7")}


def _row_id(db: Database, schema: SchemaSnapshot) -> int:
    obj = schema.get_object("Formula_Test__c")
    table = table_for(schema, obj)
    cols = {obj.get_field(k).column: v for k, v in ROW.items()}
    with db.transaction() as conn:
        conn.execute(sa.delete(table).where(table.c.id == 999_999))
        conn.execute(sa.insert(table).values(id=999_999, name="prop", **cols))
    return 999_999


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(formula=ARITHMETIC)
def test_random_arithmetic_agrees(any_db: Database, schema: SchemaSnapshot, formula: str) -> None:
    obj = schema.get_object("Formula_Test__c")
    rid = _row_id(any_db, schema)
    expected = compile_python(formula, obj, schema, context_kind="field")(ROW, FormulaContext())
    table = table_for(schema, obj)
    expr = to_sql(formula, obj, schema, any_db.dialect, table_alias=table)
    with any_db.read() as conn:
        got = conn.execute(sa.select(expr).where(table.c.id == rid)).scalar_one()
    if expected is None or got is None:
        assert expected is None and got is None, f"{formula}: SQL {got!r}, Python {expected!r}"
        return
    # ROUND/FLOOR/CEILING/MOD on values within 1e-9 of a boundary can legitimately differ in binary floating point.
    tolerance = 1e-6 * max(1.0, abs(float(expected)))
    assert abs(float(got) - float(expected)) <= tolerance, f"{formula}: SQL {got!r}, Python {expected!r}"
