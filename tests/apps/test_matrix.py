"""The apps' permission sets in the security matrix: persona × object (Read/Create/Edit/Delete) × field.

Each row is one user holding exactly one app permission set on the Standard User profile, so the table is what
an administrator grants by assigning that set. Standard User already gives Account read/create/edit, which is
why every persona shows ``RCE-`` on Account. ``-`` none, ``R`` read, ``E`` read and edit.
"""

from __future__ import annotations

from collections.abc import Callable

from keel.context import Context

OPS = (("R", "read"), ("C", "create"), ("E", "edit"), ("D", "delete"))
R_OBJ = ("Position__c", "Candidate__c", "Job_Application__c", "Assessment__c", "Interview__c", "Review__c",
         "Offer__c", "Stage_History__c")
R_FLD = ("Candidate__c.SSN__c", "Assessment__c.Medical_Findings__c", "Assessment__c.Polygraph_Findings__c",
         "Assessment__c.Background_Findings__c", "Assessment__c.Result__c", "Job_Application__c.Stage__c",
         "Review__c.Score__c", "Offer__c.Salary__c")
V_OBJ = ("Account", "Contract__c", "Purchase_Order__c", "PO_Line__c", "Invoice__c", "Insurance_Certificate__c",
         "Scorecard__c")
V_FLD = ("Account.Tax_Id__c", "Account.Vendor_Status__c", "Purchase_Order__c.Approved_By__c",
         "Purchase_Order__c.Second_Approver__c", "Invoice__c.Approved_By__c", "Scorecard__c.Quality_Score__c",
         "Contract__c.Approved__c", "Purchase_Order__c.Approval_Granted__c")
P_OBJ = ("Account", "Pledge__c", "Allocation__c", "Condition__c", "Payment__c", "Payment_Allocation__c")
P_FLD = ("Pledge__c.Total__c", "Allocation__c.Status__c", "Allocation__c.Amount__c",
         "Allocation__c.Reallocation_Decision__c", "Condition__c.Status__c", "Payment_Allocation__c.Amount__c")

# permission set: (objects in the app's column order, fields in the app's column order)
EXPECTED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    #                                    Pos     Cand    App     Assess  Intvw   Review  Offer   History
    "Recruiting_Recruiter":             (("RCE-", "RCE-", "RCED", "RCED", "RCE-", "R---", "RCED", "RC--"),
                                         ("-", "-", "-", "-", "E", "E", "R", "E")),
    "Recruiting_Hiring_Manager":        (("RCE-", "R---", "R---", "R---", "R---", "R---", "R---", "R---"),
                                         ("-", "-", "-", "-", "R", "R", "R", "R")),
    "Recruiting_Interviewer":           (("----", "R---", "R---", "----", "RCE-", "RCE-", "----", "----"),
                                         ("-", "-", "-", "-", "-", "-", "E", "-")),
    "Recruiting_Background_Adjudicator": (("R---", "R---", "R---", "RCED", "----", "----", "----", "R---"),
                                          ("R", "-", "-", "E", "E", "R", "-", "-")),
    "Recruiting_Medical_Adjudicator":   (("R---", "R---", "R---", "RCED", "----", "----", "----", "R---"),
                                         ("-", "E", "-", "-", "E", "R", "-", "-")),
    "Recruiting_Polygraph_Adjudicator": (("R---", "R---", "R---", "RCED", "----", "----", "----", "R---"),
                                         ("-", "-", "E", "-", "E", "R", "-", "-")),
    "Recruiting_Admin":                 (("RCED",) * 8, ("-", "-", "-", "-", "E", "E", "E", "E")),
    #                                    Account Contract PO     POLine  Invoice Cert    Scorecard
    # approval outcomes (approvers, Approved, Approval_Granted) are written only by the approval processes
    "Vendor_Procurement_Officer":       (("RCE-", "RCED", "RCED", "RCED", "RCED", "RCE-", "RCE-"),
                                         ("E", "E", "R", "R", "E", "E", "R", "R")),
    "Vendor_Requester":                 (("RCE-", "R---", "RCE-", "RCED", "R---", "R---", "R---"),
                                         ("-", "R", "R", "R", "R", "R", "R", "R")),
    "Vendor_Accounts_Payable":          (("RCE-", "R---", "R---", "R---", "RCE-", "----", "----"),
                                         ("R", "R", "R", "R", "E", "-", "R", "R")),
    #                                    Account Pledge  Alloc   Cond    Payment PayAlloc
    "Philanthropy_Grants_Manager":      (("RCE-", "RCE-", "RCE-", "RCE-", "RCE-", "RCE-"),
                                         ("E", "E", "E", "E", "E", "E")),
    # pledges and payments are readable as objects (so allocation pages can name them) but never shared
    "Philanthropy_Charity_Finance":     (("RCE-", "R---", "R-E-", "RCE-", "R---", "R---"),
                                         ("R", "E", "R", "R", "E", "R")),
}


def cells(ctx: Context, objects: tuple[str, ...], fields: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    a = ctx.actor.access
    objs = tuple("".join(c if a.can(o, op) else "-" for c, op in OPS) for o in objects)
    flds = []
    for f in fields:
        o, name = f.split(".")
        flds.append("E" if a.field_editable(o, name) else "R" if a.field_readable(o, name) else "-")
    return objs, tuple(flds)


def test_security_matrix(persona: Callable[..., Context]) -> None:
    columns = {"Recruiting": (R_OBJ, R_FLD), "Vendor": (V_OBJ, V_FLD), "Philanthropy": (P_OBJ, P_FLD)}
    actual = {}
    for i, name in enumerate(EXPECTED):
        ctx = persona(f"m{i}", name)
        actual[name] = cells(ctx, *columns[name.split("_")[0]])
    assert actual == EXPECTED
