"""``MEDIAN(field)`` and ``PERCENTILE(field, p)``: Keel's SOQL extension for percentile aggregates.

Salesforce has no percentile in SOQL or in reports, so Keel picks one method and documents it (docs/soql.md): the
linear, "continuous" percentile, the one PostgreSQL's ``percentile_cont`` computes and Python's
``statistics.median`` and ``statistics.quantiles(method="inclusive")`` agree with. Of the ``n`` non-null values in a
group, sorted, the percentile sits at the 0-based position ``(n - 1) * p``; between two values it is interpolated.
A group with no values gives NULL, as the other aggregates do.

Both databases compute it, never Python over the rows: PostgreSQL with ``percentile_cont(p) WITHIN GROUP (ORDER
BY x)``. SQLite (3.40 has neither ordered aggregates nor a percentile function) gets the window form: the grouping
set's FROM and WHERE become a subquery that numbers each group's values (``ROW_NUMBER``) and counts them (``COUNT``
over the same partition), and the percentile is read back with ``MAX(CASE WHEN rn = k THEN x END)``. Every other
select item, GROUP BY key and HAVING clause is re-pointed at the subquery's columns, so a query may mix
percentiles with COUNT, SUM and GROUP BY ROLLUP, and the row filter (sharing) is the same WHERE either way.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import util as sql_util
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import ColumnElement

from keel.query import ast as A
from keel.query.resolve import Val, malformed


class SqlitePercentile(ColumnElement[float]):
    """A placeholder the SQLite window rewrite (``windowed``) replaces; it never reaches the compiler."""

    inherit_cache = False
    type = sa.Float()

    def __init__(self, x: sa.ColumnElement[Any], p: float) -> None:
        self.x, self.p = x, p

    def get_children(self, **kw: Any) -> tuple[sa.ColumnElement[Any], ...]:
        return (self.x,)


def fraction(name: str, number: str | None, pos: A.Pos) -> float:
    if name == "MEDIAN":
        return 0.5
    try:
        p = float(number or "")
    except ValueError:
        p = -1.0
    if not 0.0 <= p <= 1.0:
        raise malformed("PERCENTILE takes a field and a fraction from 0 to 1, as in PERCENTILE(Amount, 0.9)", pos)
    return p


def percentile_value(dialect: str, inner: Val, name: str, number: str | None, pos: A.Pos) -> Val:
    p = fraction(name, number, pos)
    key = f"{name}:{inner.key}:{p!r}"
    if dialect == "sqlite":
        return Val(SqlitePercentile(inner.expr, p), "float", inner.label, key=key)
    # The fraction is inlined: a bound one would make PostgreSQL see two different expressions in SELECT and ORDER BY.
    expr = sa.func.percentile_cont(sa.literal_column(repr(p), sa.Float)).within_group(inner.expr)
    return Val(expr, "float", inner.label, key=key)


def mentions_percentile(node: Any) -> bool:
    """Whether a query (or any part of one) uses a percentile. Such a query's ORDER BY names selected columns, on
    both databases alike, since SQLite's form reads everything through the window subquery."""
    if isinstance(node, A.Call) and node.name.upper() in ("MEDIAN", "PERCENTILE"):
        return True
    if isinstance(node, tuple | list):
        return any(mentions_percentile(x) for x in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return any(mentions_percentile(getattr(node, f.name)) for f in dataclasses.fields(node))
    return False


def has_percentile(exprs: list[Any]) -> bool:
    return any(isinstance(e, SqlitePercentile) for x in exprs if x is not None for e in _walk(x))


def _walk(expr: Any) -> list[Any]:
    """Every element of an expression, descending into the placeholder (``visitors.iterate`` cannot see its
    children, since it declares no traversal internals)."""
    out: list[Any] = []
    stack = [expr]
    while stack:
        e = stack.pop()
        out.append(e)
        stack.extend(e.get_children())
    return out


def windowed(cols: list[sa.ColumnElement[Any]], from_: sa.FromClause, where: list[sa.ColumnElement[bool]],
             partition: list[sa.ColumnElement[Any]], group_by: list[sa.ColumnElement[Any]],
             having: sa.ColumnElement[bool] | None) -> sa.Select[Any]:
    """The SQLite form of one grouping set's SELECT with percentiles (see the module docstring). ``partition`` is
    the grouping set's keys as expressions over ``from_``; ``group_by`` what the outer GROUP BY names."""
    tables = set(sql_util.find_tables(from_, include_aliases=True))
    used: dict[Any, sa.ColumnElement[Any]] = {}
    marks: list[SqlitePercentile] = []
    for x in [*cols, *group_by, *partition, *([having] if having is not None else [])]:
        for e in _walk(x):
            if isinstance(e, SqlitePercentile):
                marks.append(e)
            elif isinstance(e, sa.Column) and e.table in tables:
                used.setdefault(e, e)
    inner_cols: list[sa.ColumnElement[Any]] = [c.label(f"k{i}") for i, c in enumerate(used)]
    for i, m in enumerate(marks):
        part = partition or None
        inner_cols += [m.x.label(f"x{i}"),
                       sa.func.row_number().over(partition_by=part, order_by=sa.nulls_last(m.x)).label(f"rn{i}"),
                       sa.func.count(m.x).over(partition_by=part).label(f"n{i}")]
    inner = sa.select(*inner_cols).select_from(from_).where(*where).subquery("pct")
    swap: dict[int, sa.ColumnElement[Any]] = {}
    for i, m in enumerate(marks):
        x, rn, n = inner.c[f"x{i}"], inner.c[f"rn{i}"], inner.c[f"n{i}"]
        p = sa.literal_column(repr(m.p), sa.Float)
        k = sa.cast((n - 1) * p, sa.Integer)  # the 0-based position's whole part; n is the same on every row

        def at(offset: int, x: Any = x, rn: Any = rn, k: Any = k) -> sa.ColumnElement[Any]:
            return sa.func.max(sa.case((rn == k + offset, x)))

        lo, hi = at(1), at(2)
        frac = sa.func.max((n - 1) * p - k)
        swap[id(m)] = lo + sa.func.coalesce(hi - lo, 0) * frac
    adapter = sql_util.ClauseAdapter(inner)

    def adapt(e: Any) -> Any:
        def replace(el: Any) -> Any:
            return swap.get(id(el))
        swapped: Any = visitors.replacement_traverse(e, {}, replace)  # type: ignore[call-overload]
        return adapter.traverse(swapped)

    stmt = sa.select(*[adapt(c) for c in cols]).select_from(inner)
    if group_by:
        stmt = stmt.group_by(*[adapt(g) for g in group_by])
    if having is not None:
        stmt = stmt.having(adapt(having))
    return stmt
