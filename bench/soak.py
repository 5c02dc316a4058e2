"""Soak test: a real ``keel serve`` on loopback, 16 concurrent API clients, a realistic mix, and a lost-write audit.

    python bench/soak.py                                   # SQLite, 10 minutes
    python bench/soak.py --seconds 30                      # what the test suite runs
    python bench/soak.py --pg postgresql://postgres@127.0.0.1:5432/test --seconds 600

The mix per request: 60% SOQL queries, 25% updates, 10% creates, 5% Bulk API 2.0 ingest jobs (10 rows each).
A client waits for its previous bulk job to finish before it opens the next (the clients share one user, whose
open jobs are limited), so every bulk job is accepted and run; the wait is reported apart from request latencies.
Every client keeps a ledger of what the server acknowledged. At the end the server is stopped and the database is
read directly:
- every acknowledged create must exist with its name;
- every record whose last update was acknowledged must hold exactly that value (if the last update failed or timed
  out, either the previous acknowledged value or the attempted one is acceptable: the client cannot know);
- every row of every bulk job that reached JobComplete must exist.
Anything else is a "lost write"; the run exits 1 if there is one, or if "database is locked" ever reached a client.

Reports throughput, p50/p99 per operation, and every error by HTTP status and Salesforce error code.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from keel.records import save_many  # noqa: E402
from keel.security import sessions  # noqa: E402
from keel.services.org import init_org, open_context  # noqa: E402
from keel.services.query import query_all_records  # noqa: E402
from keel.services.security import system_context  # noqa: E402
from keel.settings import Settings  # noqa: E402

ADMIN, PASSWORD = "soak@keel.local", "a soak test admin passphrase"
V = "v59.0"
MIX = (("query", 60), ("update", 25), ("create", 10), ("bulk", 5))
TERMINAL = ("JobComplete", "Failed", "Aborted")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Org:
    url: str
    data_dir: str
    client_id: str
    secret: str
    seeded: list[str]
    schema: str | None = None


def make_org(pg: str | None, tmp: str, seed: int = 320) -> Org:
    """A new organisation with an administrator, a connected app and ``seed`` accounts to update."""
    schema = None
    if pg:
        schema = f"keel_soak_{uuid.uuid4().hex[:10]}"
        url = f"{pg}{'&' if '?' in pg else '?'}schema={schema}"
    else:
        url = f"sqlite:///{tmp}/soak.db"
    data_dir = f"{tmp}/data"
    ctx = open_context(url, settings=Settings(database_url=url, data_dir=data_dir))
    init_org(ctx, admin_username=ADMIN, admin_password=PASSWORD)
    seeded = [str(r.id) for r in save_many(ctx, "Account", [{"Name": f"seed {i}", "Description": "v0"}
                                                             for i in range(seed)])]
    sysctx = system_context(ctx, "soak setup")
    with ctx.db.transaction() as conn:
        admin = sessions._find_user(conn, ctx, ADMIN)
        assert admin is not None
        client_id, secret = sessions.create_connected_app(sysctx, conn, "soak", run_as_user_id=admin[0])
    ctx.db.dispose()
    return Org(url, data_dir, client_id, secret, seeded, schema)


def drop_org(org: Org, pg: str | None) -> None:
    if org.schema and pg:
        import sqlalchemy as sa

        engine = sa.create_engine(pg.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{org.schema}" CASCADE')
        engine.dispose()


class Server:
    """``keel serve`` in a child process (plain HTTP on loopback)."""

    def __init__(self, org: Org, log_path: str) -> None:
        self.org, self.port, self.log_path = org, free_port(), log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        env = {**os.environ, "KEEL_DATA_DIR": self.org.data_dir, "KEEL_API_REQUESTS_PER_MINUTE": "100000000",
               "PYTHONPATH": str(ROOT / "src")}
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "serve", "--db", self.org.url,
                                      "--port", str(self.port), "--https-port", "0"], env=env, stdout=log,
                                     stderr=log)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keel serve exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("keel serve did not start")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self) -> str:
        r = httpx.post(f"{self.base}/services/oauth2/token", data={
            "grant_type": "password", "client_id": self.org.client_id, "client_secret": self.org.secret,
            "username": ADMIN, "password": PASSWORD}, timeout=30)
        r.raise_for_status()
        return str(r.json()["access_token"])

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


@dataclass
class Ledger:
    created: dict[str, str] = field(default_factory=dict)  # id -> name
    updates: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # id -> (last acked, last tried, ok)
    bulk_jobs: dict[str, list[str]] = field(default_factory=dict)  # job id -> names
    bulk_waits: list[float] = field(default_factory=list)  # waiting for the client's previous job to finish
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    locked: int = 0


def _error_key(op: str, r: httpx.Response) -> str:
    code = ""
    try:
        body = r.json()
        if isinstance(body, list) and body and isinstance(body[0], dict):
            code = str(body[0].get("errorCode", ""))
    except ValueError:
        pass
    return f"{op} {r.status_code} {code}".strip()


def client_loop(n: int, base: str, token: str, mine: list[str], deadline: float, ledger: Ledger,
                lock: threading.Lock) -> None:
    rnd = random.Random(n)
    ops = [op for op, weight in MIX for _ in range(weight)]
    headers = {"Authorization": f"Bearer {token}"}
    last_ok: dict[str, str] = {rid: "v0" for rid in mine}
    seq = 0
    previous_job: str | None = None
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        while time.time() < deadline:
            op = rnd.choice(ops)
            seq += 1
            started = time.perf_counter()
            try:
                if op == "query":
                    r = http.get(f"/services/data/{V}/query", params={
                        "q": "SELECT Id, Name, Description FROM Account ORDER BY SystemModstamp DESC LIMIT 20"})
                    ok = r.status_code == 200
                elif op == "update":
                    rid = rnd.choice(mine)
                    value = f"c{n}-{seq}"
                    r = http.patch(f"/services/data/{V}/sobjects/Account/{rid}", json={"Description": value})
                    ok = r.status_code == 204
                    if ok:
                        last_ok[rid] = value
                    with lock:
                        ledger.updates[rid] = (last_ok[rid], value, ok)
                elif op == "create":
                    name = f"soak c{n} {seq}"
                    r = http.post(f"/services/data/{V}/sobjects/Account", json={"Name": name})
                    ok = r.status_code == 201
                    if ok:
                        with lock:
                            ledger.created[r.json()["id"]] = name
                else:
                    if previous_job is not None:  # the per-user open-job limit: one job in flight per client
                        _wait_for_job(http, previous_job, ledger, lock)
                        started = time.perf_counter()
                    r, previous_job = _bulk(http, n, seq, ledger, lock)
                    ok = previous_job is not None
            except httpx.HTTPError as e:
                with lock:
                    ledger.errors[f"{op} transport {type(e).__name__}"] += 1
                continue
            took = time.perf_counter() - started
            with lock:
                ledger.latencies[op].append(took)
                if not ok:
                    ledger.errors[_error_key(op, r)] += 1
                    if "locked" in r.text:
                        ledger.locked += 1


def _wait_for_job(http: httpx.Client, job: str, ledger: Ledger, lock: threading.Lock, limit: float = 60) -> None:
    """Wait until the client's previous bulk job has finished, as a real integration does before it opens the
    next one: all 16 clients share one user, and that user may have 25 open or running jobs (docs/bulk.md)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if http.get(f"/services/data/{V}/jobs/ingest/{job}").json().get("state") in TERMINAL:
            break
        time.sleep(0.05)
    with lock:
        ledger.bulk_waits.append(time.perf_counter() - started)


