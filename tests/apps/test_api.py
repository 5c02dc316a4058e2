"""One rule per app through the REST API, logged in as the persona with the OAuth password grant.

The API app is built on ``wire_automation(org)`` as ``keel up`` builds it, so the flows run too. Refusals come
back as Salesforce does: 400 with ``FIELD_CUSTOM_VALIDATION_EXCEPTION`` and the rule's message, or 404 for a
record the persona cannot see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from keel.api.app import create_app
from keel.apps.philanthropy import sample as philanthropy
from keel.context import Context
from keel.records import save_many
from keel.security import sessions
from keel.services.query import query
from keel.services.security import assign_permission_set
from keel.services.users import create_user
from tests.apps.test_recruiting import setup_pipeline
from tests.apps.test_vendors_philanthropy import vendor

V = "/services/data/v59.0"
PASSWORD = "a persona passphrase for the api"
STAGES = ("An application moves one stage forward at a time (Applied → Entrance Exam → Structured Interview → "
          "Medical and PFT-1 → Polygraph → Background Investigation → PFT-2 and Drug Test → Final Offer → Hired).")

Login = Callable[[str, str], TestClient]


@pytest.fixture
def api(apps: Context) -> Iterator[Login]:
    """``api(username, permission_set)``: a new persona user with a password, and a client logged in as them."""
    with apps.db.transaction() as conn:
        client_id, secret = sessions.create_connected_app(apps, conn, "apps tests")
    client = TestClient(create_app(apps), base_url="https://127.0.0.1")

    def login(username: str, permission_set: str) -> TestClient:
        found = query(apps, f"SELECT Id FROM User WHERE Username = '{username}'")["records"]
        if not found:
            uid = create_user(apps, username=username, password=PASSWORD, last_name=username.split("@")[0],
                              email=username)
            with apps.db.transaction() as conn:
                assign_permission_set(apps, conn, uid, permission_set)
        r = client.post("/services/oauth2/token", data={"grant_type": "password", "client_id": client_id,
                                                        "client_secret": secret, "username": username,
                                                        "password": PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        return client

    with client:
        yield login


def user(apps: Context, username: str) -> str:
    return str(query(apps, f"SELECT Id FROM User WHERE Username = '{username}'")["records"][0]["Id"])


def error(r: object) -> tuple[int, str, str]:
    body = r.json()[0]  # type: ignore[attr-defined]
    return r.status_code, body["errorCode"], body["message"]  # type: ignore[attr-defined]


def test_recruiting_illegal_stage_move(apps: Context, api: Login) -> None:
    rec = api("rec@api.local", "Recruiting_Recruiter")
    _, cand, app = setup_pipeline(apps, user(apps, "rec@api.local"), user(apps, "rec@api.local"))
    r = rec.patch(f"{V}/sobjects/Job_Application__c/{app}", json={"Stage__c": "Hired", "Status__c": "Hired"})
    assert error(r) == (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", STAGES)
    assert rec.patch(f"{V}/sobjects/Job_Application__c/{app}", json={"Stage__c": "Entrance Exam"}).status_code == 204
    hist = rec.get(f"{V}/query", params={"q": f"SELECT Stage__c FROM Stage_History__c "
                                               f"WHERE Job_Application__c = '{app}'"}).json()["records"]
    assert [h["Stage__c"] for h in hist] == ["Applied"]  # the stage-tracking flow ran
    r = rec.get(f"{V}/query", params={"q": f"SELECT SSN__c FROM Candidate__c WHERE Id = '{cand}'"})
    assert r.status_code == 400  # sensitive: only the background adjudicator may read it


def test_vendor_po_refused_for_blocked_vendor(apps: Context, api: Login) -> None:
    req = api("req@api.local", "Vendor_Requester")
    blocked, good = vendor(apps, "Blocked Co", 20), vendor(apps, "Good Co", 85)
    r = req.post(f"{V}/sobjects/Purchase_Order__c", json={"Vendor__c": blocked})
    assert error(r) == (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                        "This vendor's performance standing is Very Poor, which blocks new purchase orders.")
    r = req.post(f"{V}/sobjects/Purchase_Order__c", json={"Vendor__c": good, "Requested_By__c": user(
        apps, "req@api.local")})
    assert r.status_code == 201, r.text
    assert req.patch(f"{V}/sobjects/Purchase_Order__c/{r.json()['id']}", json={
        "Approved_By__c": user(apps, "req@api.local")}).status_code == 400  # approval fields are read-only


def test_philanthropy_charity_decides_only_its_own(apps: Context, api: Login) -> None:
    philanthropy.generate(apps, 1)
    allocs = {r["Recipient_Code__c"]: r["Id"] for r in query(
        apps, "SELECT Id, Recipient_Code__c FROM Allocation__c")["records"]}
    # the sample's finance lead of the Open Door Shelter has no password; give this persona the charity's group
    lead = api("ods@api.local", "Philanthropy_Charity_Finance")
    group = query(apps, "SELECT Charity_Group_Id__c FROM Account WHERE Charity_Code__c = 'ODS'")["records"][0]
    save_many(apps, "GroupMember", [{"GroupId": group["Charity_Group_Id__c"],
                                     "UserOrGroupId": user(apps, "ods@api.local")}])
    seen = lead.get(f"{V}/query", params={"q": "SELECT Id FROM Allocation__c"}).json()["records"]
    assert [s["Id"] for s in seen] == [allocs["ODS"]]
    mine = lead.get(f"{V}/sobjects/Allocation__c/{allocs['ODS']}")
    assert mine.status_code == 200 and mine.json()["Is_Accepted__c"] is True  # formula fields through the API
    r = lead.get(f"{V}/sobjects/Allocation__c/{allocs['RLP']}")
    assert r.status_code == 404, r.text
    r = lead.patch(f"{V}/sobjects/Allocation__c/{allocs['RLP']}", json={"Status__c": "Declined"})
    assert r.status_code in (400, 404) and r.json()[0]["errorCode"] in ("NOT_FOUND", "INSUFFICIENT_ACCESS_OR_READONLY",
                                                                         "ENTITY_IS_DELETED"), r.text
    # ODS has accepted and been paid: it cannot now decline
    r = lead.patch(f"{V}/sobjects/Allocation__c/{allocs['ODS']}", json={"Status__c": "Declined",
                                                                         "Decision_Reason__c": "Changed our mind"})
    assert error(r) == (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "An allocation that has received payments "
                                                                  "cannot be declined or withdrawn; refund the "
                                                                  "payments first.")
    gm = api("gm@api.local", "Philanthropy_Grants_Manager")
    pledge = query(apps, "SELECT Id, Donor__c FROM Pledge__c")["records"][0]
    new = gm.post(f"{V}/sobjects/Allocation__c", json={"Pledge__c": pledge["Id"], "Recipient__c": query(
        apps, "SELECT Id FROM Account WHERE Charity_Code__c = 'ODS'")["records"][0]["Id"], "Amount__c": 1000})
    assert new.status_code == 201, new.text
    lead = api("ods@api.local", "Philanthropy_Charity_Finance")
    r = lead.patch(f"{V}/sobjects/Allocation__c/{new.json()['id']}", json={"Status__c": "Declined"})
    assert error(r) == (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "A decline states its reason.")
    pay = query(apps, "SELECT Id FROM Payment__c WHERE Amount__c > 0 LIMIT 1")["records"][0]["Id"]
    gm = api("gm@api.local", "Philanthropy_Grants_Manager")
    r = gm.post(f"{V}/sobjects/Payment_Allocation__c", json={"Payment__c": pay, "Allocation__c": new.json()["id"],
                                                             "Amount__c": 100})
    assert error(r) == (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                        "Payments can be allocated only to accepted allocations.")
