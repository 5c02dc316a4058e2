"""queryMore: keyset-paged cursors persisted in the database, with Salesforce's locator format."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from soqldata import NOW, Seeded

from keel.errors import KeelError
from keel.metadata.tables import table_for
from keel.query import PlanCache, fetch_more, run_soql
from keel.storage.engine import Database

N = 4500


@pytest.fixture
def notes(seeded: Seeded) -> Seeded:
    """4,500 Notes (an object no case file uses): duplicate names, some nulls, some deleted."""
    obj = seeded.schema.get_object("Note")
    t = table_for(seeded.schema, obj)
    with seeded.db.transaction() as conn:
        if conn.execute(t.select().limit(1)).first() is None:
            body = obj.get_field("Body").column
            rows = [{"id": i, "name": None if i % 97 == 0 else f"note {i % 50:03d}", "owner_id": 1 + i % 2,
                     "is_deleted": i % 501 == 0, "version": 1, body: f"b{i}",
                     "created_date": dt.datetime(2024, 1, 1) + dt.timedelta(minutes=i)}
                    for i in range(1, N + 1)]
            conn.execute(t.insert(), rows)
    return seeded


def live_ids(s: Seeded) -> list[int]:
    return [i for i in range(1, N + 1) if i % 501 != 0]


def page_all(s: Seeded, soql: str, **kw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    cache = PlanCache()
    with s.db.read() as conn:
        first = run_soql(conn, s.schema, soql, dialect=s.db.dialect, now=NOW, cache=cache, **kw)
    pages = [first]
    records = list(first["records"])
    while not pages[-1]["done"]:
        url = pages[-1]["nextRecordsUrl"]
        assert re.fullmatch(r"/services/data/v59\.0/query/01g[0-9A-Za-z]{15}-\d+", url), url
        with s.db.transaction() as conn:
            nxt = fetch_more(conn, s.schema, url.rsplit("/", 1)[-1], dialect=s.db.dialect, cache=cache,
                             owner=kw.get("owner"))
        assert nxt["totalSize"] == first["totalSize"]
        pages.append(nxt)
        records.extend(nxt["records"])
        assert len(pages) < 100
    return pages, records


def num(rec: dict[str, Any]) -> int:
    from keel.storage import ids
    return ids.split(rec["attributes"]["url"].rsplit("/", 1)[-1])[1]


def name_key(i: int) -> str | None:
    return None if i % 97 == 0 else f"note {i % 50:03d}"


def test_pages_by_id(notes: Seeded) -> None:
    pages, recs = page_all(notes, "SELECT Id, Name FROM Note")
    want = live_ids(notes)
    assert [len(p["records"]) for p in pages] == [2000, 2000, len(want) - 4000]
    assert pages[0]["totalSize"] == len(want)
    assert [num(r) for r in recs] == want
    assert pages[-1]["done"] and "nextRecordsUrl" not in pages[-1]


def test_pages_ordered_with_ties_and_nulls(notes: Seeded) -> None:
    _, recs = page_all(notes, "SELECT Id, Name FROM Note ORDER BY Name")
    want = sorted(live_ids(notes), key=lambda i: (name_key(i) is not None, name_key(i) or "", i))
    assert [num(r) for r in recs] == want


def test_pages_desc_nulls_first_explicit(notes: Seeded) -> None:
    _, recs = page_all(notes, "SELECT Name FROM Note ORDER BY Name DESC NULLS FIRST, CreatedDate DESC")
    want = sorted(live_ids(notes), key=lambda i: (name_key(i) is not None, name_key(i) or "", i), reverse=False)
    nulls = [i for i in want if name_key(i) is None]
    rest = sorted([i for i in want if name_key(i) is not None], key=lambda i: (name_key(i), i), reverse=True)
    assert [num(r) for r in recs] == sorted(nulls, reverse=True) + rest


def test_pages_desc_default_nulls_last(notes: Seeded) -> None:
    _, recs = page_all(notes, "SELECT Name FROM Note ORDER BY Name DESC")
    got = [num(r) for r in recs]
    assert len(got) == len(set(got)) == len(live_ids(notes))
    assert all(name_key(i) is None for i in got[-len([i for i in got if name_key(i) is None]):])


def test_batch_size(notes: Seeded) -> None:
    pages, recs = page_all(notes, "SELECT Id FROM Note WHERE OwnerId = '005000000000001AAA'", batch_size=500)
    assert all(len(p["records"]) == 500 for p in pages[:-1])
    assert len(recs) == pages[0]["totalSize"] == len([i for i in live_ids(notes) if i % 2 == 0])


def test_batch_size_clamped(notes: Seeded) -> None:
    pages, _ = page_all(notes, "SELECT Id FROM Note", batch_size=10)
    assert len(pages[0]["records"]) == 200


def test_limit_spans_pages(notes: Seeded) -> None:
    pages, recs = page_all(notes, "SELECT Id FROM Note ORDER BY CreatedDate DESC LIMIT 3000")
    assert pages[0]["totalSize"] == 3000 and [len(p["records"]) for p in pages] == [2000, 1000]
    assert [num(r) for r in recs] == sorted(live_ids(notes), reverse=True)[:3000]


def test_offset_first_page(notes: Seeded) -> None:
    pages, recs = page_all(notes, "SELECT Id FROM Note ORDER BY CreatedDate LIMIT 2500 OFFSET 100")
    assert pages[0]["totalSize"] == 2500
    assert [num(r) for r in recs] == live_ids(notes)[100:2600]


def test_query_all_cursor(notes: Seeded) -> None:
    _, recs = page_all(notes, "SELECT Id FROM Note", query_all=True)
    assert len(recs) == N


def test_locator_reusable_and_persisted(notes: Seeded, tmp_path: Any) -> None:
    cache = PlanCache()
    with notes.db.transaction() as conn:
        first = run_soql(conn, notes.schema, "SELECT Id FROM Note", dialect=notes.db.dialect, cache=cache)
    loc = first["nextRecordsUrl"].rsplit("/", 1)[-1]
    other = Database(notes.db.url)  # a second engine: a different process would see the same row
    try:
        with other.transaction() as conn:
            a = fetch_more(conn, notes.schema, loc, dialect=notes.db.dialect, cache=PlanCache())
        with other.transaction() as conn:
            b = fetch_more(conn, notes.schema, loc, dialect=notes.db.dialect, cache=PlanCache())
    finally:
        other.dispose()
    assert [r["Id"] for r in a["records"]] == [r["Id"] for r in b["records"]]
    assert a["records"][0]["Id"] != first["records"][0]["Id"]


@pytest.mark.parametrize("loc", ["01gAAAAAAAAAAAAAAA-2000", "nonsense", "01gX-Y-2000", "01g123-abc", ""])
def test_unknown_locator(notes: Seeded, loc: str) -> None:
    with notes.db.transaction() as conn, pytest.raises(KeelError) as info:
        fetch_more(conn, notes.schema, loc, dialect=notes.db.dialect)
    assert info.value.code == "INVALID_QUERY_LOCATOR"


def test_locator_wrong_offset(notes: Seeded) -> None:
    with notes.db.transaction() as conn:
        first = run_soql(conn, notes.schema, "SELECT Id FROM Note", dialect=notes.db.dialect)
        cid = first["nextRecordsUrl"].rsplit("/", 1)[-1].split("-")[0]
        with pytest.raises(KeelError) as info:
            fetch_more(conn, notes.schema, f"{cid}-1234", dialect=notes.db.dialect)
    assert info.value.code == "INVALID_QUERY_LOCATOR"


def test_expired_cursor(notes: Seeded) -> None:
    with notes.db.transaction() as conn:
        first = run_soql(conn, notes.schema, "SELECT Id FROM Note", dialect=notes.db.dialect,
                         cursor_idle=dt.timedelta(seconds=-1))
        with pytest.raises(KeelError) as info:
            fetch_more(conn, notes.schema, first["nextRecordsUrl"].rsplit("/", 1)[-1], dialect=notes.db.dialect)
    assert info.value.code == "INVALID_QUERY_LOCATOR"


def test_cursor_bound_to_owner(notes: Seeded) -> None:
    with notes.db.transaction() as conn:
        first = run_soql(conn, notes.schema, "SELECT Id FROM Note", dialect=notes.db.dialect, owner="005A")
        loc = first["nextRecordsUrl"].rsplit("/", 1)[-1]
        with pytest.raises(KeelError):
            fetch_more(conn, notes.schema, loc, dialect=notes.db.dialect, owner="005B")
        assert fetch_more(conn, notes.schema, loc, dialect=notes.db.dialect, owner="005A")["records"]


def test_next_page_sql_is_keyset_not_offset(notes: Seeded) -> None:
    from keel.query import compile_soql
    from keel.query.run import next_page_statement
    cq = compile_soql("SELECT Id FROM Note ORDER BY Name", notes.schema, dialect=notes.db.dialect)
    sql = str(next_page_statement(cq, (False, False)).compile())
    assert "OFFSET" not in sql.upper() and "lower(t1.name) >" in sql


def test_aggregate_not_paged(notes: Seeded) -> None:
    with notes.db.read() as conn:
        res = run_soql(conn, notes.schema, "SELECT CreatedDate, COUNT(Id) FROM Note GROUP BY CreatedDate",
                       dialect=notes.db.dialect)
    assert res["done"] is True and res["totalSize"] == len(live_ids(notes)) == len(res["records"])


@pytest.mark.parametrize(("sub", "first", "rest"), [
    ("SELECT LastName FROM Contacts ORDER BY LastName", ["Doe"], ["Smith"]),
    ("SELECT LastName FROM Contacts ORDER BY LastName DESC LIMIT 2", ["Smith"], ["Doe"]),
    ("SELECT LastName FROM Contacts ORDER BY LastName LIMIT 5 OFFSET 1", ["Smith"], []),
])
def test_child_results_past_the_child_batch_continue_at_their_own_locator(
        seeded: Seeded, sub: str, first: list[str], rest: list[str]) -> None:
    """acc1 has two live contacts; with one child per response the second comes from the child's locator."""
    s = seeded
    soql = f"SELECT Name, ({sub}) FROM Account WHERE Id = '{s.ids['acc1']}'"
    with s.db.transaction() as conn:
        page = run_soql(conn, s.schema, soql, dialect=s.db.dialect, now=NOW, owner="005A", child_batch_size=1)
    kids = page["records"][0]["Contacts"]
    assert [r["LastName"] for r in kids["records"]] == first
    assert kids["totalSize"] == len(first) + len(rest)
    if not rest:
        assert kids["done"] is True and "nextRecordsUrl" not in kids
        return
    assert kids["done"] is False
    loc = kids["nextRecordsUrl"].rsplit("/", 1)[-1]
    assert re.fullmatch(r"01g[0-9A-Za-z]{15}-1", loc), loc
    with s.db.transaction() as conn:
        with pytest.raises(KeelError):
            fetch_more(conn, s.schema, loc, dialect=s.db.dialect, owner="005B")
        more = fetch_more(conn, s.schema, loc, dialect=s.db.dialect, owner="005A")
    assert [r["LastName"] for r in more["records"]] == rest
    assert more["records"][0]["attributes"]["type"] == "Contact"
    assert more["totalSize"] == 2 and more["done"] is True and "nextRecordsUrl" not in more


