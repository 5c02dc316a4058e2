"""Ingest benchmark: N rows of a 12-field object (2 indexed) through ``save_many`` versus raw executemany.

Both run in the same process against the same database, on identical rows, in batches of 10,000 that alternate
between the two sides (so a change in machine load hits both alike); the raw side inserts already-typed tuples
into a table with the same columns and indexes. Keel does the whole lifecycle:
coercion of client-style strings, defaults, required/unique/picklist checks, history rows (the object tracks
history) and outbox events. Rows are generated per batch, so memory stays flat.

    python bench/ingest.py --rows 1000000                 # SQLite
    python bench/ingest.py --rows 1000000 --pg URL        # PostgreSQL (COPY on Keel's side)

The object carries two validation rules, as the budget's "full lifecycle" includes them. ``--rule-cost`` adds a
second measurement for the formula budget (validation rules ≤ 20% of ``save_many``): the same rows go, batch by
batch in alternation, into a copy of the object without rules and a copy with five typical rules, and the share of
the ruled object's time that the rules account for is printed.

    python bench/ingest.py --rows 200000 --rule-cost      # plus the rules' share of save_many

Budgets (DESIGN.md §5): Keel ≥ 50% of raw on SQLite, ≥ 100% of raw executemany on PostgreSQL, peak RSS ≤ 300 MB;
validation rules ≤ 20% of save_many. Exits non-zero when a budget is missed.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from keel.context import Context
from keel.metadata.apply import apply_plan
from keel.metadata.package import parse_object
from keel.metadata.plan import plan
from keel.metadata.store import load_snapshot
from keel.metadata.tables import search_fields
from keel.records import save_many
from keel.services.org import init_org, open_context
from keel.settings import Settings
from keel.storage import search

BATCH = 10_000
RULES = [
    {"name": "Score_Range", "condition": "OR(Score__c < 0, Score__c > 100)", "message": "Score is 0 to 100",
     "field": "Score__c"},
    {"name": "Hired_Needs_Email", "condition": "AND(ISPICKVAL(Stage__c, 'Hired'), ISBLANK(Email__c))",
     "message": "A hired applicant needs an email address", "field": "Email__c"},
    {"name": "Salary_Cap", "condition": "Salary__c > 250000", "message": "Salary is above the cap",
     "field": "Salary__c"},
    {"name": "Not_Future", "condition": "Applied_On__c > TODAY()", "message": "Applied date is in the future",
     "field": "Applied_On__c"},
    {"name": "Phone_Format", "condition": "AND(NOT(ISBLANK(Phone__c)), NOT(BEGINS(Phone__c, '+')))",
     "message": "Phone numbers start with a country code", "field": "Phone__c"},
]
OBJECT: dict[str, Any] = {
    "object": "Applicant__c",
    "track_history": True,
    "validation_rules": RULES[:2],
    "fields": [
        {"name": "Email__c", "type": "email", "unique": True},
        {"name": "Phone__c", "type": "phone"},
        {"name": "Stage__c", "type": "picklist", "restricted": True,
         "values": ["Applied", "Exam", "Interview", "Medical", "Polygraph", "Background", "Offer", "Hired"]},
        {"name": "Score__c", "type": "number", "precision": 5, "scale": 1},
        {"name": "Salary__c", "type": "currency", "precision": 12, "scale": 2},
        {"name": "Applied_On__c", "type": "date", "indexed": True},
        {"name": "Updated_At__c", "type": "datetime"},
        {"name": "Veteran__c", "type": "checkbox"},
        {"name": "City__c", "type": "text", "length": 40},
        {"name": "Notes__c", "type": "textarea", "length": 255},
        {"name": "Source__c", "type": "text", "length": 40},
    ],
}
STAGES = OBJECT["fields"][2]["values"]  # type: ignore[index]


def drafts(start: int, n: int) -> list[dict[str, Any]]:
    """Rows as a client sends them (strings for numbers, dates and booleans, as django-salesforce does)."""
    base = date(2024, 1, 1)
    out = []
    for i in range(start, start + n):
        out.append({
            "Name": f"Applicant {i}", "Email__c": f"a{i}@example.org", "Phone__c": f"+1-555-{i % 10000:04d}",
            "Stage__c": STAGES[i % 8], "Score__c": str(50 + (i % 500) / 10), "Salary__c": f"{40000 + i % 30000}.50",
            "Applied_On__c": (base + timedelta(days=i % 700)).isoformat(),
            "Updated_At__c": f"2024-05-0{1 + i % 9}T10:11:12.000+0000", "Veteran__c": "true" if i % 7 == 0 else "false",
            "City__c": "Springfield", "Notes__c": "walk-in", "Source__c": "web",
        })
    return out


def clone_table(ctx: Context) -> tuple[str, list[str]]:
    """An empty copy of Keel's physical table with the same columns and indexes: the raw side does the same
    physical work."""
    obj = ctx.schema().get_object("Applicant__c")
    with ctx.db.transaction() as conn:
        if ctx.db.dialect == "postgresql":
            conn.exec_driver_sql(f'CREATE TABLE raw_copy (LIKE "{obj.table}" INCLUDING ALL)')
        else:
            rows = conn.exec_driver_sql("SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL "
                                        "AND type <> 'trigger'", (obj.table,)).all()
            for _kind, sql in sorted(rows, key=lambda r: r[0] != "table"):
                sql = sql.replace(f'"{obj.table}"', "raw_copy").replace(obj.table, "raw_copy")
                conn.exec_driver_sql(sql)
            # The full-text index and the triggers that keep it (PostgreSQL's LIKE … INCLUDING ALL copies its
            # expression index).
            search.create(conn, "raw_copy", [str(f.column) for f in search_fields(obj)])
    cols = ["id", "created_date", "created_by_id", "last_modified_date", "last_modified_by_id", "system_modstamp",
            "is_deleted", "version", "name", "owner_id"] + [str(f.column) for f in obj.fields
                                                            if f.column and not f.standard]
    return "raw_copy", cols


def raw_rows(start: int, n: int, sqlite: bool) -> list[tuple[Any, ...]]:
    """Already-typed tuples in the clone's column order (what a hand-written loader would send)."""
    base = date(2024, 1, 1)
    stamp: Any = datetime(2024, 6, 1)
    out = []
    for i in range(start, start + n):
        applied: Any = base + timedelta(days=i % 700)
        upd: Any = datetime(2024, 5, 1 + i % 9, 10, 11, 12)
        salary: Any = Decimal(f"{40000 + i % 30000}.50")
        if sqlite:
            applied, upd, salary = applied.isoformat(), upd.isoformat(" "), float(salary)
        ts = stamp.isoformat(" ") if sqlite else stamp
        out.append((
            10_000_000 + i, ts, 2, ts, 2, ts, False, 1, f"Applicant {i}", 2,
            f"a{i}@example.org", f"+1-555-{i % 10000:04d}", STAGES[i % 8], 50 + (i % 500) / 10, salary,
            applied, upd, i % 7 == 0, "Springfield", "walk-in", "web",
        ))
    return out


