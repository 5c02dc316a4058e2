"""Comparison predicates: one SOQL ``lhs op value`` to a SQL boolean, with Salesforce's semantics per field type.

Kept apart from ``emit.py`` because this is where most of SOQL's type rules live: which literal fits which field,
case-insensitive text, null-inclusive negative operators, multi-select ``INCLUDES``, id decoding and date ranges.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from keel.errors import MalformedIdError
from keel.metadata.values import parse_datetime
from keel.query import ast as A
from keel.query.resolve import NUMBER_TYPES, TEXT_TYPES, RuntimeParam, Scope, Val, malformed, resolve_object
from keel.query.tokens import unescape
from keel.storage import ids

if TYPE_CHECKING:
    from keel.query.emit import Emitter

_SIMPLE = {"=": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}
_SF_TYPE = {"number": "double", "currency": "double", "percent": "double", "int": "integer", "float": "double",
            "checkbox": "boolean", "date": "date", "datetime": "dateTime", "time": "time", "id": "id",
            "lookup": "reference", "master_detail": "reference"}


def _bad_type(v: Val, lit: Any) -> Exception:
    want = _SF_TYPE.get(v.type, "string")
    quoted = "should not be enclosed in quotes" if isinstance(lit, A.StringLit) else "should be enclosed in quotes"
    if want == "string":
        quoted = "should be enclosed in quotes"
    return malformed(f"value of filter criterion for field '{v.label}' must be of type {want} and {quoted}",
                     getattr(lit, "pos", (1, 1)))


def _null_safe_neg(em: Emitter, v: Val, pred: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    """Salesforce's ``!=``/``NOT IN``/``EXCLUDES`` match rows where the field is empty."""
    return em.opts.frags.null_safe_neg(v.expr, pred)


def compare(em: Emitter, scope: Scope, v: Val, c: A.Comparison) -> sa.ColumnElement[bool]:
    op, value = c.op, c.value
    if isinstance(value, A.Query):
        return _semijoin(em, scope, v, c, value)
    if isinstance(value, A.NullLit):
        if op == "=":
            return v.expr.is_(None)
        if op == "!=":
            return v.expr.is_not(None)
        raise malformed(f"invalid operator on null: {op}", c.pos, code="INVALID_QUERY_FILTER_OPERATOR")
    if op in ("INCLUDES", "EXCLUDES"):
        if v.type != "multipicklist":
            raise malformed(f"{op} can only be used on multi-select picklist fields", c.pos,
                            code="INVALID_QUERY_FILTER_OPERATOR")
        assert isinstance(value, A.ListValue)
        return _includes(em, v, value, negate=op == "EXCLUDES")
    if op in ("IN", "NOT IN"):
        assert isinstance(value, A.ListValue)
        listed = _id_list(em, v, value)
        if listed is not None:
            pred0 = v.expr.in_([em.param(n) for n in listed]) if listed else sa.false()
            return _null_safe_neg(em, v, sa.not_(sa.func.coalesce(pred0, sa.false()))) if op == "NOT IN" else pred0
        preds = [_single(em, v, "=", item, c) for item in value.items]
        if v.type in TEXT_TYPES and all(isinstance(i, A.StringLit) for i in value.items):
            vals = [em.lower_text(_str(i)) for i in value.items if isinstance(i, A.StringLit)]
            pred: sa.ColumnElement[bool] = em.opts.lower(v.expr).in_([em.param(x) for x in vals])
        elif v.type in NUMBER_TYPES and all(isinstance(i, A.NumberLit | A.CurrencyLit) for i in value.items):
            pred = v.expr.in_([em.param(_number(v, i)) for i in value.items])
        else:
            pred = sa.or_(*preds)
        if op == "NOT IN":
            return _null_safe_neg(em, v, sa.not_(sa.func.coalesce(pred, sa.false())))
        return pred
    if isinstance(value, A.ListValue):
        raise malformed(f"a list of values needs IN, NOT IN, INCLUDES or EXCLUDES, not {op}", c.pos)
    if op == "LIKE":
        if v.type not in TEXT_TYPES or v.type == "multipicklist":
            raise malformed(f"invalid operator on field '{v.label}': LIKE", c.pos,
                            code="INVALID_QUERY_FILTER_OPERATOR")
        if not isinstance(value, A.StringLit):
            raise _bad_type(v, value)
        pattern = unescape(value.raw, like=True, line=value.pos[0], column=value.pos[1])
        return em.opts.lower(v.expr).like(em.param(em.lower_text(pattern)), escape="\\")
    return _single(em, v, op, value, c)


def _str(lit: A.StringLit) -> str:
    return unescape(lit.raw, line=lit.pos[0], column=lit.pos[1])


