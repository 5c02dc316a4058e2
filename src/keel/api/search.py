"""``/search``: basic SOSL (``FIND {term} [IN ALL|NAME|EMAIL|PHONE FIELDS] [RETURNING Obj(fields [WHERE …]
[ORDER BY …] [LIMIT n]), …] [LIMIT n]``), answered from the full-text indexes by ``services.search``.

This module parses the SOSL statement; the search service matches the term through each object's index as the
user (visible records, readable fields only) and reads each RETURNING object's records with SOQL, so results obey
exactly the same record visibility and field masks as queries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from keel.api.errors import error
from keel.api.routing import ApiCall, Reply
from keel.services.search import MAX_ROWS, find, parse_terms, searchable_objects

_HEAD = re.compile(r"^\s*FIND\s*\{((?:[^}\\]|\\.)*)\}\s*(.*)$", re.I | re.S)
_HEAD_QUOTED = re.compile(r"^\s*FIND\s*'((?:[^'\\]|\\.)*)'\s*(.*)$", re.I | re.S)
_IN = re.compile(r"^IN\s+(ALL|NAME|EMAIL|PHONE)\s+FIELDS\s*(.*)$", re.I | re.S)
_LIMIT_TAIL = re.compile(r"\s+LIMIT\s+(\d+)\s*$", re.I)
_IDENT = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*(.*)$", re.S)


@dataclass
class Returning:
    obj: str
    fields: str = "Id"
    where: str | None = None
    order: str | None = None
    limit: int | None = None


def _bad(message: str) -> Exception:
    return error("MALFORMED_SEARCH", message)


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside parentheses and quotes."""
    out, depth, quote_on, cur, i = [], 0, False, [], 0
    while i < len(text):
        c = text[i]
        if quote_on:
            cur.append(c)
            if c == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == "'":
                quote_on = False
        elif c == "'":
            quote_on = True
            cur.append(c)
        elif c == "(":
            depth += 1
            cur.append(c)
        elif c == ")":
            depth -= 1
            cur.append(c)
        elif c == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if quote_on or depth:
        raise _bad("Unbalanced quotes or parentheses in the search.")
    out.append("".join(cur))
    return out


_CLAUSE = re.compile(r"\b(WHERE|ORDER\s+BY|LIMIT)\b", re.I)


def _clauses(inner: str) -> Returning:
    """``fields [WHERE …] [ORDER BY …] [LIMIT n]``, splitting on keywords outside quotes."""
    marks: list[tuple[int, int, str]] = []
    in_q = False
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "\\" and in_q:
            i += 2
            continue
        if c == "'":
            in_q = not in_q
        elif not in_q:
            m = _CLAUSE.match(inner, i)
            if m and (i == 0 or not (inner[i - 1].isalnum() or inner[i - 1] == "_")):
                marks.append((m.start(), m.end(), re.sub(r"\s+", " ", m.group(1).upper())))
                i = m.end()
                continue
        i += 1
    r = Returning("")
    r.fields = inner[: marks[0][0]] if marks else inner
    for n, (_, end, kw) in enumerate(marks):
        stop = marks[n + 1][0] if n + 1 < len(marks) else len(inner)
        value = inner[end:stop].strip()
        if kw == "WHERE":
            r.where = value
        elif kw == "ORDER BY":
            r.order = value
        else:
            if not value.isdigit():
                raise _bad("LIMIT needs a number.")
            r.limit = int(value)
    if not r.fields.strip():
        r.fields = "Id"
    return r


def parse_sosl(text: str) -> tuple[str, str, list[Returning] | None, int | None]:
    m = _HEAD.match(text) or _HEAD_QUOTED.match(text)
    if not m:
        raise _bad("A search starts with FIND {term}.")
    term, rest = m.group(1), m.group(2).strip()
    scope = "ALL"
    mi = _IN.match(rest)
    if mi:
        scope, rest = mi.group(1).upper(), mi.group(2).strip()
    limit: int | None = None
    ml = _LIMIT_TAIL.search(" " + rest)
    if ml:  # anchored at the end, so never inside a RETURNING object's parentheses
        limit = int(ml.group(1))
        rest = (" " + rest)[: ml.start()].strip()
    if not rest:
        return term, scope, None, limit
    if not rest.upper().startswith("RETURNING"):
        raise _bad(f"Unexpected text in the search: {rest[:40]}")
    specs: list[Returning] = []
    for part in _split_top(rest[len("RETURNING"):]):
        mo = _IDENT.match(part)
        if not mo:
            raise _bad("RETURNING needs object names.")
        name, tail = mo.group(1), mo.group(2).strip()
        if tail:
            if not (tail.startswith("(") and tail.endswith(")")):
                raise _bad(f"Bad RETURNING clause for {name}.")
            spec = _clauses(tail[1:-1])
        else:
            spec = Returning("")
        spec.obj = name
        specs.append(spec)
    return term, scope, specs, limit


def search(call: ApiCall) -> Reply:
    text = call.params.get("q", "")
    if not text.strip():
        raise _bad("The q parameter is required.")
    term, scope, specs, limit = parse_sosl(text)
    expr = parse_terms(term)
    actor = call.ctx.actor
    total_limit = min(limit or MAX_ROWS, MAX_ROWS)
    records: list[dict[str, Any]] = []
    with call.reading() as conn:
        if specs is None:
            specs = [Returning(o.api_name) for o in searchable_objects(call.ctx, conn)]
        schema = call.ctx.schema(conn)
        for spec in specs:
            if len(records) >= total_limit:
                break
            obj = schema.find_object(spec.obj)
            if obj is None or not (actor.is_system or actor.access.can(obj.api_name, "read")):
                raise error("INVALID_TYPE", f"sObject type '{spec.obj}' is not supported.")
            n = min(spec.limit or total_limit, total_limit - len(records))
            records.extend(find(call.ctx, conn, obj, expr, scope=scope, fields=spec.fields, where=spec.where,
                                order=spec.order, limit=n, api_version=call.version))
    return Reply(200, {"searchRecords": records[:total_limit]})
