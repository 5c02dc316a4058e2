"""Recruiting: stage rules, gates, duplicates, adjudication, sensitive fields, and the calibrated sample."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import orjson
import pytest

from keel.apps.recruiting.sample import generate
from keel.context import Context
from keel.records import save_many
from keel.security.audit import audit_rows
from keel.services.query import query
from tests.apps.conftest import outbox_emails, refused, uid


def one(ctx: Context, soql: str) -> dict:
    return query(ctx, soql)["records"][0]


def setup_pipeline(apps: Context, recruiter_id: str, manager_id: str) -> tuple[str, str, str]:
    pos = save_many(apps, "Position__c", [{"Name": "Officer", "Status__c": "Open - Approved", "Approved__c": True,
                                           "Min_Pay__c": 50000, "Max_Pay__c": 80000, "Recruiter__c": recruiter_id,
                                           "Hiring_Manager__c": manager_id, "OwnerId": manager_id}])[0].id
    cand = save_many(apps, "Candidate__c", [{"First_Name__c": "Ann", "Last_Name__c": "Lee", "Email__c": "ann@x.org",
                                             "Phone__c": "555-0100", "SSN__c": "123-45-6789"}])[0].id
    app = save_many(apps, "Job_Application__c", [{"Position__c": pos, "Candidate__c": cand}])[0].id
    assert pos and cand and app
    return pos, cand, app


def test_stage_rules_gates_and_duplicates(apps: Context, persona: Callable[..., Context]) -> None:
    rec = persona("rec", "Recruiting_Recruiter")
    hm = persona("hm", "Recruiting_Hiring_Manager")
    adj = persona("adj", "Recruiting_Background_Adjudicator")
    pos, cand, app = setup_pipeline(apps, uid(rec), uid(hm))
    a = one(apps, f"SELECT Stage__c, Status__c, Recruiter__c, Unique_Key__c FROM Job_Application__c WHERE Id = '{app}'")
    assert a["Stage__c"] == "Applied" and a["Status__c"] == "Active" and a["Recruiter__c"] == uid(rec)
    # Applied -> Hired is refused with the rule's message; one step forward is fine
    refused(rec, "Job_Application__c", [{"Id": app, "Stage__c": "Hired", "Status__c": "Hired"}], "one stage forward")
    save_many(rec, "Job_Application__c", [{"Id": app, "Stage__c": "Entrance Exam"}])
    hist = query(apps, f"SELECT Stage__c, Outcome__c FROM Stage_History__c WHERE Job_Application__c = '{app}'")
    assert [(h["Stage__c"], h["Outcome__c"]) for h in hist["records"]] == [("Applied", "Advanced")]
    # one application per candidate per position; duplicate candidates by email or phone
    refused(rec, "Job_Application__c", [{"Position__c": pos, "Candidate__c": cand}], "duplicate")
    refused(rec, "Candidate__c", [{"Last_Name__c": "Dup", "Email__c": "ANN@x.org"}], "duplicate")
    refused(rec, "Candidate__c", [{"Last_Name__c": "Dup", "Phone__c": "555-0100"}], "duplicate")
    # the adjudicator cannot be the recruiter of the application
    refused(rec, "Assessment__c", [{"Job_Application__c": app, "Gate_Type__c": "Entrance Exam",
                                    "Adjudicator__c": uid(rec)}], "cannot be the recruiter")
    # a failing result needs a right-to-respond date; then it closes the application (flow) and queues a notice
    gate = {"Job_Application__c": app, "Gate_Type__c": "Entrance Exam", "Adjudicator__c": uid(adj),
            "Result__c": "Fail", "Completed_Date__c": str(date.today()), "Cost__c": 45}
    refused(adj, "Assessment__c", [gate], "right-to-respond")
    save_many(adj, "Assessment__c", [{**gate, "Right_To_Respond_Due__c": str(date.today() + timedelta(days=14))}])
    a = one(apps, f"SELECT Status__c, Failure_Reason__c, Total_Gate_Cost__c, Gates_Failed__c FROM Job_Application__c "
                  f"WHERE Id = '{app}'")
    assert (a["Status__c"], a["Failure_Reason__c"]) == ("Failed", "Failed entrance exam")
    assert a["Total_Gate_Cost__c"] == 45 and a["Gates_Failed__c"] == 1
    (notice,) = [m for m in outbox_emails(apps) if "Entrance Exam result" in m["subject"]]
    assert notice["to"] == ["ann@x.org"] and notice["source"] == "flow Failed_Gate_Closes_Application"
    assert "Dear Ann Lee" in notice["body"] and str(date.today() + timedelta(days=14)) in notice["body"]
    # closed is final; withdrawal is recorded apart from failure
    refused(rec, "Job_Application__c", [{"Id": app, "Stage__c": "Structured Interview"}], "closed")
    app2 = save_many(apps, "Job_Application__c", [{"Position__c": pos, "Candidate__c": save_many(
        apps, "Candidate__c", [{"Last_Name__c": "Bo", "Email__c": "bo@x.org"}])[0].id}])[0].id
    refused(rec, "Job_Application__c", [{"Id": app2, "Status__c": "Withdrawn"}], "why the candidate withdrew")
    refused(rec, "Job_Application__c", [{"Id": app2, "Status__c": "Withdrawn", "Withdrawal_Reason__c": "Other",
                                         "Failure_Reason__c": "False statement"}], "failure reason only")
    save_many(rec, "Job_Application__c", [{"Id": app2, "Status__c": "Withdrawn", "Withdrawal_Reason__c": "Other"}])
    # pay range and approval before opening
    refused(hm, "Position__c", [{"Name": "Bad", "Min_Pay__c": 90000, "Max_Pay__c": 80000}], "maximum pay")
    refused(hm, "Position__c", [{"Name": "Sneaky", "Status__c": "Open - Approved"}], "approved")


def test_sensitive_fields_and_record_scoping(apps: Context, persona: Callable[..., Context]) -> None:
    rec = persona("rec", "Recruiting_Recruiter")
    hm = persona("hm", "Recruiting_Hiring_Manager")
    hm2 = persona("hm2", "Recruiting_Hiring_Manager")
    bg = persona("bg", "Recruiting_Background_Adjudicator")
    med = persona("med", "Recruiting_Medical_Adjudicator")
    pos, cand, app = setup_pipeline(apps, uid(rec), uid(hm))
    save_many(apps, "Assessment__c", [{"Job_Application__c": app, "Gate_Type__c": "Polygraph",
                                       "Polygraph_Findings__c": "admitted", "Medical_Findings__c": "ok"}])
    assert one(bg, f"SELECT SSN__c FROM Candidate__c WHERE Id = '{cand}'")["SSN__c"] == "123-45-6789"
    poly = persona("poly", "Recruiting_Polygraph_Adjudicator")
    assert one(poly, "SELECT Polygraph_Findings__c FROM Assessment__c")["Polygraph_Findings__c"] == "admitted"
    with apps.db.read() as conn:  # each authorised read of a sensitive field is audited, naming who and what
        reads = [(r["actor_id"], r["object"], orjson.loads(str(r["detail"]))["fields"])
                 for r in audit_rows(conn, action="sensitive_read")]
    assert reads == [(bg.actor.user_id, "Candidate__c", ["SSN__c"]),
                     (poly.actor.user_id, "Assessment__c", ["Polygraph_Findings__c"])]
    for ctx in (hm, rec, med):
        r = query(ctx, f"SELECT Id, Name FROM Candidate__c WHERE Id = '{cand}'")["records"]
        assert r and "SSN__c" not in r[0]
        refused_read(ctx, f"SELECT SSN__c FROM Candidate__c WHERE Id = '{cand}'")
    refused_read(med, "SELECT Polygraph_Findings__c FROM Assessment__c")
    assert one(med, "SELECT Medical_Findings__c FROM Assessment__c")["Medical_Findings__c"] == "ok"
    # hiring managers see their own positions and those positions' applications only
    assert [r["Id"] for r in query(hm, "SELECT Id FROM Position__c")["records"]] == [pos]
    assert query(hm2, "SELECT Id FROM Position__c")["records"] == []
    assert query(hm2, "SELECT Id FROM Job_Application__c")["records"] == []


def refused_read(ctx: Context, soql: str) -> None:
    import pytest

    from keel.errors import KeelError

    with pytest.raises(KeelError):
        query(ctx, soql)


def test_interviewers_see_only_their_own_reviews(apps: Context, persona: Callable[..., Context]) -> None:
    rec = persona("rec", "Recruiting_Recruiter")
    i1 = persona("i1", "Recruiting_Interviewer")
    i2 = persona("i2", "Recruiting_Interviewer")
    _, _, app = setup_pipeline(apps, uid(rec), uid(rec))
    for who, scores in ((i1, (4, 5, 3)), (i2, (2, 2, 2))):
        iv = save_many(apps, "Interview__c", [{"Job_Application__c": app, "OwnerId": uid(who)}])[0].id
        save_many(who, "Review__c", [{"Interview__c": iv, "Criterion__c": c, "Score__c": s}
                                     for c, s in zip(("Integrity", "Judgment", "Teamwork"), scores, strict=True)])
    mine = query(i1, "SELECT Score__c FROM Review__c")["records"]
    assert sorted(r["Score__c"] for r in mine) == [3, 4, 5]
    # their interview names its application, but they see no application (nor its position) itself
    assert query(i1, "SELECT Job_Application__r.Name FROM Interview__c")["records"][0]["Job_Application__r"] is None
    assert not query(i1, "SELECT Id FROM Job_Application__c")["records"]
    avg = query(rec, "SELECT Average_Score__c FROM Interview__c ORDER BY Average_Score__c")["records"]
    assert [r["Average_Score__c"] for r in avg] == [2, 4]
    refused(i1, "Review__c", [{"Interview__c": query(apps, "SELECT Id FROM Interview__c")["records"][0]["Id"],
                               "Criterion__c": "Integrity", "Score__c": 7}], "1 (poor) to 5")


def test_sample_is_calibrated(apps: Context) -> None:
    counts = generate(apps, 500)
    assert counts["Job_Application__c"] == 525
    rows = {r["Status__c"]: r["n"] for r in query(apps, "SELECT Status__c, COUNT(Id) n FROM Job_Application__c "
                                                         "GROUP BY Status__c")["records"]}
    resolved = rows["Hired"] + rows["Failed"] + rows["Withdrawn"]
    assert 40 <= resolved / rows["Hired"] <= 60
    days = one(apps, "SELECT AVG(Days_To_Hire__c) d FROM Job_Application__c WHERE Status__c = 'Hired'")["d"]
    assert 240 <= days <= 340
    poly = {r["Result__c"]: r["n"] for r in query(apps, "SELECT Result__c, COUNT(Id) n FROM Assessment__c WHERE "
                                                        "Gate_Type__c = 'Polygraph' AND Result__c != 'Pending' "
                                                        "GROUP BY Result__c")["records"]}
    fail_rate = poly.get("Fail", 0) / sum(poly.values())
    assert 0.6 <= fail_rate <= 0.8
    hist = one(apps, "SELECT COUNT(Id) n FROM Stage_History__c")["n"]
    assert hist >= resolved
    from keel.services.apps import app_reports, run_app_report

    reports = {r.name: run_app_report(apps, "recruiting", r.name)[1] for r in app_reports("recruiting")}
    assert all(reports.values()), [k for k, v in reports.items() if not v]
    funnel = {r["Stage__c"]: r for r in reports["funnel"]}
    # the rates are computed by the report: check them against the stage history rows themselves
    for stage in ("Applied", "Polygraph"):
        rows_ = query(apps, f"SELECT Outcome__c, Job_Application__r.Status__c st FROM Stage_History__c "
                            f"WHERE Stage__c = '{stage}'")["records"]
        decided = [r for r in rows_ if r["Outcome__c"]]
        moved = sum(r["Outcome__c"] in ("Advanced", "Hired") for r in decided)
        closed = [r for r in rows_ if r["Job_Application__r"]["Status__c"] in ("Hired", "Failed", "Withdrawn")]
        hired = sum(r["Job_Application__r"]["Status__c"] == "Hired" for r in closed)
        got = funnel[stage]
        assert (got["entered"], got["decided"]) == (len(rows_), len(decided))
        assert abs(got["conversion_pct"] - 100 * moved / len(decided)) < 0.01
        assert abs(got["to_hire_pct"] - 100 * hired / len(closed)) < 0.01
    assert 0.6 < funnel["Applied"]["conversion_pct"] / 100 < 0.9 and funnel["Polygraph"]["conversion_pct"] < 40
    assert funnel["Final Offer"]["to_hire_pct"] > funnel["Applied"]["to_hire_pct"]
    # cost per hire per requisition is its gate spend over its hires, blank without a hire; the Total line is
    # every gate's cost over every hire
    for r in reports["cost_per_hire"]:
        want = r["gate_cost"] / r["hires"] if r["hires"] else None
        assert r["cost_per_hire"] == pytest.approx(want), r
    from keel.services.apps import run_app_report_totals

    per_hire = run_app_report_totals(apps, "recruiting", "applicants_per_hire")[2]["applicants_per_hire"]
    assert per_hire == round(sum(rows.values()) / rows["Hired"], 1)  # every application of every requisition
    total = run_app_report_totals(apps, "recruiting", "cost_per_hire")[2]["cost_per_hire"]
    spend = one(apps, "SELECT SUM(Cost__c) s FROM Assessment__c")["s"]
    assert total is not None and abs(total - spend / rows["Hired"]) < 1e-6
    # wasted spend is derived: the gates whose result came after the application's disqualification date
    wasted = {r["Gate_Type__c"]: r["n"] for r in reports["wasted_spend"]}
    assert set(wasted) <= {"Medical Exam", "Fitness Test 2"} and wasted, wasted
    after = query(apps, "SELECT Completed_Date__c, Job_Application__r.Disqualified_Date__c FROM Assessment__c "
                        "WHERE After_Disqualification__c = true")["records"]
    assert len(after) == sum(wasted.values())
    assert all(r["Completed_Date__c"] > r["Job_Application__r"]["Disqualified_Date__c"] for r in after)


def test_offers_tentative_then_final(apps: Context, persona: Callable[..., Context]) -> None:
    rec = persona("rec", "Recruiting_Recruiter")
    _, _, app = setup_pipeline(apps, uid(rec), uid(rec))
    eod = str(date.today() + timedelta(days=60))
    refused(rec, "Offer__c", [{"Job_Application__c": app, "Status__c": "Accepted"}], "draft or is extended")
    refused(rec, "Offer__c", [{"Job_Application__c": app, "Salary__c": 90000}], "pay range")
    tentative = save_many(rec, "Offer__c", [{"Job_Application__c": app, "Salary__c": 61500}])[0].id
    refused(rec, "Offer__c", [{"Id": tentative, "Status__c": "Accepted"}], "only after it is extended")
    save_many(rec, "Offer__c", [{"Id": tentative, "Status__c": "Extended"}])
    save_many(rec, "Offer__c", [{"Id": tentative, "Status__c": "Accepted"}])
    # the final offer states the entry-on-duty date; a decline states its reason
    final = {"Job_Application__c": app, "Offer_Type__c": "Final", "Status__c": "Extended", "Salary__c": 61500}
    refused(rec, "Offer__c", [final], "entry-on-duty date")
    declined, accepted = (r.id for r in save_many(rec, "Offer__c", [{**final, "Entry_On_Duty_Date__c": eod}] * 2))
    refused(rec, "Offer__c", [{"Id": declined, "Status__c": "Declined"}], "why the offer was declined")
    save_many(rec, "Offer__c", [{"Id": declined, "Status__c": "Declined", "Decline_Reason__c": "Relocation"}])
    refused(rec, "Offer__c", [{"Id": declined, "Status__c": "Accepted"}], "only after it is extended")
    save_many(rec, "Offer__c", [{"Id": accepted, "Status__c": "Accepted"}])
    got = query(rec, f"SELECT Offer_Type__c, Status__c FROM Offer__c WHERE Job_Application__c = '{app}' "
                     f"ORDER BY Name")["records"]
    assert [(o["Offer_Type__c"], o["Status__c"]) for o in got] == [
        ("Tentative", "Accepted"), ("Final", "Declined"), ("Final", "Accepted")]


def test_time_in_stage_and_to_hire_percentiles_match_the_visible_rows(apps: Context,
                                                                      persona: Callable[..., Context]) -> None:
    """The median and p90 of the two reports equal Python's on the rows each user can see: the administrator sees
    every application, a hiring manager only those of the positions they own."""
    import statistics

    from keel.services.apps import run_app_report

    generate(apps, 150)
    hm = persona("hm_pct", "Recruiting_Hiring_Manager")
    positions = [r["Id"] for r in query(apps, "SELECT Id FROM Position__c ORDER BY Name")["records"]]
    save_many(apps, "Position__c", [{"Id": p, "OwnerId": uid(hm)} for p in positions[::3]])

    def p90(values: list[float]) -> float:
        return values[0] if len(values) == 1 else statistics.quantiles(values, n=10, method="inclusive")[-1]

    seen = []
    for who in (apps, hm):
        rows = query(who, "SELECT Stage__c, Days_In_Stage__c FROM Stage_History__c WHERE Left__c != null")["records"]
        by_stage: dict[str, list[float]] = {}
        for r in rows:
            by_stage.setdefault(r["Stage__c"], []).append(float(r["Days_In_Stage__c"]))
        got = {r["Stage__c"]: r for r in run_app_report(who, "recruiting", "time_in_stage")[1]}
        assert set(got) == set(by_stage) and by_stage
        for stage, values in by_stage.items():
            assert got[stage]["n"] == len(values)
            assert abs(got[stage]["median_days"] - statistics.median(values)) < 1e-6, stage
            assert abs(got[stage]["p90_days"] - p90(values)) < 1e-6, stage
        hired = [float(r["Days_To_Hire__c"]) for r in query(
            who, "SELECT Days_To_Hire__c FROM Job_Application__c WHERE Status__c = 'Hired'")["records"]]
        tth = run_app_report(who, "recruiting", "time_to_hire")[1][0]
        assert hired and tth["hires"] == len(hired)
        assert abs(tth["median_days"] - statistics.median(hired)) < 1e-6
        assert abs(tth["p90_days"] - p90(hired)) < 1e-6
        seen.append(len(rows))
    assert 0 < seen[1] < seen[0]  # the manager's figures come from fewer rows, not the whole organisation's


def test_duplicate_phones_are_found_however_they_are_written(apps: Context, persona: Callable[..., Context]) -> None:
    """Candidate phones are compared by their normalised key (a before-save flow, NORMALIZEPHONE), so one number
    written three ways is one candidate, while a foreign number with the same digits is another."""
    rec = persona("rec_ph", "Recruiting_Recruiter")
    first = save_many(rec, "Candidate__c", [{"Last_Name__c": "Ng", "Phone__c": "(202) 555-0100"}])[0].id
    assert one(apps, f"SELECT Phone_Key__c FROM Candidate__c WHERE Id = '{first}'")["Phone_Key__c"] == "2025550100"
    for spelling in ("202-555-0100", "+1 202 555 0100", "1 (202) 555.0100"):
        refused(rec, "Candidate__c", [{"Last_Name__c": "Dup", "Phone__c": spelling}], "duplicate")
    other = save_many(rec, "Candidate__c", [{"Last_Name__c": "Ode", "Phone__c": "+44 202 555 0100"},
                                            {"Last_Name__c": "Ray", "Phone__c": "202-555-0199"}])
    # an edit into another candidate's number is refused too, and the key follows an accepted change
    refused(rec, "Candidate__c", [{"Id": other[1].id, "Phone__c": "(202) 5550100"}], "duplicate")
    save_many(rec, "Candidate__c", [{"Id": other[1].id, "Phone__c": "+1-202-555-0142"}])
    keys = {r["Last_Name__c"]: r["Phone_Key__c"] for r in query(apps, "SELECT Last_Name__c, Phone_Key__c FROM "
                                                                      "Candidate__c")["records"]}
    assert keys == {"Ng": "2025550100", "Ode": "442025550100", "Ray": "2025550142"}


def test_gates_run_in_parallel_only_where_the_requisition_allows(apps: Context,
                                                                 persona: Callable[..., Context]) -> None:
    rec = persona("rec", "Recruiting_Recruiter")
    hm = persona("hm", "Recruiting_Hiring_Manager")
    adj = persona("adj", "Recruiting_Medical_Adjudicator")
    pos, _cand, app = setup_pipeline(apps, uid(rec), uid(hm))
    setting = one(apps, f"SELECT Parallel_Gates__c FROM Position__c WHERE Id = '{pos}'")["Parallel_Gates__c"]
    assert setting == "Medical Exam;Fitness Test 1;Fitness Test 2;Drug Test"  # the default of a new requisition

    def gate(kind: str, **extra: object) -> dict[str, object]:
        return {"Job_Application__c": app, "Gate_Type__c": kind, "Adjudicator__c": uid(adj), **extra}

    done = {"Result__c": "Pass", "Completed_Date__c": str(date.today())}
    # medical and fitness test 1 overlap; a polygraph waits for both
    medical, pft1 = (save_many(rec, "Assessment__c", [gate(k)])[0].id for k in ("Medical Exam", "Fitness Test 1"))
    refused(rec, "Assessment__c", [gate("Polygraph")], "Gates Allowed in Parallel does not include its type")
    refused(rec, "Assessment__c", [gate("Polygraph", Result__c="Deferred")], "Record the open gate's result first")
    a = one(apps, f"SELECT Gates_Pending__c, Gates_Pending_Alone__c FROM Job_Application__c WHERE Id = '{app}'")
    assert (a["Gates_Pending__c"], a["Gates_Pending_Alone__c"]) == (2, 0)
    # a pending gate cannot turn into one that runs alone while the other is open
    refused(adj, "Assessment__c", [{"Id": pft1, "Gate_Type__c": "Polygraph"}], "does not include its type")
    save_many(adj, "Assessment__c", [{"Id": medical, **done}, {"Id": pft1, **done}])
    poly = save_many(rec, "Assessment__c", [gate("Polygraph")])[0].id
    # while the polygraph is open nothing starts, not even a gate that may overlap others
    refused(rec, "Assessment__c", [gate("Drug Test")], "Record its result before starting this gate")
    # reopening a finished gate is opening it again
    refused(adj, "Assessment__c", [{"Id": medical, "Result__c": "Pending"}], "Record its result before starting")
    assert one(apps, f"SELECT Gates_Pending_Alone__c FROM Job_Application__c WHERE Id = '{app}'")[
        "Gates_Pending_Alone__c"] == 1
    save_many(adj, "Assessment__c", [{"Id": poly, **done}])
    # the recruiting director lets the polygraph overlap for this requisition; recruiters cannot change it
    refused(rec, "Position__c", [{"Id": pos, "Parallel_Gates__c": "Polygraph"}], "Parallel_Gates__c")
    save_many(apps, "Position__c", [{"Id": pos, "Parallel_Gates__c": "Polygraph;Drug Test"}])
    save_many(rec, "Assessment__c", [gate("Polygraph"), gate("Drug Test")])
    # reopening a gate beside others is fine when all of their types may overlap
    save_many(rec, "Assessment__c", [{"Id": poly, "Result__c": "Pending", "Completed_Date__c": None}])
    refused(rec, "Assessment__c", [gate("Background Investigation")], "does not include its type")
    # editing an open gate without reopening it or changing its type is not starting it
    save_many(rec, "Assessment__c", [{"Id": poly, "Scheduled_Date__c": str(date.today())}])