def _number(v: Val, lit: A.Literal) -> Any:
    if isinstance(lit, A.CurrencyLit):
        text = lit.amount
    elif isinstance(lit, A.NumberLit):
        text = lit.text
    else:
        raise _bad_type(v, lit)
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise _bad_type(v, lit) from None
    return int(d) if d == d.to_integral_value() and "." not in text and "e" not in text.lower() else float(d)


def _single(em: Emitter, v: Val, op: str, lit: A.Literal, c: A.Comparison) -> sa.ColumnElement[bool]:
    meth = _SIMPLE.get(op)
    if meth is None:
        raise malformed(f"unexpected operator {op}", c.pos)
    if isinstance(lit, A.NullLit):
        return v.expr.is_(None) if op == "=" else v.expr.is_not(None)
    neg = op == "!="
    if v.targets:
        return _id_compare(em, v, op, lit, c)
    if v.type in TEXT_TYPES:
        if not isinstance(lit, A.StringLit):
            raise _bad_type(v, lit)
        s = _str(lit)
        if v.type == "multipicklist" and op in ("=", "!="):
            s = ";".join(p.strip() for p in s.split(";"))
        pred: sa.ColumnElement[bool] = em.opts.frags.op(em.opts.lower(v.expr), meth, em.param(em.lower_text(s)))
        return _null_safe_neg(em, v, pred) if neg else pred
    if v.type in NUMBER_TYPES:
        pred = em.opts.frags.op(v.expr, meth, em.param(_number(v, lit)))
        return _null_safe_neg(em, v, pred) if neg else pred
    if v.type == "checkbox":
        if not isinstance(lit, A.BoolLit) or op not in ("=", "!="):
            raise _bad_type(v, lit)
        return v.expr == sa.true() if lit.value != neg else v.expr == sa.false()
    if v.type in ("date", "datetime"):
        return _date_compare(em, v, op, lit)
    raise _bad_type(v, lit)


def _date_compare(em: Emitter, v: Val, op: str, lit: A.Literal) -> sa.ColumnElement[bool]:
    is_dt = v.type == "datetime"
    col = v.expr
    if isinstance(lit, A.DateFormula):
        n = len(em.runtime)
        start_name, end_name = f"d{n}s", f"d{n}e"
        em.runtime.append(RuntimeParam(start_name, lit, False, is_dt))
        em.runtime.append(RuntimeParam(end_name, lit, True, is_dt))
        typ = sa.DateTime() if is_dt else sa.Date()
        s = sa.bindparam(start_name, type_=typ)
        e = sa.bindparam(end_name, type_=typ)
        if op == "=":
            return sa.and_(col >= s, col < e)
        if op == "!=":
            return sa.or_(col < s, col >= e, col.is_(None))
        return {"<": col < s, "<=": col < e, ">": col >= e, ">=": col >= s}[op]
    value: dt.date
    if is_dt:
        if not isinstance(lit, A.DateTimeLit):
            raise _bad_type(v, lit)
        try:
            value = parse_datetime(lit.text)
        except ValueError:
            raise _bad_type(v, lit) from None
        p = em.param(value, sa.DateTime())
    else:
        if not isinstance(lit, A.DateLit):
            raise _bad_type(v, lit)
        try:
            value = dt.date.fromisoformat(lit.text)
        except ValueError:
            raise malformed(f"invalid date: {lit.text}", lit.pos) from None
        p = em.param(value, sa.Date())
    pred: sa.ColumnElement[bool] = em.opts.frags.op(col, _SIMPLE[op], p)
    return _null_safe_neg(em, v, pred) if op == "!=" else pred


def _id_list(em: Emitter, v: Val, value: A.ListValue) -> list[int] | None:
    """The keys of ``Id IN ('…', …)`` on a plain (not polymorphic, not owner) id or lookup, so the list becomes one
    SQL ``IN``: an OR per id would be slow on PostgreSQL and exceed SQLite's expression depth (1,000) for long
    lists. Ids of other objects match nothing, as with ``=``. None when the general path must decide."""
    if not v.targets or v.type_expr is not None or (v.field is not None and v.field.column == "owner_id"):
        return None
    if not all(isinstance(i, A.StringLit) for i in value.items):
        return None
    prefixes = {t.key_prefix for t in v.targets}
    out: list[int] = []
    for item in value.items:
        assert isinstance(item, A.StringLit)
        prefix, n = decode_id(_str(item), item.pos)
        if prefix in prefixes:
            out.append(n)
    return out


