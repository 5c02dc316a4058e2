"""Executing compiled SOQL: first pages, queryMore pages, child subqueries and counts.

Service-level entry points (the CLI, REST API and UI call these; they never build SQL themselves):

- ``run_soql(conn, schema, text, *, dialect, query_all=False, api_version="59.0", row_filter=None,
  field_mask=None, time_zone="UTC", now=None, batch_size=2000, security_key=None, cache=None, owner=None, …)``
  returns the first page as ``{"totalSize", "done", "records"[, "nextRecordsUrl"]}``.
- ``fetch_more(conn, schema, locator, *, dialect, api_version="59.0", row_filter=None, field_mask=None, …)``
  serves ``/query/{locator}`` for both query and queryAll cursors.

Pages use keyset pagination on the ORDER BY keys plus the record id, so page N costs the same as page 1. Child
subqueries run once per page and relationship (``WHERE parent IN (…)``), with ROW_NUMBER for per-parent LIMITs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from keel.errors import KeelError
from keel.metadata.model import SchemaSnapshot
from keel.metadata.tables import table_for
from keel.query import cursors
from keel.query import shape as S
from keel.query.arms import merged
from keel.query.compiler import CompiledQuery, PlanCache
from keel.query.emit import ChildPlan, OrderKey, order_clause
from keel.query.sensitive import SensitiveAccess, summarise

MIN_BATCH, MAX_BATCH = 200, 2000
CHILD_BATCH = 200  # child records per parent in one response; more continue at the child's nextRecordsUrl
OnSensitive = Callable[[list[SensitiveAccess]], None]  # told what a page returned of fields marked sensitive


def plan_cache(schema: SchemaSnapshot) -> PlanCache:
    """The default plan cache lives on the snapshot, so a new schema version starts with a fresh cache."""
    cache: Any = schema.cache.get("soql_plans")
    if cache is None:
        cache = schema.cache.setdefault("soql_plans", PlanCache())
    assert isinstance(cache, PlanCache)
    return cache


def first_page_statement(cq: CompiledQuery, fixed: tuple[int, int] | None = None, merge: bool = True
                         ) -> sa.Select[Any]:
    """The first page; ``fixed`` (LIMIT, OFFSET) writes them into the statement instead of binding them.
    ``merge=False`` keeps the plain filtered walk even where the plan could merge streams (a read of every row
    gains nothing from them)."""
    p = cq.plan
    stmt = p.base
    if p.kind == "count":
        return stmt
    lim: sa.ColumnElement[Any] = sa.bindparam("_lim", type_=sa.Integer)
    off: sa.ColumnElement[Any] = sa.bindparam("_off", type_=sa.Integer)
    if fixed is not None:
        lim, off = (sa.literal_column(str(int(v)), sa.Integer) for v in fixed)
    if p.merge is not None and merge:
        return _merged(cq, [], lim + off).limit(lim).offset(off)
    stmt = stmt.order_by(*(order_clause(k, cq.dialect) for k in p.order))
    return stmt.limit(lim).offset(off)


def _fixed(cq: CompiledQuery) -> bool:
    """Whether page sizes are written into the statement: PostgreSQL plans a merged page's LIMIT subqueries for
    an unknown LIMIT as if it were large, which makes the prepared statement's generic plan look costlier than a
    custom one, and then it plans the statement afresh on every execution (about 0.3 ms). A statement per page
    size has no parameter to plan for."""
    return cq.plan.merge is not None and cq.dialect == "postgresql"


def _merged(cq: CompiledQuery, extra: list[sa.ColumnElement[bool]], rows: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """The page read as a merge of the row filter's streams (``query/arms.py``), in the plan's column layout."""
    p = cq.plan
    assert p.merge is not None
    streams = merged(p.merge, p.order, p.key_start, lambda k: order_clause(k, cq.dialect), extra, rows, cq.dialect)
    cols = list(streams.c)
    keys = [replace(k, expr=cols[p.key_start + i]) for i, k in enumerate(p.order)]
    return sa.select(*cols).order_by(*(order_clause(k, cq.dialect) for k in keys))


def _after(k: OrderKey, name: str, is_null: bool) -> sa.ColumnElement[bool]:
    """Rows strictly after a key value, in this key's direction and null placement."""
    e = k.expr
    if is_null:
        return e.is_not(None) if k.nulls_first else sa.false()
    p: sa.BindParameter[Any] = sa.bindparam(name)
    beyond = e < p if k.desc else e > p
    return beyond if k.nulls_first or not k.nullable else sa.or_(beyond, e.is_(None))


