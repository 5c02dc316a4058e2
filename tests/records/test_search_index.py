"""The full-text search index kept in step by every write path and metadata change, on SQLite (FTS5 and triggers)
and PostgreSQL (a GIN expression index), searched through ``services.search``.

The search service takes record ids only from the index, so each "is found" / "is not found" below fails if the
index missed a write (or kept a stale entry)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from keel.cli.main import app
from keel.context import Context
from keel.errors import KeelError
from keel.metadata import search_index
from keel.metadata.tables import search_fields
from keel.records import delete_many, hard_delete_many, save_many, undelete_many, upsert_many
from keel.services.metadata import apply_package
from keel.services.orgio import export_org, import_org
from keel.services.search import find, matching_ids, parse_terms, to_fts5, to_tsquery
from keel.storage import search

GADGET = """object: Gadget__c
label: Gadget
plural_label: Gadgets
name_field: {label: Gadget Name, type: text}
fields:
  - {name: Email__c, type: email}
  - {name: Phone__c, type: phone}
  - {name: Notes__c, type: textarea}
  - {name: Code__c, type: text, length: 20, external_id: true}
  - {name: Kind__c, type: picklist, values: [Widget, Sprocket]}
  - {name: Amount__c, type: number, precision: 10, scale: 2}
"""


def deploy(ctx: Context, root: Path, objects: dict[str, str], delete: tuple[str, ...] = ()) -> None:
    (root / "objects").mkdir(parents=True, exist_ok=True)
    for old in (root / "objects").glob("*.yaml"):
        old.unlink()
    for name, text in objects.items():
        (root / "objects" / f"{name}.yaml").write_text(text)
    (root / "package.yaml").write_text("delete_objects: [" + ", ".join(delete) + "]\n" if delete else "{}\n")
    apply_package(ctx, root)


@pytest.fixture
def gadgets(org: Context, tmp_path: Path) -> Context:
    deploy(org, tmp_path / "pkg", {"Gadget__c": GADGET})
    return org


def names(ctx: Context, term: str, scope: str = "ALL", obj: str = "Gadget__c") -> list[str]:
    with ctx.db.read() as conn:
        o = ctx.schema(conn).get_object(obj)
        return [r["Name"] for r in find(ctx, conn, o, parse_terms(term), scope=scope, fields="Name",
                                        order="Name")]


def test_create_update_delete_undelete_and_hard_delete(gadgets: Context) -> None:
    ctx = gadgets
    made = save_many(ctx, "Gadget__c", [
        {"Name": "Blue falcon", "Email__c": "ann.lee@example.com", "Notes__c": "fast delivery", "Code__c": "BF-1"},
        {"Name": "Red heron", "Phone__c": "+1 555 0100", "Kind__c": "Sprocket", "Code__c": "RH-2"}])
    falcon, heron = (r.id or "" for r in made)
    assert names(ctx, "falcon") == ["Blue falcon"]
    assert names(ctx, "delivery") == ["Blue falcon"]  # textarea
    assert names(ctx, "sprocket") == ["Red heron"]  # picklist
    assert names(ctx, "0100") == ["Red heron"]  # phone digits
    assert names(ctx, "zebra") == []
    save_many(ctx, "Gadget__c", [{"Id": falcon, "Name": "Green zebra"}])
    assert names(ctx, "falcon") == [] and names(ctx, "zebra") == ["Green zebra"]
    assert names(ctx, "delivery") == ["Green zebra"]  # untouched fields stay indexed across an update
    delete_many(ctx, "Gadget__c", [falcon])
    assert names(ctx, "zebra") == []  # the recycle bin is not searched
    undelete_many(ctx, "Gadget__c", [falcon])
    assert names(ctx, "zebra") == ["Green zebra"]
    upsert_many(ctx, "Gadget__c", [{"Code__c": "RH-2", "Notes__c": "migratory"}], "Code__c")
    assert names(ctx, "migratory") == ["Red heron"]
    hard_delete_many(ctx, "Gadget__c", [heron])
    assert names(ctx, "heron") == [] and names(ctx, "migratory") == []
    upsert_many(ctx, "Gadget__c", [{"Code__c": "NEW-3", "Name": "Upserted owl"}], "Code__c")  # an insert
    assert names(ctx, "owl") == ["Upserted owl"]
    with ctx.db.read() as conn:  # the index itself holds no entry for the row that is gone
        o = ctx.schema(conn).get_object("Gadget__c")
        assert matching_ids(ctx, conn, o, parse_terms("heron")) == []
    assert_consistent(ctx)


def assert_consistent(ctx: Context) -> None:
    """SQLite: FTS5 compares its index with the record table's text (an error if any row is missing, stale or
    indexed twice)."""
    if ctx.db.dialect != "sqlite":
        return
    with ctx.db.transaction() as conn:
        for obj in ctx.schema(conn):
            if search.exists(conn, obj.table):
                name = search.index_name(obj.table)
                conn.exec_driver_sql(f'INSERT INTO "{name}"("{name}", rank) VALUES (\'integrity-check\', 1)')


def test_bulk_batches_are_indexed(gadgets: Context) -> None:
    rows = [{"Name": f"Bulk item {i:04d}", "Notes__c": "lot" + ("even" if i % 2 == 0 else "odd")}
            for i in range(1200)]
    save_many(gadgets, "Gadget__c", rows)
    with gadgets.db.read() as conn:
        o = gadgets.schema(conn).get_object("Gadget__c")
        assert len(matching_ids(gadgets, conn, o, parse_terms("loteven"))) == 600
        assert len(matching_ids(gadgets, conn, o, parse_terms("bulk"), limit=5000)) == 1200
        assert len(find(gadgets, conn, o, parse_terms("bulk"), limit=10)) == 10
    assert names(gadgets, "0007 OR 1199") == ["Bulk item 0007", "Bulk item 1199"]
    assert_consistent(gadgets)


def test_scopes_phrases_prefixes_and_operators(gadgets: Context) -> None:
    save_many(gadgets, "Gadget__c", [
        {"Name": "Alpha beta", "Email__c": "gamma@example.com"},
        {"Name": "Beta alpha", "Notes__c": "alpha-beta release"},
        {"Name": "Gamma ray", "Phone__c": "020 7946 0958"}])
    assert names(gadgets, "gamma", "NAME") == ["Gamma ray"]
    assert names(gadgets, "gamma", "EMAIL") == ["Alpha beta"]
    assert names(gadgets, "gamma") == ["Alpha beta", "Gamma ray"]
    assert names(gadgets, "7946", "PHONE") == ["Gamma ray"] and names(gadgets, "7946", "NAME") == []
    assert names(gadgets, '"alpha beta"') == ["Alpha beta", "Beta alpha"]  # the phrase in Notes too
    assert names(gadgets, '"alpha beta"', "NAME") == ["Alpha beta"]
    assert names(gadgets, '"beta alpha"') == ["Beta alpha"]
    assert names(gadgets, "alp*", "NAME") == ["Alpha beta", "Beta alpha"]
    assert names(gadgets, "al*") == ["Alpha beta", "Beta alpha"]
    assert names(gadgets, "alpha AND ray") == [] and names(gadgets, "alpha OR ray") == ["Alpha beta", "Beta alpha",
                                                                                        "Gamma ray"]
    assert names(gadgets, "alpha AND NOT release") == ["Alpha beta"]
    assert names(gadgets, "(alpha OR ray) AND NOT example") == ["Beta alpha", "Gamma ray"]
    assert names(gadgets, "gamma@example.com") == ["Alpha beta"]  # an email is its words, in order
    assert names(gadgets, "alpha-beta") == ["Alpha beta", "Beta alpha"]


def test_a_limit_keeps_the_best_matches(gadgets: Context) -> None:
    """Results come best match first, and a LIMIT keeps the best ones (not any ``limit`` of the matches)."""
    light = [{"Name": f"Light {i:02d}", "Notes__c": "one kiwi among many other words " * 3} for i in range(20)]
    heavy = [{"Name": f"Kiwi kiwi {i}", "Notes__c": "kiwi kiwi kiwi"} for i in range(3)]
    save_many(gadgets, "Gadget__c", light + heavy)  # the best matches have the highest ids
    with gadgets.db.read() as conn:
        o = gadgets.schema(conn).get_object("Gadget__c")
        every = [r["Name"] for r in find(gadgets, conn, o, parse_terms("kiwi"), fields="Name")]
        top = [r["Name"] for r in find(gadgets, conn, o, parse_terms("kiwi"), fields="Name", limit=3)]
        filtered = [r["Name"] for r in find(gadgets, conn, o, parse_terms("kiwi"), fields="Name",
                                            where="Name LIKE 'Light%'", limit=2)]
    assert len(every) == 23 and sorted(every[:3]) == ["Kiwi kiwi 0", "Kiwi kiwi 1", "Kiwi kiwi 2"]
    assert top == every[:3]
    assert filtered == [n for n in every if n.startswith("Light")][:2]


@pytest.mark.parametrize("term", [
    '"', "' OR 1=1 --", "alpha) OR (beta", "NEAR(alpha beta)", "alpha:beta", "{Name}: alpha", "-alpha", "alpha^2",
    "a\\\"b", "*", "alpha\\*", "AND", "OR alpha", "x' || pg_sleep(1) || '", "'alpha' & 'x':*", "alpha NOT",
])
def test_hostile_terms_are_matched_as_words_or_refused(gadgets: Context, term: str) -> None:
    """Every token is reduced to letters and digits and quoted, so no term reaches FTS5 or tsquery as syntax: it
    either searches for its words or is refused with Salesforce's error, and never fails in the database."""
    save_many(gadgets, "Gadget__c", [{"Name": "Alpha beta"}, {"Name": "Other"}])
    try:
        found = names(gadgets, term)
    except KeelError as e:
        assert e.code in ("MALFORMED_SEARCH", "INVALID_SEARCH"), e
        return
    assert found in ([], ["Alpha beta"])
    assert "Other" not in found


