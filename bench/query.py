"""SOQL benchmarks: Keel against hand-written SQL on the same connection (DESIGN.md §5 budgets).

    python bench/query.py --rows 1000000            # SQLite (file under --dir)
    python bench/query.py --rows 1000000 --pg       # also PostgreSQL (KEEL_TEST_PG or --pg-url)

Budgets: list query p50 <= 1.5x hand SQL; GROUP BY report <= 1.3x; parse+compile p50 <= 300 us cold and <= 20 us
cached; queryMore over 100k rows <= 1.5x one raw keyset-paged scan; filtering and sorting by a formula field <= 1.5x
the same expression written by hand (issue #4). Prints ratios; exits 1 if a budget is missed.

"Cold" means a text the process has never compiled: the budget row compiles 3,000 distinct list queries that differ
in structure (``new_shapes``), each once. Rendering the SQL text happens on a plan's first execution and is shown
separately (info).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from keel.errors import MetadataError  # noqa: E402
from keel.formula import field_sql  # noqa: E402
from keel.metadata.model import ObjectDef, SchemaSnapshot  # noqa: E402
from keel.metadata.package import parse_object, parse_object_file  # noqa: E402
from keel.metadata.plan import plan  # noqa: E402
from keel.metadata.tables import index_specs, table_for  # noqa: E402
from keel.query import PlanCache, compile_soql, create_cursor_tables, fetch_more, run_soql  # noqa: E402
from keel.storage import ddl, ids  # noqa: E402
from keel.storage.engine import Database  # noqa: E402

STATUSES = ["New", "Screening", "Phone", "Onsite", "Background", "Medical", "Polygraph", "Offer", "Hired",
            "Rejected"]
APPLICANT = {
    "object": "Applicant__c", "label": "Applicant", "plural_label": "Applicants",
    "fields": [
        {"name": "Account__c", "type": "lookup", "to": "Account", "relationship_name": "Account__r",
         "child_relationship_name": "Applicants__r"},
        {"name": "Status__c", "type": "picklist", "values": STATUSES, "indexed": True},
        {"name": "Score__c", "type": "number", "precision": 6, "scale": 2},
        {"name": "Applied__c", "type": "datetime"},
        {"name": "Email__c", "type": "email"},
        # computed in the query through the formula_sql hook, rounded to its scale; blank_as: blank so the
        # hand-written equivalent needs no COALESCE
        {"name": "Priority__c", "type": "formula", "returns": "number", "scale": 2, "blank_as": "blank",
         "formula": "Score__c * 1.1 + 5"},
    ],
}
N_ACCOUNTS, N_USERS = 1000, 50
# Building blocks for list queries of the same size as the list-query benchmark (six items, one parent path, one
# filter, one sort key, a LIMIT), combined so every text is a query shape the compiler has not seen before.
PLAIN_FIELDS = ("Id", "Name", "Status__c", "Score__c", "Applied__c", "Email__c", "CreatedDate")
PARENT_PATHS = ("Account__r.Name", "Owner.Name", "Account__r.Owner.Name")
SORTS = ("Applied__c DESC", "Name", "CreatedDate DESC", "Score__c DESC NULLS LAST", "Email__c")


def new_shapes(n: int, account_id: str, seed: int = 7) -> list[str]:
    """``n`` distinct list-query texts that differ in structure (select list order and content, filter, sort), not
    just in literal values, so no cache keyed on the text or on its literal-free template can serve them."""
    rnd = random.Random(seed)
    filters = (f"Account__c = '{account_id}'", "Status__c = 'Offer'", "Score__c > 50",
               f"Account__c = '{account_id}' AND Status__c != 'Hired'")
    out: dict[str, None] = {}
    while len(out) < n:
        items = rnd.sample(PLAIN_FIELDS, 5)
        items.insert(rnd.randrange(6), rnd.choice(PARENT_PATHS))
        out[(f"SELECT {', '.join(items)} FROM Applicant__c WHERE {rnd.choice(filters)} "
             f"ORDER BY {rnd.choice(SORTS)} LIMIT {rnd.choice((20, 50, 100))}")] = None
    return list(out)


def new_literals(n: int, prefix: str) -> list[str]:
    """``n`` texts of the list query's shape that differ only in the account id (a new literal value each)."""
    return [(f"SELECT Id, Name, Status__c, Score__c, Applied__c, Account__r.Name FROM Applicant__c "
             f"WHERE Account__c = '{ids.encode(prefix, i + 1)}' ORDER BY Applied__c DESC LIMIT 50")
            for i in range(n)]