def _keyset(order: list[OrderKey], nulls: tuple[bool, ...]) -> sa.ColumnElement[bool]:
    """Rows after the position ``_k0, _k1, …`` in the order of ``order`` (which ends with the record id)."""
    alts: list[sa.ColumnElement[bool]] = []
    for i, k in enumerate(order):
        eqs = [order[j].expr.is_(None) if nulls[j] else order[j].expr == sa.bindparam(f"_k{j}") for j in range(i)]
        alts.append(sa.and_(*eqs, _after(k, f"_k{i}", nulls[i])))
    return sa.or_(*alts)


def next_page_statement(cq: CompiledQuery, nulls: tuple[bool, ...], fixed: int | None = None) -> sa.Select[Any]:
    p = cq.plan
    if p.merge is not None:
        lim: sa.ColumnElement[Any] = sa.bindparam("_lim", type_=sa.Integer) if fixed is None else \
            sa.literal_column(str(int(fixed)), sa.Integer)
        return _merged(cq, [_keyset(p.order, nulls)], lim).limit(lim)
    stmt = p.base.where(_keyset(p.order, nulls)).order_by(*(order_clause(k, cq.dialect) for k in p.order))
    return stmt.limit(sa.bindparam("_lim", type_=sa.Integer))


def next_child_statement(cq: CompiledQuery, ci: int, nulls: tuple[bool, ...] | None) -> sa.Select[Any]:
    """The next page of one parent's children: keyset on the child's order, or on its row number when the child
    subquery has LIMIT/OFFSET (``nulls`` is None then), so the page stays inside that window."""
    child = cq.plan.children[ci]
    stmt = child.select.where(child.fk == sa.bindparam("_parent"))
    if nulls is None:
        sub = stmt.subquery()
        lo = child.offset or 0
        conds = [sub.c._rn > sa.bindparam("_k0", type_=sa.Integer)]
        if child.limit is not None:
            conds.append(sub.c._rn <= lo + child.limit)
        return sa.select(*sub.c).where(*conds).order_by(sub.c._rn).limit(sa.bindparam("_lim", type_=sa.Integer))
    stmt = stmt.where(_keyset(child.order, nulls)).order_by(*(order_clause(k, cq.dialect) for k in child.order))
    return stmt.limit(sa.bindparam("_lim", type_=sa.Integer))


def _exec(conn: Connection, cq: CompiledQuery, key: Hashable, build: Any, values: dict[str, Any]) -> list[Any]:
    """Run a rendered statement on the connection's DBAPI cursor, inside the caller's transaction.

    SQLAlchemy's textual-result machinery rebuilds column metadata on every call, which costs more than the
    query itself for a 50-row page; plans already know their column layout, so rows are read positionally."""
    r = cq.rendered(key, build)
    raw = conn.connection.driver_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        cur.execute(r.sql, r.params(values, cq.dialect))
        return list(cur.fetchall())
    finally:
        cur.close()


def _count(conn: Connection, cq: CompiledQuery, rv: dict[str, Any]) -> int:
    p = cq.plan

    def build() -> sa.Select[Any]:
        if p.kind == "count":
            return p.base
        # Count the matching rows without reading their columns, and stop at LIMIT + OFFSET when there is one.
        inner: sa.Select[Any] = p.base.with_only_columns(sa.literal_column("1").label("one"))
        if p.limit is not None:
            inner = inner.limit(p.limit + (p.offset or 0))
        return sa.select(sa.func.count()).select_from(inner.subquery())

    n = int(_exec(conn, cq, ("count",), build, rv)[0][0])
    n = max(0, n - (p.offset or 0))
    return min(n, p.limit) if p.limit is not None else n


