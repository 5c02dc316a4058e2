"""AST → SOQL text. Used by the round-trip property test (parse ∘ format = id) and for logging normalised queries."""

from __future__ import annotations

from keel.query import ast as A


def format_query(q: A.Query) -> str:
    parts = ["SELECT " + ", ".join(_item(i) for i in q.select), "FROM " + q.from_]
    if q.alias:
        parts.append(q.alias)
    if q.scope:
        parts.append("USING SCOPE " + q.scope)
    if q.where is not None:
        parts.append("WHERE " + format_cond(q.where))
    if q.with_:
        parts.append("WITH " + q.with_)
    if q.group_by:
        inner = ", ".join(format_expr(e) for e in q.group_by)
        parts.append(f"GROUP BY {q.group_kind}({inner})" if q.group_kind else "GROUP BY " + inner)
    if q.having is not None:
        parts.append("HAVING " + format_cond(q.having))
    if q.order_by:
        parts.append("ORDER BY " + ", ".join(_order(o) for o in q.order_by))
    if q.limit is not None:
        parts.append(f"LIMIT {q.limit}")
    if q.offset is not None:
        parts.append(f"OFFSET {q.offset}")
    for f in q.for_:
        parts.append("FOR " + f)
    if q.update:
        parts.append("UPDATE " + q.update)
    return " ".join(parts)


def _item(i: A.SelectItem) -> str:
    if isinstance(i, A.SelectExpr):
        return format_expr(i.expr) + (" " + i.alias if i.alias else "")
    if isinstance(i, A.SubSelect):
        return "(" + format_query(i.query) + ")"
    if isinstance(i, A.FieldsFn):
        return f"FIELDS({i.kind})"
    whens = " ".join(f"WHEN {w.type_name} THEN " + ", ".join(format_expr(f) for f in w.fields) for w in i.whens)
    els = (" ELSE " + ", ".join(format_expr(f) for f in i.else_fields)) if i.else_fields else ""
    return f"TYPEOF {format_expr(i.ref)} {whens}{els} END"


def _order(o: A.OrderItem) -> str:
    s = format_expr(o.expr)
    if o.explicit_dir or o.descending:
        s += " DESC" if o.descending else " ASC"
    if o.nulls:
        s += " NULLS " + o.nulls
    return s


def format_expr(e: A.Expr) -> str:
    if isinstance(e, A.FieldRef):
        return ".".join(e.path)
    args = [format_expr(a) for a in e.args] + ([e.number] if e.number is not None else [])
    return f"{e.name}(" + ", ".join(args) + ")"


def format_value(v: A.Literal | A.ListValue | A.Query) -> str:
    if isinstance(v, A.Query):
        return "(" + format_query(v) + ")"
    if isinstance(v, A.ListValue):
        return "(" + ", ".join(format_value(i) for i in v.items) + ")"
    if isinstance(v, A.StringLit):
        return "'" + v.raw + "'"
    if isinstance(v, A.NumberLit | A.DateLit | A.DateTimeLit):
        return v.text
    if isinstance(v, A.BoolLit):
        return "true" if v.value else "false"
    if isinstance(v, A.NullLit):
        return "null"
    if isinstance(v, A.DateFormula):
        return v.name if v.n is None else f"{v.name}:{v.n}"
    return f"{v.code}{v.amount}"


def format_cond(c: A.Cond) -> str:
    if isinstance(c, A.Comparison):
        return f"{format_expr(c.lhs)} {c.op} {format_value(c.value)}"
    if isinstance(c, A.Not):
        return "NOT " + format_cond(c.cond)
    if isinstance(c, A.Paren):
        return "(" + format_cond(c.cond) + ")"
    joiner = " AND " if isinstance(c, A.And) else " OR "
    return joiner.join(format_cond(i) for i in c.items)
