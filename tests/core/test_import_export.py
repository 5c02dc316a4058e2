"""CSV import and export through the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import random
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli.main import app
from keel.context import Context
from keel.services.query import query

FIXTURE = Path(__file__).parent.parent / "fixtures" / "every_type"
runner = CliRunner()
HEADER = ["Name", "Department__c", "Max_Pay__c", "Job_Code__c", "Summary__c", "Description__c", "Contact_Email__c",
          "Contact_Phone__c", "Posting_Url__c", "Headcount__c", "Bonus_Rate__c", "Remote__c", "Open_Date__c",
          "Review_At__c", "Shift_Start__c", "Languages__c", "Hiring_Manager__c"]


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def make_rows(n: int, seed: int = 7) -> list[list[str]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append([
            f"Officer {i} \"quoted\", with comma" if i % 97 == 0 else f"Officer {i}",
            rnd.choice(["Operations", "Field", "Support"]),
            f"{rnd.randint(30000, 150000)}.{rnd.randint(0, 99):02d}" if i % 5 else "",
            f"JC-{i:06d}",
            "line one\nline two" if i % 50 == 0 else "=SUM(A1)" if i % 71 == 0 else "",
            "x" * rnd.randint(0, 300),
            f"hr{i}@agency.gov" if i % 3 else "",
            f"+1 202 555 {i % 10000:04d}",
            f"https://jobs.example.gov/{i}" if i % 4 == 0 else "",
            str(rnd.randint(1, 40)),
            f"{rnd.randint(0, 99)}.{rnd.randint(0, 99):02d}" if i % 6 else "",
            rnd.choice(["true", "false"]),
            (date(2023, 1, 1) + timedelta(days=rnd.randint(0, 900))).isoformat() if i % 7 else "",
            f"2024-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}T0{rnd.randint(0, 9)}:15:30.000+0000" if i % 2 else "",
            f"0{rnd.randint(0, 9)}:30:00.000Z" if i % 9 == 0 else "",
            ";".join(sorted(rnd.sample(["English", "Spanish", "French", "Arabic"], rnd.randint(0, 2)))),
            "005000000000002AAA" if i % 10 == 0 else "",
        ])
    return rows


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def new_org(db_url: str, backend: str, tmp_path: Path, template: Path, name: str) -> str:
    if backend == "sqlite":
        target = tmp_path / f"{name}.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    from tests.conftest import pg_schema_url

    url, _schema = pg_schema_url("keel_io")
    invoke("init", "--db", url, "--admin-username", "admin@example.com", "--admin-password",
           "a long admin passphrase")
    return url


def _transfer(source: Path, target: Path, renames: dict[str, dict[str, str]]) -> None:
    """Copy an export as an import file for another database: without Id, lookups re-pointed at the new ids."""
    with open(source, newline="", encoding="utf-8") as f_in, open(target, "w", newline="", encoding="utf-8") as f:
        rows = csv.DictReader(f_in)
        header = [h for h in rows.fieldnames or [] if h != "Id"]
        w = csv.DictWriter(f, header, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: renames[k].get(v, v) if k in renames and v else v for k, v in row.items()})


def _keyed(path: Path, key: str, natural: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """An export's rows by a natural key, with ids (which each database assigns) replaced by natural keys."""
    out = {}
    for row in read_csv(path):
        out[row[key]] = {k: natural[k].get(v, v) if k in natural and v else v for k, v in row.items() if k != "Id"}
    return out


