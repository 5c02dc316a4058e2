"""Every Recruiting rule that refuses a write, hit through the REST API as the persona who would hit it.

The data each case needs is set up in process as the administrator; only the refused write goes over HTTP, so a
failure here is the API's answer: 400, the error code and the rule's message (``tests/apps/rest.py``).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from keel.context import Context
from keel.records import save_many
from keel.services.automation import submit_for_approval
from tests.apps.rest import Rest, assert_code, assert_rule
from tests.apps.test_recruiting import setup_pipeline

TODAY = date.today()


def new(ctx: Context, obj: str, draft: dict[str, Any]) -> str:
    rid = save_many(ctx, obj, [draft])[0].id
    assert rid is not None
    return rid


def application(apps: Context, pos: str, email: str, **extra: Any) -> str:
    cand = new(apps, "Candidate__c", {"Last_Name__c": email.split("@")[0], "Email__c": email})
    app = new(apps, "Job_Application__c", {"Position__c": pos, "Candidate__c": cand})
    if extra:
        save_many(apps, "Job_Application__c", [{"Id": app, **extra}])
    return app


def test_applications_and_candidates(apps: Context, rest: Rest) -> None:
    rec = rest.login("rec", "Recruiting_Recruiter")
    pos, cand, app = setup_pipeline(apps, rec.id, rec.id)
    assert_rule(rec.patch("Job_Application__c", app, {"Stage__c": "Hired", "Status__c": "Hired"}),
                "Job_Application__c.Legal_Stage_Transition")
    assert_rule(rec.patch("Job_Application__c", app, {"Status__c": "Hired"}),
                "Job_Application__c.Hired_Status_Matches_Stage")
    assert_rule(rec.patch("Job_Application__c", app, {"Status__c": "Withdrawn"}),
                "Job_Application__c.Withdrawal_Needs_Reason")
    assert_rule(rec.patch("Job_Application__c", app, {"Status__c": "Failed"}),
                "Job_Application__c.Failure_Needs_Reason")
    assert_rule(rec.patch("Job_Application__c", app, {"Withdrawal_Reason__c": "Relocation"}),
                "Job_Application__c.Withdrawal_Is_Not_Failure")
    assert_rule(rec.patch("Job_Application__c", app, {"Unique_Key__c": "C-1/REQ-1"}),
                "Job_Application__c.One_Application_Per_Position")
    other = new(apps, "Candidate__c", {"Last_Name__c": "Kim", "Email__c": "kim@x.org"})
    assert_rule(rec.post("Job_Application__c", {"Position__c": pos, "Candidate__c": other,
                                                "Stage__c": "Entrance Exam"}),
                "Job_Application__c.New_Applications_Start_At_Applied")
    draft = new(apps, "Position__c", {"Name": "Not yet approved", "Recruiter__c": rec.id})
    assert_rule(rec.post("Job_Application__c", {"Position__c": draft, "Candidate__c": other}),
                "Job_Application__c.Position_Must_Be_Open")
    rec.updated("Job_Application__c", app, {"Status__c": "Withdrawn", "Withdrawal_Reason__c": "Relocation"})
    assert_rule(rec.patch("Job_Application__c", app, {"Stage__c": "Entrance Exam"}),
                "Job_Application__c.Closed_Applications_Are_Final")
    assert_rule(rec.post("Candidate__c", {"Last_Name__c": "Nobody"}), "Candidate__c.Email_Or_Phone")
    assert_rule(rec.post("Stage_History__c", {"Job_Application__c": app, "Stage__c": "Applied",
                                              "Entered__c": str(TODAY), "Left__c": str(TODAY - timedelta(days=1))}),
                "Stage_History__c.Left_After_Entered")
    # a recruiter cannot write an SSN at all (sensitive); whoever keys candidates in with one is held to the format
    assert_code(rec.patch("Candidate__c", cand, {"SSN__c": "123456789"}), 400, "INVALID_FIELD_FOR_INSERT_UPDATE")
    admin = rest.login("sysadmin", profile="System Administrator")
    assert_rule(admin.patch("Candidate__c", cand, {"SSN__c": "123456789"}), "Candidate__c.SSN_Format")


def test_gates(apps: Context, rest: Rest) -> None:
    rec = rest.login("rec", "Recruiting_Recruiter")
    adj = rest.login("adj", "Recruiting_Medical_Adjudicator")
    pos, _cand, app = setup_pipeline(apps, rec.id, rec.id)

    def gate(kind: str, **extra: Any) -> dict[str, Any]:
        return {"Job_Application__c": app, "Gate_Type__c": kind, "Adjudicator__c": adj.id, **extra}

    assert_rule(rec.post("Assessment__c", gate("Entrance Exam", Adjudicator__c=rec.id)),
                "Assessment__c.Adjudicator_Is_Not_Recruiter")
    exam = rec.created("Assessment__c", gate("Entrance Exam", Adjudicator__c=None))
    assert_rule(adj.patch("Assessment__c", exam, {"Result__c": "Pass", "Completed_Date__c": str(TODAY)}),
                "Assessment__c.Result_Needs_Adjudicator")
    assert_rule(adj.patch("Assessment__c", exam, {"Result__c": "Pass", "Adjudicator__c": adj.id}),
                "Assessment__c.Result_Needs_Date")
    assert_rule(adj.patch("Assessment__c", exam, {"Result__c": "Fail", "Adjudicator__c": adj.id,
                                                  "Completed_Date__c": str(TODAY)}),
                "Assessment__c.Adverse_Result_Needs_Right_To_Respond")
    assert_rule(adj.patch("Assessment__c", exam, {"Result__c": "Waived - Reciprocity", "Adjudicator__c": adj.id,
                                                  "Completed_Date__c": str(TODAY)}),
                "Assessment__c.Reciprocity_Needs_Agency")
    adj.updated("Assessment__c", exam, {"Result__c": "Pass", "Adjudicator__c": adj.id,
                                        "Completed_Date__c": str(TODAY)})
    # the requisition lets medical and fitness test 1 overlap, not the polygraph
    rec.created("Assessment__c", gate("Medical Exam"))
    rec.created("Assessment__c", gate("Fitness Test 1"))
    assert_rule(rec.post("Assessment__c", gate("Polygraph")), "Assessment__c.Gate_Runs_Alone")
    other = application(apps, pos, "solo@x.org")
    rec.created("Assessment__c", {**gate("Polygraph"), "Job_Application__c": other})
    assert_rule(rec.post("Assessment__c", {**gate("Drug Test"), "Job_Application__c": other}),
                "Assessment__c.Open_Gate_Runs_Alone")
    closed = application(apps, pos, "gone@x.org", Status__c="Withdrawn", Withdrawal_Reason__c="Other")
    assert_rule(rec.post("Assessment__c", {**gate("Entrance Exam"), "Job_Application__c": closed}),
                "Assessment__c.Closed_Application_Takes_No_New_Gates")


def test_interviews_and_reviews(apps: Context, rest: Rest) -> None:
    rec = rest.login("rec", "Recruiting_Recruiter")
    interviewer = rest.login("iv", "Recruiting_Interviewer")
    _pos, _cand, app = setup_pipeline(apps, rec.id, rec.id)
    interview = new(apps, "Interview__c", {"Job_Application__c": app, "OwnerId": interviewer.id})
    assert_rule(interviewer.patch("Interview__c", interview, {"Status__c": "Completed"}),
                "Interview__c.Completed_Needs_Recommendation")
    assert_rule(interviewer.post("Review__c", {"Interview__c": interview, "Criterion__c": "Integrity",
                                               "Score__c": 7}), "Review__c.Score_Range")


def test_offers(apps: Context, rest: Rest) -> None:
    rec = rest.login("rec", "Recruiting_Recruiter")
    _pos, _cand, app = setup_pipeline(apps, rec.id, rec.id)
    offer: dict[str, Any] = {"Job_Application__c": app, "Salary__c": 60000}
    assert_rule(rec.post("Offer__c", {**offer, "Salary__c": 95000}), "Offer__c.Salary_Within_Pay_Range")
    assert_rule(rec.post("Offer__c", {**offer, "Status__c": "Accepted"}), "Offer__c.New_Offer_Is_Draft_Or_Extended")
    assert_rule(rec.post("Offer__c", {**offer, "Offer_Type__c": "Final", "Status__c": "Extended"}),
                "Offer__c.Final_Offer_Needs_Entry_Date")
    draft = rec.created("Offer__c", offer)
    assert_rule(rec.patch("Offer__c", draft, {"Status__c": "Accepted"}), "Offer__c.Response_Only_After_Extension")
    rec.updated("Offer__c", draft, {"Status__c": "Extended"})
    assert_rule(rec.patch("Offer__c", draft, {"Status__c": "Declined"}), "Offer__c.Decline_Needs_Reason")


def test_requisitions(apps: Context, rest: Rest) -> None:
    hm = rest.login("hm", "Recruiting_Hiring_Manager")
    assert_rule(hm.post("Position__c", {"Name": "Agent", "Min_Pay__c": 90000, "Max_Pay__c": 80000}),
                "Position__c.Pay_Range")
    assert_rule(hm.post("Position__c", {"Name": "Agent", "Authorised_Headcount__c": 0}),
                "Position__c.Headcount_Positive")
    assert_rule(hm.post("Position__c", {"Name": "Agent", "Status__c": "Open - Approved"}),
                "Position__c.Open_Requires_Approval")
    assert_rule(hm.post("Position__c", {"Name": "Agent", "Close_Date__c": str(TODAY)}),
                "Position__c.Close_Date_Only_When_Closed")
    # the agency, not the requisition's owner, decides which gates overlap
    assert_code(hm.post("Position__c", {"Name": "Agent", "Parallel_Gates__c": "Polygraph"}), 400,
                "INVALID_FIELD_FOR_INSERT_UPDATE")
    # a submitted requisition is locked until it is approved, rejected or recalled
    rest.login("director", "Recruiting_Admin", role="Recruiting Director")
    pos = hm.created("Position__c", {"Name": "Agent"})
    submit_for_approval(hm.ctx, pos, "Position_Requisition")
    assert_code(hm.patch("Position__c", pos, {"Location__c": "Elsewhere"}), 400, "ENTITY_IS_LOCKED",
                "locked while it is pending approval")
