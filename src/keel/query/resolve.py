"""Name resolution against a schema snapshot: objects, relationship paths, fields, and the joins they need.

Identifiers never reach SQL as text: a path resolves to a ``FieldDef`` and a SQLAlchemy column of a table alias
built from metadata, so a crafted identifier can only fail to resolve. Field-level security is applied here (an
unreadable field does not exist, as Salesforce reports under user mode) and the row filter is put into every
parent join's ON clause, so a parent the user cannot see comes back as ``null`` instead of hiding the child.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from keel.errors import InvalidFieldError, InvalidTypeError, MalformedQueryError
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.metadata.tables import is_polymorphic, type_column
from keel.metadata.types import effective_type
from keel.query import ast as A
from keel.query.fragments import Fragments

RowFilter = Callable[[ObjectDef, sa.FromClause], "sa.ColumnElement[bool] | None"]
FieldMask = Callable[[ObjectDef, FieldDef], bool]
FormulaSql = Callable[[ObjectDef, FieldDef, sa.FromClause], "sa.ColumnElement[Any]"]
MAX_PARENT_DEPTH = 5
TEXT_TYPES = frozenset({"text", "textarea", "longtext", "email", "phone", "url", "picklist", "multipicklist",
                        "auto_number", "composite"})
NUMBER_TYPES = frozenset({"number", "currency", "percent", "rollup", "int", "float"})


class SoqlFieldError(InvalidFieldError):
    """INVALID_FIELD with the position of the offending name."""

    def __init__(self, message: str, pos: A.Pos, fields: tuple[str, ...] = ()) -> None:
        super().__init__(f"ERROR at Row:{pos[0]}:Column:{pos[1]}\n{message}", fields=fields)
        self.line, self.column = pos


class SoqlTypeError(InvalidTypeError):
    """INVALID_TYPE with the position of the offending object name."""

    def __init__(self, message: str, pos: A.Pos) -> None:
        super().__init__(f"ERROR at Row:{pos[0]}:Column:{pos[1]}\n{message}")
        self.line, self.column = pos


def malformed(message: str, pos: A.Pos, code: str | None = None) -> MalformedQueryError:
    return MalformedQueryError(message, line=max(pos[0], 1), column=max(pos[1], 1), code=code)


def no_such_column(name: str, obj: ObjectDef, pos: A.Pos) -> SoqlFieldError:
    return SoqlFieldError(
        f"No such column '{name}' on entity '{obj.api_name}'. If you are attempting to use a custom field, be sure "
        "to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
        "appropriate names.", pos, (name,))


@dataclass(frozen=True)
class RuntimeParam:
    """A bound parameter whose value is only known when the query runs (date literal bounds, the user id)."""

    name: str
    literal: A.DateFormula | None
    end: bool = False
    as_datetime: bool = False


@dataclass
class Options:
    """Everything compile-time that is not the query text."""

    schema: SchemaSnapshot
    dialect: str
    row_filter: RowFilter | None = None
    field_mask: FieldMask | None = None
    formula_sql: FormulaSql | None = None
    query_all: bool = False
    counter: list[int] = field(default_factory=lambda: [0])
    frags: Fragments = field(init=False)

    def __post_init__(self) -> None:
        self.frags = Fragments.of(self.schema)

    def alias(self, obj: ObjectDef) -> sa.FromClause:
        """Alias ``t<n>`` of the object's table (shared per snapshot); a statement never uses one name twice."""
        self.counter[0] += 1
        return self.frags.alias(obj, f"t{self.counter[0]}")

    def label(self, expr: sa.ColumnElement[Any], n: int) -> sa.ColumnElement[Any]:
        return self.frags.label(expr, n)

    def lower(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return self.frags.lower(expr)

    def live(self, alias: sa.FromClause) -> sa.ColumnElement[bool]:
        return self.frags.live(alias)

    def readable(self, obj: ObjectDef, f: FieldDef) -> bool:
        if f.type == "formula" and f.column is None and self.formula_sql is None:
            return False
        return self.field_mask is None or f.api_name == "Id" or self.field_mask(obj, f)


@dataclass
class Join:
    """One LEFT JOIN to a parent; ``targets`` has several entries for a polymorphic lookup (one alias each)."""

    field: FieldDef
    owner: ObjectDef
    parent_alias: sa.FromClause
    targets: list[tuple[ObjectDef, sa.FromClause]]


@dataclass(slots=True)
class Val:
    """A resolved value expression with enough type information to compare, sort, group and format it."""

    expr: sa.ColumnElement[Any]
    type: str  # effective field type, or int/float/typename for computed values
    label: str  # output key (the field's canonical API name, or an alias)
    field: FieldDef | None = None
    obj: ObjectDef | None = None
    targets: tuple[ObjectDef, ...] = ()  # for ids and references
    type_expr: sa.ColumnElement[Any] | None = None  # polymorphic key-prefix column
    hops: tuple[str, ...] = ()  # canonical relationship names from the root, for nesting in records
    hop_ids: tuple[sa.ColumnElement[Any], ...] = ()  # id column of each hop's parent (null parent detection)
    hop_objs: tuple[Join, ...] = ()
    key: str = ""  # lower-cased canonical path, for GROUP BY matching


class Scope:
    """One FROM object with its alias and the parent joins its paths need."""

    def __init__(self, opts: Options, obj: ObjectDef, alias: str | None, pos: A.Pos) -> None:
        self.opts = opts
        self.obj = obj
        self.alias_name = alias
        self.table = opts.alias(obj)
        self.joins: dict[tuple[str, ...], Join] = {}
        self.pos = pos

    def strip_prefix(self, path: tuple[str, ...]) -> tuple[str, ...]:
        """Drop a leading FROM-object name or alias (django always emits ``Contact.LastName``)."""
        if len(path) < 2:
            return path
        first = path[0].lower()
        if self.alias_name and first == self.alias_name.lower():
            return path[1:]
        if first == self.obj.key and self.obj.find_relationship(path[0]) is None:
            return path[1:]
        return path

    def join(self, key: tuple[str, ...], f: FieldDef, owner: ObjectDef, parent_alias: sa.FromClause) -> Join:
        j = self.joins.get(key)
        if j is None:
            targets = [(t, self.opts.alias(t)) for t in (self.opts.schema.get_object(n) for n in f.reference_to)]
            j = self.joins[key] = Join(f, owner, parent_alias, targets)
        return j

    def from_clause(self) -> sa.FromClause:
        if not self.joins:
            return self.table
        frags = self.opts.frags
        if self.opts.row_filter is None:
            # Without a row filter the whole join chain is metadata, so it is built once per set of joins.
            chain = ("joins", self.table, self.opts.query_all,
                     tuple((j.parent_alias, j.field.key, *(a for _, a in j.targets)) for j in self.joins.values()))
            return frags.shared(chain, self._join_chain)
        return self._join_chain()

    def _join_chain(self) -> sa.FromClause:
        frags = self.opts.frags
        frm: sa.FromClause = self.table
        for j in self.joins.values():
            assert j.field.column
            fk = j.parent_alias.c[j.field.column]
            for t_obj, t_alias in j.targets:
                # The metadata part of an ON clause depends only on memoised aliases, so it is built once.
                key = ("on", j.parent_alias, j.owner.key, j.field.key, t_alias, t_obj.key, len(j.targets),
                       self.opts.query_all)
                conds = list(frags.shared(key, functools.partial(self._on, j, fk, t_obj, t_alias)))
                if self.opts.row_filter is not None:
                    extra = self.opts.row_filter(t_obj, t_alias)
                    if extra is not None:
                        conds.append(extra)
                frm = frm.outerjoin(t_alias, sa.and_(*conds))
        return frm

    def _on(self, j: Join, fk: sa.ColumnElement[Any], t_obj: ObjectDef,
            t_alias: sa.FromClause) -> list[sa.ColumnElement[bool]]:
        base = [t_alias.c.id == fk]
        if len(j.targets) > 1:
            base.append(j.parent_alias.c[type_column(j.field)] == t_obj.key_prefix)
        if not self.opts.query_all:
            base.append(self.opts.live(t_alias))
        return base

    # --- paths --------------------------------------------------------------------------------------------------

    def field_expr(self, obj: ObjectDef, f: FieldDef, alias: sa.FromClause) -> sa.ColumnElement[Any]:
        if f.column:
            return alias.c[f.column]
        if f.type == "formula" and self.opts.formula_sql is not None:
            return self.opts.formula_sql(obj, f, alias)
        raise InvalidFieldError(f"No such column '{f.api_name}' on entity '{obj.api_name}'.")

    def check_field(self, obj: ObjectDef, name: str, pos: A.Pos) -> FieldDef:
        f = obj.find_field(name)
        if f is None or not self.opts.readable(obj, f):
            raise no_such_column(name, obj, pos)
        return f

    def relationship(self, obj: ObjectDef, name: str, pos: A.Pos) -> FieldDef:
        f = obj.find_relationship(name)
        if f is None or not self.opts.readable(obj, f):
            raise SoqlFieldError(
                f"Didn't understand relationship '{name}' in field path. If you are attempting to use a custom "
                "relationship, be sure to append the '__r' after the custom relationship name. Please reference "
                "your WSDL or the describe call for the appropriate names.", pos, (name,))
        return f

    def resolve(self, ref: A.FieldRef) -> Val:
        if len(ref.path) == 1:  # a field of the FROM object: the common case, without the path machinery
            return self.val_for(self.obj, self.check_field(self.obj, ref.path[0], ref.pos), self.table)
        path = self.strip_prefix(ref.path)
        obj, alias = self.obj, self.table
        hops: list[str] = []
        hop_ids: list[sa.ColumnElement[Any]] = []
        hop_joins: list[Join] = []
        for i, part in enumerate(path[:-1]):
            if i >= MAX_PARENT_DEPTH:
                raise malformed("SOQL statements cannot query more than 5 levels of relationships", ref.pos)
            f = self.relationship(obj, part, ref.pos)
            key = tuple(p.lower() for p in path[: i + 1])
            j = self.join(key, f, obj, alias)
            hops.append(f.relationship_name or part)
            hop_joins.append(j)
            if len(j.targets) > 1:
                if i != len(path) - 2:
                    raise malformed(f"polymorphic relationship '{part}' can only be followed by one field; "
                                    "use TYPEOF", ref.pos)
                return self.poly_field(j, path[-1], ref, tuple(hops), tuple(hop_ids), tuple(hop_joins))
            obj, alias = j.targets[0]
            hop_ids.append(alias.c.id)
        f = self.check_field(obj, path[-1], ref.pos)
        return self.val_for(obj, f, alias, tuple(hops), tuple(hop_ids), tuple(hop_joins))

    def val_for(self, obj: ObjectDef, f: FieldDef, alias: sa.FromClause, hops: tuple[str, ...] = (),
                hop_ids: tuple[sa.ColumnElement[Any], ...] = (), hop_joins: tuple[Join, ...] = ()) -> Val:
        if not f.column:  # a formula: its SQL comes from the caller's hook, so it is not memoised
            return self._val(obj, f, alias, self.field_expr(obj, f, alias), hops, hop_ids, hop_joins)
        memo_key = ("val", alias, f.key)
        proto: Val | None = self.opts.frags.memo.get(memo_key)
        if proto is None:
            col = alias.c[f.column]
            proto = self.opts.frags.shared(memo_key, lambda: self._val(obj, f, alias, col))
        key = ".".join([*(h.lower() for h in hops), f.key]) if hops else proto.key
        return Val(proto.expr, proto.type, f.api_name, f, obj, proto.targets, proto.type_expr, hops, hop_ids,
                   hop_joins, key)

    def _val(self, obj: ObjectDef, f: FieldDef, alias: sa.FromClause, expr: sa.ColumnElement[Any],
             hops: tuple[str, ...] = (), hop_ids: tuple[sa.ColumnElement[Any], ...] = (),
             hop_joins: tuple[Join, ...] = ()) -> Val:
        typ = effective_type(f)
        targets: tuple[ObjectDef, ...] = ()
        type_expr = None
        if f.type == "id":
            targets = (obj,)
        elif f.is_relationship:
            targets = tuple(self.opts.schema.get_object(n) for n in f.reference_to)
            if is_polymorphic(f):
                type_expr = alias.c[type_column(f)]
        key = ".".join([*(h.lower() for h in hops), f.key])
        return Val(expr, typ, f.api_name, f, obj, targets, type_expr, hops, hop_ids, hop_joins, key)

    def poly_field(self, j: Join, name: str, ref: A.FieldRef, hops: tuple[str, ...],
                   hop_ids: tuple[sa.ColumnElement[Any], ...], hop_joins: tuple[Join, ...]) -> Val:
        """``What.Name``: the value from whichever target the row points at."""
        assert j.field.column
        fk = j.parent_alias.c[j.field.column]
        tcol = j.parent_alias.c[type_column(j.field)]
        low = name.lower()
        key = ".".join([*(h.lower() for h in hops), low])
        if low == "type":
            whens = [(tcol == t.key_prefix, sa.literal(t.api_name)) for t, _ in j.targets]
            return Val(sa.case(*whens, else_=sa.null()), "text", "Type", None, None, (), None, hops,
                       (*hop_ids, fk), hop_joins, key)
        exprs: list[sa.ColumnElement[Any]] = []
        found: FieldDef | None = None
        for t, alias in j.targets:
            f = t.find_field(name)
            if f is not None and self.opts.readable(t, f) and f.column:
                exprs.append(alias.c[f.column])
                found = found or f
        if found is None:
            raise SoqlFieldError(f"No such column '{name}' on entity 'Name'. If you are attempting to use a custom "
                                 "field, be sure to append the '__c' after the custom field name.", ref.pos, (name,))
        if low == "id":
            return Val(fk, "lookup", "Id", j.field, None, tuple(t for t, _ in j.targets), tcol, hops,
                       (*hop_ids, fk), hop_joins, key)
        expr = exprs[0] if len(exprs) == 1 else sa.func.coalesce(*exprs)
        typ = effective_type(found)
        return Val(expr, typ, found.api_name, found, None, (), None, hops, (*hop_ids, fk), hop_joins, key)


def resolve_object(schema: SchemaSnapshot, name: str, pos: A.Pos) -> ObjectDef:
    obj = schema.find_object(name)
    if obj is None or not obj.queryable:
        raise SoqlTypeError(
            f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to "
            "append the '__c' after the entity name. Please reference your WSDL or the describe call for the "
            "appropriate names.", pos)
    return obj
