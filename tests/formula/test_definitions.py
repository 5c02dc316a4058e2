"""Definition-time checks: positions and types in errors, cycles, return types, and ``describe_check``."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from formula_cases import build_schema

from keel.errors import MetadataError
from keel.formula import (
    FormulaError,
    check,
    check_formula_fields,
    check_object,
    describe_check,
    field_sql,
    to_sql,
)
from keel.metadata.model import FieldDef, SchemaSnapshot
from keel.metadata.package import load_package, parse_object
from keel.metadata.plan import plan
from keel.metadata.tables import table_for


def schema_with(*docs: dict[str, Any]) -> SchemaSnapshot:
    base = build_schema()
    return plan(base, [parse_object(d) for d in docs]).after


def test_error_has_line_column_and_types(schema: SchemaSnapshot) -> None:
    obj = schema.get_object("Formula_Test__c")
    with pytest.raises(FormulaError) as info:
        check('IF(Flag__c,\n  LEFT(Num__c, 2), "x")', obj, schema)
    err = info.value
    assert (err.line, err.column) == (2, 8)
    assert (err.expected, err.actual) == ("text", "number")
    assert err.code == "INVALID_FORMULA"


def test_return_type_mismatch(schema: SchemaSnapshot) -> None:
    obj = schema.get_object("Formula_Test__c")
    with pytest.raises(FormulaError) as info:
        check("Text__c", obj, schema, returns="number")
    assert (info.value.expected, info.value.actual) == ("number", "text")
    assert check("Num__c * 2", obj, schema, returns="currency").type == "number"
    assert check("Flag__c", obj, schema, returns="checkbox").type == "boolean"


def test_describe_check(schema: SchemaSnapshot) -> None:
    obj = schema.get_object("Formula_Test__c")
    assert describe_check("Num__c + 1", obj, schema, context_kind="validation") == "number"
    assert describe_check("TEXT(Num__c)", obj, schema) == "text (never blank)"
    assert describe_check("1 +", obj, schema) == "Error at line 1, column 4: Expected a value but found end of formula"


def _cyclic(formulas: dict[str, str]) -> dict[str, Any]:
    return {"object": "Cycle__c", "fields": [{"name": n, "type": "formula", "returns": "number", "formula": f}
                                            for n, f in formulas.items()]}


def test_self_reference_is_refused() -> None:
    schema = schema_with(_cyclic({"A__c": "A__c + 1"}))
    with pytest.raises(MetadataError, match="refers to itself: a__c -> a__c"):
        check_formula_fields(schema.get_object("Cycle__c"), schema)


def test_indirect_cycle_is_refused() -> None:
    schema = schema_with(_cyclic({"A__c": "B__c + 1", "B__c": "C__c * 2", "C__c": "A__c"}))
    with pytest.raises(MetadataError, match="refers to itself"):
        check_formula_fields(schema.get_object("Cycle__c"), schema)
    with pytest.raises(FormulaError, match="refers to itself"):
        check("B__c", schema.get_object("Cycle__c"), schema)


def test_cycle_through_parent_is_refused() -> None:
    parent = {"object": "CycP__c", "fields": [
        {"name": "Kid__c", "type": "lookup", "to": "CycK__c"},
        {"name": "P__c", "type": "formula", "returns": "number", "formula": "Kid__r.K__c"}]}
    kid = {"object": "CycK__c", "fields": [
        {"name": "Up__c", "type": "lookup", "to": "CycP__c"},
        {"name": "K__c", "type": "formula", "returns": "number", "formula": "Up__r.P__c"}]}
    schema = schema_with(parent, kid)
    with pytest.raises(MetadataError, match="refers to itself"):
        check_formula_fields(schema.get_object("CycP__c"), schema)


def test_diamond_is_not_a_cycle() -> None:
    schema = schema_with(_cyclic({"A__c": "B__c + C__c", "B__c": "D__c", "C__c": "D__c", "D__c": "1"}))
    check_formula_fields(schema.get_object("Cycle__c"), schema)


def test_depth_limit() -> None:
    fields: list[dict[str, Any]] = [{"name": "Up__c", "type": "lookup", "to": "Deep__c"},
                                    {"name": "V__c", "type": "number"}]
    schema = schema_with({"object": "Deep__c", "fields": fields})
    obj = schema.get_object("Deep__c")
    assert check(".".join(["Up__r"] * 10 + ["V__c"]), obj, schema).type == "number"
    with pytest.raises(FormulaError, match="at most 10"):
        check(".".join(["Up__r"] * 11 + ["V__c"]), obj, schema)


def test_check_object_covers_rules_defaults_and_rollups(schema: SchemaSnapshot) -> None:
    for name in ("Formula_Test__c", "Formula_Parent__c"):
        check_object(schema.get_object(name), schema)
    bad_rule = {"object": "Bad__c", "fields": [{"name": "N__c", "type": "number"}],
                "validation_rules": [{"name": "R", "condition": "N__c + 1", "message": "m"}]}
    s = schema_with(bad_rule)
    with pytest.raises(MetadataError, match="validation rule 'R'"):
        check_object(s.get_object("Bad__c"), s)
    bad_default = {"object": "Bad__c", "fields": [{"name": "D__c", "type": "date", "default": {"formula": "1"}}]}
    s = schema_with(bad_default)
    with pytest.raises(MetadataError, match="default"):
        check_object(s.get_object("Bad__c"), s)


def test_the_standard_and_test_packages_check(schema: SchemaSnapshot) -> None:
    for obj in schema:
        check_object(obj, schema)
    assert load_package  # the packages above were loaded through the real loader


def test_join_parent_callback_is_used(schema: SchemaSnapshot) -> None:
    obj = schema.get_object("Formula_Test__c")
    base = table_for(schema, obj).alias("t")
    asked: list[tuple[str, ...]] = []

    def join_parent(path: tuple[FieldDef, ...]) -> sa.FromClause:
        asked.append(tuple(f.api_name for f in path))
        target = schema.get_object(path[-1].reference_to[0])
        return table_for(schema, target).alias("p" + str(len(path)))

    expr = to_sql("Parent__r.Grand__r.Code__c & Parent__r.Region__c", obj, schema, "sqlite", table_alias=base,
                  join_parent=join_parent)
    sql = str(expr.compile(dialect=sa.dialects.sqlite.dialect()))  # type: ignore[attr-defined]
    assert ("Parent__c", "Grand__c") in asked and ("Parent__c",) in asked
    assert "SELECT" not in sql and "p2." in sql and "p1." in sql


def test_field_sql_rounds_to_scale(schema: SchemaSnapshot) -> None:
    obj = schema.get_object("Formula_Test__c")
    expr = field_sql(obj.get_field("Double__c"), obj, schema, "postgresql")
    sql = str(expr.compile(dialect=sa.dialects.postgresql.dialect()))  # type: ignore[attr-defined]
    assert sql.startswith("round(")
