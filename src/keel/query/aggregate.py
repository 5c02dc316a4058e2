"""Aggregate queries: GROUP BY (plain, ROLLUP and CUBE), HAVING, GROUPING(), ``exprN`` naming and ORDER BY.

ROLLUP and CUBE are compiled as one SELECT per grouping set joined with UNION ALL, on both databases: SQLite has
no grouping sets, and one construction for both keeps their results identical. In a set, a rolled-up field reads
as NULL and ``GROUPING(field)`` as the constant 1 (0 where the field is grouped), which is what Salesforce returns.

Text fields group case-insensitively, as in Salesforce: the set groups by ``lower(col)`` and reads the field as
the smallest spelling in the group (binary order, so both databases agree).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql import visitors

from keel.metadata.types import TYPES
from keel.query import ast as A
from keel.query import shape as S
from keel.query.emit import DATE_FUNCS, FOLDED_TYPES, PASSTHROUGH, OrderKey, Plan
from keel.query.percentile import has_percentile, mentions_percentile, windowed
from keel.query.resolve import Scope, SoqlFieldError, Val, malformed

if TYPE_CHECKING:
    from keel.query.emit import Emitter

MAX_GROUPING_FIELDS = 3  # Salesforce's limit for ROLLUP and CUBE


def grouping_sets(kind: str | None, keys: list[str]) -> list[tuple[str, ...]]:
    """The grouping sets, most detailed first: ROLLUP(a, b) is (a, b), (a), (); CUBE(a, b) adds (b)."""
    if kind is None:
        return [tuple(keys)]
    if kind == "ROLLUP":
        return [tuple(keys[:n]) for n in range(len(keys), -1, -1)]
    return [c for n in range(len(keys), -1, -1) for c in itertools.combinations(keys, n)]


def group_value(em: Emitter, v: Val) -> Val:
    """A grouped field as the aggregate query reads it: NULL where the grouping set rolls it up, the smallest
    spelling in the group where it is text grouped by ``lower()``."""
    if v.key in em.rolled:
        v.expr = sa.null()
        if v.type_expr is not None:
            v.type_expr = sa.null()
    elif v.key in em.folded:
        col = v.expr if em.opts.dialect == "sqlite" else v.expr.collate("C")
        v.expr = sa.func.min(col)
    return v


def aggregate(em: Emitter, scope: Scope, q: A.Query, where: list[sa.ColumnElement[bool]]) -> Plan:
    groups: dict[str, Val] = {}
    for g in q.group_by:
        v = em.value(scope, g, agg_ok=False)
        if v.field is not None and not TYPES.get(v.field.type, TYPES["text"]).groupable and v.field.type != "id":
            raise SoqlFieldError(f"field '{v.label}' can not be grouped in a query call", g.pos, (v.label,))
        groups[v.key] = v
        if v.type in FOLDED_TYPES:
            em.folded.add(v.key)
    if q.group_kind and len(groups) > MAX_GROUPING_FIELDS:
        raise malformed(f"GROUP BY {q.group_kind} takes at most {MAX_GROUPING_FIELDS} fields", q.pos)
    em.group_kind, em.group_keys = q.group_kind, set(groups)
    shape = S.AggShape()
    positions: dict[str, int] = {}
    selects = []
    for n, active in enumerate(grouping_sets(q.group_kind, list(groups))):
        em.rolled = set(groups) - set(active)
        selects.append(_select(em, scope, q, where, groups, active, shape if n == 0 else None, positions))
    em.rolled = set()
    if len(selects) == 1 and not mentions_percentile((q.select, q.having, q.order_by)):
        base = selects[0]
        order = [_order(em, scope, o, groups, positions) for o in q.order_by]
    else:
        # (so does a query with a percentile, on both databases alike: SQLite's reads from a window subquery)
        sub = (sa.union_all(*selects) if len(selects) > 1 else selects[0]).subquery()
        base = sa.select(*sub.c)
        order = [_union_order(em, scope, o, positions, sub) for o in q.order_by]
    return Plan("aggregate", scope.obj, base, order, shape, [], q.limit, q.offset, em.runtime)


def _select(em: Emitter, scope: Scope, q: A.Query, where: list[sa.ColumnElement[bool]], groups: dict[str, Val],
            active: tuple[str, ...], shape: S.AggShape | None, positions: dict[str, int]) -> sa.Select[Any]:
    """One grouping set's SELECT. The first also fills the result shape and the key -> column map."""
    cols: list[sa.ColumnElement[Any]] = []
    expr_n = 0
    seen: set[str] = set()
    for item in q.select:
        if not isinstance(item, A.SelectExpr):
            raise malformed("only fields and functions can be selected in an aggregate query", item.pos)
        v = em.value(scope, item.expr, agg_ok=True)
        if isinstance(item.expr, A.FieldRef) and v.key not in groups:
            raise malformed(f"Field must be grouped or aggregated: {v.label}", item.pos)
        if isinstance(item.expr, A.Call) and item.expr.name.upper() in DATE_FUNCS and v.key not in groups:
            raise malformed(f"Field must be grouped or aggregated: {item.expr.name}", item.pos)
        group_value(em, v)
        if item.alias:
            key = item.alias
        elif isinstance(item.expr, A.Call) and item.expr.name.upper() not in PASSTHROUGH:
            key = f"expr{expr_n}"
            expr_n += 1
        else:
            key = v.label
        if key.lower() in seen:
            raise malformed(f"duplicate alias: {key}", item.pos)
        seen.add(key.lower())
        idx = len(cols)
        cols.append(v.expr.label(f"c{idx}"))
        positions.setdefault(v.key, idx)
        type_idx = None
        if v.type_expr is not None:
            type_idx = len(cols)
            cols.append(v.type_expr.label(f"c{type_idx}"))
        if shape is None:
            continue
        _note_sensitive(em, scope, item.expr)
        if v.targets:
            get: S.Getter = S.id_getter(idx, v.targets[0].key_prefix if type_idx is None else None, type_idx)
        else:
            scale = v.field.scale if v.field is not None else None
            get = S.value_getter(idx, S.converter(v.type, scale))
        shape.entries.append((key, get))
    group_exprs: list[sa.ColumnElement[Any]] = []
    partition: list[sa.ColumnElement[Any]] = []
    for k in active:
        g = groups[k]
        partition.append(em.opts.lower(g.expr) if k in em.folded else g.expr)
        if k not in em.folded and k in positions and _has_parameters(g.expr):
            # An expression with a run-time value (TODAY() in a formula) renders a new placeholder each time it
            # appears, and PostgreSQL cannot tell that SELECT's and GROUP BY's are the same expression: group by
            # the select-list position instead.
            group_exprs.append(sa.literal_column(str(positions[k] + 1)))
            continue
        group_exprs.append(em.opts.lower(g.expr) if k in em.folded else g.expr)
        if g.type_expr is not None:
            group_exprs.append(g.type_expr)  # a polymorphic id is its key plus its type
    having = em.cond(scope, q.having, agg_ok=True, groups=groups) if q.having is not None else None
    if has_percentile([*cols, having]):
        return windowed(cols, scope.from_clause(), where, partition, group_exprs, having)
    stmt = sa.select(*cols).select_from(scope.from_clause()).where(*where)
    if group_exprs:
        stmt = stmt.group_by(*group_exprs)
    if having is not None:
        stmt = stmt.having(having)
    return stmt


