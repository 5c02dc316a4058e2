"""SQL emission: a parsed, resolved SOQL query becomes SQLAlchemy Core statements plus a result shape.

Salesforce semantics that differ from SQL are encoded here and nowhere else:
- text comparisons are case-insensitive: ``lower(col) = :v`` with ``:v`` lowered in Python (ASCII-only on SQLite,
  to match SQLite's ``lower()``), which also hits the ``lower(col)`` indexes;
- ``!=``, ``NOT IN`` and ``EXCLUDES`` include rows where the field is null, and ``NOT`` is two-valued;
- date literals are ranges whose bounds are bound at execution time (see ``dates.py``);
- the security row filter is ANDed into the main query, each parent join, child subquery and semi-join.
Every user value is a bound parameter; identifiers only come from metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from keel.metadata.model import ObjectDef
from keel.metadata.tables import type_column
from keel.metadata.types import TYPES
from keel.query import ast as A
from keel.query import shape as S
from keel.query.arms import Merge
from keel.query.compare import compare
from keel.query.percentile import percentile_value
from keel.query.resolve import (
    NUMBER_TYPES,
    TEXT_TYPES,
    Options,
    RuntimeParam,
    Scope,
    SoqlFieldError,
    Val,
    malformed,
)
from keel.query.resolve import resolve_object as _resolve_object
from keel.query.sensitive import SensitiveRead
from keel.query.tokens import unescape
from keel.storage.streams import streams_of

AGGREGATES = frozenset({"COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX", "MEDIAN", "PERCENTILE"})
DATE_FUNCS = frozenset({"CALENDAR_YEAR", "CALENDAR_MONTH", "CALENDAR_QUARTER", "DAY_IN_MONTH", "DAY_IN_WEEK",
                        "DAY_IN_YEAR", "DAY_ONLY", "HOUR_IN_DAY", "WEEK_IN_MONTH", "WEEK_IN_YEAR", "FISCAL_YEAR",
                        "FISCAL_QUARTER", "FISCAL_MONTH"})
FOLDED_TYPES = TEXT_TYPES - {"picklist", "multipicklist"}  # picklist values are stored in canonical spelling
PASSTHROUGH = frozenset({"TOLABEL", "CONVERTCURRENCY", "FORMAT", "CONVERTTIMEZONE"})
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass
class OrderKey:
    expr: sa.ColumnElement[Any]
    desc: bool
    nulls_first: bool
    nullable: bool = True


@dataclass
class ChildPlan:
    key: str
    select: sa.Select[Any]
    fk: sa.ColumnElement[Any]
    shape: S.ObjShape
    order: list[OrderKey]
    limit: int | None
    offset: int | None
    key_start: int = 0  # row index of the first keyset column (the order keys, ending with the child's id)


@dataclass
class Plan:
    kind: str  # records | count | aggregate
    obj: ObjectDef
    base: sa.Select[Any]
    order: list[OrderKey]
    shape: S.ObjShape | S.AggShape
    children: list[ChildPlan] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    runtime: list[RuntimeParam] = field(default_factory=list)
    key_start: int = 0  # row index of the first keyset column
    for_update: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # literal values of the valueless parameters p1, p2…
    sensitive: tuple[SensitiveRead, ...] = ()  # sensitive fields the query returns (audited by the caller)
    merge: Merge | None = None  # set when a sorted page can be read as a merge of streams (``query/arms.py``)


def order_clause(k: OrderKey, dialect: str) -> sa.ColumnElement[Any]:
    """ASC/DESC with NULLS FIRST/LAST spelled out only where the database's default differs from the wanted one."""
    c = k.expr.desc() if k.desc else k.expr.asc()
    db_nulls_first = (not k.desc) if dialect == "sqlite" else k.desc
    if not k.nullable or k.nulls_first == db_nulls_first:
        return c
    return c.nulls_first() if k.nulls_first else c.nulls_last()


