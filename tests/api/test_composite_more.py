"""``/composite/batch`` and ``/composite/tree/{sObject}`` over real HTTP, on SQLite and (with KEEL_TEST_PG)
PostgreSQL: Salesforce's request and response shapes, haltOnError, limits, all-or-none trees, and security
(a subrequest or tree record answers exactly what the same direct call would)."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from apihelp import USER, USER_PW, Live, V
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest
from starlette.testclient import TestClient

from keel.api.app import create_app

P = f"/services/data/v{V}"


@pytest.fixture(scope="module")
def user_api(live: Live) -> Iterator[httpx.Client]:
    """A standard user (Standard User profile: the CRM objects) with API access and CRUD on Widget__c through a
    permission set that leaves out Widget__c.Secret__c."""
    with httpx.Client(base_url=f"{live.http}{P}", headers={"Authorization": f"Bearer {live.login(USER, USER_PW)}"},
                      timeout=60) as c:
        yield c


def tag() -> str:
    return uuid.uuid4().hex[:10]


def count(api: httpx.Client, soql: str) -> int:
    r = api.get("/query", params={"q": soql})
    assert r.status_code == 200, r.text
    return int(r.json()["totalSize"])


def batch(api: httpx.Client, subs: list[dict[str, Any]], halt: bool = False) -> httpx.Response:
    return api.post("/composite/batch", json={"haltOnError": halt, "batchRequests": subs})


# --- composite/batch ----------------------------------------------------------------------------------------


def test_composite_resources_list(api: httpx.Client) -> None:
    r = api.get("/composite")
    assert r.status_code == 200
    assert r.json() == {"tree": f"{P}/composite/tree", "batch": f"{P}/composite/batch",
                        "sobjects": f"{P}/composite/sobjects"}
    assert api.get("/composite/batch").status_code == 405
    assert api.get("/composite/tree/Account").status_code == 405


def test_batch_happy_path_and_url_forms(api: httpx.Client) -> None:
    wid = api.post("/sobjects/Widget__c", json={"Name": f"batch-{tag()}"}).json()["id"]
    q = f"SELECT Count__c FROM Widget__c WHERE Id = '{wid}'"
    r = batch(api, [
        {"method": "PATCH", "url": f"v{V}/sobjects/Widget__c/{wid}", "richInput": {"Count__c": 5}},
        {"method": "GET", "url": f"/services/data/v{V}/sobjects/Widget__c/{wid}?fields=Count__c"},
        {"method": "GET", "url": f"v{V}/query?q={q.replace(' ', '+')}"},
        {"method": "GET", "url": "v58.0/limits"},  # an older version than the batch's is allowed
    ])
    assert r.status_code == 200
    out = r.json()
    assert set(out) == {"hasErrors", "results"} and out["hasErrors"] is False
    assert [x["statusCode"] for x in out["results"]] == [204, 200, 200, 200]
    assert all(set(x) == {"statusCode", "result"} for x in out["results"])
    assert out["results"][0]["result"] is None
    assert out["results"][1]["result"]["Count__c"] == 5  # a later subrequest sees the earlier commit
    assert out["results"][1]["result"]["attributes"]["type"] == "Widget__c"
    assert out["results"][2]["result"]["records"][0]["Count__c"] == 5
    assert "DailyApiRequests" in out["results"][3]["result"]


def test_batch_subrequests_are_independent(api: httpx.Client) -> None:
    t = tag()
    r = batch(api, [
        {"method": "POST", "url": f"v{V}/sobjects/Widget__c", "richInput": {"Name": f"ind-{t}-a"}},
        {"method": "POST", "url": f"v{V}/sobjects/Widget__c", "richInput": {"Name": "x", "Color__c": "Purple"}},
        {"method": "POST", "url": f"v{V}/sobjects/Widget__c", "richInput": {"Name": f"ind-{t}-b"}},
    ])
    out = r.json()
    assert r.status_code == 200 and out["hasErrors"] is True
    assert [x["statusCode"] for x in out["results"]] == [201, 400, 201]
    assert out["results"][0]["result"]["success"] is True
    err = out["results"][1]["result"]
    assert err[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" and err[0]["fields"] == ["Color__c"]
    assert count(api, f"SELECT Id FROM Widget__c WHERE Name LIKE 'ind-{t}-%'") == 2  # no rollback of others


def test_batch_halt_on_error(api: httpx.Client) -> None:
    t = tag()
    r = batch(api, [
        {"method": "POST", "url": f"v{V}/sobjects/Widget__c", "richInput": {"Name": f"halt-{t}-a"}},
        {"method": "GET", "url": f"v{V}/sobjects/Widget__c/a00000000000zzzAAA"},
        {"method": "POST", "url": f"v{V}/sobjects/Widget__c", "richInput": {"Name": f"halt-{t}-b"}},
        {"method": "GET", "url": f"v{V}/limits"},
    ], halt=True)
    out = r.json()
    assert r.status_code == 200 and out["hasErrors"] is True
    assert [x["statusCode"] for x in out["results"]] == [201, 404, 412, 412]
    for halted in out["results"][2:]:
        assert halted["result"][0]["errorCode"] == "BATCH_PROCESSING_HALTED"
    assert count(api, f"SELECT Id FROM Widget__c WHERE Name = 'halt-{t}-a'") == 1  # the first one committed
    assert count(api, f"SELECT Id FROM Widget__c WHERE Name = 'halt-{t}-b'") == 0  # never ran


def test_batch_subrequest_answers_like_the_direct_call(api: httpx.Client, user_api: httpx.Client) -> None:
    """Security: a subrequest is the direct call, as the same user, nothing more."""
    hidden = api.post("/sobjects/Widget__c", json={"Name": f"admin-only-{tag()}"}).json()["id"]
    t = tag()
    subs: list[dict[str, Any]] = [
        {"method": "GET", "url": f"v{V}/sobjects/Widget__c/{hidden}"},  # private sharing: not the user's
        {"method": "PATCH", "url": f"v{V}/sobjects/Widget__c/{hidden}", "richInput": {"Name": "stolen"}},
        {"method": "DELETE", "url": f"v{V}/sobjects/Widget__c/{hidden}"},
        {"method": "POST", "url": f"v{V}/sobjects/PermissionSet", "richInput": {"Name": f"nope_{t}",
                                                                                 "Label": f"nope-{t}"}},
        {"method": "POST", "url": f"v{V}/sobjects/Widget__c", "richInput": {"Name": f"fls-{t}", "Secret__c": "x"}},
        {"method": "GET", "url": f"v{V}/query?q=SELECT+Id+FROM+Widget__c+WHERE+Id='{hidden}'"},
    ]
    out = batch(user_api, subs).json()
    assert out["hasErrors"] is True
    for sub, got in zip(subs, out["results"], strict=True):
        path = sub["url"].removeprefix(f"v{V}")
        direct = user_api.request(sub["method"], path, json=sub.get("richInput"))
        assert got["statusCode"] == direct.status_code, sub
        assert got["statusCode"] in (400, 403, 404) or sub["method"] == "GET", sub
        if direct.status_code >= 400:
            assert got["result"][0]["errorCode"] == direct.json()[0]["errorCode"], sub
    assert out["results"][-1]["result"]["totalSize"] == 0
    assert api.get(f"/sobjects/Widget__c/{hidden}", params={"fields": "Name"}).json()["Name"].startswith("admin")
    assert count(api, f"SELECT Id FROM Widget__c WHERE Name = 'fls-{t}'") == 0
    assert count(api, f"SELECT Id FROM PermissionSet WHERE Name = 'nope_{t}'") == 0


def test_batch_request_validation_and_limits(api: httpx.Client) -> None:
    limits = {"method": "GET", "url": f"v{V}/limits"}
    r = batch(api, [limits] * 26)
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "LIMIT_EXCEEDED"
    assert batch(api, [limits] * 25).status_code == 200
    for bad, code in [({"method": "FETCH", "url": f"v{V}/limits"}, "JSON_PARSER_ERROR"),
                      ({"url": f"v{V}/limits"}, "JSON_PARSER_ERROR"),
                      ({"method": "GET"}, "JSON_PARSER_ERROR"),
                      ({"method": "GET", "url": "limits"}, "INVALID_URL"),
                      ({"method": "GET", "url": "v60.0/limits"}, "INVALID_URL"),  # newer than the batch
                      ({"method": "GET", "url": "v33.0/limits"}, "INVALID_URL"),  # older than batching
                      ({"method": "POST", "url": f"v{V}/sobjects/Account", "binaryPartName": "b",
                        "binaryPartNameAlias": "Body"}, "JSON_PARSER_ERROR")]:
        r = batch(api, [limits, bad])  # problems found while reading reject the batch: nothing runs
        assert r.status_code == 400, bad
        assert r.json()[0]["errorCode"] == code, bad
    assert api.post("/composite/batch", json={"batchRequests": []}).status_code == 400
    r = batch(api, [{"method": "POST", "url": f"v{V}/composite/batch", "richInput": {"batchRequests": [limits]}},
                    {"method": "POST", "url": f"v{V}/composite", "richInput": {"compositeRequest": []}},
                    {"method": "POST", "url": f"v{V}/composite/tree/Account", "richInput": {"records": []}},
                    limits])
    assert r.status_code == 200
    assert [x["statusCode"] for x in r.json()["results"]] == [400, 400, 400, 200]
    assert r.json()["results"][0]["result"][0]["errorCode"] == "INVALID_URL"


def test_batch_charges_every_subrequest(api: httpx.Client) -> None:
    """Salesforce counts each subrequest against the rate limits; so does Keel (a batch of n costs n calls)."""
    def used(r: httpx.Response) -> int:
        m = re.fullmatch(r"api-usage=(\d+)/\d+", r.headers["Sforce-Limit-Info"])
        assert m, r.headers
        return int(m.group(1))

    before = used(api.get("/limits"))
    batch(api, [{"method": "GET", "url": f"v{V}/limits"}] * 5)
    after = used(api.get("/limits"))
    assert after - before == 5 + 1


def test_batch_cannot_exceed_the_rate_limit(live: Live) -> None:
    """A batch is not a way around the per-minute limit: subrequests past it answer 403 REQUEST_LIMIT_EXCEEDED."""
    ctx = dataclasses.replace(live.ctx, settings=dataclasses.replace(live.ctx.settings, api_requests_per_minute=3))
    token = live.login()
    with TestClient(create_app(ctx), base_url="https://127.0.0.1") as client:
        r = client.post(f"{P}/composite/batch", headers={"Authorization": f"Bearer {token}"},
                        json={"batchRequests": [{"method": "GET", "url": f"v{V}/limits"}] * 4})
        assert r.status_code == 200
        out = r.json()
        assert [x["statusCode"] for x in out["results"]] == [200, 200, 200, 403] and out["hasErrors"] is True
        assert out["results"][3]["result"][0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
        assert client.get(f"{P}/limits", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_composite_refuses_batch_and_tree_subrequests(api: httpx.Client) -> None:
    body = {"compositeRequest": [
        {"method": "POST", "url": f"{P}/composite/tree/Account", "referenceId": "t", "body": {"records": []}},
        {"method": "POST", "url": f"{P}/composite/batch", "referenceId": "b", "body": {"batchRequests": []}}]}
    out = api.post("/composite", json=body).json()["compositeResponse"]
    assert [x["httpStatusCode"] for x in out] == [400, 400]
    assert out[0]["body"][0]["errorCode"] == "INVALID_URL"


# --- composite/tree -----------------------------------------------------------------------------------------


def _rec(typ: str, ref: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": typ, "referenceId": ref}, **fields}


def _tree(api: httpx.Client, obj: str, records: list[dict[str, Any]]) -> httpx.Response:
    return api.post(f"/composite/tree/{obj}", json={"records": records})


def test_tree_three_levels(api: httpx.Client) -> None:
    t = tag()
    records = [
        _rec("Account", "acc1", Name=f"tree-{t}-1",
             Contacts={"records": [_rec("Contact", "con1", LastName=f"c1-{t}",
                                        Tasks={"records": [_rec("Task", "task1", Name="call"),
                                                           _rec("Task", "task2", Name="write")]})]},
             Widgets__r={"records": [_rec("Widget__c", "wid1", Name=f"w-{t}")]}),
        _rec("Account", "acc2", Name=f"tree-{t}-2",
             Contacts={"records": [_rec("Contact", "con2", LastName=f"c2-{t}")]}),
    ]
    r = _tree(api, "Account", records)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["hasErrors"] is False
    # creation order, as Salesforce lists it: every root, then level 2, then level 3 (request order within a level)
    assert [x["referenceId"] for x in out["results"]] == ["acc1", "acc2", "con1", "wid1", "con2", "task1", "task2"]
    assert all(set(x) == {"referenceId", "id"} for x in out["results"])
    got = {x["referenceId"]: x["id"] for x in out["results"]}
    assert got["acc1"].startswith("001") and got["con1"].startswith("003") and got["task1"].startswith("00T")
    contacts = api.get("/query", params={"q": f"SELECT Id, AccountId FROM Contact WHERE LastName LIKE '%-{t}' "
                                              "ORDER BY LastName"}).json()["records"]
    assert [(c["Id"], c["AccountId"]) for c in contacts] == [(got["con1"], got["acc1"]), (got["con2"], got["acc2"])]
    tasks = api.get("/query", params={"q": f"SELECT WhoId, Name FROM Task WHERE WhoId = '{got['con1']}' "
                                           "ORDER BY Name"}).json()["records"]
    assert [x["Name"] for x in tasks] == ["call", "write"]
    w = api.get(f"/sobjects/Widget__c/{got['wid1']}", params={"fields": "Account__c"}).json()
    assert w["Account__c"] == got["acc1"]


def test_tree_rolls_back_on_a_bad_grandchild(api: httpx.Client) -> None:
    t = tag()
    records = [_rec("Account", "acc", Name=f"rb-{t}",
                    Contacts={"records": [_rec("Contact", "con", LastName=f"rb-{t}",
                                               Tasks={"records": [_rec("Task", "okTask", Name="fine"),
                                                                  _rec("Task", "badTask", Name="bad",
                                                                       Status="Bogus")]})]})]
    r = _tree(api, "Account", records)
    assert r.status_code == 400
    out = r.json()
    assert out["hasErrors"] is True
    assert len(out["results"]) == 1 and out["results"][0]["referenceId"] == "badTask"
    (err,) = out["results"][0]["errors"]
    assert err["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" and err["fields"] == ["Status"]
    assert err["message"]
    assert count(api, f"SELECT Id FROM Account WHERE Name = 'rb-{t}'") == 0
    assert count(api, f"SELECT Id FROM Contact WHERE LastName = 'rb-{t}'") == 0
    assert count(api, "SELECT Id FROM Task WHERE Name = 'fine'") == 0


def test_tree_request_problems_are_keyed_by_reference_id(api: httpx.Client) -> None:
    t = tag()
    r = _tree(api, "Account", [
        _rec("Account", "dup", Name=f"val-{t}"),
        _rec("Account", "dup", Name=f"val-{t}"),
        {"attributes": {"referenceId": "noType"}, "Name": f"val-{t}"},
        _rec("Contact", "wrongType", LastName=f"val-{t}"),
        _rec("Account", "bad-ref", Name=f"val-{t}"),
        _rec("Account", "withId", Id="001000000000001AAA", Name=f"val-{t}"),
        _rec("Account", "badRel", Name=f"val-{t}", Kontacts={"records": [_rec("Contact", "k", LastName="k")]}),
        _rec("Account", "badChildType", Name=f"val-{t}",
             Contacts={"records": [_rec("Account", "notAContact", Name="x")]}),
        _rec("Account", "setsLink", Name=f"val-{t}",
             Contacts={"records": [_rec("Contact", "linked", LastName="x", AccountId="001000000000001AAA")]}),
        _rec("Account", "fine", Name=f"val-{t}"),
    ])
    assert r.status_code == 400
    out = r.json()
    assert out["hasErrors"] is True
    codes = [(x["referenceId"], [e["statusCode"] for e in x["errors"]]) for x in out["results"]]
    assert codes == [("dup", ["INVALID_INPUT"]), ("dup", ["INVALID_INPUT"]), ("noType", ["INVALID_TYPE"]),
                     ("wrongType", ["INVALID_TYPE"]), ("bad-ref", ["INVALID_INPUT"]),
                     ("withId", ["INVALID_FIELD_FOR_INSERT_UPDATE"]), ("badRel", ["INVALID_FIELD"]),
                     ("notAContact", ["INVALID_TYPE"]), ("linked", ["INVALID_FIELD"])]
    bad_rel = out["results"][6]["errors"][0]
    assert "Kontacts" in bad_rel["message"] and bad_rel["fields"] == ["Kontacts"]
    assert "Duplicate" in out["results"][0]["errors"][0]["message"]
    assert count(api, f"SELECT Id FROM Account WHERE Name = 'val-{t}'") == 0
    r = _tree(api, "Account", [{"Name": "no attributes"}])
    assert r.status_code == 400
    assert [e["statusCode"] for e in r.json()["results"][0]["errors"]] == ["INVALID_INPUT", "INVALID_TYPE"]
    assert _tree(api, "Account", []).json()[0]["errorCode"] == "JSON_PARSER_ERROR"
    assert _tree(api, "NoSuchThing__c", [_rec("NoSuchThing__c", "a")]).status_code == 404


def test_tree_limits(api: httpx.Client) -> None:
    t = tag()
    flat = [_rec("Widget__c", f"w{i}", Name=f"lim-{t}-{i:03d}") for i in range(201)]
    r = _tree(api, "Widget__c", flat)
    assert r.status_code == 400
    (item,) = r.json()["results"]
    assert item["referenceId"] == "w200" and item["errors"][0]["statusCode"] == "LIMIT_EXCEEDED"
    assert count(api, f"SELECT Id FROM Widget__c WHERE Name LIKE 'lim-{t}-%'") == 0
    r = _tree(api, "Widget__c", flat[:200])  # 200 unrelated records of one type: the documented maximum
    assert r.status_code == 201
    assert [x["referenceId"] for x in r.json()["results"]] == [f"w{i}" for i in range(200)]
    assert count(api, f"SELECT Id FROM Widget__c WHERE Name LIKE 'lim-{t}-%'") == 200

    def chain(depth: int, level: int = 1) -> dict[str, Any]:
        rec = _rec("Account", f"lvl{level}", Name=f"deep-{t}-{level}")
        if level < depth:
            rec["ChildAccounts"] = {"records": [chain(depth, level + 1)]}
        return rec

    r = _tree(api, "Account", [chain(6)])
    assert r.status_code == 400
    (item,) = r.json()["results"]
    assert item["referenceId"] == "lvl6" and item["errors"][0]["statusCode"] == "LIMIT_EXCEEDED"
    r = _tree(api, "Account", [chain(5)])
    assert r.status_code == 201 and len(r.json()["results"]) == 5
    parent = api.get("/query", params={"q": f"SELECT Parent.Name FROM Account WHERE Name = 'deep-{t}-5'"}).json()
    assert parent["records"][0]["Parent"]["Name"] == f"deep-{t}-4"

    six_types = [_rec("Account", "a", Name=f"types-{t}",
                      Contacts={"records": [_rec("Contact", "c", LastName="c")]},
                      Opportunities={"records": [_rec("Opportunity", "o", Name="o")]},
                      Widgets__r={"records": [_rec("Widget__c", "w", Name="w")]},
                      Tasks={"records": [_rec("Task", "tk", Name="t")]},
                      Events={"records": [_rec("Event", "ev", Name="e")]})]
    r = _tree(api, "Account", six_types)
    assert r.status_code == 400
    (item,) = r.json()["results"]
    assert item["referenceId"] == "ev" and item["errors"][0]["statusCode"] == "LIMIT_EXCEEDED"


def test_tree_security(user_api: httpx.Client, api: httpx.Client) -> None:
    """A tree record gets exactly the checks of a direct create: record visibility of lookups, field-level
    security, object permissions."""
    t = tag()
    boss = api.post("/sobjects/Contact", json={"LastName": f"admins-{t}"}).json()["id"]  # private: not the user's
    r = _tree(user_api, "Account", [_rec("Account", "acc", Name=f"sec-{t}",
                                         Contacts={"records": [_rec("Contact", "con", LastName=f"sec-{t}",
                                                                    ReportsToId=boss)]})])
    assert r.status_code == 400
    (item,) = r.json()["results"]
    direct = user_api.post("/sobjects/Contact", json={"LastName": f"sec-{t}", "ReportsToId": boss})
    assert direct.status_code == 400
    assert item["referenceId"] == "con" and item["errors"][0]["statusCode"] == direct.json()[0]["errorCode"]
    r = _tree(user_api, "Account", [_rec("Account", "acc", Name=f"sec-{t}",
                                         Widgets__r={"records": [_rec("Widget__c", "wid", Name="w",
                                                                      Secret__c="nope")]})])
    assert r.status_code == 400
    (item,) = r.json()["results"]
    direct = user_api.post("/sobjects/Widget__c", json={"Name": "w", "Secret__c": "nope"})
    assert item["referenceId"] == "wid" and item["errors"][0]["statusCode"] == direct.json()[0]["errorCode"]
    assert count(api, f"SELECT Id FROM Account WHERE Name = 'sec-{t}'") == 0
    assert _tree(user_api, "PermissionSet", [_rec("PermissionSet", "p", Name="p", Label="p")]).status_code == 404
    r = _tree(user_api, "Account", [_rec("Account", "mine", Name=f"sec-{t}",
                                         Widgets__r={"records": [_rec("Widget__c", "w", Name=f"sec-{t}")]})])
    assert r.status_code == 201
    ids = {x["referenceId"]: x["id"] for x in r.json()["results"]}
    mine = user_api.get(f"/sobjects/Widget__c/{ids['w']}", params={"fields": "Account__c,OwnerId"}).json()
    assert mine["Account__c"] == ids["mine"]


def test_tree_and_batch_through_simple_salesforce(live: Live) -> None:
    """simple-salesforce has no composite helpers; callers use ``restful``, and its error mapping must hold."""
    sf = Salesforce(instance_url=live.https, session_id=live.login(), session=live.session(), version=V)
    t = tag()
    out = sf.restful("composite/tree/Account", method="POST", json={"records": [
        _rec("Account", "ssAcc", Name=f"ss-{t}", Contacts={"records": [_rec("Contact", "ssCon", LastName=t)]})]})
    assert out is not None and out["hasErrors"] is False
    assert [x["referenceId"] for x in out["results"]] == ["ssAcc", "ssCon"]
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.restful("composite/tree/Account", method="POST", json={"records": [_rec("Account", "x")]})
    assert e.value.content["results"][0]["referenceId"] == "x"  # type: ignore[index]
    got = sf.restful("composite/batch", method="POST", json={"batchRequests": [
        {"method": "GET", "url": f"v{V}/query?q=SELECT+Name+FROM+Account+WHERE+Name='ss-{t}'"}]})
    assert got is not None and got["results"][0]["result"]["records"][0]["Name"] == f"ss-{t}"
