"""The formula language: parser, type checker, and two back ends (``evaluate`` and ``to_sql``) fed by one
function table. See ``docs/formulas.md`` for the language and DESIGN §4 "Formulas" for the contract."""

from __future__ import annotations

from keel.formula.check import bind, check, check_formula_fields, check_object, describe_check
from keel.formula.context import FormulaContext
from keel.formula.errors import FormulaError
from keel.formula.evaluate import compile_field, compile_python, evaluate
from keel.formula.functions import FUNCTIONS
from keel.formula.parser import parse
from keel.formula.rollup import recalc_all, rollup_sql
from keel.formula.sql import field_sql, to_sql
from keel.formula.typed import Checked, TypeInfo
from keel.formula.validation import RuleFailure, compile_validation_rules

__all__ = [
    "FUNCTIONS", "Checked", "FormulaContext", "FormulaError", "RuleFailure", "TypeInfo", "bind", "check",
    "check_formula_fields", "check_object", "compile_field", "compile_python", "compile_validation_rules",
    "describe_check", "evaluate", "field_sql", "parse", "recalc_all", "rollup_sql", "to_sql",
]
