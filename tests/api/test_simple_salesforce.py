"""End-to-end: the real simple-salesforce client against a live Keel server over HTTPS (salesforce-api.md §1.5)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import requests
from apihelp import ADMIN, ADMIN_PW, Live, V
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)
from tests.livehttp import LocalSession

from keel.records import save_many
from keel.services.metadata import apply_package


@pytest.fixture(scope="module")
def sf(live: Live) -> Salesforce:
    """Logged in over SOAP with username, password and an (empty) security token."""
    s = live.session()
    sid, inst = SalesforceLogin(username=ADMIN, password=ADMIN_PW, security_token="", scratch_url=live.https,
                                session=s, sf_version=V)
    return Salesforce(session_id=sid, instance=inst, session=s, version=V)


def test_soap_login_gives_instance_from_server_url(live: Live) -> None:
    sid, inst = SalesforceLogin(username=ADMIN, password=ADMIN_PW, security_token="", scratch_url=live.https,
                                session=live.session())
    assert inst == live.https.removeprefix("https://")
    assert len(sid) > 20


def test_soap_login_failure_raises_authentication_failed(live: Live) -> None:
    with pytest.raises(SalesforceAuthenticationFailed) as e:
        SalesforceLogin(username=ADMIN, password="wrong", security_token="", scratch_url=live.https,
                        session=live.session())
    assert "INVALID_LOGIN" in str(e.value)


def test_oauth_password_login_and_query(live: Live) -> None:
    s = LocalSession(live.https.removeprefix("https://"), str(live.cert))
    sf = Salesforce(username=ADMIN, password=ADMIN_PW, consumer_key=live.client_id,
                    consumer_secret=live.client_secret, session=s, version=V)
    assert sf.sf_instance == live.https.removeprefix("https://")
    assert sf.query("SELECT Id FROM User")["totalSize"] >= 2


def test_oauth_bad_secret_fails(live: Live) -> None:
    s = LocalSession(live.https.removeprefix("https://"), str(live.cert))
    with pytest.raises(SalesforceAuthenticationFailed):
        Salesforce(username=ADMIN, password=ADMIN_PW, consumer_key=live.client_id, consumer_secret="nope",
                   session=s, version=V)


def test_direct_session_use(live: Live) -> None:
    sf = Salesforce(instance_url=live.https, session_id=live.login(), session=live.session(), version=V)
    assert any(o["name"] == "Widget__c" for o in sf.describe()["sobjects"])


def test_describe(sf: Salesforce) -> None:
    d = sf.Widget__c.describe()
    names = {f["name"]: f for f in d["fields"]}
    assert names["Id"]["type"] == "id"
    assert names["Account__c"]["type"] == "reference"
    assert names["Account__c"]["referenceTo"] == ["Account"]
    assert names["Account__c"]["relationshipName"] == "Account__r"
    assert [v["value"] for v in names["Color__c"]["picklistValues"]] == ["Red", "Green", "Blue"]
    acct = sf.Account.describe()
    assert any(c["relationshipName"] == "Widgets__r" and c["childSObject"] == "Widget__c"
               for c in acct["childRelationships"])
    meta = sf.Widget__c.metadata()
    assert meta["objectDescribe"]["name"] == "Widget__c"


def test_crud(sf: Salesforce) -> None:
    created = sf.Widget__c.create({"Name": "crud", "Amount__c": "12.5", "Active__c": "true",
                                   "When__c": "2024-01-02T03:04:05.000+0100"})
    assert created["success"] is True and len(created["id"]) == 18
    rec = sf.Widget__c.get(created["id"])
    assert rec["Name"] == "crud" and rec["Amount__c"] == 12.5 and rec["Active__c"] is True
    assert rec["When__c"] == "2024-01-02T02:04:05.000+0000"
    assert rec["attributes"]["type"] == "Widget__c"
    assert sf.Widget__c.get(created["id"][:15])["Id"] == created["id"]
    assert sf.Widget__c.update(created["id"], {"Name": "crud2"}) == 204
    assert sf.Widget__c.get(created["id"])["Name"] == "crud2"
    assert sf.Widget__c.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound) as e:
        sf.Widget__c.get(created["id"])
    assert e.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"


def test_upsert_and_get_by_external_id(sf: Salesforce) -> None:
    assert sf.Widget__c.upsert("Ext_Id__c/has space", {"Name": "u1"}) == 201
    assert sf.Widget__c.upsert("Ext_Id__c/has space", {"Name": "u2"}) == 200
    rec = sf.Widget__c.get_by_custom_id("Ext_Id__c", "has space")  # quote_plus: the space travels as '+'
    assert rec["Name"] == "u2"
    sf.Widget__c.create({"Name": "d1", "Ext_Id__c": "dup"})
    sf.Widget__c.create({"Name": "d2", "Ext_Id__c": "dup"})
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Widget__c.upsert("Ext_Id__c/dup", {"Name": "x"})
    with pytest.raises(SalesforceResourceNotFound):
        sf.Widget__c.get_by_custom_id("Ext_Id__c", "nothing here")


def test_query_parent_paths_and_child_subqueries(sf: Salesforce) -> None:
    acct = sf.Account.create({"Name": "Parent Co"})["id"]
    sf.Widget__c.create({"Name": "child-a", "Account__c": acct})
    sf.Widget__c.create({"Name": "child-b", "Account__c": acct})
    sf.Widget__c.create({"Name": "orphan"})
    res = sf.query("SELECT Name, Account__r.Name FROM Widget__c WHERE Name LIKE 'child%' OR Name = 'orphan' "
                   "ORDER BY Name")
    rows = res["records"]
    assert [r["Name"] for r in rows] == ["child-a", "child-b", "orphan"]
    assert rows[0]["Account__r"]["Name"] == "Parent Co"
    assert rows[0]["Account__r"]["attributes"]["type"] == "Account"
    assert rows[2]["Account__r"] is None
    res = sf.query(f"SELECT Name, (SELECT Name FROM Widgets__r ORDER BY Name) FROM Account WHERE Id = '{acct}'")
    kids = res["records"][0]["Widgets__r"]
    assert kids["totalSize"] == 2 and kids["done"] is True
    assert [k["Name"] for k in kids["records"]] == ["child-a", "child-b"]


def test_query_all_pages_through_5000_records(live: Live, sf: Salesforce) -> None:
    from keel.services.security import system_context

    ctx = system_context(live.ctx, "seed 5000 widgets")
    for start in range(0, 5000, 1000):
        save_many(ctx, "Widget__c", [{"Name": f"bulk{i:05d}", "Count__c": i} for i in range(start, start + 1000)])
    first = sf.query("SELECT Id, Name FROM Widget__c WHERE Name LIKE 'bulk%' ORDER BY Name")
    assert first["totalSize"] == 5000 and first["done"] is False and len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith(f"/services/data/v{V}/query/01g")
    assert first["nextRecordsUrl"].endswith("-2000")
    rows = sf.query_all("SELECT Id, Name FROM Widget__c WHERE Name LIKE 'bulk%' ORDER BY Name")["records"]
    assert len(rows) == 5000
    assert [r["Name"] for r in rows] == [f"bulk{i:05d}" for i in range(5000)]
    assert len({r["Id"] for r in rows}) == 5000


def test_expired_session_is_refreshed_by_relogin(live: Live) -> None:
    s = LocalSession(live.https.removeprefix("https://"), str(live.cert))
    sf = Salesforce(username=ADMIN, password=ADMIN_PW, security_token="", session=s, version=V)
    old = sf.session_id
    r = requests.post(f"{live.https}/services/oauth2/revoke", data={"token": old}, verify=str(live.cert))
    assert r.status_code == 200
    raw = requests.get(f"{live.https}/services/data/v{V}/limits", headers={"Authorization": f"Bearer {old}"},
                       verify=str(live.cert))
    assert raw.status_code == 401
    assert raw.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert sf.query("SELECT Id FROM Account LIMIT 1")["done"] is True  # 401 → re-login → retry
    assert sf.session_id != old


def test_updated_and_deleted(sf: Salesforce) -> None:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    wid = sf.Widget__c.create({"Name": "replicated"})["id"]
    sf.Widget__c.delete(wid)
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
    upd = sf.Widget__c.updated(start, end)
    assert "latestDateCovered" in upd and isinstance(upd["ids"], list)
    deleted = sf.Widget__c.deleted(start, end)
    assert wid in [d["id"] for d in deleted["deletedRecords"]]
    naive = sf.Widget__c.deleted(start.replace(tzinfo=None), end.replace(tzinfo=None))  # trailing-colon quirk
    assert wid in [d["id"] for d in naive["deletedRecords"]]


def test_search_and_limits(sf: Salesforce) -> None:
    sf.Widget__c.create({"Name": "Zanzibar gadget", "Email__c": "zz@example.com"})
    res = sf.search("FIND {zanzibar} IN NAME FIELDS RETURNING Widget__c(Id, Name)")
    assert [r["Name"] for r in res["searchRecords"]] == ["Zanzibar gadget"]
    assert sf.quick_search("zz@example")["searchRecords"][0]["attributes"]["type"] == "Widget__c"
    limits = sf.limits()
    assert limits["DailyApiRequests"]["Max"] > 0
    assert sf.api_usage["api-usage"].used > 0


def test_error_mapping(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query("SELECT Id FROMM Widget__c")
    assert e.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query("SELECT Nope__c FROM Widget__c")
    assert e.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Widget__c.get("a00000000000zzzAAA")
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Widget__c.create({"Color__c": "Purple"})
    assert e.value.content[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"


def test_record_types_through_describe_create_and_query(sf: Salesforce, live: Live, tmp_path: Path) -> None:
    """An object's record types as simple-salesforce sees them: describe's recordTypeInfos, a create naming a
    RecordTypeId, a refused picklist value, and the RecordType rows in SOQL."""
    (tmp_path / "Gadget__c.yaml").write_text(
        "object: Gadget__c\nfields:\n  - {name: Size__c, type: picklist, values: [Small, Large, Huge]}\n"
        "record_types:\n  - {name: Retail, label: Retail Gadget, default: true, picklists: {Size__c: [Small]}}\n"
        "  - {name: Industrial, label: Industrial Gadget, picklists: {Size__c: [Large, Huge]}}\n")
    apply_package(live.ctx, tmp_path)
    keys = {"available", "defaultRecordTypeMapping", "developerName", "master", "name", "recordTypeId", "urls"}
    infos = sf.Gadget__c.describe()["recordTypeInfos"]
    assert all(keys <= set(i) for i in infos)
    by_name = {i["developerName"]: i for i in infos}
    assert set(by_name) == {"Retail", "Industrial", "Master"}
    assert [n for n, i in by_name.items() if i["defaultRecordTypeMapping"]] == ["Retail"]
    assert by_name["Master"]["master"] and by_name["Master"]["recordTypeId"] == "012000000000000AAA"
    assert by_name["Industrial"]["name"] == "Industrial Gadget" and by_name["Industrial"]["available"]
    account = sf.Account.describe()["recordTypeInfos"]  # no record types: the master type only, as the default
    assert [(i["developerName"], i["defaultRecordTypeMapping"]) for i in account] == [("Master", True)]
    assert "RecordTypeId" not in {f["name"] for f in sf.Account.describe()["fields"]}

    industrial = by_name["Industrial"]["recordTypeId"]
    made = sf.Gadget__c.create({"Name": "press", "RecordTypeId": industrial, "Size__c": "Huge"})
    plain = sf.Gadget__c.create({"Name": "phone"})
    got = sf.query("SELECT Name, Size__c, RecordType.DeveloperName FROM Gadget__c ORDER BY Name")["records"]
    assert [(r["Name"], r["RecordType"]["DeveloperName"]) for r in got] == [("phone", "Retail"), ("press",
                                                                                                   "Industrial")]
    assert sf.Gadget__c.get(made["id"])["RecordTypeId"] == industrial and plain["success"]
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.Gadget__c.create({"Name": "bad", "RecordTypeId": industrial, "Size__c": "Small"})
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in str(e.value)
    rts = sf.query("SELECT Id, DeveloperName, SobjectType FROM RecordType WHERE SobjectType = 'Gadget__c'")
    assert {r["DeveloperName"]: r["Id"] for r in rts["records"]}["Industrial"] == industrial