class Emitter:
    def __init__(self, opts: Options, user_id: int | None = None) -> None:
        self.opts = opts
        self.runtime: list[RuntimeParam] = []
        self.n_params = 0
        self.params: dict[str, Any] = {}
        self.user_id = user_id
        self.folded: set[str] = set()  # keys of text fields grouped case-insensitively
        self.group_kind: str | None = None  # ROLLUP or CUBE while compiling such a query
        self.group_keys: set[str] = set()  # keys of the GROUP BY fields
        self.rolled: set[str] = set()  # GROUP BY fields rolled up in the grouping set being emitted
        self.sensitive: list[SensitiveRead] = []  # sensitive fields returned, in the order they are selected

    # --- parameters -----------------------------------------------------------------------------------------

    def param(self, value: Any, type_: Any = None) -> sa.BindParameter[Any]:
        """A literal as parameter ``p<n>``: the statement holds a valueless (shared) parameter, the plan the value."""
        self.n_params += 1
        name = f"p{self.n_params}"
        self.params[name] = value
        return self.opts.frags.bind(name, self.n_params, value, type_)

    def lower_text(self, s: str) -> str:
        return s.translate(_ASCII_LOWER) if self.opts.dialect == "sqlite" else s.lower()

    # --- entry ------------------------------------------------------------------------------------------------

    def compile(self, q: A.Query) -> Plan:
        plan = self._compile(q)
        plan.params = self.params
        plan.sensitive = tuple(self.sensitive)
        return plan

    def _compile(self, q: A.Query) -> Plan:
        obj = _resolve_object(self.opts.schema, q.from_, q.from_pos)
        scope = Scope(self.opts, obj, q.alias, q.from_pos)
        self.check_scope(q)
        is_agg = bool(q.group_by)
        count_only = all_fields = False
        for i in q.select:
            if isinstance(i, A.SelectExpr):
                if isinstance(i.expr, A.Call):
                    name = i.expr.name.upper()
                    is_agg = is_agg or name in AGGREGATES
                    count_only = count_only or (name == "COUNT" and not i.expr.args)
            elif isinstance(i, A.FieldsFn):
                all_fields = all_fields or i.kind != "STANDARD"
        if count_only and len(q.select) > 1:
            raise malformed("COUNT() must be the only element in the SELECT list", q.select[0].pos)
        if q.offset is not None and q.offset > 2000:
            raise malformed("Maximum SOQL offset allowed is 2000", q.pos, code="NUMBER_OUTSIDE_VALID_RANGE")
        if all_fields and (q.limit is None or q.limit > 200):
            raise malformed("The SOQL FIELDS function must have a LIMIT of at most 200", q.pos)
        where = self.where_clause(scope, q)
        if count_only:
            if q.group_by:  # COUNT() with GROUP BY answers the number of groups, as totalSize
                groups = self.aggregate(scope, q, where).base.subquery()
                base = sa.select(sa.func.count().label("n")).select_from(groups)
            else:
                base = sa.select(sa.func.count().label("n")).select_from(scope.from_clause()).where(*where)
            return Plan("count", obj, base, [], S.AggShape(), limit=q.limit, offset=q.offset, runtime=self.runtime)
        if is_agg:
            return self.aggregate(scope, q, where)
        return self.records(scope, q, where)

    def check_scope(self, q: A.Query) -> None:
        if q.scope is None:
            return
        s = q.scope.lower()
        if s not in ("everything", "mine"):
            raise malformed(f"USING SCOPE {q.scope} is not supported (use everything or mine)", q.pos)
        if s == "mine" and self.user_id is None:
            raise malformed("USING SCOPE mine needs a running user", q.pos)

    def where_clause(self, scope: Scope, q: A.Query) -> list[sa.ColumnElement[bool]]:
        out: list[sa.ColumnElement[bool]] = []
        if q.where is not None:
            self.check_semijoins(q.where)
            out.append(self.cond(scope, q.where))
        if not self.opts.query_all:
            out.append(self.opts.live(scope.table))
        if q.scope and q.scope.lower() == "mine":
            out.append(scope.table.c.owner_id == sa.bindparam("me", self.user_id))
        if self.opts.row_filter is not None:
            extra = self.opts.row_filter(scope.obj, scope.table)
            if extra is not None:
                out.append(extra)
        return out

    def check_semijoins(self, c: A.Cond, under_or: bool = False, count: list[int] | None = None) -> None:
        count = count if count is not None else [0]
        if isinstance(c, A.Comparison) and isinstance(c.value, A.Query):
            if under_or:
                raise malformed("Semi join sub-selects are not allowed with the 'OR' operator", c.pos)
            count[0] += 1
            if count[0] > 2:
                raise malformed("Maximum 2 semi join sub-selects are allowed", c.pos)
        elif isinstance(c, A.And):
            for i in c.items:
                self.check_semijoins(i, under_or, count)
        elif isinstance(c, A.Or):
            for i in c.items:
                self.check_semijoins(i, True, count)
        elif isinstance(c, A.Not | A.Paren):
            self.check_semijoins(c.cond, under_or, count)

    # --- records --------------------------------------------------------------------------------------------

    def records(self, scope: Scope, q: A.Query, where: list[sa.ColumnElement[bool]],
                child: bool = False) -> Plan:
        cols: list[sa.ColumnElement[Any]] = []
        label = self.opts.label

        def add(expr: sa.ColumnElement[Any]) -> int:
            n = len(cols)
            cols.append(label(expr, n))
            return n

        root_id = add(scope.table.c.id)
        shape = S.ObjShape(scope.obj.api_name, S.id_getter(root_id, scope.obj.key_prefix, None))
        children: list[ChildPlan] = []
        for item in q.select:
            if isinstance(item, A.SelectExpr):
                self.select_value(scope, item, shape, add)
            elif isinstance(item, A.FieldsFn):
                for f in scope.obj.fields:
                    if (item.kind == "CUSTOM" and not f.custom) or (item.kind == "STANDARD" and f.custom):
                        continue
                    if not self.opts.readable(scope.obj, f) or shape.has(f.api_name):
                        continue
                    v = scope.val_for(scope.obj, f, scope.table)
                    self.emit_value(v, shape, add, item.pos, allow_dup=True)
            elif isinstance(item, A.SubSelect):
                if child:
                    raise malformed("nested subqueries are only allowed one level deep", item.pos)
                start = len(self.sensitive)
                cp = self.child_plan(scope, item)
                self.sensitive[start:] = [replace(r, child=len(children), via=".".join(filter(None, (cp.key, r.via))))
                                          for r in self.sensitive[start:]]
                if shape.has(cp.key):
                    raise malformed(f"duplicate field selected: {cp.key}", item.pos)
                shape.entry("c", cp.key, None)
                children.append(cp)
            else:
                self.typeof(scope, item, shape, add)
        order = [self.order_key(scope, o) for o in q.order_by]
        if not any(k.expr is scope.table.c.id for k in order):
            order.append(OrderKey(scope.table.c.id, False, True, nullable=False))
        key_start = len(cols)
        for k in order:
            add(k.expr)
        base = sa.select(*cols).select_from(scope.from_clause()).where(*where)
        plan = Plan("records", scope.obj, base, order, shape, children, q.limit, q.offset, self.runtime, key_start,
                    "UPDATE" in q.for_)
        if not child and not plan.for_update and where:
            plan.merge = self.merge(scope, q, cols, where, order)
        return plan

    def merge(self, scope: Scope, q: A.Query, cols: list[sa.ColumnElement[Any]], where: list[sa.ColumnElement[bool]],
              order: list[OrderKey]) -> Merge | None:
        """Streams for a page sorted by the column the row filter's streams are ordered by, in its default null
        placement (the order its indexes hold), with the id as the only tiebreak."""
        streams = streams_of(where[-1]) if self.opts.row_filter is not None else None
        if streams is None or len(order) != 2 or len(q.order_by) not in (1, 2):
            return None
        first = q.order_by[0]
        if not isinstance(first.expr, A.FieldRef):
            return None
        v = scope.resolve(first.expr)
        if v.hops or v.expr is not streams.sort or order[0].nulls_first == order[0].desc:
            return None
        if order[1].expr is not scope.table.c.id:
            return None
        open_base = sa.select(*cols).select_from(scope.from_clause()).where(*where[:-1])
        return Merge(streams, open_base, scope.table)

    def select_value(self, scope: Scope, item: A.SelectExpr, shape: S.ObjShape, add: Any) -> None:
        e = item.expr
        if isinstance(e, A.Call):
            name = e.name.upper()
            if name in DATE_FUNCS or name in AGGREGATES or name == "GROUPING":
                raise malformed(f"{e.name}() can only be used in an aggregate query", e.pos)
            if name not in PASSTHROUGH or len(e.args) != 1 or not isinstance(e.args[0], A.FieldRef):
                raise malformed(f"unknown function or wrong arguments: {e.name}", e.pos)
            v = scope.resolve(e.args[0])
            if name == "TOLABEL" and v.field is not None and v.field.values:
                labels = [(sa.func.lower(v.expr) == pv.value.lower(), sa.literal(pv.label))
                          for pv in v.field.values if pv.label != pv.value]
                if labels:
                    v.expr = sa.case(*labels, else_=v.expr)
            if item.alias:
                v.label = item.alias  # FORMAT(Amount) amt, convertCurrency(Amount) converted
            self.emit_value(v, shape, add, e.pos)
            return
        self.emit_value(scope.resolve(e), shape, add, e.pos)

    def emit_value(self, v: Val, shape: S.ObjShape, add: Any, pos: A.Pos, allow_dup: bool = False) -> None:
        target = shape
        for i, hop in enumerate(v.hops):
            j = v.hop_objs[i]
            id_col = v.hop_ids[i]

            def make(j: Any = j, id_col: Any = id_col) -> S.ObjShape:
                if len(j.targets) > 1:
                    assert j.field.column
                    tidx = add(j.parent_alias.c[type_column(j.field)])
                    return S.ObjShape("Name", S.id_getter(add(id_col), None, tidx), tidx,
                                      {t.key_prefix: t.api_name for t, _ in j.targets})
                t_obj = j.targets[0][0]
                return S.ObjShape(t_obj.api_name, S.id_getter(add(id_col), t_obj.key_prefix, None))

            target = target.parent(hop, make)
        if target.has(v.label):
            if allow_dup:
                return
            raise malformed(f"duplicate field selected: {v.label}", pos)
        if v.field is not None and v.field.type == "id" and v.type_expr is None:
            target.entry("i", v.label, None)  # the record's own id: already encoded for its attributes
            return
        target.entry("v", v.label, self.getter(v, add))
        self.note_sensitive(v, target.id_get)

    def note_sensitive(self, v: Val, id_get: Any, *, aggregate: bool = False,
                       owners: tuple[ObjectDef, ...] | None = None) -> None:
        """Record ``v`` in the plan when it returns a sensitive field. ``id_get`` reads the owning record's id
        from a row (an ``IdGet``); ``owners`` are the candidate owners of a field read through a polymorphic
        parent, where only the rows pointing at an owner that marks it sensitive count."""
        f = v.field
        if f is None or (v.obj is not None and owners is None and not f.sensitive):
            return  # the common case, decided without a loop
        if owners is None:
            owners = (v.obj,) if v.obj is not None else tuple(t for t, _ in v.hop_objs[-1].targets) \
                if v.hop_objs else ()
        via = ".".join(v.hops)
        for o in owners:
            of = o.find_field(f.api_name)
            if of is None or not of.sensitive or not self.opts.readable(o, of):
                continue
            if aggregate:
                self.sensitive.append(SensitiveRead(o.api_name, of.api_name, via, aggregate=True))
            else:
                self.sensitive.append(SensitiveRead(o.api_name, of.api_name, via, None, id_get.idx, o.key_prefix,
                                                    id_get.type_idx))

    def getter(self, v: Val, add: Any) -> S.Getter:
        idx = add(v.expr)
        if v.targets:
            if v.type_expr is not None:
                return S.id_getter(idx, None, add(v.type_expr))
            return S.id_getter(idx, v.targets[0].key_prefix, None)
        scale = v.field.scale if v.field is not None else None
        if v.field is not None and v.field.type in ("number", "currency", "percent") and scale is None:
            scale = {"number": 0, "currency": 2, "percent": 2}[v.field.type]
        typ = v.type
        return self.opts.frags.shared(("get", idx, typ, scale),  # getters are immutable: one per position and type
                                      lambda: S.value_getter(idx, S.converter(typ, scale)))

    def typeof(self, scope: Scope, item: A.TypeOf, shape: S.ObjShape, add: Any) -> None:
        path = scope.strip_prefix(item.ref.path)
        if len(path) != 1:
            raise malformed("TYPEOF needs a relationship name such as What", item.pos)
        f = scope.relationship(scope.obj, path[0], item.ref.pos)
        j = scope.join((path[0].lower(),), f, scope.obj, scope.table)
        assert f.column
        fk = scope.table.c[f.column]
        by_name = {t.api_name.lower(): (t, a) for t, a in j.targets}
        if len(j.targets) > 1:
            tidx = add(scope.table.c[type_column(f)])
            sub = S.ObjShape("Name", S.id_getter(add(fk), None, tidx), tidx,
                             {t.key_prefix: t.api_name for t, _ in j.targets})
        else:
            t0 = j.targets[0][0]
            sub = S.ObjShape(t0.api_name, S.id_getter(add(fk), t0.key_prefix, None))
        for w in item.whens:
            hit = by_name.get(w.type_name.lower())
            if hit is None:
                raise SoqlFieldError(f"TYPEOF: '{w.type_name}' is not a type of relationship '{path[0]}'",
                                     item.pos)
            t_obj, t_alias = hit
            entries: list[tuple[str, str, Any]] = []
            for fr in w.fields:
                if len(fr.path) != 1:
                    raise malformed("TYPEOF field lists take plain field names", fr.pos)
                tf = scope.check_field(t_obj, fr.path[0], fr.pos)
                v = scope.val_for(t_obj, tf, t_alias)
                entries.append(("v", v.label, self.getter(v, add)))
                self.note_sensitive(v, sub.id_get, owners=(t_obj,))
            sub.typeof[t_obj.api_name] = entries
        if item.else_fields:
            entries = []
            for fr in item.else_fields:
                v = scope.poly_field(j, fr.path[-1], fr, (), (), ()) if len(j.targets) > 1 else \
                    scope.val_for(j.targets[0][0], scope.check_field(j.targets[0][0], fr.path[-1], fr.pos),
                                  j.targets[0][1])
                entries.append(("v", v.label, self.getter(v, add)))
                self.note_sensitive(v, sub.id_get, owners=tuple(t for t, _ in j.targets))
            sub.typeof[""] = entries
        shape.entry("t", f.relationship_name or path[0], sub)

    def child_plan(self, parent: Scope, item: A.SubSelect) -> ChildPlan:
        q = item.query
        name = q.from_
        head, dot, rest = name.partition(".")
        if dot and head.lower() in (parent.obj.key, (parent.alias_name or "").lower()):
            name = rest  # the documented long form: (SELECT … FROM Account.Contacts)
        rel = self.opts.schema.find_child_relationship(parent.obj, name)
        if rel is None:
            raise SoqlTypeErrorAt(
                f"Didn't understand relationship '{q.from_}' in FROM part of query call. If you are attempting to "
                "use a custom relationship, be sure to append the '__r' after the custom relationship name. Please "
                "reference your WSDL or the describe call for the appropriate names.", q.from_pos)
        child_obj = self.opts.schema.get_object(rel.child_object)
        scope = Scope(self.opts, child_obj, q.alias, q.from_pos)
        if q.group_by or any(isinstance(i, A.SelectExpr) and isinstance(i.expr, A.Call)
                             and i.expr.name.upper() in AGGREGATES for i in q.select):
            raise malformed("aggregate functions are not allowed in a child subquery", q.pos)
        where = self.where_clause(scope, q)
        fk_field = child_obj.get_field(rel.field)
        assert fk_field.column
        fk = scope.table.c[fk_field.column]
        if len(fk_field.reference_to) > 1:
            where.append(scope.table.c[type_column(fk_field)] == parent.obj.key_prefix)
        plan = self.records(scope, q, where, child=True)
        assert isinstance(plan.shape, S.ObjShape)
        sel = plan.base.add_columns(fk.label("_p"))
        if q.limit is not None or q.offset is not None:
            rn = sa.func.row_number().over(partition_by=fk,
                                           order_by=[order_clause(k, self.opts.dialect) for k in plan.order])
            sel = sel.add_columns(rn.label("_rn"))
        return ChildPlan(rel.name, sel, fk, plan.shape, plan.order, q.limit, q.offset, plan.key_start)

    def order_key(self, scope: Scope, o: A.OrderItem) -> OrderKey:
        v = self.value(scope, o.expr, agg_ok=False)
        if v.field is not None and not TYPES.get(v.field.type, TYPES["text"]).sortable and v.field.type != "id":
            raise SoqlFieldError(f"field '{v.label}' can not be sorted in a query call", o.pos, (v.label,))
        expr = self.opts.lower(v.expr) if v.type in TEXT_TYPES else v.expr
        nulls_first = (o.nulls == "FIRST") if o.nulls else not o.descending
        return OrderKey(expr, o.descending, nulls_first, nullable=not (v.field is not None and v.field.type == "id"))

    # --- aggregates (query/aggregate.py) ------------------------------------------------------------------------

    def aggregate(self, scope: Scope, q: A.Query, where: list[sa.ColumnElement[bool]]) -> Plan:
        from keel.query.aggregate import aggregate
        return aggregate(self, scope, q, where)

    def group_value(self, v: Val) -> Val:
        """A grouped field's value inside an aggregate query (see ``aggregate.group_value``)."""
        from keel.query.aggregate import group_value
        return group_value(self, v)

    def value(self, scope: Scope, e: A.Expr, agg_ok: bool) -> Val:
        """A field, aggregate or date function as a typed value."""
        if isinstance(e, A.FieldRef):
            return scope.resolve(e)
        name = e.name.upper()
        if name == "COUNT" and not e.args:
            if not agg_ok:
                raise malformed("COUNT() is only allowed alone in the SELECT list", e.pos)
            return Val(sa.func.count(), "int", "expr", key="count()")
        if len(e.args) != 1 or (e.number is not None) != (name == "PERCENTILE"):
            raise malformed(f"wrong number of arguments to {e.name}", e.pos)
        inner = self.value(scope, e.args[0], agg_ok=False)
        if name in AGGREGATES:
            if not agg_ok:
                raise malformed(f"aggregate function {e.name} is not allowed here", e.pos)
            if name in ("SUM", "AVG", "MEDIAN", "PERCENTILE") and inner.type not in NUMBER_TYPES:
                raise malformed(f"field {inner.label} does not support aggregate operator {name}", e.pos,
                                code="INVALID_FIELD")
            if name in ("MEDIAN", "PERCENTILE"):
                return percentile_value(self.opts.dialect, inner, name, e.number, e.pos)
            fn: dict[str, Any] = {"COUNT": sa.func.count, "SUM": sa.func.sum, "AVG": sa.func.avg, "MIN": sa.func.min,
                  "MAX": sa.func.max}
            if name == "COUNT_DISTINCT":
                return Val(sa.func.count(sa.distinct(inner.expr)), "int", inner.label, key=f"cd:{inner.key}")
            typ = "int" if name == "COUNT" else ("float" if name == "AVG" else inner.type)
            out = Val(fn[name](inner.expr), typ, inner.label, key=f"{name}:{inner.key}")
            if name in ("MIN", "MAX"):
                out.field, out.targets, out.type_expr = inner.field, inner.targets, None
                if inner.type_expr is not None:
                    raise malformed(f"{name} is not supported on polymorphic fields", e.pos)
            return out
        if name in DATE_FUNCS:
            return self.date_func(name, inner, e.pos)
        if name in PASSTHROUGH:
            return inner
        if name == "GROUPING":
            if not agg_ok or inner.key not in self.group_keys or not self.group_kind:
                raise malformed("GROUPING() takes a field of GROUP BY ROLLUP or CUBE", e.pos)
            flag = "1" if inner.key in self.rolled else "0"
            return Val(sa.literal_column(flag, sa.Integer), "int", "GROUPING", key=f"grouping({inner.key})")
        raise malformed(f"unknown function: {e.name}", e.pos)

    def date_func(self, name: str, v: Val, pos: A.Pos) -> Val:
        if v.type not in ("date", "datetime"):
            raise malformed(f"{name} can only be used on date and datetime fields", pos)
        col = v.expr
        sqlite = self.opts.dialect == "sqlite"

        def part(fmt: str, pg: str) -> sa.ColumnElement[Any]:
            if sqlite:
                return sa.cast(sa.func.strftime(fmt, col), sa.Integer)
            return sa.cast(sa.extract(pg, col), sa.Integer)

        month = part("%m", "month")

        def n(k: int) -> sa.ColumnElement[Any]:
            # Constants are inlined, not bound, so PostgreSQL sees the GROUP BY expression equal to the SELECT one.
            return sa.literal_column(str(k), sa.Integer)

        def div(e: sa.ColumnElement[Any], k: int) -> sa.ColumnElement[Any]:
            return e // n(k)  # integer division on both databases (operands are non-negative integers)

        exprs: dict[str, Any] = {
            "CALENDAR_YEAR": lambda: part("%Y", "year"),
            "CALENDAR_MONTH": lambda: month,
            "CALENDAR_QUARTER": lambda: div(month + n(2), 3),
            "DAY_IN_MONTH": lambda: part("%d", "day"),
            "DAY_IN_WEEK": lambda: part("%w", "dow") + n(1),
            "DAY_IN_YEAR": lambda: part("%j", "doy"),
            "HOUR_IN_DAY": lambda: part("%H", "hour"),
            "WEEK_IN_MONTH": lambda: div(part("%d", "day") - n(1), 7) + n(1),
            "WEEK_IN_YEAR": lambda: div(part("%j", "doy") - n(1), 7) + n(1),
            "DAY_ONLY": lambda: sa.func.date(col) if sqlite else sa.cast(col, sa.Date),
            "FISCAL_YEAR": lambda: part("%Y", "year"),
            "FISCAL_QUARTER": lambda: div((month + n(11)) % n(12), 3) + n(1),
            "FISCAL_MONTH": lambda: (month + n(11)) % n(12) + n(1),
        }
        expr = exprs[name]()
        typ = "date" if name == "DAY_ONLY" else "int"
        return Val(expr, typ, name, key=f"{name.lower()}({v.key})")

    # --- conditions -----------------------------------------------------------------------------------------

    def cond(self, scope: Scope, c: A.Cond, agg_ok: bool = False,
             groups: dict[str, Val] | None = None) -> sa.ColumnElement[bool]:
        if isinstance(c, A.Paren):
            return self.cond(scope, c.cond, agg_ok, groups)
        if isinstance(c, A.And):
            return sa.and_(*(self.cond(scope, i, agg_ok, groups) for i in c.items))
        if isinstance(c, A.Or):
            return sa.or_(*(self.cond(scope, i, agg_ok, groups) for i in c.items))
        if isinstance(c, A.Not):
            return sa.not_(sa.func.coalesce(self.cond(scope, c.cond, agg_ok, groups), sa.false()))
        v = self.value(scope, c.lhs, agg_ok)
        if groups is not None:
            if isinstance(c.lhs, A.FieldRef) and v.key not in groups:
                raise malformed(f"Field must be grouped or aggregated: {v.label}", c.pos)
            self.group_value(v)
        if v.field is not None and not TYPES.get(v.field.type, TYPES["text"]).filterable:
            raise SoqlFieldError(f"field '{v.label}' can not be filtered in a query call", c.pos, (v.label,))
        return compare(self, scope, v, c)


class SoqlTypeErrorAt(SoqlFieldError):
    """INVALID_TYPE for an unknown child relationship (kept as a field error subclass for the position)."""

    code = "INVALID_TYPE"


def string_value(lit: A.StringLit) -> str:
    return unescape(lit.raw, line=lit.pos[0], column=lit.pos[1])