@dataclass
class ChildPaging:
    """How a parent's child results longer than ``batch`` are cut, and the cursor state that continues them."""

    batch: int
    state: Callable[[], dict[str, Any]]  # the query's text, options, frozen now and owner (as for the main cursor)
    idle: dt.timedelta


def _children(conn: Connection, cq: CompiledQuery, rows: Sequence[Any], rv: dict[str, Any],
              base_url: str, paging: ChildPaging,
              sink: dict[int, list[Any]] | None = None) -> list[dict[str, Any]] | None:
    """Each child subquery's first records per parent row; ``sink`` (when given) collects the child rows returned."""
    if not cq.plan.children or not rows:
        return None
    out: list[dict[str, Any]] = [{} for _ in rows]
    pos = {row[0]: i for i, row in enumerate(rows)}
    ids = list(pos)
    for ci, child in enumerate(cq.plan.children):
        build = cq.builder(ci)(base_url)
        windowed = child.limit is not None or child.offset is not None
        p_idx = len(child.select.selected_columns) - (2 if windowed else 1)
        values = dict(rv)
        values.update({f"_i{j}": v for j, v in enumerate(ids)})
        found: dict[Any, list[Any]] = {}
        for row in _exec(conn, cq, ("child", ci, len(ids)), lambda c=child, n=len(ids): _child_stmt(c, n, cq),
                         values):
            found.setdefault(row[p_idx], []).append(row)
        for pid, kid_rows in found.items():
            if sink is not None:
                sink.setdefault(ci, []).extend(kid_rows[: paging.batch])
            recs = [build(r, None) for r in kid_rows[: paging.batch]]
            res: dict[str, Any] = {"totalSize": len(kid_rows), "done": True, "records": recs}
            if len(kid_rows) > paging.batch:
                state = {**paging.state(), "child": ci, "parent": pid, "batch": paging.batch, "total": len(kid_rows),
                         "pos": {str(paging.batch): _child_key(child, kid_rows[paging.batch - 1])}}
                cid = cursors.new_cursor_id()
                cursors.save(conn, cid, state, paging.idle, new=True)
                res["done"] = False
                res["nextRecordsUrl"] = f"{base_url}/query/{cid}-{paging.batch}"
            out[pos[pid]][child.key] = res
    return out


def _child_key(child: ChildPlan, row: Sequence[Any]) -> list[Any]:
    """A child row's keyset position: its row number in a LIMIT/OFFSET window, else its order-key values."""
    if child.limit is not None or child.offset is not None:
        return [row[-1]]
    return [cursors.encode_value(v) for v in row[child.key_start: child.key_start + len(child.order)]]


def _child_page(conn: Connection, cq: CompiledQuery, cid: str, offset: int, state: dict[str, Any],
                rv: dict[str, Any], base_url: str, idle: dt.timedelta,
                on_sensitive: OnSensitive | None = None) -> dict[str, Any]:
    """``/query/{locator}`` for a child cursor: the next children of one parent."""
    ci = int(state["child"])
    if ci >= len(cq.plan.children):
        raise cursors.invalid_locator(f"{cid}-{offset}")
    child = cq.plan.children[ci]
    key_vals = [cursors.decode_value(v) for v in state["pos"][str(offset)]]
    batch, total = int(state["batch"]), int(state["total"])
    want = max(0, min(batch, total - offset))
    values = {**rv, "_lim": want, "_parent": state["parent"]}
    windowed = child.limit is not None or child.offset is not None
    nulls = None if windowed else tuple(v is None for v in key_vals)
    values.update({f"_k{i}": v for i, v in enumerate(key_vals) if v is not None})
    rows = _exec(conn, cq, ("child-next", ci, nulls), lambda: next_child_statement(cq, ci, nulls),
                 values) if want else []
    build = cq.builder(ci)(base_url)
    end = offset + len(rows)
    done = end >= total or len(rows) < want
    result: dict[str, Any] = {"totalSize": total, "done": done, "records": [build(r, None) for r in rows]}
    if on_sensitive is not None and cq.plan.sensitive:
        _tell(on_sensitive, cq, [], {ci: rows})
    if not done:
        state["pos"][str(end)] = _child_key(child, rows[-1])
        cursors.save(conn, cid, state, idle)
        result["nextRecordsUrl"] = f"{base_url}/query/{cid}-{end}"
    return result


