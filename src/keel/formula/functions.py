"""THE function table: every function and operator the formula language has, one row each (see ``fn.Fn``).

The type checker, ``evaluate``, ``to_sql`` and the reference in ``docs/formulas.md`` all read this table, so a
function exists everywhere or nowhere.
"""

from __future__ import annotations

from keel.formula.fn import Fn
from keel.formula.lib import change, dates, logic, maths, phone, text, times

FUNCTIONS: dict[str, Fn] = {}
for _row in (*logic.ROWS, *maths.ROWS, *text.ROWS, *phone.ROWS, *dates.ROWS, *times.ROWS, *change.ROWS):
    if _row.name in FUNCTIONS:  # pragma: no cover - a programming error caught at import
        raise RuntimeError(f"function {_row.name} is defined twice")
    FUNCTIONS[_row.name] = _row

OPERATORS = {"+": "+", "-": "-", "*": "*", "/": "/", "^": "^", "&": "&", "=": "=", "!=": "!=", "<": "<",
             "<=": "<=", ">": ">", ">=": ">=", "&&": "&&", "||": "||"}
UNARY = {"-": "NEG", "!": "!"}