def _id_compare(em: Emitter, v: Val, op: str, lit: A.Literal, c: A.Comparison) -> sa.ColumnElement[bool]:
    if not isinstance(lit, A.StringLit):
        raise _bad_type(v, lit)
    raw = _str(lit)
    if op not in ("=", "!="):
        raise malformed(f"invalid operator on id field '{v.label}': {op}", c.pos,
                        code="INVALID_QUERY_FILTER_OPERATOR")
    prefix, n = decode_id(raw, lit.pos)
    pred: sa.ColumnElement[bool]
    if prefix == "00G" and v.field is not None and v.field.column == "owner_id":
        n = ids.split_owner(raw)[1]  # a queue owner: stored as ids.QUEUE_OWNER + the Group pk
        pred = em.opts.frags.op(v.expr, "__eq__", em.param(n))
    elif prefix not in {t.key_prefix for t in v.targets}:
        pred = sa.false()
    else:
        pred = em.opts.frags.op(v.expr, "__eq__", em.param(n))
        if v.type_expr is not None:
            pred = sa.and_(pred, v.type_expr == em.param(prefix))
    if op == "!=":
        return sa.or_(sa.not_(pred), v.expr.is_(None))
    return pred


def _includes(em: Emitter, v: Val, value: A.ListValue, negate: bool) -> sa.ColumnElement[bool]:
    wrapped = sa.literal(";") + em.opts.lower(v.expr) + sa.literal(";")
    alts: list[sa.ColumnElement[bool]] = []
    for item in value.items:
        if not isinstance(item, A.StringLit):
            raise _bad_type(v, item)
        parts = [p.strip() for p in _str(item).split(";") if p.strip()]
        conds = []
        for p in parts:
            esc = em.lower_text(p).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conds.append(wrapped.like(em.param(f"%;{esc};%"), escape="\\"))
        alts.append(sa.and_(*conds) if conds else sa.false())
    pred = sa.or_(*alts)
    if negate:
        return _null_safe_neg(em, v, sa.not_(sa.func.coalesce(pred, sa.false())))
    return pred


def _semijoin(em: Emitter, scope: Scope, v: Val, c: A.Comparison, q: A.Query) -> sa.ColumnElement[bool]:
    if c.op not in ("IN", "NOT IN"):
        raise malformed("a subquery needs IN or NOT IN", c.pos)
    if not v.targets:
        raise malformed(f"semi join sub-selects need an id or reference field on the left, not '{v.label}'", c.pos,
                        code="INVALID_QUERY_FILTER_OPERATOR")
    if len(q.select) != 1 or not isinstance(q.select[0], A.SelectExpr) or not isinstance(q.select[0].expr,
                                                                                           A.FieldRef):
        raise malformed("semi join sub-selects can only select one id or reference field", q.pos)
    if any(isinstance(x, A.Comparison) and isinstance(x.value, A.Query) for x in _walk(q.where)):
        raise malformed("semi join sub-selects cannot be nested", q.pos)
    inner_obj = resolve_object(em.opts.schema, q.from_, q.from_pos)
    inner = Scope(em.opts, inner_obj, q.alias, q.from_pos)
    iv = inner.resolve(q.select[0].expr)
    if not iv.targets:
        raise malformed(f"semi join sub-select field '{iv.label}' must be an id or reference field", q.pos)
    where = em.where_clause(inner, q)
    where.append(iv.expr.is_not(None))
    prefixes = {t.key_prefix for t in v.targets} & {t.key_prefix for t in iv.targets}
    if not prefixes:
        pred: sa.ColumnElement[bool] = sa.false()
    else:
        if iv.type_expr is not None:
            where.append(iv.type_expr.in_([em.param(p) for p in sorted(prefixes)]))
        stmt = sa.select(iv.expr).select_from(inner.from_clause()).where(*where)
        if q.limit is not None:
            stmt = stmt.limit(q.limit)
        pred = v.expr.in_(stmt)
        if v.type_expr is not None and iv.type_expr is None:
            pred = sa.and_(pred, v.type_expr == next(iter(prefixes)))
    if c.op == "NOT IN":
        return _null_safe_neg(em, v, sa.not_(sa.func.coalesce(pred, sa.false())))
    return pred


def _walk(c: A.Cond | None) -> list[A.Cond]:
    if c is None:
        return []
    if isinstance(c, A.And | A.Or):
        return [x for i in c.items for x in _walk(i)]
    if isinstance(c, A.Not | A.Paren):
        return _walk(c.cond)
    return [c]


def decode_id(raw: str, pos: A.Pos) -> tuple[str, int]:
    try:
        return ids.split(raw)
    except MalformedIdError:
        raise malformed(f"invalid ID field: {raw}", pos, code="INVALID_QUERY_FILTER_OPERATOR") from None
