"""Shared SQL fragments: SQLAlchemy elements built once per schema snapshot and reused by every statement.

Constructing SQLAlchemy elements is most of the cost of compiling a query nobody has sent before, yet most of a
statement is made of the same pieces: a column of ``t1``, ``c3`` labels, ``lower(t1.name)``, ``t1.is_deleted =
false``, ``lower(t1.name) = :p1``. Elements are immutable, so one object can sit in any number of statements.

Values never live here. A literal becomes a *valueless* bind parameter named by its position (``p1``, ``p2``…);
the value is kept in the plan (``Plan.params``) and supplied at execution. That is what lets ``col = :p1`` be
shared by every query comparing that column as its first literal, whatever the value.

An element is shared only when all of its parts are shared elements or plain values (``stable``), so the memo
holds metadata-derived pieces only and its size is bounded by the schema, not by the queries seen. Callers'
hook output (row filters, formula SQL) is never shared.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import sqlalchemy as sa

from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.tables import table_for

E = TypeVar("E")
MAX_SHARED_PARAMS = 64  # literals beyond this position (long IN lists) get their own parameters
MAX_ENTRIES = 100_000  # a hard bound on the memo; past it, elements are simply built per statement


class Fragments:
    """The per-snapshot memo of shared elements, kept in ``schema.cache``."""

    def __init__(self, schema: SchemaSnapshot) -> None:
        self.schema = schema
        self.memo: dict[Hashable, Any] = {}
        self.stable: set[int] = set()  # ids of shared elements (they live as long as the memo, so ids are safe)

    @staticmethod
    def of(schema: SchemaSnapshot) -> Fragments:
        hit = schema.cache.get("soql_fragments")
        if hit is None:
            hit = schema.cache.setdefault("soql_fragments", Fragments(schema))
        assert isinstance(hit, Fragments)
        return hit

    def shared(self, key: Hashable, build: Callable[[], E]) -> E:
        hit: E | None = self.memo.get(key)
        if hit is None:
            if len(self.memo) >= MAX_ENTRIES:
                return build()
            hit = self.memo[key] = build()
            self.stable.add(id(hit))
        return hit

    def is_stable(self, *parts: Any) -> bool:
        stable = self.stable
        return all(id(p) in stable or not isinstance(p, sa.ClauseElement) for p in parts)

    # --- metadata -----------------------------------------------------------------------------------------------

    def alias(self, obj: ObjectDef, name: str) -> sa.FromClause:
        """Building an alias proxies every column of the table, so each (object, name) is built once."""

        def build() -> sa.FromClause:
            a = table_for(self.schema, obj).alias(name)
            self.stable.update(id(c) for c in a.c)
            return a

        key = ("alias", obj.key, name)
        hit: sa.FromClause | None = self.memo.get(key)
        return hit if hit is not None else self.shared(key, build)

    def label(self, expr: sa.ColumnElement[Any], n: int) -> sa.ColumnElement[Any]:
        key = ("label", expr, n)
        hit: sa.ColumnElement[Any] | None = self.memo.get(key)  # only stable elements are ever keys
        if hit is not None:
            return hit
        if id(expr) not in self.stable:
            return expr.label(f"c{n}")
        return self.shared(key, lambda: expr.label(f"c{n}"))

    def lower(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        if id(expr) not in self.stable:
            return sa.func.lower(expr)
        return self.shared(("lower", expr), lambda: sa.func.lower(expr))

    def live(self, alias: sa.FromClause) -> sa.ColumnElement[bool]:
        return self.shared(("live", alias), lambda: alias.c.is_deleted == sa.false())

    # --- values and predicates ----------------------------------------------------------------------------------

    def bind(self, name: str, n: int, value: Any, type_: Any = None) -> sa.BindParameter[Any]:
        """A valueless parameter typed as SQLAlchemy would type ``value`` (the type can change the SQL text on
        PostgreSQL, so it is part of the key); the value itself goes into the plan."""
        tkey = type(type_) if type_ is not None else type(value)

        def build() -> sa.BindParameter[Any]:
            typ = type_ if type_ is not None else sa.bindparam(name, value).type
            return sa.bindparam(name, None, type_=typ)

        if n > MAX_SHARED_PARAMS:
            return build()
        return self.shared(("bind", name, tkey), build)

    def op(self, lhs: sa.ColumnElement[Any], meth: str, rhs: Any) -> sa.ColumnElement[bool]:
        """``lhs <op> rhs`` for a comparison method name such as ``__eq__``."""
        if not self.is_stable(lhs, rhs):
            return getattr(lhs, meth)(rhs)  # type: ignore[no-any-return]
        return self.shared(("op", lhs, meth, rhs), lambda: getattr(lhs, meth)(rhs))

    def is_null(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        if id(expr) not in self.stable:
            return expr.is_(None)
        return self.shared(("null", expr), lambda: expr.is_(None))

    def null_safe_neg(self, expr: sa.ColumnElement[Any], pred: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        """``pred OR expr IS NULL``: Salesforce's negative operators match rows where the field is empty."""
        isnull = self.is_null(expr)
        if not self.is_stable(pred, isnull):
            return sa.or_(pred, isnull)
        return self.shared(("neg", pred, isnull), lambda: sa.or_(pred, isnull))
