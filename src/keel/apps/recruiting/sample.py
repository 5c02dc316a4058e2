"""Sample data for Recruiting: a public agency's officer hiring, calibrated to domain-research.md §3.

The funnel is deterministic quotas, not coin flips, so the ratios hold at any size: of 10,000 applicants about
200 are hired (50 per hire), about 75% of polygraph takers are disqualified (pre-test admissions included) and
the median days per stage add up to about 275 (mean time to hire about 290-300 days).

Everything goes through the record lifecycle as an ordinary user would do it: applications are created at
Applied and moved one stage at a time (so the stage-transition rules hold), gate results are recorded with an
adjudicator who is not the recruiter, and the app's flows write the stage history and close failed applications.
Install-time only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from keel.apps.samplekit import batched_save, ensure_staff
from keel.context import Context

# stage, pass, withdraw (rest fail), median days, gates run in the stage, failure reason when no gate
FUNNEL: tuple[tuple[str, float, float, int, tuple[str, ...]], ...] = (
    ("Applied", 0.75, 0.05, 7, ()),
    ("Entrance Exam", 0.42, 0.30, 30, ("Entrance Exam",)),
    ("Structured Interview", 0.70, 0.08, 21, ("Structured Interview",)),
    ("Medical and PFT-1", 0.70, 0.10, 30, ("Medical Exam", "Fitness Test 1")),
    ("Polygraph", 0.30, 0.03, 45, ("Polygraph",)),
    ("Background Investigation", 0.60, 0.10, 90, ("Background Investigation",)),
    ("PFT-2 and Drug Test", 0.90, 0.04, 30, ("Fitness Test 2", "Drug Test")),
    ("Final Offer", 0.80, 0.20, 21, ()),
)
COST = {"Entrance Exam": 45, "Structured Interview": 350, "Medical Exam": 650, "Fitness Test 1": 120,
        "Polygraph": 2200, "Background Investigation": 5600, "Fitness Test 2": 120, "Drug Test": 60}
SOURCES = (("Agency Website", 30), ("USAJOBS", 30), ("Career Fair", 12), ("Employee Referral", 10),
           ("Military Transition", 10), ("Social Media", 5), ("College Recruiting", 3))
WITHDRAW = ("Accepted another job", "Length of process", "Personal reasons", "Relocation")
FIRST = (
    "James", "Maria", "Robert", "Ana", "John", "Linda", "Michael", "Sofia", "David", "Elena", "William",
    "Grace", "Carlos", "Aisha", "Daniel", "Mei", "Joseph", "Fatima", "Thomas", "Olivia", "Luis", "Hannah",
    "Kevin", "Priya", "Marcus", "Zoe", "Andre", "Nina", "Omar", "Rosa",
)
LAST = (
    "Garcia", "Smith", "Johnson", "Nguyen", "Williams", "Brown", "Martinez", "Davis", "Lopez", "Wilson",
    "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
    "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
)
STAFF = {"recruiter": ("recruiter@keel.local", "Recruiting_Recruiter"),
         "recruiter2": ("recruiter2@sample.keel.local", "Recruiting_Recruiter"),
         "adjudicator": ("adjudicator@keel.local", "Recruiting_Background_Adjudicator"),
         "adjudicator2": ("adjudicator2@sample.keel.local", "Recruiting_Medical_Adjudicator"),
         "adjudicator3": ("adjudicator3@sample.keel.local", "Recruiting_Polygraph_Adjudicator"),
         "manager": ("hiringmanager@keel.local", "Recruiting_Hiring_Manager"),
         "interviewer": ("interviewer@sample.keel.local", "Recruiting_Interviewer"),
         "interviewer2": ("interviewer2@sample.keel.local", "Recruiting_Interviewer")}


@dataclass(slots=True)
class Path:
    """One applicant's journey: stage index reached, outcome, and the day each stage was entered."""
    applied: date
    entered: list[date] = field(default_factory=list)
    outcome: str = "Active"  # Withdrawn | Failed | Hired | Active


def plan_funnel(n: int, rng: random.Random, today: date) -> list[Path]:
    paths = [Path(date.min) for _ in range(n)]
    alive = list(range(n))
    days: list[list[int]] = [[] for _ in range(n)]
    for _stage, p_pass, p_wd, median, _gates in FUNNEL:
        rng.shuffle(alive)
        m = len(alive)
        n_pass, n_wd = round(m * p_pass), round(m * p_wd)
        for rank, i in enumerate(alive):
            days[i].append(max(1, round(median * math.exp(rng.gauss(0, 0.35)))))
            if rank >= n_pass:
                paths[i].outcome = "Withdrawn" if rank < n_pass + n_wd else "Failed"
        alive = sorted(alive[:n_pass])
    for i in alive:
        paths[i].outcome = "Hired"
    for i, p in enumerate(paths):
        start = today - timedelta(days=sum(days[i]) + rng.randint(1, 60))
        p.applied = start
        d = start
        for k in days[i]:
            p.entered.append(d)
            d += timedelta(days=k)
        p.entered.append(d)  # the day the last stage was left (hire, failure or withdrawal)
    return paths


