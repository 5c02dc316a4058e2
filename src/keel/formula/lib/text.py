"""Text and picklists: ``&``, TEXT VALUE LEN LEFT RIGHT MID FIND CONTAINS BEGINS UPPER LOWER TRIM SUBSTITUTE LPAD
RPAD REGEX HYPERLINK ISPICKVAL INCLUDES.

Positions are 1-based and counts are truncated to integers, as in Salesforce. Text never compares case-insensitively
here: BEGINS and CONTAINS avoid LIKE, which SQLite treats case-insensitively.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from keel.formula.fn import (
    S_NUM,
    S_TEXT,
    ArgError,
    Col,
    Fn,
    SqlEnv,
    as_int,
    as_num,
    boolean,
    int_lit,
    nz_text,
    sig,
    text,
    text_lit,
)
from keel.formula.typed import (
    BOOLEAN,
    DATE,
    DATETIME,
    MULTIPICKLIST,
    NULL,
    NUMBER,
    NUMERIC,
    PICKLIST,
    TEXT,
    TIME,
    TLit,
    TNode,
)
from keel.metadata.values import format_time

_NUMBER_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)$")
_DIGITS = 15


def number_text(x: Decimal) -> str:
    """TEXT(number): at most 15 significant digits, no trailing zeros, never an exponent."""
    if x == x.to_integral_value():
        return str(int(x))
    exp = x.adjusted() - (_DIGITS - 1)
    q = x.quantize(Decimal(1).scaleb(exp), rounding=ROUND_HALF_UP)
    out = format(q.normalize(), "f")
    return out if out != "-0" else "0"


def _concat_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda a, b: (a or "") + (b or "")


def _concat_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return text(nz_text(args[0], nodes[0]).op("||")(nz_text(args[1], nodes[1])))


# --- TEXT and VALUE -------------------------------------------------------------------------------------------

_TEXTABLE = frozenset({TEXT, PICKLIST, BOOLEAN, DATE, DATETIME, TIME}) | NUMERIC


def _text_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    t = types[0]
    if t in NUMERIC:
        return number_text
    if t == DATE:
        return lambda d: d.isoformat()
    if t == DATETIME:
        return lambda d: d.strftime("%Y-%m-%d %H:%M:%SZ")
    if t == TIME:
        return format_time
    if t == BOOLEAN:
        return lambda b: "true" if b else "false"
    return lambda s: s


def _text_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    x, t = args[0], nodes[0].type
    if t in NUMERIC:
        if env.pg:
            digits = sa.cast(_DIGITS - 1 - sa.func.floor(sa.func.log(sa.func.abs(x))), sa.Integer())
            frac = sa.cast(sa.func.trim_scale(sa.func.round(x, digits)), sa.Text())
            whole = sa.cast(sa.func.trunc(x), sa.Text())
            return text(sa.case((x == sa.func.trunc(x), whole), else_=frac))
        whole = sa.cast(sa.cast(x, sa.Integer()), sa.Text())
        return text(sa.case((x == sa.cast(x, sa.Integer()), whole), else_=sa.func.keel_num_text(x)))
    if t == DATE:
        return text(sa.func.to_char(x, "YYYY-MM-DD")) if env.pg else text(x)
    if t == DATETIME:
        if env.pg:
            return text(sa.func.to_char(x, 'YYYY-MM-DD HH24:MI:SS"Z"'))
        return text(sa.func.strftime("%Y-%m-%d %H:%M:%SZ", x))
    if t == TIME:
        if env.pg:
            return text(sa.func.to_char(sa.cast(x, sa.Interval()), 'HH24:MI:SS.MS"Z"'))
        return text(sa.func.substr(x, 1, 12).op("||")(text_lit("Z")))
    if t == BOOLEAN:
        return text(sa.case((x, text_lit("true")), else_=text_lit("false")))
    return text(x)


def _value_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    def run(s: str) -> Decimal | None:
        s = s.strip()
        return Decimal(s) if _NUMBER_TEXT.match(s) else None

    return run


def _value_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    s = sa.func.trim(args[0])
    if env.pg:
        ok: Col = s.op("~")(text_lit(_NUMBER_TEXT.pattern))
        return sa.case((ok, sa.cast(sa.case((ok, s), else_=text_lit("0")), sa.Numeric())))
    unsigned = sa.case((sa.func.substr(s, 1, 1).in_(["+", "-"]), sa.func.substr(s, 2)), else_=s)
    ok = sa.and_(unsigned != "", unsigned != ".", unsigned.op("NOT GLOB")(text_lit("*[^0-9.]*")),
                 unsigned.op("NOT GLOB")(text_lit("*.*.*")))
    return sa.case((ok, sa.cast(s, sa.Float())))


# --- measuring and slicing ------------------------------------------------------------------------------------

def _len_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return as_num(sa.func.length(args[0]), env)


def _left_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda s, n: s[: int(n)] if n > 0 else ""


def _left_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    s, n = args
    return text(sa.case((n > 0, sa.func.substr(s, 1, as_int(n, env))), else_=text_lit("")))


def _right_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda s, n: s[max(len(s) - int(n), 0):] if n >= 1 else ""


def _right_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    s, n = args
    k = as_int(n, env)
    tail = sa.func.right(s, k) if env.pg else sa.func.substr(s, -k)
    return text(sa.case((n >= 1, tail), else_=text_lit("")))


def _mid_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    def run(s: str, start: Decimal, n: Decimal) -> str:
        b = max(int(start), 1) - 1
        return s[b: b + int(n)] if n >= 1 else ""

    return run


def _mid_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    s, start, n = args
    first = sa.case((start >= 1, as_int(start, env)), else_=int_lit(1))
    return text(sa.case((n >= 1, sa.func.substr(s, first, as_int(n, env))), else_=text_lit("")))


def _find_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    def run(search: str, s: str, start: Decimal = Decimal(1)) -> Decimal:
        if search == "":
            return Decimal(0)
        return Decimal(s.find(search, max(int(start), 1) - 1) + 1)

    return run


def _find_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    search, s = args[0], args[1]
    start = sa.case((args[2] >= 1, as_int(args[2], env)), else_=int_lit(1)) if len(args) > 2 else int_lit(1)
    locate = sa.func.strpos if env.pg else sa.func.instr
    hit = locate(sa.func.substr(s, start), search)
    found = sa.case((search == "", 0), (hit > 0, hit + start - 1), else_=0)
    return as_num(found, env)


def _contains_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda s, part: part in s


def _contains_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    locate = sa.func.strpos if env.pg else sa.func.instr
    return boolean(locate(args[0], args[1]) > 0)


def _begins_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda s, prefix: s.startswith(prefix)


def _begins_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    s, prefix = args
    return boolean(sa.func.substr(s, 1, sa.func.length(prefix)) == prefix)


def _simple(py: Callable[..., Any], sql: str) -> tuple[Callable[[tuple[str, ...], str], Callable[..., Any]],
                                                       Callable[[list[Col], tuple[TNode, ...], str, SqlEnv], Col]]:
    return (lambda types, ret: py), (lambda args, nodes, ret, env: text(getattr(sa.func, sql)(*args)))


def _substitute_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda s, old, new: s if old == "" else s.replace(old, new)


def _pad_py(left: bool) -> Callable[[tuple[str, ...], str], Callable[..., Any]]:
    def factory(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
        def run(s: str, n: Decimal, pad: str = " ") -> str:
            width = int(n)
            if width <= 0:
                return ""
            if len(s) >= width or pad == "":
                return s[:width]
            fill = (pad * (width // len(pad) + 1))[: width - len(s)]
            return fill + s if left else s + fill

        return run

    return factory


def _pad_sql(left: bool) -> Callable[[list[Col], tuple[TNode, ...], str, SqlEnv], Col]:
    def impl(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
        s, n = args[0], as_int(args[1], env)
        pad = args[2] if len(args) > 2 else text_lit(" ")
        if env.pg:
            padded = (sa.func.lpad if left else sa.func.rpad)(s, n, pad)
            return text(sa.case((n <= 0, text_lit("")), (pad == "", sa.func.substr(s, 1, n)), else_=padded))
        fill = sa.func.substr(sa.func.replace(sa.func.hex(sa.func.zeroblob(n)), "00", pad), 1,
                              n - sa.func.length(s))
        joined = fill.op("||")(s) if left else s.op("||")(fill)
        return text(sa.case((n <= 0, text_lit("")), (sa.or_(sa.func.length(s) >= n, pad == ""),
                                                      sa.func.substr(s, 1, n)), else_=joined))

    return impl


@lru_cache(maxsize=512)
def compile_regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def regex_match(s: str, pattern: str) -> bool:
    """REGEX: the whole text must match (Salesforce semantics); an invalid pattern matches nothing."""
    rx = compile_regex(pattern)
    return bool(rx is not None and rx.fullmatch(s))


def _regex_typer(args: tuple[TNode, ...]) -> str:
    sig((S_TEXT, S_TEXT), BOOLEAN)(args)
    p = args[1]
    if isinstance(p, TLit) and isinstance(p.value, str) and compile_regex(p.value) is None:
        raise ArgError(1, f"invalid regular expression {p.value!r}")
    return BOOLEAN


def _regex_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    s, pattern = args
    if env.pg:
        anchored = text_lit("^(?:").op("||")(pattern).op("||")(text_lit(")$"))
        return boolean(s.op("~")(anchored))
    return boolean(sa.func.keel_regex(s, pattern) == 1)


def _escape_py(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _escape_sql(x: Col) -> Col:
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
        x = sa.func.replace(x, a, b)
    return x


def _hyperlink_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    def run(url: str | None, label: str | None, target: str | None = "_blank") -> str:
        return (f'<a href="{_escape_py(url or "")}" target="{_escape_py(target or "")}">'
                f'{_escape_py(label or "")}</a>')

    return run


def _hyperlink_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    url, label = nz_text(args[0], nodes[0]), nz_text(args[1], nodes[1])
    target = nz_text(args[2], nodes[2]) if len(args) > 2 else text_lit("_blank")
    parts = [text_lit('<a href="'), _escape_sql(url), text_lit('" target="'), _escape_sql(target),
             text_lit('">'), _escape_sql(label), text_lit("</a>")]
    out = parts[0]
    for p in parts[1:]:
        out = out.op("||")(p)
    return text(out)


def _ispickval_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda p, v: (p or "") == (v or "")


def _ispickval_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    return boolean(nz_text(args[0], nodes[0]) == nz_text(args[1], nodes[1]))


def _includes_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda p, v: v != "" and v in (p or "").split(";")


def _includes_sql(args: list[Col], nodes: tuple[TNode, ...], ret: str, env: SqlEnv) -> Col:
    p, v = nz_text(args[0], nodes[0]), nz_text(args[1], nodes[1])
    wrapped = text_lit(";").op("||")(p).op("||")(text_lit(";"))
    needle = text_lit(";").op("||")(v).op("||")(text_lit(";"))
    locate = sa.func.strpos if env.pg else sa.func.instr
    return boolean(sa.and_(v != "", locate(wrapped, needle) > 0))


def _len_py(types: tuple[str, ...], ret: str) -> Callable[..., Any]:
    return lambda s: Decimal(len(s))


_upper_py, _upper_sql = _simple(str.upper, "upper")
_lower_py, _lower_sql = _simple(str.lower, "lower")
_trim_py, _trim_sql = _simple(lambda s: s.strip(" "), "trim")
_T1 = sig((S_TEXT,), TEXT)
_PICK = frozenset({PICKLIST})
_MULTI = frozenset({MULTIPICKLIST})
_TEXT_ARGS = sig((), TEXT, S_TEXT)

ROWS = [
    Fn("&", "a & b", "Joins text; a blank side counts as empty.", 2, 2, sig((S_TEXT, S_TEXT), TEXT),
       py=_concat_py, sql=_concat_sql, nulls="pass", operator=True, category="Operators"),
    Fn("TEXT", "TEXT(value)", "Number (up to 15 significant digits, no exponent), date (YYYY-MM-DD), datetime "
       "(YYYY-MM-DD HH:MM:SSZ, GMT), time (HH:MM:SS.mmmZ), checkbox (true/false) or picklist value as text.", 1, 1,
       sig((_TEXTABLE,), TEXT), py=_text_py, sql=_text_sql, category="Text"),
    Fn("VALUE", "VALUE(text)", "The number written in the text; blank when it is not a number.", 1, 1,
       sig((S_TEXT,), NUMBER), py=_value_py, sql=_value_sql, category="Text"),
    Fn("LEN", "LEN(text)", "The number of characters.", 1, 1, sig((S_TEXT,), NUMBER), py=_len_py, sql=_len_sql,
       category="Text"),
    Fn("LEFT", "LEFT(text, count)", "The first count characters.", 2, 2, sig((S_TEXT, S_NUM), TEXT),
       py=_left_py, sql=_left_sql, category="Text"),
    Fn("RIGHT", "RIGHT(text, count)", "The last count characters.", 2, 2, sig((S_TEXT, S_NUM), TEXT),
       py=_right_py, sql=_right_sql, category="Text"),
    Fn("MID", "MID(text, start, count)", "count characters from position start (1-based).", 3, 3,
       sig((S_TEXT, S_NUM, S_NUM), TEXT), py=_mid_py, sql=_mid_sql, category="Text"),
    Fn("FIND", "FIND(search, text[, start])", "The 1-based position of search in text from start, or 0.", 2, 3,
       sig((S_TEXT, S_TEXT, S_NUM), NUMBER), py=_find_py, sql=_find_sql, category="Text"),
    Fn("CONTAINS", "CONTAINS(text, compare)", "TRUE when text contains compare (case-sensitive).", 2, 2,
       sig((S_TEXT, S_TEXT), BOOLEAN), py=_contains_py, sql=_contains_sql, category="Text"),
    Fn("BEGINS", "BEGINS(text, compare)", "TRUE when text starts with compare (case-sensitive).", 2, 2,
       sig((S_TEXT, S_TEXT), BOOLEAN), py=_begins_py, sql=_begins_sql, category="Text"),
    Fn("UPPER", "UPPER(text)", "Upper case.", 1, 1, _T1, py=_upper_py, sql=_upper_sql, category="Text"),
    Fn("LOWER", "LOWER(text)", "Lower case.", 1, 1, _T1, py=_lower_py, sql=_lower_sql, category="Text"),
    Fn("TRIM", "TRIM(text)", "Removes leading and trailing spaces.", 1, 1, _T1, py=_trim_py, sql=_trim_sql,
       category="Text"),
    Fn("SUBSTITUTE", "SUBSTITUTE(text, old, new)", "Replaces every occurrence of old with new.", 3, 3,
       sig((S_TEXT, S_TEXT, S_TEXT), TEXT), py=_substitute_py,
       sql=lambda a, n, r, e: text(sa.func.replace(*a)), category="Text"),
    Fn("LPAD", "LPAD(text, length[, pad])", "Pads on the left to length with pad (default space); longer text "
       "is cut to length.", 2, 3, sig((S_TEXT, S_NUM, S_TEXT), TEXT), py=_pad_py(True), sql=_pad_sql(True),
       category="Text"),
    Fn("RPAD", "RPAD(text, length[, pad])", "Pads on the right to length with pad (default space); longer "
       "text is cut to length.", 2, 3, sig((S_TEXT, S_NUM, S_TEXT), TEXT), py=_pad_py(False),
       sql=_pad_sql(False), category="Text"),
    Fn("REGEX", "REGEX(text, pattern)", "TRUE when the whole text matches the regular expression.", 2, 2,
       _regex_typer, py=lambda t, r: regex_match, sql=_regex_sql, category="Text"),
    Fn("HYPERLINK", "HYPERLINK(url, label[, target])", "An HTML link (url, label and target are escaped; "
       "target defaults to _blank); blank parts are empty.", 2, 3, _TEXT_ARGS, py=_hyperlink_py, sql=_hyperlink_sql,
       nulls="pass", category="Text"),
    Fn("ISPICKVAL", "ISPICKVAL(picklist, value)", "TRUE when the picklist holds value (case-sensitive).", 2, 2,
       sig((_PICK, S_TEXT), BOOLEAN), py=_ispickval_py, sql=_ispickval_sql, category="Picklists"),
    Fn("INCLUDES", "INCLUDES(multiselect, value)", "TRUE when the multi-select picklist includes value.", 2, 2,
       sig((_MULTI, S_TEXT), BOOLEAN), py=_includes_py, sql=_includes_sql, category="Picklists"),
]

__all__ = ["NULL", "ROWS", "number_text", "regex_match"]
_unused = (dt, int_lit)
