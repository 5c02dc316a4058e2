"""Bulk API 2.0 benchmark: ingest N rows over HTTP end to end, then a query job streaming every page.

    python bench/bulk.py --rows 1000000                      # SQLite in a temp dir
    python bench/bulk.py --rows 1000000 --pg postgresql://…  # PostgreSQL (a fresh schema, dropped afterwards)

The server is a subprocess running the API app and bulk worker as ``keel serve`` does, so its peak RSS (VmHWM) is
measured on its own. Ingest time runs from the first PUT to ``JobComplete``; the baseline is raw ``executemany``
of the same rows, already typed (batches of 10k), into an empty copy of Keel's own table for the object (same
columns, audit columns included, same indexes) in the same database, in the same run. The rows go in as
``--slices`` ingest jobs (default 5), each right after the raw side has inserted the same number of rows, so a
change in machine load hits both sides alike. Exits non-zero when a budget is missed (SQLite >= 40% of raw,
PostgreSQL >= 100%, peak RSS <= 300 MB, query >= 100k rows/s).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import httpx

ADMIN, ADMIN_PW = "admin@bench.test", "a bench admin passphrase"
V = "59.0"
PACKAGE = {
    "Vendor__c.yaml": """object: Vendor__c
label: Vendor
plural_label: Vendors
name_field: {label: Vendor Name, type: text}
sharing: public_read_write
fields:
  - {name: Vendor_Code__c, type: text, length: 40, external_id: true, unique: true}
""",
    "Item__c.yaml": """object: Item__c
label: Item
plural_label: Items
name_field: {label: Item Name, type: text}
sharing: public_read_write
fields:
  - {name: Code__c, type: text, length: 40, unique: true, external_id: true}
  - {name: Vendor__c, type: lookup, to: Vendor__c, relationship_name: Vendor__r, child_relationship_name: Items__r}
  - {name: Qty__c, type: number, precision: 10, scale: 0}
  - {name: Price__c, type: number, precision: 12, scale: 2}
  - {name: Active__c, type: checkbox}
  - {name: Due__c, type: date}
  - {name: Color__c, type: picklist, values: [Red, Green, Blue], restricted: true}
  - {name: Note__c, type: text, length: 200}
  - {name: Email__c, type: email}
  - {name: Category__c, type: text, length: 40, required: true}
  - {name: Seen__c, type: datetime}
validation_rules:
  - {name: Qty_Positive, condition: "Qty__c < 0", message: "Quantity must not be negative", field: Qty__c}
  - {name: Price_Cap, condition: "Price__c > 100000", message: "Price is above the cap", field: Price__c}
""",
}
# The API server as ``keel serve`` builds it (API app + in-process bulk worker), without the web app.
SERVER = """
import sys, uvicorn
from keel.api.app import create_app
from keel.services.bulk_worker import BulkWorker
from keel.services.org import open_context
from keel.settings import Settings
url, port = sys.argv[1], int(sys.argv[2])
ctx = open_context(url, settings=Settings.load().with_overrides(database_url=url))
app = create_app(ctx)
app.state.bulk_worker = BulkWorker(ctx).start()
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_keep_alive=75)
"""
HEADER = ["Name", "Code__c", "Qty__c", "Price__c", "Active__c", "Due__c", "Color__c", "Note__c", "Email__c",
          "Category__c", "Seen__c"]


def row(i: int) -> list[str]:
    return [f"Item {i}", f"C{i:08d}", str(i % 50), f"{i % 1000}.25", "true" if i % 2 else "false", "2024-05-06",
            ("Red", "Green", "Blue")[i % 3], f"note {i}", f"u{i}@example.com", "Hardware",
            "2024-05-06T07:08:09.000Z"]


def write_csv(path: Path, first: int, n: int) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(HEADER)
        for start in range(first, first + n, 10_000):
            w.writerows(row(i) for i in range(start, min(first + n, start + 10_000)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(url: str, data_dir: Path, pkg: Path) -> None:
    from keel.services.metadata import apply_package
    from keel.services.org import init_org, open_context
    from keel.settings import Settings

    ctx = open_context(url, settings=Settings(database_url=url, data_dir=str(data_dir)))
    init_org(ctx, admin_username=ADMIN, admin_password=ADMIN_PW)
    apply_package(ctx, pkg)
    ctx.db.dispose()


class RssWatch(threading.Thread):
    """Samples the server's VmHWM (peak RSS) and current RSS."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.samples = pid, 0, [0]
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                text = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                if line.startswith("VmRSS:"):
                    self.samples.append(int(line.split()[1]))
            time.sleep(0.2)


