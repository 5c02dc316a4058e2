"""Validation rules compiled once per snapshot into one callable the record lifecycle runs per row.

A rule's condition is TRUE when the record is invalid. Blank fields are blank (not zero) in rules, as in
Salesforce. Rules compile to closures when the snapshot is first used, so a 10k-row batch pays only for the
closures' calls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from keel.formula.check import bind
from keel.formula.context import FormulaContext
from keel.formula.evaluate import compile_node
from keel.formula.typed import memo
from keel.metadata.model import ObjectDef, SchemaSnapshot, ValidationRule


class RuleFailure(NamedTuple):
    rule: ValidationRule
    message: str
    field: str | None


Validator = Callable[[Mapping[str, Any], FormulaContext], list[RuleFailure]]


def compile_validation_rules(obj: ObjectDef, schema: SchemaSnapshot) -> Validator:
    """``validate(record, context) -> [RuleFailure]`` for the object's active rules (empty list when valid).

    Raises ``FormulaError`` if a rule does not type-check (plan time should have caught it). ``context.prior``
    and ``context.is_new`` drive ISNEW/ISCHANGED/PRIORVALUE; use ``context.for_row(prior)`` per row.
    """
    key = ("formula.validation", obj.key)
    hit = memo(schema).get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    compiled = []
    for rule in obj.validation_rules:
        if not rule.active:
            continue
        checked = bind(rule.condition, obj, schema, context_kind="validation", blank_as="blank",
                       returns="checkbox")
        compiled.append((compile_node(checked.root), RuleFailure(rule, rule.message, rule.field)))
    rules = tuple(compiled)

    def validate(record: Mapping[str, Any], context: FormulaContext) -> list[RuleFailure]:
        return [failure for cond, failure in rules if cond(record, context)]

    memo(schema)[key] = validate
    return validate
