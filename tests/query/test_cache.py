"""Plan caching: keyed by text, schema version, security shape and dialect; LRU-bounded; date literals stay fresh."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from soqldata import NOW, Seeded, make_schema
from sqlalchemy.sql import visitors as sa_visitors

from keel.query import PlanCache, compile_soql, run_soql
from keel.query.fragments import Fragments

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


def test_shared_fragments_hold_no_literal_values(seeded_sqlite: Seeded) -> None:
    """Statements share predicates such as ``lower(t1.name) = :p1`` across queries, so a value left in a shared
    element would leak into another user's query; every value must come from the plan that owns it."""
    s = seeded_sqlite
    secret = "Acme-secret-value"
    a = compile_soql(f"SELECT Id FROM Account WHERE Name = '{secret}' AND AnnualRevenue > 12345",
                     s.schema, dialect="sqlite")
    b = compile_soql("SELECT Id FROM Account WHERE Name = 'Globex' AND AnnualRevenue > 1", s.schema, dialect="sqlite")
    assert a.sql == b.sql
    frags = Fragments.of(s.schema)
    assert frags.memo, "the compiler stopped sharing fragments; this test would prove nothing"
    for element in frags.memo.values():
        if isinstance(element, sa.ClauseElement):
            for node in sa_visitors.iterate(element):
                if isinstance(node, sa.BindParameter) and node.key.startswith("p"):
                    assert node.value is None, node.key
    assert a.plan.params == {"p1": secret.lower(), "p2": 12345}
    with s.db.read() as conn:
        got_a = run_soql(conn, s.schema, f"SELECT Id FROM Account WHERE Name = '{secret}'", dialect="sqlite")
        got_b = run_soql(conn, s.schema, "SELECT Id FROM Account WHERE Name = 'Globex'", dialect="sqlite")
    assert got_a["totalSize"] == 0
    assert [r["Id"] for r in got_b["records"]] == [s.ids["acc2"]]
