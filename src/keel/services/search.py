"""Full-text search as the acting user: the one search service behind ``/search`` (SOSL) and the web app's global
search.

How a search runs, per object:
1. The SOSL search expression is parsed into words, phrases, trailing ``*`` prefixes, ``AND``/``OR``/``AND NOT`` and
   parentheses. Every token is reduced to letters and digits, which is exactly how the index tokenises stored text
   (``storage.search``), so user text can never carry FTS5 or tsquery syntax: operators are emitted by us and each
   token is quoted.
2. The object's full-text index gives the ids of matching records, restricted in the same SQL statement to the
   records the user may read (the security predicate, ``is_deleted = false``) and matched only on the fields the
   user may read that the scope (ALL/NAME/EMAIL/PHONE FIELDS) names. A hidden field therefore never makes a record
   match, and a hidden record is never a candidate. Like Salesforce, at most ``MAX_ROWS`` candidates per object are
   taken, best first, before the RETURNING clause's WHERE is applied.
3. The records are read with SOQL (``Id IN (…)`` plus the RETURNING WHERE, ORDER BY and LIMIT) through the query
   service's options, so the row filter and field mask apply again and the record shape is that of a query.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.context import Context
from keel.errors import KeelError
from keel.metadata.model import FieldDef, ObjectDef
from keel.metadata.tables import search_fields, table_for
from keel.metadata.types import effective_type
from keel.services.query import query
from keel.storage import ids, search

MAX_ROWS = 2000
MAX_TERMS = 100
MAX_DEPTH = 20
SCOPES = ("ALL", "NAME", "EMAIL", "PHONE")
_TOKEN = re.compile(r"[^\W_]+")


# --- the search expression ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Term:
    """A word or a quoted phrase: its tokens in order (adjacent in the text), the last one a prefix if ``prefix``."""

    tokens: tuple[str, ...]
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Op:
    kind: str  # AND | OR | AND NOT
    left: Expr
    right: Expr


Expr = Term | Op


def _bad(message: str) -> KeelError:
    return KeelError(message, code="MALFORMED_SEARCH")


def _lex(text: str) -> list[tuple[str, str]]:
    """``(kind, value)`` pairs: ``(`` ``)`` ``word`` ``phrase``. A backslash makes the next character literal; any
    other reserved character (``? & | ! { } [ ] ^ ~ : + - '``) only separates tokens."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    word: list[str] = []

    def flush() -> None:
        if word:
            out.append(("word", "".join(word)))
            word.clear()

    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            word.append(text[i + 1] if text[i + 1] != "*" else " ")  # an escaped * is not a wildcard
            i += 2
        elif c.isspace():
            flush()
            i += 1
        elif c in "()":
            flush()
            out.append((c, c))
            i += 1
        elif c == '"':
            flush()
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise _bad("A quoted phrase in the search is not closed.")
            star = j + 1 < n and text[j + 1] == "*"
            out.append(("phrase", "".join(buf) + ("*" if star else "")))
            i = j + (2 if star else 1)
        else:
            word.append(c)
            i += 1
    flush()
    return out


def _term(raw: str) -> Term | None:
    prefix = raw.rstrip().endswith("*") or raw.rstrip().endswith("?")
    tokens = tuple(t.lower() for t in _TOKEN.findall(raw))
    return Term(tokens, prefix) if tokens else None


class _Parser:
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def keyword(self, word: str) -> bool:
        item = self.peek()
        if item is not None and item[0] == "word" and item[1].upper() == word:
            self.pos += 1
            return True
        return False

    def expr(self) -> Expr | None:
        left = self.conj()
        while self.keyword("OR"):
            right = self.conj()
            left = right if left is None else left if right is None else Op("OR", left, right)
        return left

    def conj(self) -> Expr | None:
        left = self.unary()
        while True:
            item = self.peek()
            if item is None or item[0] == ")" or (item[0] == "word" and item[1].upper() == "OR"):
                return left
            kind = "AND"
            if self.keyword("AND"):
                kind = "AND NOT" if self.keyword("NOT") else "AND"
            elif self.keyword("NOT"):
                kind = "AND NOT"
            right = self.unary()
            if right is None:
                continue
            if left is None:
                if kind == "AND NOT":
                    raise _bad("AND NOT needs a term on its left.")
                left = right
            else:
                left = Op(kind, left, right)

    def unary(self) -> Expr | None:
        item = self.peek()
        if item is None:
            return None
        self.pos += 1
        if item[0] == "(":
            inner = self.expr()
            if self.peek() != (")", ")"):
                raise _bad("Unbalanced parentheses in the search.")
            self.pos += 1
            return inner
        if item[0] == ")":
            raise _bad("Unbalanced parentheses in the search.")
        return _term(item[1])


def parse_terms(text: str) -> Expr:
    """The search expression of ``FIND {text}``. Raises INVALID_SEARCH for terms of fewer than two characters."""
    items = _lex(text)
    depth = deepest = 0
    for kind, _ in items:
        depth += 1 if kind == "(" else -1 if kind == ")" else 0
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH or sum(kind in ("word", "phrase") for kind, _ in items) > MAX_TERMS:
        # The expression is a tree walked recursively; bounding it keeps a hostile term from exhausting the stack.
        raise _bad(f"A search has at most {MAX_TERMS} words and {MAX_DEPTH} levels of parentheses.")
    p = _Parser(items)
    expr = p.expr()
    if p.peek() is not None:
        raise _bad("Unbalanced parentheses in the search.")
    if expr is None or max((len(t) for term in _terms(expr) for t in term.tokens), default=0) < 2:
        raise KeelError("search term must be longer than one character", code="INVALID_SEARCH")
    return expr


def as_prefixes(e: Expr) -> Expr:
    """Every word (and each phrase's last word) as a prefix: the web's search box matches as the user types."""
    if isinstance(e, Term):
        return Term(e.tokens, True)
    return Op(e.kind, as_prefixes(e.left), as_prefixes(e.right))


def loose_terms(text: str) -> Expr | None:
    """A search box's text as search terms: SOSL syntax when it parses, else just its words (a stray quote or
    parenthesis should not turn a person's search into an error); None when no word is long enough."""
    for attempt in (text, " ".join(_TOKEN.findall(text))):
        try:
            return as_prefixes(parse_terms(attempt))
        except KeelError:
            continue
    return None


def _terms(e: Expr) -> list[Term]:
    return [e] if isinstance(e, Term) else _terms(e.left) + _terms(e.right)


def to_fts5(e: Expr) -> str:
    """FTS5 query syntax: every phrase double-quoted (tokens hold only letters and digits)."""
    if isinstance(e, Term):
        return '"' + " ".join(e.tokens) + '"' + ("*" if e.prefix else "")
    op = {"AND": "AND", "OR": "OR", "AND NOT": "NOT"}[e.kind]
    return f"({to_fts5(e.left)} {op} {to_fts5(e.right)})"


def to_tsquery(e: Expr) -> str:
    """``to_tsquery`` syntax: every token single-quoted, phrases with ``<->``, prefixes with ``:*``."""
    if isinstance(e, Term):
        parts = [f"'{t}'" for t in e.tokens]
        if e.prefix:
            parts[-1] += ":*"
        return "(" + " <-> ".join(parts) + ")"
    if e.kind == "AND NOT":
        return f"({to_tsquery(e.left)} & !{to_tsquery(e.right)})"
    return f"({to_tsquery(e.left)} {'&' if e.kind == 'AND' else '|'} {to_tsquery(e.right)})"


# --- matching records --------------------------------------------------------------------------------------------

def _in_scope(obj: ObjectDef, f: FieldDef, scope: str) -> bool:
    if scope == "NAME":
        return f.api_name == "Name"
    if scope in ("EMAIL", "PHONE"):
        return effective_type(f) == scope.lower()
    return True


def searched_fields(ctx: Context, obj: ObjectDef, scope: str = "ALL") -> list[FieldDef]:
    """The indexed fields a search in ``scope`` matches on: only those the user may read."""
    actor = ctx.actor
    return [f for f in search_fields(obj) if _in_scope(obj, f, scope)
            and (actor.is_system or actor.access.field_readable(obj.api_name, f.api_name))]


def matching_ids(ctx: Context, conn: Connection, obj: ObjectDef, expr: Expr, scope: str = "ALL",
                 limit: int = MAX_ROWS) -> list[int]:
    """Ids of the records of ``obj`` the user can read that match ``expr`` on readable fields, best first."""
    fields = searched_fields(ctx, obj, scope)
    if not fields:
        return []
    t = table_for(ctx.schema(conn), obj).alias("t")
    cols = [f.column or "" for f in fields]
    every = [f.column or "" for f in search_fields(obj)]
    stmt = sa.select(t.c.id).where(t.c.is_deleted == sa.false())
    visible = None if ctx.actor.is_system else ctx.actor.access.record_filter(obj, t, "read")
    if visible is not None:
        stmt = stmt.where(visible)
    if conn.dialect.name == "postgresql":
        q = "to_tsquery('simple'::regconfig, :q)"
        stmt = stmt.where(sa.text(f"{search.vector_sql(every, 't')} @@ {q}"))  # the indexed expression
        mine = search.vector_sql(cols, "t")
        if cols != every:
            stmt = stmt.where(sa.text(f"{mine} @@ {q}"))
        # ts_rank rebuilds each row's tsvector, so rank only the first MAX_ROWS candidates (Salesforce also takes a
        # bounded set of matches before ranking and filtering): ranking every match of a common word costs seconds.
        query_arg = sa.func.to_tsquery(sa.literal_column("'simple'::regconfig"), sa.bindparam("q"))
        rank = sa.func.ts_rank(sa.literal_column(mine), query_arg).label("r")
        ranked = stmt.add_columns(rank).limit(MAX_ROWS).subquery("c")
        rows = conn.execute(sa.select(ranked.c.id).order_by(ranked.c.r.desc(), ranked.c.id).limit(limit),
                            {"q": to_tsquery(expr)})
        return [int(r[0]) for r in rows]
    fts = sa.table(search.index_name(obj.table), sa.column("rowid"))
    name = '"' + search.index_name(obj.table) + '"'
    stmt = stmt.select_from(t.join(fts, fts.c.rowid == t.c.id)).where(sa.text(f"{name} MATCH :q"))
    stmt = stmt.order_by(sa.text(f"{name}.rank"), t.c.id)
    spec = "{" + " ".join(cols) + "}"
    rows = conn.execute(stmt.limit(limit), {"q": f"{spec} : ({to_fts5(expr)})"})
    return [int(r[0]) for r in rows]


def find(ctx: Context, conn: Connection, obj: ObjectDef, expr: Expr, *, scope: str = "ALL", fields: str = "Id",
         where: str | None = None, order: str | None = None, limit: int = MAX_ROWS,
         api_version: str = "59.0") -> list[dict[str, Any]]:
    """The matching records of ``obj`` with the RETURNING clause applied, shaped as SOQL shapes them; best match
    first unless ``order`` is given. Raises the SOQL errors of a bad field list or WHERE."""
    if limit <= 0:
        return []
    limit = min(limit, MAX_ROWS)
    # Without WHERE or ORDER BY the best ``limit`` matches are the answer; otherwise every candidate goes to SOQL,
    # which filters (and sorts), and the best ones that pass are kept.
    found = matching_ids(ctx, conn, obj, expr, scope, limit=MAX_ROWS if where or order else limit)
    if not found:
        return []
    public = [ids.encode(obj.key_prefix, n) for n in found]
    soql = f"SELECT {fields} FROM {obj.api_name} WHERE Id IN ({', '.join(repr(p) for p in public)})"
    if where:
        soql += f" AND ({where})"
    if order:
        soql += f" ORDER BY {order} LIMIT {limit}"
    page = query(ctx, soql, api_version=api_version, batch_size=MAX_ROWS, conn=conn, surface="search")
    records: list[dict[str, Any]] = list(page["records"])
    if order:
        return records
    rank = {p[:15]: i for i, p in enumerate(public)}
    return sorted(records, key=lambda r: rank.get(_record_id(r)[:15], len(rank)))[:limit]


def _record_id(record: dict[str, Any]) -> str:
    rid = record.get("Id")
    if isinstance(rid, str):
        return rid
    url = str((record.get("attributes") or {}).get("url") or "")
    return url.rsplit("/", 1)[-1]


def searchable_objects(ctx: Context, conn: Connection) -> Sequence[ObjectDef]:
    """Objects a search without RETURNING covers: searchable ones the user may read."""
    actor = ctx.actor
    return [o for o in ctx.schema(conn) if search_fields(o)
            and (actor.is_system or actor.access.can(o.api_name, "read"))]
