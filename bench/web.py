"""Web benchmark (DESIGN.md §5, issue 9): server time of web pages over a big table.

    python bench/web.py --rows 1000000          # SQLite file under --dir (a temp dir by default)
    python bench/web.py --rows 100000 --url postgresql://postgres@127.0.0.1:5432/test?schema=keel_wbench

Requests go in-process through the full ASGI app (session cookie resolution, CSRF-free GETs, SOQL as the user,
Jinja rendering, security headers), with Starlette's TestClient, so the figures are server time without a network.
Every screen is measured twice: as the administrator (sees every row) and as a recruiter under Private sharing,
who owns 5% of the applicants and sees another 5% through the role hierarchy (a junior recruiter reports to them):
the recruiter's pages carry the sharing predicate, which is what most users of a real org get.

The dashboard is a hiring dashboard of six components, all over the big Applicant table (pipeline funnel, source
donut, stage by source, average score by stage, recent hires by source, strong offers as a key metric), saved as
reports and a shared dashboard through the web app's report and dashboard builders, opened by each user.

Budgets: list view page (50 rows, first and deep keyset pages) p50 <= 30 ms; record page with 3 related lists
p50 <= 40 ms; dashboard of 6 components <= 1 s with every component computed (as after "Refresh"; the cached page a
second viewer gets within 60 s is printed beside it). Prints the figures and exits 1 if a budget is missed.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
import warnings
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
warnings.filterwarnings("ignore", category=DeprecationWarning)

from starlette.testclient import TestClient  # noqa: E402

from keel.cli.asgi import build_app  # noqa: E402
from keel.metadata.apply import apply_plan  # noqa: E402
from keel.metadata.package import parse_object  # noqa: E402
from keel.metadata.plan import plan  # noqa: E402
from keel.metadata.store import load_snapshot  # noqa: E402
from keel.metadata.tables import table_for  # noqa: E402
from keel.security.package import PermissionSetSpec  # noqa: E402
from keel.services.org import init_org, open_context  # noqa: E402
from keel.services.query import query  # noqa: E402
from keel.services.security import (  # noqa: E402
    assign_permission_set,
    create_role,
    deploy_permission_set,
    system_context,
    user_context,
)
from keel.services.users import create_user  # noqa: E402
from keel.settings import Settings  # noqa: E402
from keel.storage import ids  # noqa: E402

ADMIN, PASSWORD = "bench@web.test", "a long bench passphrase"
RECRUITER, JUNIOR = "recruiter@web.test", "junior@web.test"
NOW = datetime(2026, 1, 1)
STAGES = ("Applied", "Screening", "Interview", "Offer", "Hired")
SOURCES = ("Referral", "Job board", "Career fair", "Agency", "Website", "Walk-in")
# The hiring dashboard: six saved reports over Applicant__c, each a different grouping, aggregate or filter.
REPORTS: dict[str, dict[str, str]] = {
    "Pipeline": {"g1": "Stage__c", "agg": "COUNT", "chart": "funnel"},
    "By_Source": {"g1": "Source__c", "agg": "COUNT", "chart": "donut"},
    "Stage_By_Source": {"g1": "Source__c", "g2": "Stage__c", "agg": "COUNT", "chart": "stacked_bar"},
    "Score_By_Stage": {"g1": "Stage__c", "agg": "AVG", "field": "Score__c", "chart": "bar"},
    "Recent_Hires": {"g1": "Source__c", "agg": "COUNT", "chart": "line", "ff": "Stage__c", "fo": "=",
                     "fv": "Hired", "ff2": "Applied_Date__c", "fo2": "=", "fv2": "LAST_N_DAYS:90"},
    "Strong_Offers": {"agg": "COUNT", "chart": "none", "ff": "Stage__c", "fo": "=", "fv": "Offer",
                      "ff2": "Score__c", "fo2": ">=", "fv2": "80"},
}
CHARTS = ("funnel", "donut", "stacked_bar", "bar", "line", "metric")
CHILDREN = ("Interview__c", "Reference__c", "Check__c")


def objects() -> list[dict[str, Any]]:
    parent = {"object": "Applicant__c", "label": "Applicant", "plural_label": "Applicants", "sharing": "private",
              "fields": [{"name": "Stage__c", "type": "picklist", "values": list(STAGES), "indexed": True},
                         {"name": "Score__c", "type": "number", "precision": 5, "scale": 0, "indexed": True},
                         {"name": "Email__c", "type": "email"},
                         {"name": "Source__c", "type": "picklist", "values": list(SOURCES)},
                         {"name": "Applied_Date__c", "type": "date"}],
              "compact_fields": ["Stage__c", "Score__c", "Email__c"],
              # What an administrator declares for these screens: the list view below derives a (Stage, Score, Id)
              # index for "filter Stage = Offer, sorted by Score", and the dashboard's GROUP BY Stage gets a
              # covering report index, as do the dashboard's groupings by Source (docs/metadata.md, "Indexes").
              "list_views": [{"name": "all", "label": "All Applicants"},
                             {"name": "offers", "label": "Offers by score", "sort": "Score__c desc",
                              "filters": [{"field": "Stage__c", "op": "=", "value": "Offer"}]}],
              "indexes": [{"group_by": ["Stage__c"], "include": ["Score__c"]},
                          {"group_by": ["Source__c", "Stage__c"], "include": ["Applied_Date__c"]}],
              "layouts": {"default": {"sections": [{"label": "Applicant", "columns": 2,
                                                    "fields": ["Name", "Stage__c", "Score__c", "Email__c"]}],
                                      "related": [f"{c[:-3]}s__r" for c in CHILDREN]}}}
    kids = [{"object": c, "label": c[:-3], "plural_label": c[:-3] + "s", "sharing": "controlled_by_parent",
             "fields": [{"name": "Applicant__c", "type": "master_detail", "to": "Applicant__c",
                         "child_relationship_name": f"{c[:-3]}s__r"},
                        {"name": "Result__c", "type": "picklist", "values": ["Pass", "Fail", "Pending"]}]}
            for c in CHILDREN]
    other = [{"object": f"Extra{i}__c", "label": f"Extra {i}", "plural_label": f"Extras {i}",
              "fields": [{"name": "Kind__c", "type": "picklist", "values": ["A", "B", "C"]}]} for i in range(2)]
    return [parent, *kids, *other]


def people(ctx: Any) -> tuple[int, int]:
    """A lead recruiter and a junior recruiter who reports to them (roles), Standard Users with a permission set
    for the applicant objects; returns their user keys."""
    sysctx = system_context(ctx, "web bench set-up")
    edit = ("read", "create", "edit")
    fields = {f"Applicant__c.{f}": (True, True) for f in ("Stage__c", "Score__c", "Email__c", "Source__c",
                                                          "Applied_Date__c")}
    fields.update({f"{c}.{f}": (True, True) for c in CHILDREN for f in ("Applicant__c", "Result__c")})
    with ctx.db.transaction() as conn:
        create_role(sysctx, conn, "Lead Recruiter")
        create_role(sysctx, conn, "Junior Recruiter", parent="Lead Recruiter")
        deploy_permission_set(sysctx, conn, PermissionSetSpec(
            "Applicants", "Applicants", False, (), {o: edit for o in ("Applicant__c", *CHILDREN)}, fields))
    keys = []
    for username, role in ((RECRUITER, "Lead Recruiter"), (JUNIOR, "Junior Recruiter")):
        uid = create_user(sysctx, username=username, password=PASSWORD, last_name=role.split()[0], email=username,
                          profile="Standard User", role=role)
        with ctx.db.transaction() as conn:
            assign_permission_set(sysctx, conn, uid, "Applicants")
        keys.append(ids.decode(uid, "005"))
    return keys[0], keys[1]


def owner_of(i: int, recruiter: int, junior: int) -> int:
    """5% of the applicants are the recruiter's, 5% their junior's, the rest the administrator's (user 2)."""
    return recruiter if i % 20 == 0 else junior if i % 20 == 1 else 2


