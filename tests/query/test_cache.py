"""Plan caching: keyed by text, schema version, security shape and dialect; LRU-bounded; date literals stay fresh."""

from __future__ import annotations

import dataclasses
import datetime as dt

from soqldata import NOW, Seeded, make_schema

from keel.query import PlanCache, compile_soql, run_soql

SCHEMA = make_schema()


def test_hit_and_keys() -> None:
    c = PlanCache()
    a = c.get("SELECT Id FROM Account", SCHEMA, dialect="sqlite")
    assert c.get("SELECT Id FROM Account", SCHEMA, dialect="sqlite") is a
    assert c.get("SELECT Id FROM Account", SCHEMA, dialect="postgresql") is not a
    assert c.get("SELECT Id FROM Account", SCHEMA, dialect="sqlite", security_key="profile-2") is not a
    assert c.get("SELECT Id FROM Account", SCHEMA, dialect="sqlite", query_all=True) is not a
    newer = dataclasses.replace(SCHEMA, version=SCHEMA.version + 1)
    assert c.get("SELECT Id FROM Account", newer, dialect="sqlite") is not a
    assert c.hits == 1 and c.misses == 5


def test_lru_bound() -> None:
    c = PlanCache(maxsize=3)
    first = c.get("SELECT Id FROM Account LIMIT 0", SCHEMA, dialect="sqlite")
    for i in range(1, 4):
        c.get(f"SELECT Id FROM Account LIMIT {i}", SCHEMA, dialect="sqlite")
    assert len(c) == 3
    assert c.get("SELECT Id FROM Account LIMIT 0", SCHEMA, dialect="sqlite") is not first


def test_compile_is_pure_and_repeatable() -> None:
    a = compile_soql("SELECT Id, Account.Name FROM Contact WHERE CreatedDate = TODAY", SCHEMA, dialect="sqlite")
    b = compile_soql("SELECT Id, Account.Name FROM Contact WHERE CreatedDate = TODAY", SCHEMA, dialect="sqlite")
    assert a.sql == b.sql
    assert a.runtime_values(NOW) == b.runtime_values(NOW)


def test_cached_plan_date_literals_follow_now(seeded_sqlite: Seeded) -> None:
    s = seeded_sqlite
    c = PlanCache()
    q = "SELECT Id FROM Opportunity WHERE CloseDate = TODAY"
    with s.db.read() as conn:
        today = run_soql(conn, s.schema, q, dialect="sqlite", now=NOW, cache=c)
        later = run_soql(conn, s.schema, q, dialect="sqlite", now=NOW + dt.timedelta(days=15), cache=c)
    assert c.hits == 1
    assert [r["Id"] for r in today["records"]] == [s.ids["opp4"]]
    assert [r["Id"] for r in later["records"]] == [s.ids["opp1"]]


def test_hooks_without_security_key_do_not_share_plans() -> None:
    c = PlanCache()

    def f1(o: object, t: object) -> None:
        return None

    def f2(o: object, t: object) -> None:
        return None

    a = c.get("SELECT Id FROM Account", SCHEMA, dialect="sqlite", row_filter=f1)
    assert c.get("SELECT Id FROM Account", SCHEMA, dialect="sqlite", row_filter=f1) is a
    assert c.get("SELECT Id FROM Account", SCHEMA, dialect="sqlite", row_filter=f2) is not a
    assert c.get("SELECT Id FROM Account", SCHEMA, dialect="sqlite", row_filter=f2, security_key="p1") is not a