BASE_OBJECTS = ("Account", "Attachment", "Case", "Contact", "Event", "Lead", "Note", "Opportunity", "Organization",
                "Task", "User")


def standard_objects(names: tuple[str, ...] = BASE_OBJECTS) -> list[ObjectDef]:
    """The named standard objects plus everything they reference, parsed file by file, so another package being
    edited in the same tree cannot break these tests."""
    folder = ROOT / "src/keel/metadata/standard"
    parsed: dict[str, ObjectDef] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            o = parse_object_file(path, standard=True)
        except MetadataError:
            continue
        parsed[o.key] = o
    want: list[str] = [n.lower() for n in names]
    seen: set[str] = set()
    while want:
        k = want.pop()
        if k in seen:
            continue
        seen.add(k)
        for f in parsed[k].fields:
            want.extend(t.lower() for t in f.reference_to)
    return [o for k, o in parsed.items() if k in seen]


def make_schema() -> SchemaSnapshot:
    objs = [*standard_objects(("Account", "User")), parse_object(APPLICANT)]
    return plan(SchemaSnapshot(0, ()), objs).after


def build(db: Database, schema: SchemaSnapshot, rows: int) -> None:
    app = schema.get_object("Applicant__c")
    col = {f.api_name: f.column for f in app.fields}
    rnd = random.Random(42)
    t0 = time.perf_counter()
    with db.transaction() as conn:
        for obj in (schema.get_object("User"), schema.get_object("Account"), app):
            table_for(schema, obj).create(conn)
        create_cursor_tables(conn)
        base = dt.datetime(2024, 1, 1)
        users = [{"id": i, "name": f"User {i}", "owner_id": 1, "is_deleted": False, "version": 1,
                  "created_date": base} for i in range(1, N_USERS + 1)]
        conn.execute(table_for(schema, schema.get_object("User")).insert(), users)
        accs = [{"id": i, "name": f"Account {rnd.randrange(10**6):06d}", "owner_id": rnd.randint(1, N_USERS),
                 "is_deleted": False, "version": 1, "created_date": base} for i in range(1, N_ACCOUNTS + 1)]
        conn.execute(table_for(schema, schema.get_object("Account")).insert(), accs)
        cols = ["id", "name", "owner_id", "created_date", "is_deleted", "version", col["Account__c"],
                col["Status__c"], col["Score__c"], col["Applied__c"], col["Email__c"]]
        marks = ", ".join(["?" if db.dialect == "sqlite" else "%s"] * len(cols))
        sql = f'INSERT INTO {app.table} ({", ".join(cols)}) VALUES ({marks})'
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        batch: list[tuple[Any, ...]] = []
        for i in range(1, rows + 1):
            applied = base + dt.timedelta(seconds=rnd.randrange(300 * 86400))
            created: Any = applied
            if db.dialect == "sqlite":
                created = applied = f"{applied:%Y-%m-%d %H:%M:%S}.000000"  # type: ignore[assignment]
            batch.append((i, f"{rnd.choice('ABCDEFGHIJKLMNOPRSTW')}{rnd.randrange(10**7):07d}", rnd.randint(1, N_USERS),
                          created, rnd.random() < 0.01, 1, rnd.randint(1, N_ACCOUNTS), rnd.choice(STATUSES),
                          round(rnd.random() * 100, 2), applied, f"a{i}@example.org"))
            if len(batch) == 20000:
                cur.executemany(sql, batch)
                batch.clear()
        if batch:
            cur.executemany(sql, batch)
        for obj in (schema.get_object("Account"), app):
            for spec in index_specs(obj):
                ddl.create_index(conn, obj.table, spec)
        if db.dialect == "sqlite":
            conn.exec_driver_sql("ANALYZE")
    if db.dialect == "postgresql":
        with db.engine.connect() as c:
            c = c.execution_options(isolation_level="AUTOCOMMIT")
            c.exec_driver_sql(f"VACUUM ANALYZE {app.table}")
            c.exec_driver_sql(f"VACUUM ANALYZE {schema.get_object('Account').table}")
    print(f"  built {rows:,} rows in {time.perf_counter() - t0:.1f}s")