def test_child_paging_walks_many_pages(seeded: Seeded) -> None:
    """Every child of every parent comes back exactly once across the child locators, in order."""
    s = seeded
    soql = "SELECT Name, (SELECT Id, LastName FROM Contacts ORDER BY LastName DESC, Id) FROM Account ORDER BY Name"
    with s.db.read() as conn:
        whole = run_soql(conn, s.schema, soql, dialect=s.db.dialect, now=NOW)
    with s.db.transaction() as conn:
        paged = run_soql(conn, s.schema, soql, dialect=s.db.dialect, now=NOW, child_batch_size=1)
    assert len(paged["records"]) == len(whole["records"])
    walked = 0
    for w, p in zip(whole["records"], paged["records"], strict=True):
        if w["Contacts"] is None:
            assert p["Contacts"] is None
            continue
        got = list(p["Contacts"]["records"])
        res = p["Contacts"]
        while not res["done"]:
            with s.db.transaction() as conn:
                res = fetch_more(conn, s.schema, res["nextRecordsUrl"].rsplit("/", 1)[-1], dialect=s.db.dialect)
            assert len(res["records"]) == 1
            got.extend(res["records"])
            walked += 1
        assert got == w["Contacts"]["records"]
    assert walked >= 1, "no parent had more than one child; this test would prove nothing"