def generate(ctx: Context, n: int = 10_000, *, seed: int = 7, today: date | None = None) -> dict[str, int]:
    """Make an agency with ``n`` resolved applicants (plus about 5% still in flight); returns counts."""
    rng = random.Random(seed)
    today = today or date.today()
    staff = ensure_staff(ctx, STAFF)
    hires = max(1, round(n / 50))
    n_pos = max(2, min(12, n // 1000))
    positions = batched_save(ctx, "Position__c", [{
        "Name": f"{t} ({loc})", "Department__c": dept, "Location__c": loc, "Status__c": "Open - Approved",
        "Approved__c": True, "Authorised_Headcount__c": math.ceil(hires / n_pos * 1.25), "Min_Pay__c": 52000,
        "Max_Pay__c": 89000, "Open_Date__c": today - timedelta(days=420), "Hiring_Manager__c": staff["manager"],
        "Recruiter__c": staff["recruiter" if i % 2 == 0 else "recruiter2"], "OwnerId": staff["manager"],
    } for i, (t, dept, loc) in enumerate(
        (("Officer", "Field Operations", city), ("Agent", "Border Security", city))[i % 2]
        for i, city in enumerate(["El Paso", "San Diego", "Tucson", "Laredo", "Miami", "Detroit",
                                  "Buffalo", "Seattle", "Houston", "Newark", "Chicago", "Phoenix"][:n_pos]))])
    in_flight = max(1, n // 20)
    total = n + in_flight
    weights = [w for _, w in SOURCES]
    cands = batched_save(ctx, "Candidate__c", ({
        "First_Name__c": rng.choice(FIRST), "Last_Name__c": rng.choice(LAST), "Email__c": f"applicant{i}@example.net",
        "Phone__c": f"+1 555 {i // 10000:03d} {i % 10000:04d}", "Source__c": rng.choices(SOURCES, weights)[0][0],
        "Veteran__c": rng.random() < 0.18, "US_Citizen__c": True,
        "SSN__c": f"9{rng.randint(0, 99):02d}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        "Date_of_Birth__c": today - timedelta(days=rng.randint(21 * 365, 39 * 365)),
    } for i in range(total)))
    paths = plan_funnel(n, rng, today)
    # In-flight applicants: applied recently, currently somewhere in the first stages.
    for _ in range(in_flight):
        p = Path(today - timedelta(days=rng.randint(0, 150)))
        d = p.applied
        for _stage, _p, _w, median, _g in FUNNEL[:rng.randint(1, 5)]:
            p.entered.append(d)
            d += timedelta(days=max(1, round(median * math.exp(rng.gauss(0, 0.35)))))
            if d > today:
                break
        p.entered.append(d)
        paths.append(p)
    apps = batched_save(ctx, "Job_Application__c", ({
        "Position__c": positions[i % len(positions)], "Candidate__c": cands[i], "Applied_Date__c": p.applied,
        "Stage_Entered_Date__c": p.applied} for i, p in enumerate(paths)))
    counts = {"Position__c": len(positions), "Candidate__c": len(cands), "Job_Application__c": len(apps)}
    _walk(ctx, rng, staff, apps, paths, today, counts)
    return counts


def _walk(ctx: Context, rng: random.Random, staff: dict[str, str], apps: list[str], paths: list[Path],
          today: date, counts: dict[str, int]) -> None:
    """Move every application through the funnel stage by stage, in batches."""
    adjudicators = [staff["adjudicator"], staff["adjudicator2"], staff["adjudicator3"]]
    for k, (stage, _p, _w, _median, gates) in enumerate(FUNNEL):
        here = [i for i, p in enumerate(paths) if len(p.entered) - 2 >= k]
        if not here:
            break
        moves = [i for i in here if len(paths[i].entered) - 2 > k or paths[i].outcome == "Hired"]
        last = [i for i in here if len(paths[i].entered) - 2 == k and paths[i].outcome in ("Failed", "Withdrawn")]
        active = [i for i in here if len(paths[i].entered) - 2 == k and paths[i].outcome == "Active"]
        left_on = {i: paths[i].entered[k + 1] for i in last + moves}
        fail = [i for i in last if paths[i].outcome == "Failed"]
        wd = [i for i in last if paths[i].outcome == "Withdrawn"]
        counts["Assessment__c"] = counts.get("Assessment__c", 0) + len(batched_save(
            ctx, "Assessment__c", _gate_rows(rng, apps, paths, k, gates, adjudicators, moves, fail, active, left_on)))
        if stage == "Structured Interview":
            _interviews(ctx, rng, staff, apps, paths, moves + fail, k, counts)
        if stage == "Final Offer":
            _offers(ctx, apps, paths, moves + wd, k, counts)
        batched_save(ctx, "Job_Application__c", _stage_updates(rng, apps, stage, k, gates, fail, wd, moves, left_on))


def _gate_rows(rng: random.Random, apps: list[str], paths: list[Path], k: int, gates: tuple[str, ...],
               adjudicators: list[str], moves: list[int], fail: list[int], active: list[int],
               left_on: dict[int, date]) -> Iterator[dict[str, Any]]:
    """The gate results of stage ``k``: passes first, failures last (a failing gate's flow closes the
    application), made as they are saved so a stage of a million applicants is never all in memory; only the
    failures wait."""
    failing, pending = set(fail), set(active)  # membership per row: sets, or a million applicants take days
    failures: list[dict[str, Any]] = []
    for i in moves + fail + active:
        # where gates run in parallel, half the failures come back first while the other gate is still
        # being run: that gate is then run after the disqualification (wasted spend, derived by a formula)
        early = i in failing and len(gates) > 1 and rng.random() < 0.5
        for g in gates:
            failed = i in failing and g == gates[-1]
            done = None if i in pending else left_on[i] - timedelta(days=3)
            if done is not None and failed and early:
                done = max(paths[i].entered[k], done - timedelta(days=7))
            row: dict[str, Any] = {
                "Job_Application__c": apps[i], "Gate_Type__c": g, "Cost__c": COST[g],
                "Adjudicator__c": rng.choice(adjudicators), "Scheduled_Date__c": paths[i].entered[k],
                "Result__c": "Pending" if done is None else ("Fail" if failed else "Pass"),
                "Completed_Date__c": done,
            }
            if failed and done is not None:
                row["Right_To_Respond_Due__c"] = done + timedelta(days=14)
            if g in ("Fitness Test 1", "Fitness Test 2") and done is not None:
                row["Valid_Until__c"] = done + timedelta(days=180)
            if row["Result__c"] == "Pass" and g == "Polygraph" and rng.random() < 0.05:
                row.update(Result__c="Waived - Reciprocity", Reciprocity_Agency__c="DEA", Cost__c=0)
            if row["Result__c"] == "Fail":
                failures.append(row)
            else:
                yield row
    yield from failures


def _stage_updates(rng: random.Random, apps: list[str], stage: str, k: int, gates: tuple[str, ...], fail: list[int],
                   wd: list[int], moves: list[int], left_on: dict[int, date]) -> Iterator[dict[str, Any]]:
    """The applications leaving ``stage``: failed without a gate, withdrawn, or moved on (made as they are saved)."""
    if not gates:  # no gate result to close them: minimum qualifications
        yield from ({"Id": apps[i], "Status__c": "Failed", "Closed_Date__c": left_on[i],
                     "Failure_Reason__c": "Did not meet minimum qualifications"} for i in fail)
    yield from ({"Id": apps[i], "Status__c": "Withdrawn", "Closed_Date__c": left_on[i],
                 "Withdrawal_Reason__c": "Accepted another job" if stage == "Final Offer" else rng.choice(WITHDRAW)}
                for i in wd)
    nxt = FUNNEL[k + 1][0] if k + 1 < len(FUNNEL) else "Hired"
    for i in moves:
        u = {"Id": apps[i], "Stage__c": nxt, "Stage_Entered_Date__c": left_on[i]}
        if nxt == "Hired":
            u.update(Status__c="Hired", Hired_Date__c=left_on[i], Closed_Date__c=left_on[i])
        yield u


def _interviews(ctx: Context, rng: random.Random, staff: dict[str, str], apps: list[str], paths: list[Path],
                who: list[int], k: int, counts: dict[str, int]) -> None:
    """Two interviewers per applicant for the first 200 interviewed, each scoring three criteria."""
    rows, keys = [], []
    for i in who[:200]:
        for owner in (staff["interviewer"], staff["interviewer2"]):
            rows.append({"Job_Application__c": apps[i], "OwnerId": owner, "Status__c": "Completed",
                         "Recommendation__c": rng.choice(["Strongly Recommend", "Recommend", "Do Not Recommend"]),
                         "Interview_Date__c": f"{paths[i].entered[k] + timedelta(days=5)}T15:00:00Z"})
            keys.append(i)
    ids = batched_save(ctx, "Interview__c", rows)
    reviews = [{"Interview__c": iid, "Criterion__c": c, "Score__c": rng.randint(2, 5)}
               for iid in ids for c in ("Integrity", "Judgment", "Communication")]
    counts["Interview__c"] = len(ids)
    counts["Review__c"] = len(batched_save(ctx, "Review__c", reviews))


def _offers(ctx: Context, apps: list[str], paths: list[Path], who: list[int], k: int,
            counts: dict[str, int]) -> None:
    rows = [{"Job_Application__c": apps[i], "Offer_Type__c": "Final", "Status__c": "Extended", "Salary__c": 61500,
             "Extended_Date__c": paths[i].entered[k], "Response_Due__c": paths[i].entered[k] + timedelta(days=14),
             "Entry_On_Duty_Date__c": paths[i].entered[k + 1]} for i in who]
    ids = batched_save(ctx, "Offer__c", rows)
    accepted = {i for i in who if paths[i].outcome == "Hired"}
    batched_save(ctx, "Offer__c", [
        {"Id": oid, "Status__c": "Accepted" if i in accepted else "Declined", "Responded_Date__c": paths[i].entered[k]
         + timedelta(days=7), **({} if i in accepted else {"Decline_Reason__c": "Accepted another job"})}
        for oid, i in zip(ids, who, strict=True)])
    counts["Offer__c"] = len(ids)