def raw_batch(ctx: Context, sql: str, start: int, n: int) -> None:
    with ctx.db.transaction() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        rows = raw_rows(start, n, ctx.db.dialect == "sqlite")
        cur.executemany(sql, rows)
        cur.close()
        # What a hand-written loader must do to keep the FTS5 index (SQLite; PostgreSQL's index is maintained by
        # the server): one INSERT … SELECT per batch, as Keel does.
        obj = ctx.schema().get_object("Applicant__c")
        search.index_rows(conn, "raw_copy", [str(f.column) for f in search_fields(obj)], [r[0] for r in rows])


def keel_batch(ctx: Context, start: int, n: int) -> None:
    res = save_many(ctx, "Applicant__c", drafts(start, n))
    assert res[-1].success


def run(ctx: Context, rows: int) -> tuple[float, float]:
    """Rows per second for the raw side and for Keel. Batches alternate between the two (raw first on even
    batches, Keel first on odd ones), so both see the same machine load and the same table sizes."""
    table, cols = clone_table(ctx)
    mark = "?" if ctx.db.dialect == "sqlite" else "%s"
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join([mark] * len(cols))})"
    spent = {"raw": 0.0, "keel": 0.0}
    for start in range(0, rows, BATCH):
        n = min(BATCH, rows - start)
        for side in ("raw", "keel") if start // BATCH % 2 == 0 else ("keel", "raw"):
            t0 = time.perf_counter()
            if side == "raw":
                raw_batch(ctx, sql, start, n)
            else:
                keel_batch(ctx, start, n)
            spent[side] += time.perf_counter() - t0
    return rows / spent["raw"], rows / spent["keel"]


def rule_cost(ctx: Context, rows: int) -> float:
    """Share of ``save_many`` time that five validation rules take: alternate batches between a copy of the
    object without rules and one with five, so both see the same load and table sizes."""
    with ctx.db.read() as conn:
        snap = load_snapshot(conn)
    plain = {**OBJECT, "object": "Plain__c", "validation_rules": []}
    ruled = {**OBJECT, "object": "Ruled__c", "validation_rules": RULES}
    apply_plan(ctx.db, plan(snap, [parse_object(plain), parse_object(ruled)]), ctx.metadata)
    spent = {"Plain__c": 0.0, "Ruled__c": 0.0}
    for start in range(0, rows, BATCH):
        batch = drafts(start, min(BATCH, rows - start))
        for name in ("Plain__c", "Ruled__c") if start // BATCH % 2 else ("Ruled__c", "Plain__c"):
            t0 = time.perf_counter()
            res = save_many(ctx, name, batch)
            spent[name] += time.perf_counter() - t0
            assert res[-1].success
    return (spent["Ruled__c"] - spent["Plain__c"]) / spent["Ruled__c"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", help="PostgreSQL URL; without it the benchmark runs on a temporary SQLite file")
    ap.add_argument("--rule-cost", action="store_true", help="also measure five validation rules' share of save_many")
    args = ap.parse_args()
    if args.pg:
        schema = f"keel_bench_{uuid.uuid4().hex[:8]}"
        url = f"{args.pg}{'&' if '?' in args.pg else '?'}schema={schema}"
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    ctx = open_context(url, settings=Settings(database_url=url))
    init_org(ctx, admin_username="bench@example.org", admin_password="benchmark passphrase")
    with ctx.db.read() as conn:
        p = plan(load_snapshot(conn), [parse_object(OBJECT)])
    apply_plan(ctx.db, p, ctx.metadata)
    try:
        raw, keel = run(ctx, args.rows)
        share = rule_cost(ctx, args.rows) if args.rule_cost else None
    finally:
        if args.pg:
            with ctx.db.engine.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = keel / raw
    budget = 0.5 if ctx.db.dialect == "sqlite" else 1.0
    print(f"backend={ctx.db.dialect} rows={args.rows} raw_executemany={raw:,.0f} rows/s keel_save_many={keel:,.0f} "
          f"rows/s ratio={ratio:.2f} (budget >= {budget:.2f}) peak_rss={rss_mb:.0f} MB (budget <= 300)")
    ok = ratio >= budget and rss_mb <= 300
    if share is not None:
        print(f"validation rules (5) share of save_many: {share:.1%} (budget <= 20%)")
        ok = ok and share <= 0.20
    print("PASS" if ok else "FAIL: budget missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