def build(url: str, data_dir: Path, rows: int) -> tuple[Any, float]:
    ctx = open_context(url, settings=Settings(database_url=url, data_dir=str(data_dir)))
    init_org(ctx, admin_username=ADMIN, admin_password=PASSWORD)
    with ctx.db.read() as conn:
        before = load_snapshot(conn)
    apply_plan(ctx.db, plan(before, [parse_object(d) for d in objects()]), ctx.metadata)
    recruiter, junior = people(ctx)
    schema = ctx.schema()
    rng = random.Random(7)
    today = date.today()
    base = {"created_date": NOW, "last_modified_date": NOW, "system_modstamp": NOW, "is_deleted": False,
            "created_by_id": 2, "last_modified_by_id": 2, "owner_id": 2}
    obj = schema.get_object("Applicant__c")
    col = {f.api_name: f.column or "" for f in obj.fields}
    t = table_for(schema, obj)
    t0 = time.perf_counter()
    for start in range(0, rows, 20_000):
        with ctx.db.transaction() as conn:
            conn.execute(sa.insert(t), [
                {**base, "id": i + 1, "owner_id": owner_of(i, recruiter, junior), col["Name"]: f"Applicant {i:08d}",
                 col["Stage__c"]: rng.choice(STAGES), col["Score__c"]: rng.randrange(100),
                 col["Email__c"]: f"a{i}@example.com", col["Source__c"]: rng.choice(SOURCES),
                 col["Applied_Date__c"]: today - timedelta(days=rng.randrange(365))}
                for i in range(start, min(rows, start + 20_000))])
    for c in CHILDREN:  # 5 children of each kind on the first 2,000 applicants
        child = schema.get_object(c)
        cc = {f.api_name: f.column or "" for f in child.fields}
        with ctx.db.transaction() as conn:
            conn.execute(sa.insert(table_for(schema, child)), [
                {**base, "id": k + 1, cc["Name"]: f"{c[:-3]} {k}", cc["Applicant__c"]: k // 5 + 1,
                 cc["Result__c"]: rng.choice(("Pass", "Fail", "Pending"))} for k in range(10_000)])
    if ctx.db.dialect == "postgresql":  # what autovacuum does after a bulk load: statistics and the visibility
        # map, without which a covering (report) index cannot answer a GROUP BY by an index-only scan
        with ctx.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM ANALYZE {table_for(schema, obj).name}")
            conn.exec_driver_sql("ANALYZE")
    return ctx, time.perf_counter() - t0