def p50(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def p50_each(fn: Callable[[str], Any], texts: list[str]) -> float:
    """Median time of ``fn`` over distinct inputs, each used once."""
    times = []
    for text in texts:
        t = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def interleaved(a: Callable[[], Any], b: Callable[[], Any], n: int) -> tuple[float, float]:
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(n):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def formula_row(conn: Any, schema: SchemaSnapshot, d: str, cache: PlanCache, raw: Callable[..., list[Any]],
                num: Callable[[Any], Any]) -> tuple[float, float]:
    """SOQL filtering and sorting by the Priority__c formula field, through ``run_soql`` with the same formula hook
    the services pass (so compiling the formula into the query and rounding it to its scale are timed), against the
    expression written by hand in SQL, both shaped into the same response."""
    app = schema.get_object("Applicant__c")
    c = {f.api_name: f.column for f in app.fields}
    false = "0" if d == "sqlite" else "false"
    factor = "1.1" if d == "sqlite" else "1.1::numeric"
    soql = ("SELECT Id, Name, Priority__c FROM Applicant__c WHERE Priority__c > 100 "
            "ORDER BY Priority__c DESC, Id LIMIT 50")
    by_hand = f"round({c['Score__c']} * {factor} + 5, 2)"
    sql = (f"SELECT id, name, {by_hand} FROM {app.table} WHERE is_deleted = {false} AND {by_hand} > 100 "
           f"ORDER BY {by_hand} DESC, id LIMIT 50")
    base = "/services/data/v59.0/sobjects/Applicant__c/"

    def hook(obj: ObjectDef, f: Any, alias: Any) -> Any:
        return field_sql(f, obj, schema, d, table_alias=alias)

    def keel() -> dict[str, Any]:
        return run_soql(conn, schema, soql, dialect=d, cache=cache, formula_sql=hook)

    def hand() -> list[dict[str, Any]]:
        out = []
        for r in raw(conn, sql):
            rid = ids.encode(app.key_prefix, r[0])
            out.append({"attributes": {"type": "Applicant__c", "url": base + rid}, "Id": rid, "Name": r[1],
                        "Priority__c": num(r[2])})
        return out

    got = keel()["records"]
    assert 0 < len(got) <= 50 and got == hand(), (got[:3], hand()[:3])
    return interleaved(keel, hand, 15)


def run(db: Database, schema: SchemaSnapshot, rows: int, page_rows: int) -> list[tuple[str, float, float, str]]:
    app = schema.get_object("Applicant__c")
    acc = schema.get_object("Account")
    c = {f.api_name: f.column for f in app.fields}
    d = db.dialect
    mark = "?" if d == "sqlite" else "%s"
    false = "0" if d == "sqlite" else "false"
    results: list[tuple[str, float, float, str]] = []
    cache = PlanCache()
    account_id = ids.encode(acc.key_prefix, 123)
    list_soql = (f"SELECT Id, Name, Status__c, Score__c, Applied__c, Account__r.Name FROM Applicant__c "
                 f"WHERE Account__c = '{account_id}' ORDER BY Applied__c DESC LIMIT 50")
    list_sql = (f"SELECT a.id, a.name, a.{c['Status__c']}, a.{c['Score__c']}, a.{c['Applied__c']}, "
                f"a.{c['Account__c']}, p.id, p.name "
                f"FROM {app.table} a LEFT JOIN {acc.table} p ON p.id = a.{c['Account__c']} AND p.is_deleted = {false} "
                f"WHERE a.{c['Account__c']} = {mark} AND a.is_deleted = {false} "
                f"ORDER BY a.{c['Applied__c']} DESC LIMIT 50")
    agg_soql = "SELECT Status__c, COUNT(Id) n, SUM(Score__c) total FROM Applicant__c GROUP BY Status__c"
    agg_sql = (f"SELECT {c['Status__c']}, count(id), sum({c['Score__c']}) FROM {app.table} "
               f"WHERE is_deleted = {false} GROUP BY {c['Status__c']}")
    def raw(conn: Any, sql: str, params: Any = ()) -> list[Any]:
        """Hand-written SQL on the connection's DBAPI cursor: the fastest way Python can run it."""
        cur = conn.connection.driver_connection.cursor()
        cur.execute(sql, params)
        out = cur.fetchall()
        cur.close()
        return list(out)

    base = "/services/data/v59.0/sobjects/"

    def dtf(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, str):
            return v[:10] + "T" + v[11:23] + "+0000"
        return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}+0000"

    def num(v: Any) -> Any:
        return None if v is None else float(v)

    def hand_list(conn: Any) -> list[dict[str, Any]]:
        """The same response built by hand: hand-written SQL plus a straightforward loop."""
        out = []
        for r in raw(conn, list_sql, (123,)):
            rid = ids.encode(app.key_prefix, r[0])
            parent = None if r[6] is None else {
                "attributes": {"type": "Account", "url": base + "Account/" + ids.encode(acc.key_prefix, r[6])},
                "Name": r[7]}
            out.append({"attributes": {"type": "Applicant__c", "url": base + "Applicant__c/" + rid}, "Id": rid,
                        "Name": r[1], "Status__c": r[2], "Score__c": num(r[3]), "Applied__c": dtf(r[4]),
                        "Account__r": parent})
        return out

    with db.read() as conn:
        res = run_soql(conn, schema, list_soql, dialect=d, cache=cache)
        assert 0 < len(res["records"]) <= 50, res["totalSize"]  # 50 from 1M rows; fewer with small --rows
        assert res["records"] == hand_list(conn)
        k, h = interleaved(lambda: run_soql(conn, schema, list_soql, dialect=d, cache=cache),
                           lambda: hand_list(conn), 300)
        results.append(("list query, 50 rows + parent path (p50)", k, h, "1.5"))
        _, f = interleaved(lambda: None, lambda: raw(conn, list_sql, (123,)), 300)
        results.append(("  (info) same vs SQL fetch only, no JSON shaping", k, f, "info-ratio"))
        res = run_soql(conn, schema, agg_soql, dialect=d, cache=cache)
        assert len(res["records"]) == len(STATUSES)
        k, h = interleaved(lambda: run_soql(conn, schema, agg_soql, dialect=d, cache=cache),
                           lambda: raw(conn, agg_sql), 5)
        results.append((f"GROUP BY report over {rows:,} rows (p50)", k, h, "1.3"))
        k, h = formula_row(conn, schema, d, cache, raw, num)
        results.append((f"formula field filter + sort, {rows:,} rows (p50)", k, h, "1.5"))
    # Cold compiles: every timed call gets a text never compiled before. The budget row uses new query shapes
    # (different select lists, filters and sort keys); a second row shows texts that differ only in a literal.
    shapes = new_shapes(6000, account_id, seed=rows + len(d))
    for t in shapes[:20]:  # warm the interpreter and the per-snapshot fragment memo, as any running server has
        compile_soql(t, schema, dialect=d)
    cold = p50_each(lambda t: compile_soql(t, schema, dialect=d), shapes[20:3020])
    results.append(("parse + compile, cold: new query shapes (p50)", cold, 300e-6, "abs"))
    lits = new_literals(2000, acc.key_prefix)
    cold_lit = p50_each(lambda t: compile_soql(t, schema, dialect=d), lits)
    results.append(("parse + compile, cold: new literals only (p50, info)", cold_lit, 0.0, "info"))
    warm = PlanCache()
    warm.get(list_soql, schema, dialect=d)
    cached = p50(lambda: warm.get(list_soql, schema, dialect=d), 20000)
    results.append(("parse + compile, cached (p50)", cached, 20e-6, "abs"))
    render = p50_each(lambda t: compile_soql(t, schema, dialect=d).sql, shapes[3020:3520])
    results.append(("compile + render SQL text, new shapes (p50, info)", render, 0.0, "info"))

    page_soql = f"SELECT Id, Name, Score__c FROM Applicant__c ORDER BY Id LIMIT {page_rows}"
    page_sql = (f"SELECT id, name, {c['Score__c']} FROM {app.table} WHERE is_deleted = {false} AND id > {mark} "
                f"ORDER BY id LIMIT 2000")

    def keel_pages() -> int:
        n = 0
        with db.transaction() as conn:
            r = run_soql(conn, schema, page_soql, dialect=d, cache=cache)
        n += len(r["records"])
        while not r["done"]:
            with db.transaction() as conn:
                r = fetch_more(conn, schema, r["nextRecordsUrl"].rsplit("/", 1)[-1], dialect=d, cache=cache)
            n += len(r["records"])
        return n

    def raw_pages(shape: bool = True) -> int:
        n, last = 0, 0
        with db.read() as conn:
            while n < page_rows:
                got = raw(conn, page_sql, (last,))
                if not got:
                    break
                got = got[: page_rows - n]
                n += len(got)
                last = got[-1][0]
                if shape:
                    recs = []
                    for r in got:
                        rid = ids.encode(app.key_prefix, r[0])
                        recs.append({"attributes": {"type": "Applicant__c", "url": base + "Applicant__c/" + rid},
                                     "Id": rid, "Name": r[1], "Score__c": num(r[2])})
        return n

    assert keel_pages() == raw_pages() == page_rows
    k, h = interleaved(keel_pages, raw_pages, 5)
    results.append((f"queryMore over {page_rows:,} rows (total)", k, h, "1.5"))
    _, f = interleaved(lambda: None, lambda: raw_pages(False), 5)
    results.append(("  (info) same vs keyset fetch only, no JSON shaping", k, f, "info-ratio"))
    return results