def _bulk(http: httpx.Client, n: int, seq: int, ledger: Ledger, lock: threading.Lock
          ) -> tuple[httpx.Response, str | None]:
    """Create, upload and close one 10-row job; the job's id once it is closed, else None."""
    r = http.post(f"/services/data/{V}/jobs/ingest", json={"object": "Account", "operation": "insert"})
    if r.status_code != 200:
        return r, None
    job = str(r.json()["id"])
    names = [f"bulk c{n} {seq} {k}" for k in range(10)]
    r = http.put(f"/services/data/{V}/jobs/ingest/{job}/batches", content="Name\n" + "\n".join(names) + "\n",
                 headers={"Content-Type": "text/csv"})
    if r.status_code != 201:
        return r, None
    r = http.patch(f"/services/data/{V}/jobs/ingest/{job}", json={"state": "UploadComplete"})
    if r.status_code != 200:
        return r, None
    with lock:
        ledger.bulk_jobs[job] = names
    return r, job


def _is_error(line: str) -> bool:
    return '"level": "error"' in line or line.startswith("Traceback")


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000


def audit(org: Org, ledger: Ledger, server: Server, token: str, wait: float = 60) -> dict[str, Any]:
    """Wait for bulk jobs, stop the server, then compare the database with the ledger."""
    complete: list[str] = []
    deadline = time.time() + wait
    pending = set(ledger.bulk_jobs)
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        while pending and time.time() < deadline:
            for job in list(pending):
                state = http.get(f"/services/data/{V}/jobs/ingest/{job}").json().get("state")
                if state in TERMINAL:
                    pending.discard(job)
                    if state == "JobComplete":
                        complete.append(job)
            time.sleep(0.2)
    server.stop()
    ctx = open_context(org.url, settings=Settings(database_url=org.url, data_dir=org.data_dir))
    rows = {str(r["Id"]): r for r in query_all_records(ctx, "SELECT Id, Name, Description FROM Account")}
    ctx.db.dispose()
    names = {r["Name"] for r in rows.values()}
    lost: list[str] = []
    lost += [f"create {i} {name}" for i, name in ledger.created.items() if rows.get(i, {}).get("Name") != name]
    for rid, (acked, tried, ok) in ledger.updates.items():
        final = rows.get(rid, {}).get("Description")
        if final != acked and (ok or final != tried):
            lost.append(f"update {rid}: have {final!r}, acknowledged {acked!r}")
    lost += [f"bulk {job} {name}" for job in complete for name in ledger.bulk_jobs[job] if name not in names]
    return {"lost_writes": len(lost), "lost_examples": lost[:10], "bulk_jobs": len(ledger.bulk_jobs),
            "bulk_jobs_complete": len(complete), "bulk_jobs_unfinished": len(pending)}


