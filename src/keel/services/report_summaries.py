"""Report summary formulas: a formula over a report's aggregates, per group and for the grand total.

A ratio of two aggregates ("all gate spend ÷ all hires") cannot be one SOQL aggregate, and averaging per-group
ratios gives the wrong answer as soon as groups differ in size. So a report may declare, next to its SOQL,

    summaries:
      - {name: cost_per_hire, label: Cost per hire, formula: "SUM(gate_cost) / SUM(hires)"}

The formula is written in the formula language (its parser, so the syntax and error positions are the same as a
formula field's) over the report's result columns, each inside an aggregate of the report's rows: ``SUM``,
``AVG``, ``MIN``, ``MAX`` and ``COUNT`` (non-blank values). On a group's row the aggregate covers that row, so
``SUM(gate_cost)`` is the row's ``gate_cost``; on the grand total it covers every row. Arithmetic is ``+ - * / ^``,
with ``ROUND(x, digits)`` and ``ABS(x)``. A blank operand, or a division by zero, gives a blank, never an error
or an infinity.

It is evaluated on the aggregated rows the query returned as the viewing user, so it sees exactly what the
report shows: the work stays in the database and this module only combines a handful of numbers per group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from keel.errors import KeelError
from keel.formula import ast as F
from keel.formula.errors import FormulaError
from keel.formula.parser import parse

AGGREGATES = ("SUM", "AVG", "MIN", "MAX", "COUNT")
FUNCTIONS = ("ROUND", "ABS")


@dataclass(frozen=True)
class Summary:
    name: str
    label: str
    formula: str
    tree: F.Node


def parse_summaries(raw: Sequence[Mapping[str, Any]] | None) -> tuple[Summary, ...]:
    """Check every summary's formula once, when the definition is read, so a typo fails the package, not a
    viewer's page. Column names are checked when the report runs: they are the SOQL's aliases."""
    out = []
    for item in raw or []:
        name, formula = str(item.get("name") or ""), str(item.get("formula") or "")
        if not name.isidentifier() or not formula:
            raise KeelError("A report summary needs a name (letters, digits, _) and a formula.", code="INVALID_FIELD")
        try:
            tree = parse(formula)
        except FormulaError as e:
            raise KeelError(f"Summary {name}: {e.message}", code="INVALID_FIELD") from e
        _check(name, tree, inside=False)
        out.append(Summary(name, str(item.get("label") or name), formula, tree))
    return tuple(out)


def _check(name: str, n: F.Node, inside: bool) -> None:
    if isinstance(n, F.Ref):
        if not inside:
            raise KeelError(f"Summary {name}: wrap {'.'.join(n.parts)} in SUM, AVG, MIN, MAX or COUNT; a summary "
                            "is computed from the report's rows.", code="INVALID_FIELD")
        return
    if isinstance(n, F.Literal):
        return
    if isinstance(n, F.Unary | F.Binary):
        if n.op not in ("+", "-", "*", "/", "^"):
            raise KeelError(f"Summary {name}: operator {n.op} is not allowed.", code="INVALID_FIELD")
        for c in (n.operand,) if isinstance(n, F.Unary) else (n.left, n.right):
            _check(name, c, inside)
        return
    if isinstance(n, F.Call) and n.name in AGGREGATES:
        if inside or len(n.args) != 1 or not isinstance(n.args[0], F.Ref):
            raise KeelError(f"Summary {name}: {n.name} takes one column of the report.", code="INVALID_FIELD")
        return
    if isinstance(n, F.Call) and n.name in FUNCTIONS:
        if len(n.args) != (2 if n.name == "ROUND" else 1):
            raise KeelError(f"Summary {name}: wrong number of arguments to {n.name}.", code="INVALID_FIELD")
        for c in n.args:
            _check(name, c, inside)
        return
    raise KeelError(f"Summary {name}: only + - * / ^, {', '.join(AGGREGATES + FUNCTIONS)} are allowed.",
                    code="INVALID_FIELD")


def summarise(summaries: Sequence[Summary], rows: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]],
                                                                                         dict[str, float | None]]:
    """Each row with its summaries added under their names, and the summaries over all rows (the grand total)."""
    out = [{**r, **{s.name: _eval(s, s.tree, [r]) for s in summaries}} for r in rows]
    return out, {s.name: _eval(s, s.tree, rows) for s in summaries}


def _number(v: Any) -> float | None:
    if isinstance(v, dict):  # a parent path the SOQL left nested
        v = next((x for k, x in v.items() if k != "attributes"), None)
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int | float | Decimal):
        return float(v)
    raise KeelError(f"Report column value {v!r} is not a number.", code="INVALID_FIELD")


def _eval(s: Summary, n: F.Node, rows: Sequence[Mapping[str, Any]]) -> float | None:
    if isinstance(n, F.Literal):
        return None if n.value is None or isinstance(n.value, str | bool) else float(n.value)
    if isinstance(n, F.Unary):
        v = _eval(s, n.operand, rows)
        return None if v is None else (-v if n.op == "-" else v)
    if isinstance(n, F.Binary):
        a, b = _eval(s, n.left, rows), _eval(s, n.right, rows)
        if a is None or b is None or (n.op == "/" and b == 0):
            return None
        if n.op == "^":
            try:
                p = a ** b
            except (OverflowError, ZeroDivisionError):
                return None
            return p if isinstance(p, float | int) else None  # a negative base to a fractional power
        return a + b if n.op == "+" else a - b if n.op == "-" else a * b if n.op == "*" else a / b
    assert isinstance(n, F.Call)
    if n.name in AGGREGATES:
        ref = n.args[0]
        assert isinstance(ref, F.Ref)
        col = ".".join(ref.parts)
        if rows and not any(col in r for r in rows):
            raise KeelError(f"Summary {s.name}: the report has no column {col}.", code="INVALID_FIELD")
        vals = [v for r in rows if (v := _number(r.get(col))) is not None]
        if n.name == "COUNT":
            return float(len(vals))
        if not vals:
            return None
        return {"SUM": sum(vals), "MIN": min(vals), "MAX": max(vals)}.get(n.name, sum(vals) / len(vals))
    args = [_eval(s, a, rows) for a in n.args]
    if any(a is None for a in args):
        return None
    if n.name == "ABS":
        return abs(args[0] or 0.0)
    return round(args[0] or 0.0, int(args[1] or 0))