def report(name: str, results: list[tuple[str, float, float, str]]) -> bool:
    ok = True
    print(f"\n{name}")
    for label, keel, other, budget in results:
        if budget == "abs":
            good = keel <= other
            print(f"  {label:48s} {keel * 1e6:9.1f} us   budget <= {other * 1e6:.0f} us   {'ok' if good else 'MISSED'}")
        elif budget == "info-ratio":
            good = True
            print(f"  {label:48s} keel {keel * 1e3:9.3f} ms  sql {other * 1e3:9.3f} ms  ratio {keel / other:4.2f}x")
        elif budget == "info":
            good = True
            print(f"  {label:48s} {keel * 1e6:9.1f} us")
        else:
            ratio = keel / other
            good = ratio <= float(budget)
            print(f"  {label:48s} keel {keel * 1e3:9.3f} ms  sql {other * 1e3:9.3f} ms  "
                  f"ratio {ratio:4.2f}x (<= {budget}x)  {'ok' if good else 'MISSED'}")
        ok = ok and good
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--page-rows", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where to keep the SQLite file (reused when the row count matches)")
    ap.add_argument("--pg", action="store_true", help="also run on PostgreSQL (KEEL_TEST_PG or --pg-url)")
    ap.add_argument("--pg-url", default=os.environ.get("KEEL_TEST_PG"))
    ap.add_argument("--no-sqlite", action="store_true")
    args = ap.parse_args()
    schema = make_schema()
    t = time.perf_counter()
    for _ in range(1_000_000):
        pass
    print(f"calibration: an empty Python loop of 1M iterations took {(time.perf_counter() - t) * 1e3:.0f} ms "
          f"(about 20 ms on an idle core); load average {os.getloadavg()[0]:.1f}")
    ok = True
    page_rows = min(args.page_rows, args.rows // 2)
    if not args.no_sqlite:
        folder = Path(args.dir or tempfile.gettempdir())
        path = folder / f"keel_bench_query_{args.rows}_{schema.get_object('Applicant__c').table}.db"
        fresh = not path.exists()
        db = Database(f"sqlite:///{path}")
        try:
            if fresh:
                build(db, schema, args.rows)
            ok = report(f"SQLite {sa.__version__=} rows={args.rows:,}", run(db, schema, args.rows, page_rows)) and ok
        except BaseException:
            if fresh:
                db.dispose()
                path.unlink(missing_ok=True)
            raise
        db.dispose()
    if args.pg or (args.pg_url and args.no_sqlite):
        if not args.pg_url:
            print("--pg needs KEEL_TEST_PG or --pg-url")
            return 2
        schema_name = f"keel_bench_{random.randrange(16**8):08x}"
        sep = "&" if "?" in args.pg_url else "?"
        db = Database(f"{args.pg_url}{sep}schema={schema_name}")
        try:
            build(db, schema, args.rows)
            ok = report(f"PostgreSQL rows={args.rows:,}", run(db, schema, args.rows, page_rows)) and ok
        finally:
            with db.engine.connect() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
                conn.commit()
            db.dispose()
    print("\nall budgets met" if ok else "\nsome budgets MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
