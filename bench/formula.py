"""Formula benchmarks: ``python bench/formula.py [--rows N] [--pg URL]``.

1. Validation rules: 5 rules over a 10k-row batch, per row, and against a raw executemany of the same 10k rows
   (information only: the budget, rules at most 20% of ``save_many``, is measured against the whole lifecycle by
   ``python bench/ingest.py --rule-cost``).
2. Formula field in SQL: filter and sort N rows by a formula field through ``to_sql`` against the same expression
   written by hand. Budget: at most 1.5x.
Prints ratios and exits non-zero when a budget is missed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "formula"))  # the formula test schema
from formula_cases import build_schema

from keel.formula import FormulaContext, compile_validation_rules, sqlite_functions, to_sql
from keel.metadata.model import ValidationRule
from keel.metadata.tables import table_for
from keel.storage.engine import Database

RULES = (
    ValidationRule("R1", "Num__c < 0", "negative", "Num__c"),
    ValidationRule("R2", "ISPICKVAL(Stage__c, 'Offer') && ISBLANK(Text__c)", "text for offers"),
    ValidationRule("R3", "ISCHANGED(Stage__c) && ISPICKVAL(PRIORVALUE(Stage__c), 'Hired')", "final"),
    ValidationRule("R4", "AND(NOT(ISBLANK(Date__c)), Date__c < DATE(2000, 1, 1))", "too old", "Date__c"),
    ValidationRule("R5", "LEN(Text__c) > 200 || (Amount__c > 10000 && !Flag__c)", "approval needed"),
)


def best_of(n: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_validation() -> bool:
    from dataclasses import replace

    base = build_schema()
    obj = replace(base.get_object("Formula_Test__c"), validation_rules=RULES)
    schema = replace(base, objects=tuple(obj if o.api_name == obj.api_name else o for o in base.objects))
    validate = compile_validation_rules(obj, schema)
    rng = random.Random(1)
    rows = [{"Num__c": Decimal(rng.randint(-5, 500)), "Stage__c": rng.choice(["New", "Offer", "Hired"]),
             "Text__c": rng.choice(["x", None]), "Amount__c": Decimal(rng.randint(0, 20000)),
             "Flag__c": rng.random() < 0.5, "Date__c": None} for _ in range(10_000)]
    ctx = FormulaContext()
    contexts = [ctx.for_row({"Stage__c": "New"}) for _ in rows]
    rules_s = best_of(5, lambda: [validate(r, c) for r, c in zip(rows, contexts, strict=True)])
    db = Database("sqlite:///:memory:")
    table = table_for(schema, obj)
    with db.transaction() as conn:
        table.create(conn)
    cols = {f.api_name: f.column for f in obj.fields}
    payload = [{"id": i + 1, "name": "r", **{cols[k]: v for k, v in r.items()}} for i, r in enumerate(rows)]

    def insert() -> None:
        with db.transaction() as conn:
            conn.execute(sa.delete(table))
            conn.execute(sa.insert(table), payload)

    insert_s = best_of(3, insert)
    ratio = rules_s / insert_s
    print(f"validation: 5 rules x 10k rows {rules_s * 1000:.1f} ms ({rules_s / 10_000 * 1e6:.2f} us/row); "
          f"raw executemany 10k rows {insert_s * 1000:.1f} ms; rules / raw insert {ratio:.0%} (info; the budget "
          "against save_many is bench/ingest.py --rule-cost)")
    return True


FORMULA = "ROUND(Num__c * 1.1 + Num2__c, 2)"


def bench_sql(url: str, rows: int) -> bool:
    schema = build_schema()
    obj = schema.get_object("Formula_Test__c")
    db = Database(url)
    if db.dialect == "sqlite":
        sa.event.listen(db.engine, "connect", lambda c, _r: sqlite_functions.register(c))
    table = table_for(schema, obj)
    a, b = obj.get_field("Num__c").column, obj.get_field("Num2__c").column
    rng = random.Random(2)
    with db.transaction() as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
        for start in range(0, rows, 50_000):
            chunk = range(start, min(rows, start + 50_000))
            conn.execute(sa.insert(table), [{"id": i + 1, "name": "r", a: round(rng.uniform(-1000, 1000), 4),
                                             b: round(rng.uniform(-100, 100), 4)} for i in chunk])
    expr = to_sql(FORMULA, obj, schema, db.dialect, table_alias=table)
    factor = sa.literal(Decimal("1.1"), sa.Numeric()) if db.dialect == "postgresql" else sa.literal(1.1)
    by_hand = sa.func.round(table.c[a] * factor + table.c[b], 2)
    stmt_f = sa.select(table.c.id, expr).where(expr > 500).order_by(expr.desc(), table.c.id).limit(50)
    stmt_h = sa.select(table.c.id, by_hand).where(by_hand > 500).order_by(by_hand.desc(), table.c.id).limit(50)
    with db.read() as conn:
        assert [r.id for r in conn.execute(stmt_f)] == [r.id for r in conn.execute(stmt_h)]
        f_times = [best_of(1, lambda: conn.execute(stmt_f).all()) for _ in range(5)]
        h_times = [best_of(1, lambda: conn.execute(stmt_h).all()) for _ in range(5)]
    f, h = statistics.median(f_times), statistics.median(h_times)
    print(f"{db.dialect}: filter+sort {rows} rows by {FORMULA}: formula {f * 1000:.1f} ms, by hand {h * 1000:.1f} ms,"
          f" ratio {f / h:.2f} (budget 1.5)")
    with db.transaction() as conn:
        table.drop(conn)
        if db.dialect == "postgresql" and db.schema:
            conn.exec_driver_sql(f'DROP SCHEMA "{db.schema}" CASCADE')
    db.dispose()
    return f / h <= 1.5


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--pg", default=None, help="a PostgreSQL URL (a schema keel_fbench is used)")
    args = parser.parse_args()
    ok = bench_validation()
    ok = bench_sql("sqlite:////tmp/keel_formula_bench.db", args.rows) and ok
    if args.pg:
        ok = bench_sql(args.pg + ("&" if "?" in args.pg else "?") + "schema=keel_fbench", args.rows) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
