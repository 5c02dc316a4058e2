"""SOQL tokenizer.

The tokenizer is deliberately dumb: it knows literal shapes (strings, numbers, dates, datetimes) and punctuation, and
leaves keywords as identifiers, because SOQL keywords are not reserved everywhere (``Order`` is an object name,
``Type`` a field). Every token carries its 1-based line and column so every later error can point at the text.
"""

from __future__ import annotations

import bisect
import re
from typing import NamedTuple

from keel.errors import MalformedQueryError

IDENT = "IDENT"
STRING = "STRING"
NUMBER = "NUMBER"
DATE = "DATE"
DATETIME = "DATETIME"
OP = "OP"
EOF = "EOF"


class Token(NamedTuple):
    """A token; a NamedTuple because tokenizing is on the hot path of every uncached query."""

    kind: str
    text: str  # for STRING: the raw text between the quotes, escapes still in place
    line: int
    column: int
    offset: int
    upper: str  # upper-cased text, for keyword tests


_DATETIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})"
# Each match is optional whitespace and then one token, so whitespace costs no iteration of its own.
_MASTER = re.compile(
    rf"""
    [ \t\r\n\f]*
    (?:
      (?P<datetime>{_DATETIME})(?![A-Za-z0-9_])
    | (?P<date>\d{{4}}-\d{{2}}-\d{{2}})(?![A-Za-z0-9_:])
    | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?![A-Za-z_])
    | (?P<currency>[A-Za-z]{{3}}\d+\.\d+)(?![A-Za-z0-9_])
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>!=|<>|<=|>=|[=<>(),.:])
    | (?P<string>'(?:[^'\\\n]|\\[\s\S])*')
    | (?P<bad>[^ \t\r\n\f])
    )
""",
    re.VERBOSE,
)
_ESCAPES = {"'": "'", '"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    line = text.count("\n", 0, offset) + 1
    start = text.rfind("\n", 0, offset) + 1
    return line, offset - start + 1


def tokenize(text: str) -> list[Token]:
    """Split SOQL into tokens, ending with an EOF token; raise MALFORMED_QUERY at the first unknown character.

    One ``finditer`` pass over a single pattern keeps the per-token work small: this runs for every query text not
    yet in the plan cache. Lines and columns come from the offset (by bisection only for multi-line text)."""
    out: list[Token] = []
    append = out.append
    new = tuple.__new__
    kinds = _KINDS
    breaks = [k for k, c in enumerate(text) if c == "\n"] if "\n" in text else None
    line, line_start = 1, 0
    # Without trailing whitespace every match attempt finds a token (``bad`` takes any other character), so the
    # scan stays linear however much whitespace a text ends with.
    for m in _MASTER.finditer(text, 0, len(text.rstrip(" \t\r\n\f"))):
        kind = m.lastgroup
        assert kind is not None
        i = m.start(kind)
        word = m.group(kind)
        if breaks is not None:
            line = bisect.bisect_left(breaks, i) + 1
            line_start = breaks[line - 2] + 1 if line > 1 else 0
        col = i - line_start + 1
        if kind == "ident" or kind == "currency":
            append(new(Token, (IDENT, word, line, col, i, word.upper())))
        elif kind == "string":
            raw = word[1:-1]
            if "\\" in raw:  # validate escapes now, so errors point at the literal
                unescape(raw, line=line, column=col)
            append(new(Token, (STRING, raw, line, col, i, raw)))
        elif kind == "bad":
            if word == "'":
                raise MalformedQueryError("unterminated string literal", line=line, column=col)
            raise MalformedQueryError(f"unexpected character: {word!r}", line=line, column=col)
        else:
            append(new(Token, (kinds[kind], word, line, col, i, word)))
    n = len(text)
    if breaks:
        line, line_start = len(breaks) + 1, breaks[-1] + 1
    out.append(Token(EOF, "", line, n - line_start + 1, n, ""))
    return out


_KINDS = {"datetime": DATETIME, "date": DATE, "number": NUMBER, "op": OP}


def unescape(raw: str, *, like: bool = False, line: int = 1, column: int = 1) -> str:
    """The value of a SOQL string literal. With ``like``, ``\\%`` and ``\\_`` stay escaped (for LIKE ... ESCAPE '\\')
    and a literal backslash becomes ``\\\\``; otherwise they are plain ``%`` and ``_``."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = raw[i + 1] if i + 1 < len(raw) else ""
        if nxt in _ESCAPES:
            val = _ESCAPES[nxt]
            out.append("\\\\" if like and val == "\\" else val)
            i += 2
        elif nxt in ("%", "_"):
            out.append("\\" + nxt if like else nxt)
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", raw[i + 2 : i + 6]):
            out.append(chr(int(raw[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise MalformedQueryError(f"invalid escape sequence in string literal: \\{nxt}", line=line, column=column)
    return "".join(out)


def escape(value: str) -> str:
    """The SOQL literal body for ``value`` (the inverse of ``unescape`` without LIKE)."""
    out = []
    for c in value:
        if c in ("'", "\\"):
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\b":
            out.append("\\b")
        elif c == "\f":
            out.append("\\f")
        else:
            out.append(c)
    return "".join(out)
