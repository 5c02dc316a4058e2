"""The SQL back end: a typed tree becomes one SQLAlchemy expression, so formula fields can be selected, filtered,
sorted and grouped inside the database.

Parent paths never build joins here. The SOQL compiler passes ``join_parent(path) -> FromClause`` and gets to
reuse the joins it already has; callers without joins get correlated scalar subqueries instead.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.sql.expression import FromClause

from keel.formula.check import bind
from keel.formula.context import FormulaContext
from keel.formula.errors import FormulaError, error_at
from keel.formula.fn import (
    Col,
    SqlEnv,
    boolean,
    date_lit,
    datetime_lit,
    num_lit,
    num_type,
    sqlite_dt,
    text,
    text_lit,
)
from keel.formula.lib.maths import round_sql
from keel.formula.typed import (
    BOOLEAN,
    DATE,
    DATETIME,
    MULTIPICKLIST,
    NUMERIC,
    PICKLIST,
    TEXT,
    TIME,
    Checked,
    TCall,
    TField,
    TGlobal,
    TLit,
    TNode,
)
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.tables import table_for

JoinParent = Callable[[tuple[FieldDef, ...]], FromClause]
Build = Callable[[FromClause, "Resolver"], Col]
_TEXTY = frozenset({TEXT, PICKLIST, MULTIPICKLIST})


class Resolver(Protocol):
    """Where the columns of a parent reached through ``path`` come from."""

    def value(self, path: tuple[FieldDef, ...], build: Build) -> Col: ...


class JoinResolver:
    """Parents come from the caller's joins (the SOQL compiler's aliases)."""

    def __init__(self, join_parent: JoinParent) -> None:
        self.join_parent = join_parent

    def value(self, path: tuple[FieldDef, ...], build: Build) -> Col:
        alias = self.join_parent(path)
        outer = self.join_parent
        return build(alias, JoinResolver(lambda sub: outer(path + sub)))


class SubqueryResolver:
    """Parents come from correlated scalar subqueries: one per parent value, no joins needed."""

    def __init__(self, schema: SchemaSnapshot, base: FromClause) -> None:
        self.schema = schema
        self.base = base

    def value(self, path: tuple[FieldDef, ...], build: Build) -> Col:
        last = path[-1]
        target = self.schema.get_object(last.reference_to[0])
        parent = table_for(self.schema, target).alias()
        assert last.column
        if len(path) == 1:
            ident: Col = self.base.c[last.column]
        else:
            column = last.column
            ident = self.value(path[:-1], lambda a, r: a.c[column])
        inner = build(parent, SubqueryResolver(self.schema, parent))
        return sa.select(inner).where(parent.c.id == ident).correlate_except(parent).scalar_subquery()


def _sql_type(t: str, env: SqlEnv) -> sa.types.TypeEngine[Any]:
    if t in NUMERIC:
        return num_type(env)
    if t == BOOLEAN:
        return sa.Boolean()
    if t == DATE:
        return sa.Date()
    if t == DATETIME:
        return sa.DateTime()
    if t == TIME:
        return sa.Time()
    if t == "id":
        return sa.BigInteger()
    return sa.Text()


class _Compiler:
    def __init__(self, text_: str, env: SqlEnv) -> None:
        self.text = text_
        self.env = env

    def node(self, n: TNode, alias: FromClause, res: Resolver) -> Col:
        env = self.env
        if isinstance(n, TLit):
            return self.literal(n)
        if isinstance(n, TField):
            return self.field(n, alias, res)
        if isinstance(n, TGlobal):
            if env.context is None:
                raise error_at(self.text, n.pos, f"${n.scope} needs a context to run in a query")
            source = env.context.user if n.scope == "User" else env.context.organization
            v = source.get(n.field.api_name)
            if n.type in _TEXTY:
                return text_lit("" if v is None else str(v))
            if v is None:
                return sa.null()
            return self.literal(TLit(n.type, False, n.pos, v))
        assert isinstance(n, TCall)
        if n.fn.sql is None:
            raise error_at(self.text, n.pos, f"{n.fn.name} cannot be computed in a query")
        args = [self.node(a, alias, res) for a in n.args]
        out = n.fn.sql(args, n.args, n.type, env)
        if n.type == BOOLEAN and n.fn.lazy is None and n.fn.nulls == "propagate":
            from keel.formula.fn import never_null

            return never_null(out, *n.args)
        return out

    def literal(self, n: TLit) -> Col:
        v, env = n.value, self.env
        if v is None:
            return sa.null()
        if n.type == BOOLEAN:
            return sa.true() if v else sa.false()
        if n.type in NUMERIC:
            return num_lit(v if isinstance(v, Decimal) else Decimal(str(v)), env)
        if n.type == DATE:
            return date_lit(v, env)
        if n.type == DATETIME:
            return datetime_lit(v, env)
        if n.type == TIME:
            return sa.literal(v, sa.Time())
        return text_lit(str(v))

    def field(self, n: TField, alias: FromClause, res: Resolver) -> Col:
        f, env = n.field, self.env

        def build(a: FromClause, r: Resolver) -> Col:
            if n.formula is not None:
                return self.node(n.formula, a, r)
            if not f.column:
                raise error_at(self.text, n.pos, f"{f.api_name} has no column")
            col: Col = a.c[f.column]
            if n.type == DATETIME and not env.pg:
                return sqlite_dt(col)
            return col

        value = res.value(n.path, build) if n.path else build(alias, res)
        if n.type in _TEXTY:
            return text(sa.func.coalesce(value, text_lit("")))
        if n.zero:
            return sa.func.coalesce(value, num_lit(0, env))
        if n.type == BOOLEAN:
            return boolean(sa.func.coalesce(value, sa.false())) if n.path else boolean(value)
        return value


def _already_rounded(root: TNode, scale: int) -> bool:
    """ROUND(x, 2) in a field of scale 2 or more needs no second rounding (round() is the costly part on SQLite)."""
    if not (isinstance(root, TCall) and root.fn.name == "ROUND"):
        return False
    digits = root.args[1]
    return isinstance(digits, TLit) and isinstance(digits.value, Decimal) and 0 <= int(digits.value) <= scale


def _finish(expr: Col, t: str, scale: int | None, env: SqlEnv, root: TNode) -> Col:
    if t == TEXT:
        expr = sa.func.nullif(expr, text_lit(""))
    elif t in NUMERIC and scale is not None and not _already_rounded(root, scale):
        expr = round_sql(expr, sa.literal(scale), TLit("number", False, 0, Decimal(scale)), env)
    if isinstance(expr, sa.BindParameter):
        expr = sa.func.coalesce(expr, sa.null())  # coerce the result, not the parameter's own type
    return sa.type_coerce(expr, _sql_type(t, env))


def compile_sql(checked: Checked, dialect: str, *, table_alias: FromClause, schema: SchemaSnapshot,
                join_parent: JoinParent | None = None, context: FormulaContext | None = None,
                scale: int | None = None) -> Col:
    env = SqlEnv(dialect, context)
    res: Resolver = JoinResolver(join_parent) if join_parent is not None else SubqueryResolver(schema, table_alias)
    body = _Compiler(checked.text, env).node(checked.root, table_alias, res)
    return _finish(body, checked.root.type, scale, env, checked.root)


def to_sql(expr_or_text: str | Checked, obj: ObjectDef, schema: SchemaSnapshot, dialect: str, *,
           table_alias: FromClause | None = None, join_parent: JoinParent | None = None,
           context: FormulaContext | None = None, blank_as: str = "blank", returns: str | None = None,
           scale: int | None = None) -> Col:
    """The formula as a SQL expression over ``table_alias`` (default: the object's table).

    ``join_parent(path)`` returns the alias of the parent reached through the lookup fields in ``path``; without
    it, parents are read with correlated subqueries. ``context`` supplies TODAY/NOW and $User/$Organization
    (without it TODAY/NOW are taken when the statement runs, in UTC).
    """
    if isinstance(expr_or_text, Checked):
        checked = expr_or_text
    else:
        checked = bind(expr_or_text, obj, schema, context_kind="field", blank_as=blank_as, returns=returns)
    alias = table_alias if table_alias is not None else table_for(schema, obj)
    return compile_sql(checked, dialect, table_alias=alias, schema=schema, join_parent=join_parent,
                       context=context, scale=scale)


def field_sql(field: FieldDef, obj: ObjectDef, schema: SchemaSnapshot, dialect: str, *,
              table_alias: FromClause | None = None, join_parent: JoinParent | None = None,
              context: FormulaContext | None = None) -> Col:
    """A formula field as the SOQL compiler selects it: its formula, blank handling and rounding to its scale."""
    if field.type != "formula":
        raise FormulaError(f"{field.api_name} is not a formula field")
    checked = bind(field.formula or "", obj, schema, blank_as=field.blank_as, returns=field.returns)
    return to_sql(checked, obj, schema, dialect, table_alias=table_alias, join_parent=join_parent,
                  context=context, scale=field.scale)


__all__ = ["JoinParent", "JoinResolver", "SubqueryResolver", "compile_sql", "field_sql", "to_sql"]