def _child_stmt(child: ChildPlan, n: int, cq: CompiledQuery) -> sa.Select[Any]:
    stmt = child.select.where(child.fk.in_([sa.bindparam(f"_i{j}") for j in range(n)]))
    if child.limit is None and child.offset is None:
        return stmt.order_by(child.fk, *(order_clause(k, cq.dialect) for k in child.order))
    sub = stmt.subquery()
    lo = child.offset or 0
    conds = [sub.c._rn > lo]
    if child.limit is not None:
        conds.append(sub.c._rn <= lo + child.limit)
    return sa.select(*sub.c).where(*conds).order_by(sub.c._p, sub.c._rn)


def _tell(on_sensitive: OnSensitive, cq: CompiledQuery, rows: Sequence[Any],
          kids: dict[int, list[Any]] | None) -> None:
    found = summarise(cq.plan.sensitive, rows, kids)
    if found:
        on_sensitive(found)


def _records(cq: CompiledQuery, rows: Sequence[Any], kids: list[dict[str, Any]] | None,
             base_url: str) -> list[Any]:
    build = cq.builder()(base_url)
    if kids is None:
        return [build(row, None) for row in rows]
    return [build(row, kids[i]) for i, row in enumerate(rows)]


def execute(conn: Connection, cq: CompiledQuery, *, api_version: str = "59.0", batch_size: int = MAX_BATCH,
            now: dt.datetime | None = None, time_zone: str | None = None, owner: str | None = None,
            cursor_idle: dt.timedelta = cursors.DEFAULT_IDLE, child_batch_size: int = CHILD_BATCH,
            on_sensitive: OnSensitive | None = None, fiscal_start_month: int | None = None) -> dict[str, Any]:
    """Run a compiled query and return the first page in Salesforce's response shape. ``on_sensitive`` is told,
    before the page is returned, which sensitive fields of which records it holds (only when the plan selects any).
    ``fiscal_start_month`` overrides the plan's, since one cached plan serves organisations' changing settings."""
    batch = max(MIN_BATCH, min(MAX_BATCH, batch_size))
    now = now or cq.now or dt.datetime.now(dt.UTC)
    fiscal = fiscal_start_month or cq.fiscal_start_month
    rv = cq.runtime_values(now, time_zone, fiscal)
    base_url = f"/services/data/v{api_version}"
    p = cq.plan
    if p.kind == "count":
        return {"totalSize": _count(conn, cq, rv), "done": True, "records": []}
    if p.kind == "aggregate":
        def build_agg() -> sa.Select[Any]:
            stmt = p.base.order_by(*(order_clause(k, cq.dialect) for k in p.order))
            if p.limit is not None:
                stmt = stmt.limit(p.limit)
            if p.offset:
                stmt = stmt.offset(p.offset)
            return stmt

        rows = _exec(conn, cq, ("agg",), build_agg, rv)
        if on_sensitive is not None and p.sensitive:
            _tell(on_sensitive, cq, rows, None)
        assert isinstance(p.shape, S.AggShape)
        recs = [p.shape.build(r) for r in rows]
        return {"totalSize": len(recs), "done": True, "records": recs}
    frozen_now = now

    def base_state() -> dict[str, Any]:
        return {"q": cq.text, "all": cq.query_all, "now": frozen_now.isoformat(), "tz": time_zone or cq.time_zone,
                "fy": fiscal, "uid": cq.user_id, "owner": owner, "cb": max(1, child_batch_size)}

    paging = ChildPaging(max(1, child_batch_size), base_state, cursor_idle)
    fetch_n = min(p.limit, batch + 1) if p.limit is not None else batch + 1
    values = {**rv, "_lim": fetch_n, "_off": p.offset or 0}
    if _fixed(cq):
        fixed = (fetch_n, p.offset or 0)
        rows = _exec(conn, cq, ("first", fixed), lambda: first_page_statement(cq, fixed), values)
    else:
        rows = _exec(conn, cq, ("first", None), lambda: first_page_statement(cq), values)
    sink: dict[int, list[Any]] | None = {} if on_sensitive is not None and p.sensitive else None
    if len(rows) <= batch:
        kids = _children(conn, cq, rows, rv, base_url, paging, sink)
        if on_sensitive is not None and sink is not None:
            _tell(on_sensitive, cq, rows, sink)
        return {"totalSize": len(rows), "done": True, "records": _records(cq, rows, kids, base_url)}
    rows = rows[:batch]
    total = _count(conn, cq, rv)
    if total <= batch:  # rows were deleted between the two statements
        total = batch
    kids = _children(conn, cq, rows, rv, base_url, paging, sink)
    if on_sensitive is not None and sink is not None:
        _tell(on_sensitive, cq, rows, sink)
    result: dict[str, Any] = {"totalSize": total, "done": total <= batch,
                              "records": _records(cq, rows, kids, base_url)}
    if total > batch:
        cid = cursors.new_cursor_id()
        state = {**base_state(), "batch": batch, "total": total,
                 "pos": {str(batch): [cursors.encode_value(v) for v in rows[-1][p.key_start:]]}}
        cursors.save(conn, cid, state, cursor_idle, new=True)
        result["nextRecordsUrl"] = f"{base_url}/query/{cid}-{batch}"
    return result


