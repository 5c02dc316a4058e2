"""NORMALIZEPHONE: the comparable form of a phone number, so "555-0100", "(555) 0100" and "+1 555 0100" can be
recognised as one number by a unique field (a before-save flow stores it; docs/formulas.md).

The rule is small and written down rather than clever: keep the digits; drop the domestic country code
(``country``, default 1) when the number starts with ``+<country>``; and, for country 1 only, drop the trunk
``1`` of an 11-digit North American number written without the ``+`` ("1-555-010-0100"). A number with another
country's code keeps it, so a foreign number never collides with a domestic one. Text without digits is blank.
Python (flows, validation rules) and SQL (formula fields; SQLite through the ``keel_phone_key`` function) agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from keel.formula.fn import S_TEXT, Col, Fn, SqlEnv, sig, text, text_lit
from keel.formula.typed import TEXT, TNode


def phone_key(s: str, country: str = "1") -> str | None:
    t = s.strip()
    cc = "".join(c for c in country if c.isdigit())
    if cc and t.startswith("+" + cc):
        digits = "".join(c for c in t[1 + len(cc):] if c.isdigit())
    else:
        digits = "".join(c for c in t if c.isdigit())
        if cc == "1" and len(digits) == 11 and digits[0] == "1":
            digits = digits[1:]
    return digits or None


def _py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return phone_key


def _sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    s = args[0]
    cc = args[1] if len(args) > 1 else text_lit("1")
    if not env.pg:
        return text(sa.func.keel_phone_key(s, cc))

    def digits(x: Col) -> Col:
        return sa.func.regexp_replace(x, "[^0-9]", "", "g")

    t, code = sa.func.btrim(s), digits(cc)
    intl = sa.and_(code != "", sa.func.left(t, 1 + sa.func.length(code)) == text_lit("+").op("||")(code))
    d = digits(t)
    trunk = sa.and_(code == "1", sa.func.length(d) == 11, sa.func.left(d, 1) == "1")
    key = sa.case((intl, digits(sa.func.substr(t, 2 + sa.func.length(code)))), (trunk, sa.func.substr(d, 2)),
                  else_=d)
    return text(sa.func.nullif(key, ""))


ROWS = [
    Fn("NORMALIZEPHONE", "NORMALIZEPHONE(phone[, country_code])", "The phone number's digits without the domestic "
       "country code (default 1), for duplicate detection: (555) 0100 and +1 555-0100 both give 5550100.", 1, 2,
       sig((S_TEXT, S_TEXT), TEXT), py=_py, sql=_sql, category="Text"),
]