def token(base: str) -> str:
    body = (f'<?xml version="1.0"?><env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns:n1="urn:partner.soap.sforce.com"><env:Body><n1:login><n1:username>{ADMIN}</n1:username>'
            f"<n1:password>{ADMIN_PW}</n1:password></n1:login></env:Body></env:Envelope>")
    r = httpx.post(f"{base}/services/Soap/u/{V}", content=body, headers={"Content-Type": "text/xml",
                                                                          "SOAPAction": "login"})
    m = re.search(r"<sessionId>(.*?)</sessionId>", r.text)
    assert m, r.text
    return m.group(1)


def file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            yield data


def wait(http: httpx.Client, kind: str, job_id: str) -> dict[str, object]:
    while True:
        info: dict[str, object] = http.get(f"/jobs/{kind}/{job_id}").json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return info
        time.sleep(0.05)


class RawSide:
    """The raw side: executemany of the same rows, already typed, in batches of 10k, into an empty copy of Keel's
    own table for ``Item__c`` (same columns, audit columns included, same indexes) in the same database, on the
    driver's cursor: the physical work Keel's lifecycle ends in, with none of the lifecycle."""

    def __init__(self, url: str) -> None:
        from keel.metadata.tables import table_for
        from keel.records.prepare import write_plan
        from keel.services.org import open_context
        from keel.settings import Settings

        self.ctx = open_context(url, settings=Settings(database_url=url))
        schema = self.ctx.schema()
        obj = schema.get_object("Item__c")
        self.sqlite = self.ctx.db.dialect == "sqlite"
        self.columns = list(write_plan(schema, obj, self.ctx.db.dialect).insert_columns)
        by_column = {f.column: f for f in obj.fields if f.column}
        self.kinds = [by_column[c].type if c in by_column else c for c in self.columns]
        self.header_pos = {by_column[c].column: HEADER.index(by_column[c].api_name)
                           for c in self.columns if c in by_column and by_column[c].api_name in HEADER}
        table = table_for(schema, obj).name
        with self.ctx.db.transaction() as conn:
            if not self.sqlite:
                conn.exec_driver_sql(f'CREATE TABLE raw_copy (LIKE "{table}" INCLUDING ALL)')
            else:
                rows = conn.exec_driver_sql("SELECT type, sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT "
                                            "NULL", (table,)).all()
                for _kind, sql in sorted(rows, key=lambda r: r[0] != "table"):
                    conn.exec_driver_sql(sql.replace(f'"{table}"', "raw_copy").replace(table, "raw_copy"))
        mark = "?" if self.sqlite else "%s"
        self.sql = (f"INSERT INTO raw_copy ({', '.join(self.columns)}) "
                    f"VALUES ({', '.join([mark] * len(self.columns))})")

    def _typed(self, i: int) -> tuple[object, ...]:
        r = row(i)
        stamp: object = "2024-06-01 00:00:00.000000" if self.sqlite else datetime(2024, 6, 1)
        out: list[object] = []
        for col, kind in zip(self.columns, self.kinds, strict=True):
            pos = self.header_pos.get(col)
            if col == "id":
                out.append(10_000_000 + i)
            elif col in ("created_date", "last_modified_date", "system_modstamp"):
                out.append(stamp)
            elif col in ("created_by_id", "last_modified_by_id", "owner_id"):
                out.append(1)
            elif col == "is_deleted":
                out.append(False)
            elif col == "version":
                out.append(1)
            elif pos is None:
                out.append(None)
            else:
                out.append(_value(r[pos], kind, self.sqlite))
        return tuple(out)

    def insert(self, first: int, n: int) -> float:
        t = time.perf_counter()
        for start in range(first, first + n, 10_000):
            with self.ctx.db.transaction() as conn:
                raw = conn.connection.driver_connection
                assert raw is not None
                cur = raw.cursor()
                cur.executemany(self.sql, [self._typed(i) for i in range(start, min(first + n, start + 10_000))])
                cur.close()
        return time.perf_counter() - t

    def close(self) -> None:
        self.ctx.db.dispose()