def _note_sensitive(em: Emitter, scope: Scope, e: A.Expr) -> None:
    """A grouped sensitive field, or an aggregate over one (``MAX(Salary__c)``, ``COUNT(SSN__c)``), returns
    something of its values: the plan records it as an aggregate read."""
    if isinstance(e, A.FieldRef):
        em.note_sensitive(scope.resolve(e), None, aggregate=True)
    elif isinstance(e, A.Call):
        for a in e.args:
            _note_sensitive(em, scope, a)


def _has_parameters(expr: sa.ColumnElement[Any]) -> bool:
    return any(isinstance(e, sa.BindParameter) for e in visitors.iterate(expr))


def _order(em: Emitter, scope: Scope, o: A.OrderItem, groups: dict[str, Val], positions: dict[str, int]) -> OrderKey:
    v = em.value(scope, o.expr, agg_ok=True)
    if isinstance(o.expr, A.FieldRef) and v.key not in groups:
        raise malformed(f"Ordered field must be grouped or aggregated: {v.label}", o.pos)
    nulls_first = (o.nulls == "FIRST") if o.nulls else not o.descending
    expr = em.opts.lower(group_value(em, v).expr) if v.key in em.folded else v.expr
    if v.key not in em.folded and v.key in positions and _has_parameters(expr):
        expr = sa.literal_column(f"c{positions[v.key]}")  # the selected column: see the GROUP BY note above
    return OrderKey(expr, o.descending, nulls_first)


def _union_order(em: Emitter, scope: Scope, o: A.OrderItem, positions: dict[str, int],
                 sub: sa.Subquery) -> OrderKey:
    """ORDER BY over the grouping sets' union can only name its columns: a selected field or aggregate."""
    v = em.value(scope, o.expr, agg_ok=True)
    idx = positions.get(v.key)
    if idx is None:
        raise malformed("ORDER BY with ROLLUP, CUBE or a percentile must name a selected field or aggregate", o.pos)
    col: sa.ColumnElement[Any] = sub.c[f"c{idx}"]
    nulls_first = (o.nulls == "FIRST") if o.nulls else not o.descending
    return OrderKey(em.opts.lower(col) if v.key in em.folded else col, o.descending, nulls_first)
