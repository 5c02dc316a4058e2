"""HTTP-level contract tests: every endpoint, status code and header the clients depend on (salesforce-api.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import socket
import xml.dom.minidom

import httpx
import pytest
from apihelp import ADMIN, ADMIN_PW, NOAPI, NOAPI_PW, USER, USER_PW, Live, V

JSON = "application/json;charset=UTF-8"
INVALID = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def soap_envelope(username: str, password: str, style: int = 1) -> str:
    if style == 3:  # jsforce: no header, default namespace
        return ('<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header/><se:Body>'
                f'<login xmlns="urn:partner.soap.sforce.com"><username>{username}</username>'
                f"<password>{password}</password></login></se:Body></se:Envelope>")
    return ('<?xml version="1.0" encoding="utf-8" ?><env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xmlns:env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:partner.soap.sforce.com">'
            "<env:Header><urn:CallOptions><urn:client>simple-salesforce</urn:client>"
            "<urn:defaultNamespace>sf</urn:defaultNamespace></urn:CallOptions></env:Header><env:Body>"
            '<n1:login xmlns:n1="urn:partner.soap.sforce.com">'
            f"<n1:username>{username}</n1:username><n1:password>{password}</n1:password></n1:login>"
            "</env:Body></env:Envelope>")


# --- authentication -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", [1, 3])
def test_soap_login_response_shape(live: Live, style: int) -> None:
    r = httpx.post(f"{live.http}/services/Soap/u/{V}", content=soap_envelope(ADMIN, ADMIN_PW, style),
                   headers={"Content-Type": "text/xml", "SOAPAction": "login"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/xml")
    dom = xml.dom.minidom.parseString(r.text)
    sid = dom.getElementsByTagName("sessionId")[0]
    assert sid.toxml().startswith("<sessionId>")  # no attributes, no prefix
    server = dom.getElementsByTagName("serverUrl")[0].firstChild.nodeValue  # type: ignore[union-attr]
    assert server.startswith(f"{live.http}/services/Soap/u/{V}/00D")
    for tag in ("userId", "organizationId", "passwordExpired"):
        assert re.search(f"<{tag}>[^<]+</{tag}>", r.text), tag
    assert "<passwordExpired>false</passwordExpired>" in r.text


def test_soap_login_fault(live: Live) -> None:
    r = httpx.post(f"{live.http}/services/Soap/u/{V}", content=soap_envelope(ADMIN, "wrong"),
                   headers={"Content-Type": "text/xml"})
    assert r.status_code == 500
    assert "<faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out." in r.text
    assert "<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>" in r.text
    assert "<sf:exceptionMessage>" in r.text


def test_soap_malformed_is_a_fault(live: Live) -> None:
    r = httpx.post(f"{live.http}/services/Soap/u/{V}", content="<not xml", headers={"Content-Type": "text/xml"})
    assert r.status_code == 500 and "faultstring" in r.text


def test_oauth_password_grant_signature(live: Live) -> None:
    r = httpx.post(f"{live.http}/services/oauth2/token", data={
        "grant_type": "password", "client_id": live.client_id, "client_secret": live.client_secret,
        "username": ADMIN, "password": ADMIN_PW})
    assert r.status_code == 200
    assert r.headers["content-type"] == JSON
    body = r.json()
    assert body["instance_url"] == live.http and body["token_type"] == "Bearer"
    assert re.fullmatch(r".*/id/00D\w{15}/005\w{15}", body["id"])
    expected = base64.b64encode(hmac.new(live.client_secret.encode(), (body["id"] + body["issued_at"]).encode(),
                                         hashlib.sha256).digest()).decode()
    assert body["signature"] == expected
    assert body["issued_at"].isdigit()
    ident = httpx.get(body["id"], params={"format": "json"},
                      headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ident.status_code == 200
    assert ident.json()["user_id"] == body["id"].rsplit("/", 1)[1]
    assert ident.json()["organization_id"] == body["id"].rsplit("/", 2)[1]
    # refresh_token grant
    assert body.get("refresh_token")
    r2 = httpx.post(f"{live.http}/services/oauth2/token", data={
        "grant_type": "refresh_token", "client_id": live.client_id, "client_secret": live.client_secret,
        "refresh_token": body["refresh_token"]})
    assert r2.status_code == 200, r2.text
    assert r2.json()["access_token"] != body["access_token"]


def test_refresh_tokens_refresh_only_for_their_app_and_never_call_the_api(live: Live) -> None:
    from keel.security import sessions
    from keel.services.security import system_context

    token_url = f"{live.http}/services/oauth2/token"
    body = httpx.post(token_url, data={"grant_type": "password", "client_id": live.client_id,
                                       "client_secret": live.client_secret, "username": ADMIN,
                                       "password": ADMIN_PW}).json()
    access, refresh = body["access_token"], body["refresh_token"]
    limits = f"{live.http}/services/data/v{V}/limits"
    assert httpx.get(limits, headers={"Authorization": f"Bearer {access}"}).status_code == 200
    # a refresh token is not a session: the API refuses it as it refuses any bad token
    r = httpx.get(limits, headers={"Authorization": f"Bearer {refresh}"})
    assert r.status_code == 401 and r.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    # an access token cannot be refreshed into a new one (that would outlive the absolute timeout)
    refused = {"error": "invalid_grant", "error_description": "expired access/refresh token"}
    r = httpx.post(token_url, data={"grant_type": "refresh_token", "client_id": live.client_id,
                                    "client_secret": live.client_secret, "refresh_token": access})
    assert r.status_code == 400 and r.json() == refused
    # another connected app cannot use this app's refresh token
    admin = system_context(live.ctx, "refresh test setup")
    with live.ctx.db.transaction() as conn:
        other, other_secret = sessions.create_connected_app(admin, conn, "another app")
    r = httpx.post(token_url, data={"grant_type": "refresh_token", "client_id": other,
                                    "client_secret": other_secret, "refresh_token": refresh})
    assert r.status_code == 400 and r.json() == refused
    r = httpx.post(token_url, data={"grant_type": "refresh_token", "client_id": live.client_id,
                                    "client_secret": live.client_secret, "refresh_token": refresh})
    assert r.status_code == 200, r.text
    # revoking the refresh token ends it
    assert httpx.post(f"{live.http}/services/oauth2/revoke", data={"token": refresh}).status_code == 200
    r = httpx.post(token_url, data={"grant_type": "refresh_token", "client_id": live.client_id,
                                    "client_secret": live.client_secret, "refresh_token": refresh})
    assert r.status_code == 400 and r.json() == refused


def test_oauth_errors(live: Live) -> None:
    base = {"grant_type": "password", "client_id": live.client_id, "client_secret": live.client_secret,
            "username": ADMIN}
    r = httpx.post(f"{live.http}/services/oauth2/token", data={**base, "password": "bad"})
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_grant", "error_description": "authentication failure"}
    r = httpx.post(f"{live.http}/services/oauth2/token", data={**base, "password": ADMIN_PW, "client_id": "x"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_id"
    r = httpx.post(f"{live.http}/services/oauth2/token", data={**base, "grant_type": "magic"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize("basic", [True, False])
def test_oauth_client_credentials(live: Live, basic: bool) -> None:
    if basic:
        cred = base64.b64encode(f"{live.client_id}:{live.client_secret}".encode()).decode()
        r = httpx.post(f"{live.http}/services/oauth2/token", data={"grant_type": "client_credentials"},
                       headers={"Authorization": f"Basic {cred}"})
    else:
        r = httpx.post(f"{live.http}/services/oauth2/token", data={
            "grant_type": "client_credentials", "client_id": live.client_id, "client_secret": live.client_secret})
    assert r.status_code == 200, r.text
    tok = r.json()["access_token"]
    assert httpx.get(f"{live.http}/services/data/v{V}/limits", headers={"Authorization": f"OAuth {tok}"}
                     ).status_code == 200


def test_bearer_and_oauth_schemes_and_401(live: Live, admin_token: str) -> None:
    url = f"{live.http}/services/data/v{V}/sobjects"
    for scheme in ("Bearer", "OAuth", "bearer"):
        assert httpx.get(url, headers={"Authorization": f"{scheme} {admin_token}"}).status_code == 200
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 401
        assert r.headers["content-type"] == JSON
        assert r.json() == INVALID


def test_revoke(live: Live) -> None:
    tok = live.login()
    assert httpx.post(f"{live.http}/services/oauth2/revoke", data={"token": tok}).status_code == 200
    r = httpx.get(f"{live.http}/services/data/v{V}/limits", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 401 and r.json() == INVALID


def test_user_without_api_enabled_is_refused(live: Live) -> None:
    r = httpx.post(f"{live.http}/services/oauth2/token", data={
        "grant_type": "password", "client_id": live.client_id, "client_secret": live.client_secret,
        "username": NOAPI, "password": NOAPI_PW})
    assert r.status_code == 400
    r = httpx.post(f"{live.http}/services/Soap/u/{V}", content=soap_envelope(NOAPI, NOAPI_PW),
                   headers={"Content-Type": "text/xml"})
    assert r.status_code == 500 and "API_CURRENTLY_DISABLED" in r.text


# --- plumbing -----------------------------------------------------------------------------------------------


def test_versions_ascending_and_unauthenticated(live: Live) -> None:
    for path in ("/services/data", "/services/data/"):
        r = httpx.get(live.http + path)
        assert r.status_code == 200 and r.headers["content-type"] == JSON
        versions = [float(v["version"]) for v in r.json()]
        assert versions == sorted(versions) and 59.0 in versions and 66.0 in versions
        assert r.json()[28] == {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"}


def test_resources_and_limits_header(api: httpx.Client) -> None:
    r = api.get("/")
    assert r.status_code == 200
    assert r.json()["sobjects"] == f"/services/data/v{V}/sobjects"
    assert "/id/00D" in r.json()["identity"]
    lim = api.get("/limits/")
    assert lim.status_code == 200
    assert re.fullmatch(r"api-usage=\d+/\d+", lim.headers["Sforce-Limit-Info"])
    assert lim.json()["DailyApiRequests"]["Max"] >= lim.json()["DailyApiRequests"]["Remaining"]


@pytest.mark.parametrize("version", ["50.0", "59.0", "66.0"])
def test_any_version_and_trailing_slashes(live: Live, admin_token: str, version: str) -> None:
    h = {"Authorization": f"Bearer {admin_token}"}
    for path in ("sobjects", "sobjects/", "sobjects/widget__c/describe/", "query/?q=SELECT+Id+FROM+Widget__c"):
        assert httpx.get(f"{live.http}/services/data/v{version}/{path}", headers=h).status_code == 200, path


def test_unknown_paths_and_methods(api: httpx.Client) -> None:
    r = api.get("/nothing/here")
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "NOT_FOUND"
    assert r.headers["content-type"] == JSON
    r = api.get("/sobjects/Nope__c/describe")
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "NOT_FOUND"
    r = api.put("/sobjects/Widget__c", json={})
    assert r.status_code == 405 and r.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"
    r = api.post("/sobjects/Widget__c", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


# --- describe -----------------------------------------------------------------------------------------------

GLOBAL_KEYS = {"name", "label", "labelPlural", "keyPrefix", "custom", "queryable", "createable", "updateable",
               "deletable", "retrieveable", "searchable", "layoutable", "undeletable", "mergeable", "triggerable",
               "replicateable", "activateable", "customSetting", "deprecatedAndHidden", "feedEnabled",
               "hasSubtypes", "isSubtype", "isInterface", "mruEnabled", "deepCloneable", "urls"}
FIELD_KEYS = {"name", "type", "label", "updateable", "createable", "nillable", "unique", "length", "precision",
              "scale", "defaultValue", "defaultValueFormula", "defaultedOnCreate", "calculatedFormula",
              "inlineHelpText", "picklistValues", "referenceTo", "relationshipOrder", "soapType",
              "relationshipName", "externalId", "idLookup", "filterable", "sortable", "groupable", "aggregatable",
              "custom", "calculated", "autoNumber", "byteLength", "digits", "restrictedPicklist",
              "dependentPicklist", "controllerName", "compoundFieldName", "nameField"}


def test_describe_global(api: httpx.Client) -> None:
    r = api.get("/sobjects")
    body = r.json()
    assert body["encoding"] == "UTF-8" and body["maxBatchSize"] == 200
    widget = next(o for o in body["sobjects"] if o["name"] == "Widget__c")
    assert set(widget) >= GLOBAL_KEYS
    assert widget["custom"] is True and widget["keyPrefix"].startswith("a")
    assert widget["urls"]["describe"] == f"/services/data/v{V}/sobjects/Widget__c/describe"


def test_describe_object(api: httpx.Client) -> None:
    d = api.get("/sobjects/WIDGET__C/describe").json()  # case-insensitive
    assert d["name"] == "Widget__c"
    for f in d["fields"]:
        assert set(f) >= FIELD_KEYS, f["name"]
    ids_ = [f for f in d["fields"] if f["name"] == "Id"]
    assert len(ids_) == 1 and ids_[0]["type"] == "id"
    by = {f["name"]: f for f in d["fields"]}
    assert by["Amount__c"]["type"] == "double" and by["Amount__c"]["scale"] == 2
    assert by["Active__c"]["type"] == "boolean" and by["Active__c"]["nillable"] is False
    assert by["When__c"]["type"] == "datetime" and by["Day__c"]["type"] == "date"
    assert by["Email__c"]["type"] == "email" and by["Color__c"]["restrictedPicklist"] is True
    assert by["Ext_Id__c"]["externalId"] is True and by["Code__c"]["unique"] is True
    assert by["CreatedDate"]["createable"] is False and by["Name"]["createable"] is True
    for key in ("childRelationships", "recordTypeInfos", "actionOverrides", "namedLayoutInfos", "supportedScopes"):
        assert key in d


def test_describe_honours_field_level_security(live: Live) -> None:
    tok = live.login(USER, USER_PW)
    h = {"Authorization": f"Bearer {tok}"}
    d = httpx.get(f"{live.http}/services/data/v{V}/sobjects/Widget__c/describe", headers=h).json()
    names = {f["name"] for f in d["fields"]}
    assert "Amount__c" in names and "Secret__c" not in names
    objects = {o["name"] for o in httpx.get(f"{live.http}/services/data/v{V}/sobjects", headers=h).json()["sobjects"]}
    assert "Widget__c" in objects
    r = httpx.get(f"{live.http}/services/data/v{V}/sobjects/Secret_Object__c/describe", headers=h)
    assert r.status_code == 404


def test_basic_info_and_openapi(api: httpx.Client) -> None:
    info = api.get("/sobjects/Widget__c").json()
    assert info["objectDescribe"]["name"] == "Widget__c" and info["recentItems"] == []
    doc = api.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert "/sobjects/Widget__c/{id}" in doc["paths"]
    assert "Amount__c" in doc["components"]["schemas"]["Widget__c"]["properties"]


# --- records ------------------------------------------------------------------------------------------------


def test_create_update_delete_statuses(api: httpx.Client) -> None:
    r = api.post("/sobjects/Widget__c/", json={"attributes": {"type": "Widget__c"}, "name": "statuses",
                                              "count__c": "5", "active__c": "true"})
    assert r.status_code == 201 and r.headers["content-type"] == JSON
    body = r.json()
    assert set(body) == {"id", "success", "errors"} and body["success"] is True and body["errors"] == []
    wid = body["id"]
    got = api.get(f"/sobjects/Widget__c/{wid}", params={"fields": "Name,Count__c"}).json()
    assert set(got) == {"attributes", "Id", "Name", "Count__c"} and got["Count__c"] == 5
    r = api.patch(f"/sobjects/Widget__c/{wid}", json={"Name": "statuses2"})
    assert r.status_code == 204 and r.content == b""
    r = api.delete(f"/sobjects/Widget__c/{wid}")
    assert r.status_code == 204 and r.content == b""
    r = api.delete(f"/sobjects/Widget__c/{wid}")
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "ENTITY_IS_DELETED"
    r = api.post("/sobjects/Widget__c/Id", json={"Name": "via /Id"})
    assert r.status_code == 201


def test_record_errors(api: httpx.Client) -> None:
    r = api.get("/sobjects/Widget__c/garbage")
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_ID"
    r = api.post("/sobjects/Widget__c", json={"Nope__c": 1})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD"
    r = api.post("/sobjects/Widget__c", json={"CreatedDate": "2024-01-01T00:00:00Z"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    r = api.post("/sobjects/Contact", json={"FirstName": "x"})
    assert r.status_code == 400
    assert r.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING" and "LastName" in r.json()[0]["fields"]
    api.post("/sobjects/Widget__c", json={"Name": "u", "Code__c": "UNIQ"})
    r = api.post("/sobjects/Widget__c", json={"Name": "u", "Code__c": "uniq"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "DUPLICATE_VALUE"
    r = api.post("/sobjects/Widget__c", json={"Name": "x", "Account__c": "001000000000zzzAAA"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"
    r = api.get("/sobjects/Widget__c/a00000000000zzzAAA")
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "NOT_FOUND"


def test_upsert_statuses(api: httpx.Client) -> None:
    r = api.patch("/sobjects/Widget__c/Code__c/UP-1", json={"Name": "up"})
    assert r.status_code == 201 and r.json()["created"] is True
    r = api.patch("/sobjects/Widget__c/Code__c/UP-1", json={"Name": "up2"})
    assert r.status_code == 200 and r.json() == {"id": r.json()["id"], "success": True, "errors": [],
                                                 "created": False}
    assert api.patch("/sobjects/Widget__c/Code__c/UP-1", json={"Name": "old"}).status_code == 200
    old = httpx.Client(base_url=str(api.base_url).replace(f"v{V}", "v45.0"), headers=api.headers)
    assert old.patch("/sobjects/Widget__c/Code__c/UP-1", json={"Name": "up3"}).status_code == 204
    r = api.get("/sobjects/Widget__c/Code__c/UP-1")
    assert r.status_code == 200 and r.json()["Name"] == "up3"
    r = api.patch("/sobjects/Widget__c/Nope__c/1", json={})
    assert r.status_code == 404 and r.json()[0]["errorCode"] == "NOT_FOUND"
    api.post("/sobjects/Widget__c", json={"Name": "m1", "Ext_Id__c": "MULTI"})
    api.post("/sobjects/Widget__c", json={"Name": "m2", "Ext_Id__c": "MULTI"})
    r = api.patch("/sobjects/Widget__c/Ext_Id__c/MULTI", json={"Name": "x"})
    assert r.status_code == 300
    assert len(r.json()) == 2 and all(u.startswith(f"/services/data/v{V}/sobjects/Widget__c/") for u in r.json())
    assert api.get("/sobjects/Widget__c/Ext_Id__c/MULTI").status_code == 300


def test_updated_deleted_date_quirks(api: httpx.Client) -> None:
    for start in ("2020-01-01T00:00:00+00:00", "2020-01-01T00:00:00Z", "2020-01-01T00:00:00+0000",
                  "2020-01-01T00:00:00:", "2020-01-01T00:00:00 00:00"):
        for kind in ("updated", "deleted"):
            r = api.get(f"/sobjects/Widget__c/{kind}/", params={"start": start, "end": "2099-01-01T00:00:00Z"})
            assert r.status_code == 200, (kind, start, r.text)
    r = api.get("/sobjects/Widget__c/updated", params={"start": "yesterday", "end": "2099-01-01T00:00:00Z"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"


# --- query --------------------------------------------------------------------------------------------------


def test_query_shapes(api: httpx.Client) -> None:
    api.post("/sobjects/Widget__c", json={"Name": "shape", "Amount__c": 3})
    r = api.get("/query/", params={"q": "select count() from widget__c where name = 'shape'"})
    assert r.json() == {"totalSize": 1, "done": True, "records": []}
    r = api.get("/query", params={"q": "SELECT COUNT(Id), SUM(Amount__c) total FROM Widget__c WHERE Name = 'shape'"})
    rec = r.json()["records"][0]
    assert rec["attributes"] == {"type": "AggregateResult"} and rec["expr0"] == 1 and rec["total"] == 3
    r = api.get("/query", params={"q": "SELECT Id FROM Widget__c LIMIT 1"},
                headers={"Sforce-Query-Options": "batchSize=200"})
    assert r.status_code == 200 and "nextRecordsUrl" not in r.json()


def test_query_errors(api: httpx.Client) -> None:
    r = api.get("/query", params={"q": "SELECT Id FROMM Widget__c"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_QUERY"
    r = api.get("/query", params={"q": "SELECT Id FROM Nope__c"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_TYPE"
    r = api.get("/query")
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_QUERY"
    r = api.get("/query/01gAAAAAAAAAAAAAAA-2000")
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_query_all_includes_deleted_and_locator_serves_both(api: httpx.Client) -> None:
    wid = api.post("/sobjects/Widget__c", json={"Name": "qa-deleted"}).json()["id"]
    api.delete(f"/sobjects/Widget__c/{wid}")
    q = "SELECT Id, IsDeleted FROM Widget__c WHERE Name = 'qa-deleted'"
    assert api.get("/query", params={"q": q}).json()["totalSize"] == 0
    rows = api.get("/queryAll/", params={"q": q}).json()["records"]
    assert rows[0]["IsDeleted"] is True


# --- collections and composite ------------------------------------------------------------------------------


def test_collections_create_update_retrieve_delete(api: httpx.Client) -> None:
    recs = [{"attributes": {"type": "Widget__c"}, "Name": f"col{i}"} for i in range(3)]
    r = api.post("/composite/sobjects", json={"allOrNone": False, "records": recs})
    assert r.status_code == 200
    out = r.json()
    assert all(x["success"] for x in out) and len({x["id"] for x in out}) == 3
    ids_ = [x["id"] for x in out]
    r = api.patch("/composite/sobjects", json={"records": [
        {"attributes": {"type": "Widget__c"}, "id": i, "Count__c": n} for n, i in enumerate(ids_)]})
    assert all(x["success"] for x in r.json())
    r = api.post("/composite/sobjects/Widget__c", json={"ids": [*ids_, "a00000000000zzzAAA"],
                                                        "fields": ["Name", "Count__c"]})
    got = r.json()
    assert [g["Count__c"] for g in got[:3]] == [0, 1, 2] and got[3] is None
    r = api.delete("/composite/sobjects", params={"ids": ",".join(ids_), "allOrNone": "true"})
    assert r.status_code == 200 and all(x["success"] for x in r.json())


def test_collections_all_or_none(api: httpx.Client) -> None:
    recs = [{"attributes": {"type": "Widget__c"}, "Name": "aon-ok"},
            {"attributes": {"type": "Widget__c"}, "Color__c": "Purple"}]
    r = api.post("/composite/sobjects", json={"allOrNone": True, "records": recs})
    assert r.status_code == 200
    ok, bad = r.json()
    assert ok["success"] is False and ok["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert bad["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert "fields" in bad["errors"][0] and "message" in bad["errors"][0]
    assert api.get("/query", params={"q": "SELECT Id FROM Widget__c WHERE Name = 'aon-ok'"}).json()["totalSize"] == 0
    r = api.post("/composite/sobjects", json={"allOrNone": False, "records": recs})
    ok, bad = r.json()
    assert ok["success"] is True and bad["success"] is False


def test_collections_upsert(api: httpx.Client) -> None:
    recs = [{"attributes": {"type": "Widget__c"}, "Code__c": "CU-1", "Name": "a"},
            {"attributes": {"type": "Widget__c"}, "Code__c": "CU-2", "Name": "b"}]
    first = api.patch("/composite/sobjects/Widget__c/Code__c", json={"allOrNone": True, "records": recs}).json()
    assert [x["created"] for x in first] == [True, True]
    again = api.patch("/composite/sobjects/Widget__c/Code__c", json={"records": recs}).json()
    assert [x["created"] for x in again] == [False, False]
    assert [x["id"] for x in again] == [x["id"] for x in first]


def test_composite_with_references(api: httpx.Client) -> None:
    body = {"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": f"/services/data/v{V}/sobjects/Account", "referenceId": "acct",
         "body": {"Name": "Composite Co"}},
        {"method": "POST", "url": f"/services/data/v{V}/sobjects/Widget__c", "referenceId": "w",
         "body": {"Name": "composite widget", "Account__c": "@{acct.id}"}},
        {"method": "GET", "url": f"/services/data/v{V}/sobjects/Widget__c/@{{w.id}}?fields=Account__c",
         "referenceId": "get"},
    ]}
    r = api.post("/composite", json=body)
    out = r.json()["compositeResponse"]
    assert [x["httpStatusCode"] for x in out] == [201, 201, 200]
    assert out[2]["body"]["Account__c"] == out[0]["body"]["id"]
    assert out[0]["referenceId"] == "acct" and "httpHeaders" in out[0]


def test_composite_all_or_none_rolls_back(api: httpx.Client) -> None:
    body = {"allOrNone": True, "compositeRequest": [
        {"method": "POST", "url": f"/services/data/v{V}/sobjects/Widget__c", "referenceId": "a",
         "body": {"Name": "composite-rollback"}},
        {"method": "POST", "url": f"/services/data/v{V}/sobjects/Widget__c", "referenceId": "b",
         "body": {"Color__c": "Purple"}},
    ]}
    out = api.post("/composite", json=body).json()["compositeResponse"]
    assert out[0]["httpStatusCode"] == 400 and out[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert out[1]["body"][0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    q = "SELECT Id FROM Widget__c WHERE Name = 'composite-rollback'"
    assert api.get("/query", params={"q": q}).json()["totalSize"] == 0


# --- search -------------------------------------------------------------------------------------------------


def test_search(api: httpx.Client) -> None:
    api.post("/sobjects/Widget__c", json={"Name": "Quokka one", "Count__c": 1})
    api.post("/sobjects/Widget__c", json={"Name": "Quokka two", "Count__c": 2})
    r = api.get("/search/", params={"q": "FIND {quokka} IN NAME FIELDS RETURNING Widget__c(Name, Count__c "
                                         "WHERE Count__c > 1 ORDER BY Name LIMIT 5)"})
    assert r.status_code == 200
    assert [x["Name"] for x in r.json()["searchRecords"]] == ["Quokka two"]
    r = api.get("/search", params={"q": "FIND {quok*} RETURNING Widget__c(Name ORDER BY Name) LIMIT 1"})
    assert [x["Name"] for x in r.json()["searchRecords"]] == ["Quokka one"]
    assert api.get("/search", params={"q": "FIND quokka"}).status_code == 400
    assert api.get("/search", params={"q": "FIND {q}"}).json()[0]["errorCode"] == "INVALID_SEARCH"


def test_query_all_cursor_served_by_query_locator(api: httpx.Client) -> None:
    for start in (0, 200):
        recs = [{"attributes": {"type": "Widget__c"}, "Name": f"page{i:03d}"} for i in range(start, start + 150)]
        assert all(x["success"] for x in api.post("/composite/sobjects", json={"records": recs}).json())
    q = "SELECT Id, Name FROM Widget__c WHERE Name LIKE 'page%' ORDER BY Name"
    first = api.get("/queryAll", params={"q": q}, headers={"Sforce-Query-Options": "batchSize=200"}).json()
    assert first["totalSize"] == 300 and first["done"] is False and len(first["records"]) == 200
    locator = first["nextRecordsUrl"].rsplit("/", 1)[1]
    assert re.fullmatch(r"01g[0-9A-Za-z]{15}-200", locator)
    rest = api.get(f"/query/{locator}").json()  # jsforce always pages queryAll through /query/{locator}
    assert rest["done"] is True and len(rest["records"]) == 100 and "nextRecordsUrl" not in rest
    assert rest["records"][-1]["Name"] == "page349"


def test_soap_logout_and_identity_of_others(live: Live) -> None:
    tok = live.login()
    body = ('<se:Envelope xmlns:se="http://schemas.xmlsoap.org/soap/envelope/"><se:Header>'
            '<SessionHeader xmlns="urn:partner.soap.sforce.com"><sessionId>' + tok + "</sessionId></SessionHeader>"
            '</se:Header><se:Body><logout xmlns="urn:partner.soap.sforce.com"/></se:Body></se:Envelope>')
    r = httpx.post(f"{live.http}/services/Soap/u/{V}", content=body, headers={"Content-Type": "text/xml"})
    assert r.status_code == 200 and "logoutResponse" in r.text
    assert httpx.get(f"{live.http}/services/data/v{V}/limits",
                     headers={"Authorization": f"Bearer {tok}"}).status_code == 401
    other = live.login()
    r = httpx.get(f"{live.http}/id/00D000000000001AAA/005000000000009AAA", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403


def test_oversized_bodies_are_refused(live: Live, admin_token: str) -> None:
    host, port = live.http.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall((f"POST /services/data/v{V}/sobjects/Widget__c HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {admin_token}\r\nContent-Type: application/json\r\n"
                      "Content-Length: 60000000\r\n\r\n{").encode())
        reply = ""
        while "REQUEST_ENTITY_TOO_LARGE" not in reply:
            chunk = sock.recv(65536).decode()
            if not chunk:
                break
            reply += chunk
    assert reply.startswith("HTTP/1.1 413") and "REQUEST_ENTITY_TOO_LARGE" in reply