def timed(client: TestClient, path: str, n: int) -> tuple[list[float], list[float]]:
    """Server time from the app's ``Server-Timing`` header (session check, SOQL, rendering), and the in-process
    round trip including the test client's thread hop (wall)."""
    out, wall = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        wall.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        out.append(float(r.headers["server-timing"].split("dur=")[1]))
    return out, wall


def signed_in(app: Any, username: str) -> TestClient:
    c = TestClient(app)
    c.get("/login")
    r = c.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": c.cookies.get("keel_lcsrf")},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    return c


def csrf(c: TestClient) -> str:
    m = re.search(r'name="csrf-token" content="([0-9a-f]+)"', c.get("/reports").text)
    assert m
    return m.group(1)


def hiring_dashboard(c: TestClient) -> str:
    """The six reports and the shared dashboard, saved through the builders as the administrator would."""
    token = csrf(c)
    for name, params in REPORTS.items():
        r = c.post("/reports/save", data={"obj": "Applicant__c", **params, "name": name, "shared": "on",
                                          "label": name.replace("_", " "), "csrf_token": token},
                   follow_redirects=False)
        assert r.status_code == 303, r.text[:500]
    parts = {}
    for i, (name, chart) in enumerate(zip(REPORTS, CHARTS, strict=True)):
        parts.update({f"report{i}": name, f"chart{i}": chart, f"title{i}": ""})
    r = c.post("/dashboards/build", data={"name": "Hiring", "label": "Hiring", "shared": "on", "op": "save",
                                          "csrf_token": token, **parts}, follow_redirects=False)
    assert r.status_code == 303, r.text[:500]
    return "/dashboards/Hiring"