def test_query_syntax_is_quoted() -> None:
    e = parse_terms('NEAR "x y"* (a1 OR b2) AND NOT c3:d4')
    assert to_fts5(e) == '((("near" AND "x y"*) AND ("a1" OR "b2")) NOT "c3 d4")'
    assert to_tsquery(e) == "(((('near') & ('x' <-> 'y':*)) & (('a1') | ('b2'))) & !('c3' <-> 'd4'))"
    with pytest.raises(KeelError) as exc:
        parse_terms("a*")
    assert exc.value.code == "INVALID_SEARCH" and exc.value.message == "search term must be longer than one character"
    with pytest.raises(KeelError) as exc:
        parse_terms("(alpha")
    assert exc.value.code == "MALFORMED_SEARCH"
    for hostile in ("(" * 5000 + "alpha" + ")" * 5000, " OR ".join(["alpha"] * 5000)):
        with pytest.raises(KeelError) as exc:
            parse_terms(hostile)
        assert exc.value.code == "MALFORMED_SEARCH"
    assert to_fts5(parse_terms("((((alpha))))")) == '"alpha"'


def test_metadata_changes_rebuild_the_index(org: Context, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    deploy(org, pkg, {"Gadget__c": GADGET})
    save_many(org, "Gadget__c", [{"Name": "Old one", "Notes__c": "kept words"}])
    with_motto = GADGET + "  - {name: Motto__c, type: text, length: 80}\n"
    deploy(org, pkg, {"Gadget__c": with_motto})  # a new text field: its values are searched from now on
    save_many(org, "Gadget__c", [{"Name": "New one", "Motto__c": "carpe diem"}])
    assert names(org, "diem") == ["New one"] and names(org, "kept") == ["Old one"]
    without_notes = with_motto.replace("  - {name: Notes__c, type: textarea}\n", "")
    deploy(org, pkg, {"Gadget__c": without_notes})  # a removed field is no longer matched (and can be dropped)
    assert names(org, "kept") == [] and names(org, "diem") == ["New one"]
    save_many(org, "Gadget__c", [{"Name": "Third", "Motto__c": "carpe noctem"}])
    assert names(org, "carpe") == ["New one", "Third"]
    gizmo = "object: Gizmo__c\nlabel: Gizmo\nplural_label: Gizmos\nname_field: {label: Name, type: text}\n"
    deploy(org, pkg, {"Gadget__c": without_notes, "Gizmo__c": gizmo})  # a new object gets its index
    save_many(org, "Gizmo__c", [{"Name": "Carpe gizmo"}])
    assert names(org, "carpe", obj="Gizmo__c") == ["Carpe gizmo"]
    table = org.schema().get_object("Gizmo__c").table
    deploy(org, pkg, {"Gadget__c": without_notes}, delete=("Gizmo__c",))  # and loses it with its table
    with org.db.read() as conn:
        assert not search.exists(conn, table)
        assert search_index.missing(conn) == []


def test_backfill_of_an_organisation_without_indexes(gadgets: Context, tmp_path: Path) -> None:
    """A database from before search indexes: serving is refused until ``keel migrate`` builds them from the rows
    already stored."""
    save_many(gadgets, "Gadget__c", [{"Name": "Stored before", "Email__c": "early@example.com"}])
    with gadgets.db.transaction() as conn:
        for obj in gadgets.schema(conn):
            search.drop(conn, search.index_name(obj.table))
    with gadgets.db.read() as conn:
        assert "Gadget__c" in [o.api_name for o in search_index.missing(conn)]
    with pytest.raises(KeelError) as exc:
        search_index.require_built(gadgets.db)
    assert exc.value.code == "MIGRATION_REQUIRED"
    runner = CliRunner()
    check = runner.invoke(app, ["migrate", "--check", "--db", str(gadgets.db.url)])
    assert check.exit_code == 1 and "search indexes" in check.output
    done = runner.invoke(app, ["migrate", "--db", str(gadgets.db.url)])
    assert done.exit_code == 0, done.output
    assert "Built search indexes" in done.output
    search_index.require_built(gadgets.db)
    assert names(gadgets, "early", "EMAIL") == ["Stored before"]
    save_many(gadgets, "Gadget__c", [{"Name": "Stored after"}])
    assert names(gadgets, "stored") == ["Stored after", "Stored before"]


def test_import_builds_the_index(gadgets: Context, make_db: Callable[[str], Context], tmp_path: Path,
                                 backend: str) -> None:
    save_many(gadgets, "Gadget__c", [{"Name": "Travelling gadget", "Notes__c": "moved across"}])
    manifest = export_org(gadgets, tmp_path / "export")
    assert not any("sx_" in name for name in manifest["files"])  # indexes are rebuilt, not exported
    moved = make_db(backend)
    import_org(moved, tmp_path / "export")
    assert names(moved, "across") == ["Travelling gadget"]
    save_many(moved, "Gadget__c", [{"Name": "Born after the move"}])
    assert names(moved, "move*") == ["Born after the move", "Travelling gadget"]
    assert_consistent(moved)


def test_searches_read_the_index(gadgets: Context) -> None:
    """The planner answers a search from the index (FTS5's virtual table; the GIN index even where PostgreSQL
    would otherwise scan), not by reading every row."""
    save_many(gadgets, "Gadget__c", [{"Name": f"row {i}"} for i in range(50)])
    o = gadgets.schema().get_object("Gadget__c")
    every = [f.column or "" for f in search_fields(o)]
    with gadgets.db.transaction() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            sql = (f'EXPLAIN SELECT id FROM "{o.table}" t WHERE {search.vector_sql(every, "t")} @@ '
                   "to_tsquery('simple'::regconfig, :q)")
        else:
            sql = f'EXPLAIN QUERY PLAN SELECT rowid FROM "{search.index_name(o.table)}" WHERE ' \
                  f'"{search.index_name(o.table)}" MATCH :q'
        plan = "\n".join(str(list(r)) for r in conn.execute(sa.text(sql), {"q": "'row'" if "EXPLAIN S" in sql
                                                                          and "QUERY" not in sql else '"row"'}))
    assert search.index_name(o.table) in plan, plan
    if gadgets.db.dialect == "sqlite":
        assert "VIRTUAL TABLE INDEX" in plan, plan


