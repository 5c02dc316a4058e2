"""The case files through ``check`` and ``evaluate``: every case's type and value, and every error's message."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from formula_cases import Case, coerce, context_for, load_cases

from keel.formula import FormulaError, bind, compile_python
from keel.metadata.model import SchemaSnapshot

CASES = load_cases()
OBJECT = "Formula_Test__c"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 400


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, Decimal):
        return isinstance(actual, Decimal) and actual == expected
    if isinstance(expected, bool) or expected is None:
        return actual is expected
    return type(actual) is type(expected) and actual == expected


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, schema: SchemaSnapshot) -> None:
    obj = schema.get_object(OBJECT)
    if case.type == "error":
        with pytest.raises(FormulaError) as info:
            bind(case.formula, obj, schema, context_kind=case.kind, blank_as=case.blank_as)
        assert case.expected() in info.value.message, info.value.message
        return
    checked = bind(case.formula, obj, schema, context_kind=case.kind, blank_as=case.blank_as)
    assert checked.root.type == case.type or (case.expected_raw == "null" and checked.root.type == "null"), (
        f"type {checked.root.type}, expected {case.type}")
    record = coerce(obj, schema, case.raw_record)
    fn = compile_python(case.formula, obj, schema, context_kind=case.kind, blank_as=case.blank_as)
    got = fn(record, context_for(case, schema, obj))
    assert same(got, case.expected()), f"{case.formula!r} gave {got!r}, expected {case.expected()!r}"