def _value(text: str, kind: str, sqlite: bool) -> object:
    """A CSV cell as a hand-written loader would bind it for a column of this field type."""
    if kind in ("number", "currency", "percent"):
        return float(text) if sqlite else Decimal(text)
    if kind == "checkbox":
        return text == "true"
    if kind == "date":
        return text if sqlite else date.fromisoformat(text)
    if kind == "datetime":
        value = datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
        return value.isoformat(" ", "microseconds") if sqlite else value
    return text


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", help="PostgreSQL URL (default: SQLite in a temp dir)")
    ap.add_argument("--page", type=int, default=100_000, help="maxRecords per query results page")
    ap.add_argument("--slices", type=int, default=5, help="ingest jobs, alternating with the raw side's inserts")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="keel-bench-bulk-"))
    pkg = tmp / "package" / "objects"
    pkg.mkdir(parents=True)
    for name, text in PACKAGE.items():
        (pkg / name).write_text(text)
    schema = None
    if args.pg:
        schema = f"bench_bulk_{uuid.uuid4().hex[:8]}"
        url = f"{args.pg}{'&' if '?' in args.pg else '?'}schema={schema}"
    else:
        url = f"sqlite:///{tmp / 'keel.db'}"
    setup(url, tmp / ".keel", pkg.parent)
    raw_side = RawSide(url)
    port = free_port()
    env = {**os.environ, "KEEL_DATA_DIR": str(tmp / ".keel"), "KEEL_API_REQUESTS_PER_MINUTE": "1000000"}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, url, str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        watch = RssWatch(proc.pid)
        watch.start()
        http = httpx.Client(base_url=f"{base}/services/data/v{V}", timeout=600,
                            headers={"Authorization": f"Bearer {token(base)}"})
        # The rows go in as ``--slices`` jobs, each preceded by the raw side inserting the same number of rows,
        # so both sides see the same machine load over the run.
        raw, ingest, t_upload = 0.0, 0.0, 0.0
        size = -(-args.rows // args.slices)
        for first in range(0, args.rows, size):
            n = min(size, args.rows - first)
            raw += raw_side.insert(first, n)
            data = tmp / f"items-{first}.csv"
            write_csv(data, first, n)
            job = http.post("/jobs/ingest", json={"object": "Item__c", "operation": "insert"}).json()
            t0 = time.perf_counter()
            r = http.put(f"/jobs/ingest/{job['id']}/batches", content=file_chunks(data),
                         headers={"Content-Type": "text/csv"})
            assert r.status_code == 201, r.text
            t_upload += time.perf_counter() - t0
            http.patch(f"/jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
            info = wait(http, "ingest", str(job["id"]))
            ingest += time.perf_counter() - t0
            assert info["state"] == "JobComplete" and info["numberRecordsFailed"] == 0, info
            data.unlink()
        ingest_peak = watch.peak_kb
        t1 = time.perf_counter()
        q = http.post("/jobs/query", json={"operation": "query", "query": "SELECT Id, " + ", ".join(HEADER) +
                                           " FROM Item__c"}).json()
        assert "id" in q, q
        wait(http, "query", str(q["id"]))
        t_mat = time.perf_counter() - t1
        locator, got, t2 = "", 0, time.perf_counter()
        while True:
            params = {"maxRecords": str(args.page), **({"locator": locator} if locator else {})}
            with http.stream("GET", f"/jobs/query/{q['id']}/results", params=params) as resp:
                for _ in resp.iter_bytes():
                    pass
                got += int(resp.headers["Sforce-NumberOfRecords"])
                locator = resp.headers["Sforce-Locator"]
            if locator == "null":
                break
        t_pages = time.perf_counter() - t2
        watch.stop.set()
        peak_mb = watch.peak_kb / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        raw_side.close()
    n = args.rows
    ratio = (n / ingest) / (n / raw)
    budget = 1.0 if args.pg else 0.4
    print(f"backend           {'postgresql' if args.pg else 'sqlite'}; rows {n:,}")
    print(f"upload (PUT)      {t_upload:.1f} s")
    print(f"ingest end to end {ingest:.1f} s = {n / ingest:,.0f} rows/s (first PUT -> JobComplete, "
          f"{args.slices} jobs)")
    print(f"raw executemany   {raw:.1f} s = {n / raw:,.0f} rows/s")
    print(f"ratio             {ratio:.0%} of raw (budget {budget:.0%})")
    print(f"peak server RSS   {peak_mb:.0f} MB during ingest {ingest_peak / 1024:.0f} MB (budget 300 MB)")
    print(f"query job         materialise {t_mat:.1f} s = {got / t_mat:,.0f} rows/s; pages {t_pages:.2f} s = "
          f"{got / t_pages:,.0f} rows/s; end to end {got / (t_mat + t_pages):,.0f} rows/s ({got:,} rows)")
    if schema is not None:
        import sqlalchemy as sa

        engine = sa.create_engine(args.pg.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    ok = ratio >= budget and peak_mb <= 300 and got == n and got / t_pages >= 100_000
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