def run(seconds: float, clients: int = 16, pg: str | None = None, log: Any = print) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="keel-soak-") as tmp:
        org = make_org(pg, tmp)
        server = Server(org, f"{tmp}/server.log").start()
        try:
            token = server.token()
            ledger, lock = Ledger(), threading.Lock()
            share = len(org.seeded) // clients
            deadline = time.time() + seconds
            started = time.time()
            threads = [threading.Thread(target=client_loop, args=(n, server.base, token,
                                                                  org.seeded[n * share:(n + 1) * share],
                                                                  deadline, ledger, lock)) for n in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.time() - started
            result = audit(org, ledger, server, token)
        finally:
            server.stop()
            drop_org(org, pg)
            log_text = Path(f"{tmp}/server.log").read_text(errors="replace")
        total = sum(len(v) for v in ledger.latencies.values())
        everything = [x for v in ledger.latencies.values() for x in v]
        report: dict[str, Any] = {
            "backend": "postgresql" if pg else "sqlite", "seconds": round(elapsed, 1), "clients": clients,
            "requests": total, "throughput_rps": round(total / elapsed, 1),
            "p50_ms": round(_pct(everything, 0.5), 2), "p99_ms": round(_pct(everything, 0.99), 2),
            "by_op": {op: {"n": len(v), "p50_ms": round(_pct(v, 0.5), 2), "p99_ms": round(_pct(v, 0.99), 2)}
                      for op, v in sorted(ledger.latencies.items())},
            "bulk_wait_p50_ms": round(_pct(ledger.bulk_waits, 0.5), 2),
            "bulk_wait_p99_ms": round(_pct(ledger.bulk_waits, 0.99), 2),
            "errors": dict(ledger.errors), "database_locked": ledger.locked, **result,
            "server_error_lines": sum(1 for line in log_text.splitlines() if _is_error(line)),
            "server_errors": [line[:300] for line in log_text.splitlines() if _is_error(line)][-5:]}
        log(json.dumps(report, indent=2))
        return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (a fresh schema is created and dropped)")
    args = ap.parse_args()
    report = run(args.seconds, args.clients, args.pg)
    return 1 if report["lost_writes"] or report["database_locked"] else 0


if __name__ == "__main__":
    sys.exit(main())
