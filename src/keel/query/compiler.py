"""``compile_soql``: SOQL text to a ``CompiledQuery``, purely (no database, no globals), plus an LRU plan cache.

A compiled query holds SQLAlchemy statements, the result shape and the runtime parameters (date literal bounds),
so one plan serves every execution until the schema version or the caller's security shape changes. SQL strings
are rendered once per plan and variant (``render``) and executed with the driver directly, which keeps per-query
overhead close to hand-written SQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from keel.metadata.model import SchemaSnapshot
from keel.query import ast as A
from keel.query.dates import date_range, local_today, utc_bounds
from keel.query.emit import Emitter, Plan
from keel.query.parser import parse
from keel.query.resolve import FieldMask, FormulaSql, Options, RowFilter

_DIALECTS: dict[str, Dialect] = {
    "sqlite": sqlite.dialect(),
    "postgresql": postgresql.psycopg.dialect(),  # type: ignore[no-untyped-call]
}


@dataclass(frozen=True)
class Rendered:
    """A statement rendered to the driver's SQL text, with its parameter names in order and default values."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    positional: bool

    def params(self, values: Mapping[str, Any], dialect: str) -> Sequence[Any] | dict[str, Any]:
        merged = {**self.defaults, **values}
        conv = _sqlite_value if dialect == "sqlite" else _pg_value
        if self.positional:
            return tuple(conv(merged[n]) for n in self.names)
        return {n: conv(merged[n]) for n in self.names}


def _sqlite_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return f"{v:%Y-%m-%d %H:%M:%S}.{v.microsecond:06d}"
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dt.time):
        return f"{v:%H:%M:%S}.{v.microsecond:06d}"
    if isinstance(v, bool):
        return int(v)
    if not isinstance(v, int | float | str | bytes) and v is not None:
        return float(v)  # Decimal
    return v


def _pg_value(v: Any) -> Any:
    return v


def render(stmt: sa.ClauseElement, dialect: str) -> Rendered:
    """Render once; the text is reused for every execution of the plan."""
    compiled = stmt.compile(dialect=_DIALECTS[dialect], compile_kwargs={"render_postcompile": True})
    assert isinstance(compiled, SQLCompiler)
    params: dict[str, Any] = dict(compiled.construct_params(_check=False) or {})
    if compiled.positiontup is not None:
        return Rendered(compiled.string, tuple(compiled.positiontup), params, True)
    return Rendered(compiled.string, tuple(params), params, False)


@dataclass
class CompiledQuery:
    """A compiled SOQL statement. ``plan`` holds the statements; rendered SQL texts are memoised per variant."""

    text: str
    dialect: str
    query: A.Query
    plan: Plan
    now: dt.datetime | None = None
    time_zone: str = "UTC"
    fiscal_start_month: int = 1
    user_id: int | None = None
    query_all: bool = False
    _rendered: dict[Hashable, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def kind(self) -> str:
        return self.plan.kind

    def rendered(self, key: Hashable, build: Any) -> Rendered:
        r = self._rendered.get(key)
        if r is None:
            with self._lock:
                r = self._rendered.get(key)
                if r is None:
                    r = self._rendered[key] = render(build(), self.dialect)
        return r

    def builder(self, child: int | None = None) -> Any:
        """The generated record builder for the main shape (or a child subquery's), memoised."""
        key = ("builder", child)
        fn = self._rendered.get(key)
        if fn is None:
            from keel.query.shape import ObjShape, compile_shape
            shape = self.plan.shape if child is None else self.plan.children[child].shape
            assert isinstance(shape, ObjShape)
            fn = self._rendered[key] = compile_shape(shape)
        return fn

    @property
    def sql(self) -> str:
        """The main statement's SQL (first page), for tests and EXPLAIN."""
        from keel.query.run import first_page_statement
        return self.rendered(("first", None), lambda: first_page_statement(self)).sql

    @property
    def uses_fiscal_literals(self) -> bool:
        """Whether a date literal here depends on the fiscal year (``THIS_FISCAL_QUARTER``, ``N_FISCAL_YEARS_AGO``)."""
        return any(rp.literal is not None and "FISCAL" in rp.literal.name for rp in self.plan.runtime)

    def runtime_values(self, now: dt.datetime | None = None, time_zone: str | None = None,
                       fiscal_start_month: int | None = None) -> dict[str, Any]:
        """Values of the statement's parameters: the query's literals, date literal bounds (computed now) and the
        running user for ``mine``."""
        out: dict[str, Any] = dict(self.plan.params)
        if self.user_id is not None:
            out["me"] = self.user_id
        if not self.plan.runtime:
            return out
        now = now or self.now or dt.datetime.now(dt.UTC)
        tz = time_zone or self.time_zone
        fiscal = fiscal_start_month or self.fiscal_start_month
        today = local_today(now, tz)
        for rp in self.plan.runtime:
            assert rp.literal is not None
            rng = date_range(rp.literal.name, rp.literal.n, today, fiscal)
            if rp.as_datetime:
                bounds: tuple[Any, Any] = utc_bounds(rng, tz)
            else:
                bounds = rng
            out[rp.name] = bounds[1] if rp.end else bounds[0]
        return out


def compile_soql(text: str, schema: SchemaSnapshot, *, dialect: str, row_filter: RowFilter | None = None,
                 field_mask: FieldMask | None = None, query_all: bool = False, now: dt.datetime | None = None,
                 time_zone: str = "UTC", fiscal_start_month: int = 1, formula_sql: FormulaSql | None = None,
                 user_id: int | None = None) -> CompiledQuery:
    """Parse, resolve and emit one SOQL statement. Raises MALFORMED_QUERY / INVALID_FIELD / INVALID_TYPE errors
    with line and column. ``now``/``time_zone`` are defaults for date literals; both can be overridden per run."""
    if dialect not in _DIALECTS:
        raise ValueError(f"unsupported dialect {dialect!r}")
    q = parse(text)
    opts = Options(schema, dialect, row_filter, field_mask, formula_sql, query_all)
    plan = Emitter(opts, user_id).compile(q)
    return CompiledQuery(text, dialect, q, plan, now, time_zone, fiscal_start_month, user_id, query_all)


class PlanCache:
    """An LRU of compiled plans keyed by (text, schema version, security shape, dialect, options).

    The security shape is the caller's key for "which row filter and field mask" (for example the profile and
    permission-set ids); two users with the same shape share plans because the filter reads the user at run time.
    """

    def __init__(self, maxsize: int = 512) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Hashable, CompiledQuery] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, text: str, schema: SchemaSnapshot, *, dialect: str, security_key: Hashable = None,
            query_all: bool = False, **kwargs: Any) -> CompiledQuery:
        if security_key is None:
            # Without a caller-supplied shape key, plans are only shared by callers passing the same hook objects,
            # so a filter that captured one user's values can never serve another user.
            security_key = (kwargs.get("row_filter"), kwargs.get("field_mask"), kwargs.get("formula_sql"))
        key = (text, schema.version, security_key, dialect, query_all, kwargs.get("user_id"))
        hit = self._data.get(key)
        if hit is not None:
            self.hits += 1
            with contextlib.suppress(KeyError):  # evicted concurrently
                self._data.move_to_end(key)
            return hit
        self.misses += 1
        cq = compile_soql(text, schema, dialect=dialect, query_all=query_all, **kwargs)
        with self._lock:
            self._data[key] = cq
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return cq

    def __len__(self) -> int:
        return len(self._data)
