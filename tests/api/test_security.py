"""Security through the API: record visibility, field-level security and object permissions on every read and
write surface, API Enabled, and per-user rate limits. Every request runs as its token's user; nothing bypasses."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from apihelp import USER, USER_PW, Live, V
from starlette.testclient import TestClient

from keel.api.app import create_app


@pytest.fixture(scope="module")
def user_api(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{live.http}/services/data/v{V}",
                      headers={"Authorization": f"Bearer {live.login(USER, USER_PW)}"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def records(api: httpx.Client, user_api: httpx.Client) -> dict[str, str]:
    """One widget owned by the administrator (private sharing: invisible to the user) and one owned by the user."""
    admin = api.post("/sobjects/Widget__c", json={"Name": "sec-admin", "Secret__c": "s3cret", "Code__c": "SEC-A"})
    mine = user_api.post("/sobjects/Widget__c", json={"Name": "sec-mine", "Code__c": "SEC-U"})
    assert admin.status_code == 201 and mine.status_code == 201, (admin.text, mine.text)
    return {"admin": admin.json()["id"], "mine": mine.json()["id"]}


SURFACES = ["retrieve", "query", "search", "collections", "external_id", "composite", "updated"]


def _sees(client: httpx.Client, surface: str, rid: str, code: str) -> bool:
    if surface == "retrieve":
        r = client.get(f"/sobjects/Widget__c/{rid}")
        assert r.status_code in (200, 404), r.text
        return r.status_code == 200
    if surface == "query":
        return bool(client.get("/query", params={"q": f"SELECT Id FROM Widget__c WHERE Id = '{rid}'"}
                               ).json()["totalSize"])
    if surface == "search":
        rows = client.get("/search", params={"q": "FIND {sec-} IN NAME FIELDS RETURNING Widget__c(Id)"}
                          ).json()["searchRecords"]
        return rid in [r["Id"] for r in rows]
    if surface == "collections":
        return client.post("/composite/sobjects/Widget__c", json={"ids": [rid], "fields": ["Name"]}
                           ).json()[0] is not None
    if surface == "external_id":
        return client.get(f"/sobjects/Widget__c/Code__c/{code}").status_code == 200
    if surface == "composite":
        out = client.post("/composite", json={"compositeRequest": [
            {"method": "GET", "url": f"/services/data/v{V}/sobjects/Widget__c/{rid}", "referenceId": "r"}]}
        ).json()["compositeResponse"]
        return bool(out[0]["httpStatusCode"] == 200)
    if surface == "updated":
        start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return rid in client.get("/sobjects/Widget__c/updated", params={
            "start": start, "end": "2099-01-01T00:00:00Z"}).json()["ids"]
    raise AssertionError(surface)


@pytest.mark.parametrize("surface", SURFACES)
def test_record_visibility_matrix(api: httpx.Client, user_api: httpx.Client, records: dict[str, str],
                                  surface: str) -> None:
    assert _sees(api, surface, records["admin"], "SEC-A")
    assert _sees(api, surface, records["mine"], "SEC-U")  # the administrator sees everything
    assert _sees(user_api, surface, records["mine"], "SEC-U")
    assert not _sees(user_api, surface, records["admin"], "SEC-A")


def test_writes_to_invisible_records_fail(user_api: httpx.Client, records: dict[str, str]) -> None:
    r = user_api.patch(f"/sobjects/Widget__c/{records['admin']}", json={"Name": "hijack"})
    assert 400 <= r.status_code < 500 and r.json()[0]["errorCode"]
    r = user_api.delete(f"/sobjects/Widget__c/{records['admin']}")
    assert 400 <= r.status_code < 500
    r = user_api.delete("/composite/sobjects", params={"ids": records["admin"]})
    assert r.json()[0]["success"] is False


def test_field_level_security(user_api: httpx.Client, api: httpx.Client, records: dict[str, str]) -> None:
    mine = user_api.get(f"/sobjects/Widget__c/{records['mine']}").json()
    assert "Secret__c" not in mine and "Name" in mine
    r = user_api.get("/query", params={"q": "SELECT Secret__c FROM Widget__c"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD"
    r = user_api.patch(f"/sobjects/Widget__c/{records['mine']}", json={"Secret__c": "x"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    r = user_api.get("/search", params={"q": "FIND {s3cret} RETURNING Widget__c(Id)"})
    assert r.json()["searchRecords"] == []  # an unreadable field is never searched
    assert api.get(f"/sobjects/Widget__c/{records['admin']}").json()["Secret__c"] == "s3cret"


def test_object_permissions(user_api: httpx.Client) -> None:
    r = user_api.get("/sobjects/Organization/describe")
    assert r.status_code == 404
    r = user_api.get("/query", params={"q": "SELECT Id FROM Organization"})
    assert r.status_code == 400 or r.json()["totalSize"] == 0  # no object Read: no rows (parent paths too)
    r = user_api.post("/sobjects/Organization", json={"Name": "x"})
    assert r.status_code == 404


def test_rate_limit_per_user(live: Live) -> None:
    ctx = dataclasses.replace(live.ctx, settings=dataclasses.replace(live.ctx.settings, api_requests_per_minute=3))
    token = live.login()
    with TestClient(create_app(ctx), base_url="https://127.0.0.1") as client:
        h = {"Authorization": f"Bearer {token}"}
        codes = [client.get(f"/services/data/v{V}/limits", headers=h) for _ in range(4)]
    assert [r.status_code for r in codes] == [200, 200, 200, 403]
    last = codes[-1]
    assert last.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert 1 <= int(last.headers["Retry-After"]) <= 61
    assert last.headers["content-type"] == "application/json;charset=UTF-8"
    assert codes[0].headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_a_session_without_api_enabled_is_refused_on_rest(live: Live) -> None:
    from apihelp import NOAPI, NOAPI_PW

    from keel.security import sessions

    token = sessions.authenticate(live.ctx, NOAPI, NOAPI_PW, ip="127.0.0.1").token  # e.g. a web UI session
    r = httpx.get(f"{live.http}/services/data/v{V}/sobjects", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and r.json()[0]["errorCode"] == "API_CURRENTLY_DISABLED"
