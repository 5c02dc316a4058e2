"""REST API benchmarks over loopback (DESIGN.md §5): a Keel server in a child process, a pure-Python asyncio
load generator (raw HTTP/1.1 keep-alive sockets, so the client is not the bottleneck) in this one.

    python bench/api.py                      # SQLite file under a temp dir, 5 s of creates at concurrency 16
    python bench/api.py --seconds 10 --concurrency 16 --pg postgresql://postgres@127.0.0.1:5432/test
    python bench/api.py --workers 2          # `keel serve --workers 2`: supervisor, two processes on one port
    python bench/api.py --https              # also the creates over HTTPS (TLS 1.3, the self-signed certificate)

The server is the real ``keel serve`` (its JSON access log goes to a file in the temp dir); ``--server api``
runs the API app alone under uvicorn instead (no web app, no access log, no background work), with ``--http``
to pick uvicorn's parser and ``--workers`` processes sharing the port by SO_REUSEPORT.

Measures:
- create one record (POST /sobjects/Account) at concurrency 16 over plain HTTP keep-alive: req/s, p50, p99
  (budget >= 1,500 req/s on 2 cores, p99 <= 50 ms);
- a 200-record query page (GET /query), one client: p50 (budget <= 10 ms);
- per-request overhead: the same create and query, one client, against calling the service layer in-process.
Prints the figures; exits 1 when a budget is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from keel.api.backend import run_soql  # noqa: E402
from keel.api.tls import CERT_NAME  # noqa: E402
from keel.records import save_many  # noqa: E402
from keel.security import sessions  # noqa: E402
from keel.services.org import init_org, open_context  # noqa: E402
from keel.services.security import user_context  # noqa: E402
from keel.settings import Settings  # noqa: E402

ADMIN, PASSWORD = "bench@keel.local", "a benchmark admin passphrase"
V = "59.0"
QUERY = "SELECT Id, Name, Phone, Industry, CreatedDate FROM Account ORDER BY Name LIMIT 200"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_keel_serve(url: str, port: int, data_dir: str, workers: int,
                     https_port: int = 0) -> tuple[subprocess.Popen[bytes], Path]:
    """``keel serve`` with ``workers`` processes, stderr (JSON lines) to a file; returns once every worker has
    answered a request (each new connection lands on one of them)."""
    log_path = Path(data_dir) / "serve.log"
    env = {**os.environ, "KEEL_DATABASE_URL": url, "KEEL_DATA_DIR": data_dir,
           "KEEL_API_REQUESTS_PER_MINUTE": "10000000", "PYTHONPATH": str(ROOT / "src")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "serve", "--workers", str(workers),
                                 "--port", str(port), "--https-port", str(https_port)], env=env,
                                stdout=subprocess.DEVNULL,
                                stderr=err)
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"keel serve did not start; see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
                probe.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                probe.recv(4096)
        except OSError:
            pass  # not listening yet
        pids = set()
        for line in log_path.read_text().splitlines():
            if '"/healthz"' in line and line.endswith("}"):
                pids.add(json.loads(line)["pid"])
        if len(pids) >= workers:
            return proc, log_path
        time.sleep(0.2)


def serve(url: str, port: int, data_dir: str, http: str = "auto") -> None:
    """Child process: the API on plain HTTP (one server process; ``--workers`` starts several on one port)."""
    import uvicorn

    from keel.api.app import create_app

    settings = Settings(database_url=url, data_dir=data_dir, api_requests_per_minute=10_000_000)
    app = create_app(open_context(url, settings=settings))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # several workers share the port (kernel balances)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it (h11 writes twice)
    sock.bind(("127.0.0.1", port))
    loop = "asyncio" if http == "h11" else "auto"
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", http=http, loop=loop)
    uvicorn.Server(config).run(sockets=[sock])


class Conn:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for JSON responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body


def build(method: str, path: str, token: str, body: bytes = b"") -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def load(port: int, token: str, concurrency: int, seconds: float,
               tls: ssl.SSLContext | None = None) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal errors
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        c = Conn(r, w)
        i = 0
        while time.perf_counter() < stop:
            body = json.dumps({"Name": f"load-{n}-{i}", "Industry": "Retail"}).encode()
            t0 = time.perf_counter()
            status, _ = await c.request(build("POST", f"/services/data/v{V}/sobjects/Account", token, body))
            latencies.append(time.perf_counter() - t0)
            errors += status != 201
            i += 1
        w.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return len(latencies), latencies, errors


async def sequential(port: int, raw: bytes, n: int, expect: int) -> list[float]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    c = Conn(r, w)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, _ = await c.request(raw)
        out.append(time.perf_counter() - t0)
        assert status == expect, status
    w.close()
    return out


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--pg", default=None, help="PostgreSQL URL (a fresh schema is created and dropped)")
    ap.add_argument("--workers", type=int, default=1, help="server processes sharing the port")
    ap.add_argument("--server", default="keel", choices=("keel", "api"),
                    help="keel: `keel serve --workers N`; api: the API app alone under uvicorn")
    ap.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"),
                    help="uvicorn HTTP implementation (auto: httptools + uvloop when installed)")
    ap.add_argument("--https", action="store_true",
                    help="also measure the creates over HTTPS (keel serve's self-signed certificate, trusted)")
    ap.add_argument("--serve", nargs=4, metavar=("URL", "PORT", "DATA_DIR", "HTTP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2], args.serve[3])
        return 0
    tmp = tempfile.mkdtemp(prefix="keel-bench-api-")
    schema = None
    if args.pg:
        schema = f"keel_bench_{uuid.uuid4().hex[:8]}"
        url = f"{args.pg}{'&' if '?' in args.pg else '?'}schema={schema}"
    else:
        url = f"sqlite:///{tmp}/bench.db"
    settings = Settings(database_url=url, data_dir=tmp)
    ctx = open_context(url, settings=settings)
    init_org(ctx, admin_username=ADMIN, admin_password=PASSWORD)
    token = sessions.authenticate(ctx, ADMIN, PASSWORD, ip="127.0.0.1", kind="api").token
    admin = user_context(ctx, sessions.resolve_token(ctx, token).user_id)  # type: ignore[union-attr]
    save_many(admin, "Account", [{"Name": f"seed-{i:04d}", "Phone": "555", "Industry": "Retail"}
                                 for i in range(400)])
    port = free_port()
    ctx.db.dispose()
    https_port = free_port() if args.https and args.server == "keel" else 0
    if args.server == "keel":
        keel_proc, _log = start_keel_serve(url, port, tmp, args.workers, https_port)
        procs = [keel_proc]
    else:
        procs = [subprocess.Popen([sys.executable, __file__, "--serve", url, str(port), tmp, args.http])
                 for _ in range(args.workers)]
    proc = procs[0]
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise SystemExit("server did not start") from None
                time.sleep(0.1)
        if args.workers > 1 and args.server == "api":
            time.sleep(3)  # let every worker bind before the load opens its connections
        qraw = build("GET", f"/services/data/v{V}/query?q={quote(QUERY)}", token)
        asyncio.run(sequential(port, qraw, 50, 200))  # warm-up: plan cache, access cache, connections
        asyncio.run(load(port, token, args.concurrency, 1.0))
        n, lat, errors = asyncio.run(load(port, token, args.concurrency, args.seconds))
        rps = n / args.seconds
        tls_result = None
        if https_port:
            tls = ssl.create_default_context(cafile=str(Path(tmp) / CERT_NAME))
            tn, tlat, terrors = asyncio.run(load(https_port, token, args.concurrency, args.seconds, tls))
            tls_result = (tn / args.seconds, tlat, terrors)
        q_lat = asyncio.run(sequential(port, qraw, 300, 200))
        craw = build("POST", f"/services/data/v{V}/sobjects/Account", token,
                     json.dumps({"Name": "seq", "Industry": "Retail"}).encode())
        c_lat = asyncio.run(sequential(port, craw, 300, 201))
        v_lat = asyncio.run(sequential(port, build("GET", "/services/data/", token), 300, 200))
        l_lat = asyncio.run(sequential(port, build("GET", f"/services/data/v{V}/limits", token), 300, 200))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    # in-process: the same work without HTTP
    ip_create, ip_query = [], []
    for i in range(300):
        t0 = time.perf_counter()
        save_many(admin, "Account", [{"Name": f"inproc-{i}", "Industry": "Retail"}])
        ip_create.append(time.perf_counter() - t0)
    for _ in range(300):
        t0 = time.perf_counter()
        with admin.db.read() as conn:
            run_soql(admin, conn, QUERY, api_version=V)
        ip_query.append(time.perf_counter() - t0)
    backend = "postgresql" if args.pg else "sqlite"
    print(f"backend={backend} cores={os.cpu_count()} concurrency={args.concurrency} seconds={args.seconds} "
          f"server={args.server} workers={args.workers} http={args.http} load={os.getloadavg()[0]:.1f}")
    print(f"create  c={args.concurrency}: {rps:8.0f} req/s  p50 {pct(lat, .5):6.2f} ms  p99 {pct(lat, .99):6.2f} ms"
          f"  errors {errors}")
    if tls_result is not None:
        trps, tlat, terrors = tls_result
        print(f"create  c={args.concurrency} HTTPS: {trps:8.0f} req/s  p50 {pct(tlat, .5):6.2f} ms  "
              f"p99 {pct(tlat, .99):6.2f} ms  errors {terrors}  (reported; the budget is over plain HTTP)")
        errors += terrors
    print(f"create  c=1 : HTTP p50 {pct(c_lat, .5):6.2f} ms  in-process p50 {pct(ip_create, .5):6.2f} ms  "
          f"overhead {pct(c_lat, .5) - pct(ip_create, .5):6.2f} ms")
    print(f"query 200   : HTTP p50 {pct(q_lat, .5):6.2f} ms  in-process p50 {pct(ip_query, .5):6.2f} ms  "
          f"overhead {pct(q_lat, .5) - pct(ip_query, .5):6.2f} ms")
    print(f"floor       : versions list (no auth, no DB) p50 {pct(v_lat, .5):6.2f} ms; /limits (token resolution, "
          f"no other DB work) p50 {pct(l_lat, .5):6.2f} ms")
    ok = True
    for name, good in (("create >= 1500 req/s", rps >= 1500), ("create p99 <= 50 ms", pct(lat, .99) <= 50),
                       ("query page p50 <= 10 ms", pct(q_lat, .5) <= 10), ("no errors", errors == 0)):
        print(f"  budget {name}: {'ok' if good else 'MISSED'}")
        ok &= good
    ctx.db.dispose()
    if schema is not None:
        import sqlalchemy as sa

        eng = sa.create_engine(args.pg.replace("postgresql://", "postgresql+psycopg://", 1))
        with eng.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        eng.dispose()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