def measure(c: TestClient, rec: str, dash: str, n: int) -> dict[str, tuple[list[float], list[float]]]:
    """The same screens for whoever ``c`` is signed in as; the deep page is that user's own 21st keyset page."""
    first = "/o/Applicant__c"
    page = c.get(first).text
    deep = first
    for _ in range(20):  # walk 20 pages in: a keyset page costs what the first costs
        m = re.search(r'hx-get="(/o/Applicant__c\?[^"]*after=[^"]*)"', page)
        assert m
        deep = m.group(1).replace("&amp;", "&")
        page = c.get(deep).text
    filtered = "/o/Applicant__c?ff=Stage__c&fo=%3D&fv=Offer&sort=Score__c&dir=desc"
    shown = c.get(dash).text
    assert c.get(rec).text.count('class="card related"') == 3
    assert shown.count("<svg") == 5 and shown.count('class="metric"') == 1 and 'role="alert"' not in shown, shown
    timed(c, first, 20)
    return {
        "list view, first page": timed(c, first, n),
        "list view, page 21 (keyset)": timed(c, deep, n),
        "list view, filtered + sorted by number": timed(c, filtered, n),
        "capped count (2,000+)": timed(c, "/o/Applicant__c/count", max(20, n // 4)),
        "record page, 3 related lists": timed(c, rec, n),
        "dashboard, 6 components (Refresh: recomputed)": timed(c, dash + "?refresh=1", 5),
        "dashboard, 6 components (cached, 60 s)": timed(c, dash, 20),
    }


BUDGETS = {"list view, first page": 30.0, "list view, page 21 (keyset)": 30.0,
           "list view, filtered + sorted by number": 30.0, "record page, 3 related lists": 40.0}


def report(who: str, results: dict[str, tuple[list[float], list[float]]]) -> bool:
    """Print one user's figures; False when a budget is missed."""
    ok_all = True
    print(f"\nas {who}")
    print(f"{'benchmark (server time)':<48} {'p50 ms':>9} {'p95 ms':>9} {'wall p50':>9}  budget")
    for name, (xs, walls) in results.items():
        xs = sorted(xs)
        p50, p95, wall = statistics.median(xs), xs[max(0, int(len(xs) * 0.95) - 1)], statistics.median(walls)
        ok = True
        if name.startswith("dashboard") and "cached" in name:  # what a second viewer within 60 s gets: info
            verdict = f"max {max(xs):.0f} ms (cached)"
        elif name.startswith("dashboard"):  # the budget: all six components computed, as after Refresh
            ok = max(xs) <= 1000.0
            verdict = f"max {max(xs):.0f} ms <= 1000 ms " + ("ok" if ok else "MISSED")
        else:
            b = BUDGETS.get(name)
            ok = b is None or p50 <= b
            verdict = f"p50 <= {b:.0f} ms " + ("ok" if ok else "MISSED") if b else "-"
        print(f"{name:<48} {p50:9.1f} {p95:9.1f} {wall:9.1f}  {verdict}")
        ok_all &= ok
    return ok_all


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--url")
    ap.add_argument("--dir")
    ap.add_argument("--n", type=int, default=200)
    a = ap.parse_args()
    tmp = Path(a.dir or tempfile.mkdtemp(prefix="keel-web-bench-"))
    url = a.url or f"sqlite:///{tmp / 'web.db'}"
    ctx, load_s = build(url, tmp / ".keel", a.rows)
    print(f"loaded {a.rows:,} applicants in {load_s:.1f} s ({ctx.db.dialect})")
    app = build_app(ctx)
    rec = f"/r/{ids.encode(ctx.schema().get_object('Applicant__c').key_prefix, 1)}"  # the recruiter's own
    with signed_in(app, ADMIN) as admin, signed_in(app, RECRUITER) as recruiter:
        dash = hiring_dashboard(admin)
        rid = query(ctx, f"SELECT Id FROM User WHERE Username = '{RECRUITER}'")["records"][0]["Id"]
        sees = query(user_context(ctx, rid), "SELECT COUNT() FROM Applicant__c")["totalSize"]
        print(f"the recruiter sees {sees:,} of {a.rows:,} applicants (own 5% + their junior's 5%, Private sharing)")
        results = {"administrator": measure(admin, rec, dash, a.n),
                   "recruiter (Private sharing, role hierarchy)": measure(recruiter, rec, dash, a.n)}
    failed = False
    for who, res in results.items():
        failed |= not report(who, res)
    ctx.db.dispose()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