def run_soql(conn: Connection, schema: SchemaSnapshot, text: str, *, dialect: str, query_all: bool = False,
             api_version: str = "59.0", row_filter: Any = None, field_mask: Any = None, time_zone: str = "UTC",
             now: dt.datetime | None = None, batch_size: int = MAX_BATCH, security_key: Hashable = None,
             cache: PlanCache | None = None, owner: str | None = None, formula_sql: Any = None,
             user_id: int | None = None, fiscal_start_month: int | None = None,
             cursor_idle: dt.timedelta = cursors.DEFAULT_IDLE, child_batch_size: int = CHILD_BATCH,
             on_sensitive: OnSensitive | None = None) -> dict[str, Any]:
    """Compile (through the plan cache) and run SOQL; return the first page response dict. Fiscal date literals
    use ``fiscal_start_month``, or when it is None the organisation's ``FiscalYearStartMonth``, read only for a
    query that has one."""
    cache = cache if cache is not None else plan_cache(schema)
    cq = cache.get(text, schema, dialect=dialect, security_key=security_key, query_all=query_all,
                   row_filter=row_filter, field_mask=field_mask, time_zone=time_zone, formula_sql=formula_sql,
                   user_id=user_id)
    if fiscal_start_month is None:
        fiscal_start_month = org_fiscal_start_month(conn, schema) if cq.uses_fiscal_literals else 1
    return execute(conn, cq, api_version=api_version, batch_size=batch_size, now=now, time_zone=time_zone,
                   owner=owner, cursor_idle=cursor_idle, child_batch_size=child_batch_size, on_sensitive=on_sensitive,
                   fiscal_start_month=fiscal_start_month)


def org_fiscal_start_month(conn: Connection, schema: SchemaSnapshot) -> int:
    """The organisation's ``FiscalYearStartMonth`` (1 = January), read from its Organization record on every query
    that needs it, so a change applies to the very next query in every process; 1 when there is none."""
    obj = schema.find_object("Organization")
    f = obj.find_field("FiscalYearStartMonth") if obj is not None else None
    if obj is None or f is None or not f.column:
        return 1
    t = table_for(schema, obj)
    value = conn.execute(sa.select(t.c[f.column]).where(t.c.is_deleted == sa.false()).order_by(t.c.id).limit(1)
                         ).scalar()
    if value is None:
        return 1
    month = int(value)
    return month if 1 <= month <= 12 else 1


