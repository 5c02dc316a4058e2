"""`keel query`: SOQL from the command line as a chosen user, in table, JSON and CSV form, following queryMore."""

from __future__ import annotations

import csv
import io
import json

from typer.testing import CliRunner

from keel.cli.main import app
from keel.context import Context
from keel.records import delete_many, save_many
from keel.services.users import create_user

runner = CliRunner()
PASSWORD = "a long user passphrase"


def keel(*args: str, code: int = 0, batch: int = 2000) -> tuple[str, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False,
                           env={"COLUMNS": "250", "KEEL_QUERY_BATCH_SIZE": str(batch)})
    assert result.exit_code == code, result.stdout + result.stderr
    return result.stdout, result.stderr


def accounts(org: Context) -> dict[str, str]:
    """Acme (parent), a formula-looking name under it, and one account owned by a Standard User, sam."""
    sam = create_user(org, username="sam@example.com", password=PASSWORD, last_name="Sam", email="sam@example.com",
                      profile="Standard User")
    with org.db.transaction() as conn:
        acme = save_many(org, "Account", [{"Name": "Acme"}], conn=conn)[0].id
        rest = save_many(org, "Account", [{"Name": "=HYPERLINK(\"http://x\")", "ParentId": acme},
                                          {"Name": "Sam's Shop", "OwnerId": sam}], conn=conn)
    return {"acme": str(acme), "formula": str(rest[0].id), "sam": str(rest[1].id)}


def test_table_json_and_csv_as_the_administrator(org: Context, db_url: str) -> None:
    ids = accounts(org)
    soql = "SELECT Id, Name, Parent.Name FROM Account ORDER BY Name"
    table, _ = keel("query", soql, "--db", db_url)
    assert "Parent.Name" in table and "Sam's Shop" in table and '=HYPERLINK("http://x")' in table
    assert "3 of 3 record(s)." in table

    out, _ = keel("query", soql, "--format", "json", "--db", db_url)
    body = json.loads(out)
    assert body["totalSize"] == 3 and body["done"] is True
    assert [r["Name"] for r in body["records"]] == ['=HYPERLINK("http://x")', "Acme", "Sam's Shop"]
    assert body["records"][0]["attributes"] == {"type": "Account",
                                                "url": f"/services/data/v59.0/sobjects/Account/{ids['formula']}"}
    assert body["records"][0]["Parent"]["Name"] == "Acme" and body["records"][1]["Parent"] is None

    out, _ = keel("query", soql, "--format", "csv", "--db", db_url)
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [["Id", "Name", "Parent.Name"], [ids["formula"], '\'=HYPERLINK("http://x")', "Acme"],
                    [ids["acme"], "Acme", ""], [ids["sam"], "Sam's Shop", ""]]

    count, _ = keel("query", "SELECT COUNT() FROM Account", "--format", "csv", "--db", db_url)
    assert count.splitlines() == ["totalSize", "3"]
    agg, _ = keel("query", "SELECT COUNT(Id) n, MAX(Name) FROM Account", "--format", "csv", "--db", db_url)
    assert agg.splitlines() == ["n,expr0", "3,Sam's Shop"]


def test_a_user_sees_only_the_rows_sharing_gives_them(org: Context, db_url: str) -> None:
    ids = accounts(org)
    out, _ = keel("query", "SELECT Id, Name FROM Account", "--as", "sam@example.com", "--format", "json",
                  "--db", db_url)
    body = json.loads(out)
    assert body["totalSize"] == 1 and [r["Id"] for r in body["records"]] == [ids["sam"]]
    everyone, _ = keel("query", "SELECT COUNT() FROM Account", "--format", "json", "--db", db_url)
    assert json.loads(everyone)["totalSize"] == 3
    _, err = keel("query", "SELECT Id FROM Account", "--as", "nobody@example.com", "--db", db_url, code=1)
    assert "NOT_FOUND" in err and "nobody@example.com" in err


def test_all_includes_deleted_rows_and_every_page_is_fetched(org: Context, db_url: str) -> None:
    with org.db.transaction() as conn:
        made = save_many(org, "Account", [{"Name": f"A{i:04d}"} for i in range(450)], conn=conn)
        delete_many(org, "Account", [str(made[0].id)], conn=conn)
    out, _ = keel("query", "SELECT Name FROM Account ORDER BY Name", "--format", "json", "--db", db_url,
                  batch=200)
    body = json.loads(out)
    assert body["totalSize"] == 449 and body["done"] is True and "nextRecordsUrl" not in body
    assert [r["Name"] for r in body["records"]] == [f"A{i:04d}" for i in range(1, 450)]

    out, _ = keel("query", "SELECT Name FROM Account ORDER BY Name", "--all", "--format", "csv", "--db", db_url,
                  batch=200)
    assert out.splitlines() == ["Name", *(f"A{i:04d}" for i in range(450))]

    out, _ = keel("query", "SELECT Name FROM Account ORDER BY Name", "--limit", "250", "--format", "json",
                  "--db", db_url, batch=200)
    body = json.loads(out)
    assert body["totalSize"] == 449 and body["done"] is False
    assert [r["Name"] for r in body["records"]] == [f"A{i:04d}" for i in range(1, 251)]
    table, _ = keel("query", "SELECT Name FROM Account ORDER BY Name", "--limit", "5", "--db", db_url)
    assert "5 of 449 record(s) (more not fetched)." in table and "A0005" in table and "A0006" not in table


def test_errors_show_the_soql_position_and_exit_non_zero(org: Context, db_url: str) -> None:
    out, err = keel("query", "SELECT Id, Nmae\nFROM Account", "--db", db_url, code=1)
    assert out == ""
    assert "INVALID_FIELD" in err and "Row:1:Column:12" in err and "No such column 'Nmae' on entity 'Account'" in err
    assert "  SELECT Id, Nmae\n" + " " * 13 + "^" in err
    _, err = keel("query", "SELECT Id FROM Account WHERE", "--db", db_url, code=1)
    assert "MALFORMED_QUERY" in err and "(line 1, column 29)" in err
    _, err = keel("query", "SELECT Id FROM Nothing__c", "--format", "csv", "--db", db_url, code=1)
    assert "INVALID_TYPE" in err