@pytest.mark.slow
def test_every_type_round_trips_10k_rows(backend: str, db_url: str, tmp_path: Path, sqlite_template: Path) -> None:
    first = new_org(db_url, backend, tmp_path, sqlite_template, "first")
    second = new_org(db_url, backend, tmp_path, sqlite_template, "second")
    for url in (first, second):
        invoke("apply", str(FIXTURE), "--db", url)
    # Parents for the restrict lookup (Position__c.Account__c), then positions, then master-detail Postings.
    invoke("import", "Account", str(write_csv(tmp_path / "accounts.csv", [[f"Agency {i}"] for i in range(40)],
                                              ["Name"])), "--db", first)
    invoke("export", "Account", "-o", str(tmp_path / "acc1.csv"), "--db", first)
    account_ids = [r["Id"] for r in read_csv(tmp_path / "acc1.csv")]
    rows = make_rows(10_000)
    for i, row in enumerate(rows):
        row.append(account_ids[i % 40] if i % 3 else "")
    source = write_csv(tmp_path / "positions.csv", rows, [*HEADER, "Account__c"])
    out = invoke("import", "Position__c", str(source), "--db", first)
    assert "Imported 10000 new" in out
    exported = tmp_path / "export1.csv"
    invoke("export", "Position__c", "-o", str(exported), "--db", first)
    rows1 = read_csv(exported)
    assert len(rows1) == 10_000
    position_ids = [r["Id"] for r in rows1]
    postings = [[f"Post {i}", position_ids[(i * 7) % 10_000], ["Web", "Agency", "Print", ""][i % 4]]
                for i in range(3_000)]
    invoke("import", "Posting__c", str(write_csv(tmp_path / "postings.csv", postings,
                                                 ["Name", "Position__c", "Channel__c"])), "--db", first)
    invoke("export", "Posting__c", "-o", str(tmp_path / "post1.csv"), "--db", first)
    assert len(read_csv(tmp_path / "post1.csv")) == 3_000

    # Re-import each export (minus ids, which the new database assigns) into an empty database, parents first,
    # re-pointing lookups at the parents' new ids; then export again.
    _transfer(tmp_path / "acc1.csv", tmp_path / "acc_re.csv", {})
    invoke("import", "Account", str(tmp_path / "acc_re.csv"), "--db", second)
    invoke("export", "Account", "-o", str(tmp_path / "acc2.csv"), "--db", second)
    new_account = {r["Name"]: r["Id"] for r in read_csv(tmp_path / "acc2.csv")}
    account_map = {r["Id"]: new_account[r["Name"]] for r in read_csv(tmp_path / "acc1.csv")}
    _transfer(exported, tmp_path / "reimport.csv", {"Account__c": account_map})
    invoke("import", "Position__c", str(tmp_path / "reimport.csv"), "--db", second)
    exported2 = tmp_path / "export2.csv"
    invoke("export", "Position__c", "-o", str(exported2), "--db", second)
    new_position = {r["Job_Code__c"]: r["Id"] for r in read_csv(exported2)}
    position_map = {r["Id"]: new_position[r["Job_Code__c"]] for r in rows1}
    _transfer(tmp_path / "post1.csv", tmp_path / "post_re.csv", {"Position__c": position_map})
    invoke("import", "Posting__c", str(tmp_path / "post_re.csv"), "--db", second)
    invoke("export", "Posting__c", "-o", str(tmp_path / "post2.csv"), "--db", second)

    account_name = {r["Id"]: r["Name"] for f in ("acc1.csv", "acc2.csv") for r in read_csv(tmp_path / f)}
    code = {r["Id"]: r["Job_Code__c"] for f in (exported, exported2) for r in read_csv(f)}
    assert _keyed(tmp_path / "acc1.csv", "Name", {}) == _keyed(tmp_path / "acc2.csv", "Name", {})
    positions1 = _keyed(exported, "Job_Code__c", {"Account__c": account_name})
    assert positions1 == _keyed(exported2, "Job_Code__c", {"Account__c": account_name})
    assert sum(1 for r in positions1.values() if r["Account__c"].startswith("Agency ")) == 6_666
    postings1 = _keyed(tmp_path / "post1.csv", "Name", {"Position__c": code})
    assert postings1 == _keyed(tmp_path / "post2.csv", "Name", {"Position__c": code})
    assert postings1["Post 3"]["Position__c"] == "JC-000021" and postings1["Post 3"]["Channel__c"] == ""
    # And the export says what was imported: spot-check values, including the neutralised formula.
    by_code = {r["Job_Code__c"]: r for r in rows1}
    assert by_code["JC-000071"]["Summary__c"] == "'=SUM(A1)"
    assert by_code["JC-000050"]["Summary__c"] == "line one\nline two"
    assert by_code["JC-000000"]["Name"] == 'Officer 0 "quoted", with comma'


def test_one_bad_row_imports_nothing_unless_partial(backend: str, org: Context, tmp_path: Path) -> None:
    url = org.db.url
    invoke("apply", str(FIXTURE), "--db", url)
    rows = make_rows(1000)
    rows[536][1] = "Marketing"  # not in the restricted picklist
    source = write_csv(tmp_path / "bad.csv", rows)
    errors = tmp_path / "errors.csv"
    result = runner.invoke(app, ["import", "Position__c", str(source), "--errors", str(errors), "--db", url])
    assert result.exit_code == 1
    assert query(org, "SELECT COUNT() FROM Position__c")["totalSize"] == 0
    report = read_csv(errors)
    assert [(r["row"], r["field"], r["code"]) for r in report] == [
        ("537", "Department__c", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")]
    out = invoke("import", "Position__c", str(source), "--partial", "--errors", str(errors), "--db", url)
    assert "Imported 999 new" in out and "1 row(s) failed" in out
    assert query(org, "SELECT COUNT() FROM Position__c")["totalSize"] == 999
    assert [(r["row"], r["code"]) for r in read_csv(errors)] == [("537", "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")]


def test_upsert_on_external_id(org: Context, tmp_path: Path) -> None:
    url = org.db.url
    invoke("apply", str(FIXTURE), "--db", url)
    invoke("import", "Position__c", str(write_csv(tmp_path / "a.csv", make_rows(20))), "--db", url)
    changed = make_rows(25)
    for row in changed:
        row[0] = row[0] + " (updated)"
    out = invoke("import", "Position__c", str(write_csv(tmp_path / "b.csv", changed)), "--upsert-on", "Job_Code__c",
                 "--db", url)
    assert "Imported 5 new and 20 updated" in out
    names = {r["Name"] for r in query(org, "SELECT Name FROM Position__c")["records"]}
    assert len(names) == 25 and all(n.endswith("(updated)") for n in names)


@pytest.mark.parametrize(("content", "message"), [
    ("", "The CSV file is empty"),
    ("Name,Department__c\nA,Field,extra\n", "has 3 values but the header has 2"),
    ("Name,,Department__c\n", "empty column name"),
])
def test_malformed_csv_is_refused_clearly(org: Context, tmp_path: Path, content: str, message: str) -> None:
    invoke("apply", str(FIXTURE), "--db", org.db.url)
    path = tmp_path / "m.csv"
    path.write_text(content)
    result = runner.invoke(app, ["import", "Position__c", str(path), "--db", org.db.url])
    assert result.exit_code == 1
    assert message in result.output