def fetch_more(conn: Connection, schema: SchemaSnapshot, locator: str, *, dialect: str, api_version: str = "59.0",
               row_filter: Any = None, field_mask: Any = None, security_key: Hashable = None,
               cache: PlanCache | None = None, owner: str | None = None, formula_sql: Any = None,
               cursor_idle: dt.timedelta = cursors.DEFAULT_IDLE,
               on_sensitive: OnSensitive | None = None) -> dict[str, Any]:
    """The next page of a cursor (``/query/{cursorId}-{offset}``)."""
    cid, offset, state = cursors.load(conn, locator)
    if state.get("owner") != owner:
        raise cursors.invalid_locator(locator)
    keys = state["pos"].get(str(offset))
    if keys is None:
        raise cursors.invalid_locator(locator)
    cache = cache if cache is not None else plan_cache(schema)
    try:
        cq = cache.get(state["q"], schema, dialect=dialect, security_key=security_key, query_all=state["all"],
                       row_filter=row_filter, field_mask=field_mask, time_zone=state["tz"],
                       formula_sql=formula_sql, user_id=state["uid"], fiscal_start_month=state["fy"])
    except KeelError:
        raise cursors.invalid_locator(locator) from None  # the schema changed under the cursor
    now = dt.datetime.fromisoformat(state["now"])
    rv = cq.runtime_values(now, state["tz"], state["fy"])
    base_url = f"/services/data/v{api_version}"
    if "child" in state:
        return _child_page(conn, cq, cid, offset, state, rv, base_url, cursor_idle, on_sensitive)
    paging = ChildPaging(int(state.get("cb") or CHILD_BATCH),
                         lambda: {k: state.get(k) for k in ("q", "all", "now", "tz", "fy", "uid", "owner", "cb")},
                         cursor_idle)
    batch, total = int(state["batch"]), int(state["total"])
    want = max(0, min(batch, total - offset))
    key_vals = [cursors.decode_value(v) for v in keys]
    nulls = tuple(v is None for v in key_vals)
    values = {**rv, "_lim": want}
    values.update({f"_k{i}": v for i, v in enumerate(key_vals) if v is not None})
    fixed = want if _fixed(cq) else None
    rows = _exec(conn, cq, ("next", nulls, fixed), lambda: next_page_statement(cq, nulls, fixed), values) \
        if want else []
    sink: dict[int, list[Any]] | None = {} if on_sensitive is not None and cq.plan.sensitive else None
    kids = _children(conn, cq, rows, rv, base_url, paging, sink)
    if on_sensitive is not None and sink is not None:
        _tell(on_sensitive, cq, rows, sink)
    end = offset + len(rows)
    done = end >= total or len(rows) < want
    result: dict[str, Any] = {"totalSize": total, "done": done, "records": _records(cq, rows, kids, base_url)}
    if not done:
        state["pos"][str(end)] = [cursors.encode_value(v) for v in rows[-1][cq.plan.key_start:]]
        cursors.save(conn, cid, state, cursor_idle)
        result["nextRecordsUrl"] = f"{base_url}/query/{cid}-{end}"
    return result


def stream_rows(conn: Connection, cq: CompiledQuery, *, now: dt.datetime | None = None,
                time_zone: str | None = None, fetch: int = MAX_BATCH) -> Generator[list[Any], None, None]:
    """Every row of a records plan in its keyset order, ``fetch`` rows at a time, from ONE cursor: a server-side
    cursor on PostgreSQL, SQLite's own lazy cursor otherwise. The rows are raw (positions as in the plan).

    For bulk query jobs, which read every row once: a page per keyset step would re-plan and re-seek the query and
    save a cursor per 2,000 rows. One cursor also reads one snapshot (the caller's transaction), so the result is
    consistent even while the object is being written. Child subqueries are not run; callers use pages for them."""
    p = cq.plan
    assert p.kind == "records" and not p.children
    rv = cq.runtime_values(now or cq.now or dt.datetime.now(dt.UTC), time_zone)
    values = {**rv, "_lim": p.limit if p.limit is not None else 2**31 - 1, "_off": p.offset or 0}
    r = cq.rendered(("stream",), lambda: first_page_statement(cq, merge=False))
    raw: Any = conn.connection.driver_connection
    assert raw is not None
    cur = raw.cursor(name=f"keel_stream_{cursors.new_cursor_id()}") if cq.dialect == "postgresql" else raw.cursor()
    try:
        cur.execute(r.sql, r.params(values, cq.dialect))
        while rows := cur.fetchmany(fetch):
            yield rows
    finally:
        cur.close()
