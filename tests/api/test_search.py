"""``/search`` over HTTP, answered from the full-text indexes: writes through the REST API are found at once, the
security model decides what can match, and hostile search terms are words (or Salesforce's errors), never a 500."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from apihelp import USER, USER_PW, Live, V

from keel.records import undelete_many
from keel.services.security import system_context


@pytest.fixture(scope="module")
def user_api(live: Live) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{live.http}/services/data/v{V}",
                      headers={"Authorization": f"Bearer {live.login(USER, USER_PW)}"}, timeout=60) as c:
        yield c


def word() -> str:
    """A token no other test writes, so each test sees only its own records."""
    return "w" + uuid.uuid4().hex[:10]


def found(client: httpx.Client, sosl: str) -> list[dict[str, Any]]:
    r = client.get("/search", params={"q": sosl})
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["searchRecords"]
    return out


def create(client: httpx.Client, **fields: Any) -> str:
    r = client.post("/sobjects/Widget__c", json=fields)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_rest_writes_are_searchable_at_once(api: httpx.Client, live: Live) -> None:
    w, w2 = word(), word()
    rid = create(api, Name=f"{w} widget", Email__c=f"{w}@example.com")
    assert [x["Id"] for x in found(api, f"FIND {{{w}}} RETURNING Widget__c(Id)")] == [rid]
    assert api.patch(f"/sobjects/Widget__c/{rid}", json={"Name": f"{w2} widget"}).status_code == 204
    assert [x["Name"] for x in found(api, f"FIND {{{w2}}} IN NAME FIELDS RETURNING Widget__c(Name)")] == \
        [f"{w2} widget"]
    assert found(api, f"FIND {{{w}}} IN NAME FIELDS RETURNING Widget__c(Id)") == []
    assert [x["Id"] for x in found(api, f"FIND {{{w}}} IN EMAIL FIELDS RETURNING Widget__c(Id)")] == [rid]
    assert api.delete(f"/sobjects/Widget__c/{rid}").status_code == 204
    assert found(api, f"FIND {{{w2}}} RETURNING Widget__c(Id)") == []
    undelete_many(system_context(live.ctx, "test undelete"), "Widget__c", [rid])
    assert [x["Id"] for x in found(api, f"FIND {{{w2}}} RETURNING Widget__c(Id)")] == [rid]


def test_collections_writes_are_searchable(api: httpx.Client) -> None:
    w = word()
    r = api.post("/composite/sobjects", json={"allOrNone": True, "records": [
        {"attributes": {"type": "Widget__c"}, "Name": f"{w} {i}", "Code__c": f"{w[:12]}{i}"} for i in range(30)]})
    assert r.status_code == 200 and all(x["success"] for x in r.json()), r.text
    got = found(api, f"FIND {{{w}}} RETURNING Widget__c(Name ORDER BY Name DESC LIMIT 5)")
    assert [x["Name"] for x in got] == [f"{w} {i}" for i in (9, 8, 7, 6, 5)]
    assert len(found(api, f"FIND {{{w}}} RETURNING Widget__c(Id WHERE Name LIKE '% 1%')")) == 11  # 1, 10-19
    assert len(found(api, f"FIND {{{w}}} RETURNING Widget__c(Id) LIMIT 7")) == 7


def test_hidden_records_and_fields_never_match(api: httpx.Client, user_api: httpx.Client) -> None:
    """Private sharing hides the administrator's widget from the user, and the user cannot read Secret__c: neither
    the record nor a value in the hidden field can be found, however the term is written."""
    w, s = word(), word()
    hidden = create(api, Name=f"{w} hidden")
    visible = create(user_api, Name=f"{w} mine")
    secret_holder = create(api, Name="secret holder", Secret__c=f"{s} value")
    assert api.patch(f"/sobjects/Widget__c/{secret_holder}", json={"OwnerId": _user_id(api)}).status_code == 204
    assert {x["Id"] for x in found(api, f"FIND {{{w}}} RETURNING Widget__c(Id)")} == {hidden, visible}
    for term in (w, f"{w}*", f'"{w} hidden"', f"{w} OR hidden", f"({w})"):
        ids = {x["Id"] for x in found(user_api, f"FIND {{{term}}} RETURNING Widget__c(Id)")}
        assert hidden not in ids, term
    assert [x["Id"] for x in found(user_api, f"FIND {{{w}}} RETURNING Widget__c(Id)")] == [visible]
    assert [x["Id"] for x in found(api, f"FIND {{{s}}} RETURNING Widget__c(Id)")] == [secret_holder]
    assert user_api.get(f"/sobjects/Widget__c/{secret_holder}").status_code == 200  # the record is visible …
    for term in (s, f"{s}*", f'"{s} value"'):
        assert found(user_api, f"FIND {{{term}}} RETURNING Widget__c(Id)") == [], term  # … its secret is not
    r = user_api.get("/search", params={"q": f"FIND {{{w}}} RETURNING Widget__c(Id, Secret__c)"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_FIELD"


def _user_id(api: httpx.Client) -> str:
    r = api.get("/query", params={"q": f"SELECT Id FROM User WHERE Username = '{USER}'"})
    return str(r.json()["records"][0]["Id"])


@pytest.mark.parametrize("term", [
    "it's", '\\"quoted\\"', "a) OR (b", "NEAR(x y)", "col:value", "-minus", "+plus", "x AND", "OR", "x' OR '1'='1",
    "'):* | !x", "\\{braces\\}", "x\\\\y", "tab\tbed", "ünïcödé", "%_%", "1 = 1; DROP TABLE o_1",
])
def test_hostile_terms_never_fail_the_server(api: httpx.Client, term: str) -> None:
    r = api.get("/search", params={"q": f"FIND {{{term}}} RETURNING Widget__c(Id), Account(Id)"})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.json()[0]["errorCode"] in ("MALFORMED_SEARCH", "INVALID_SEARCH"), r.text


def test_special_characters_are_word_separators(api: httpx.Client) -> None:
    w = word()
    rid = create(api, Name=f"{w}-alpha (beta)", Email__c=f"first.last@{w}.example")
    for term in (f"{w}-alpha", f"{w}\\-alpha", f'"{w} alpha"', f"{w} AND beta", f"first.last@{w}.example",
                 f"{w[:6]}*"):
        assert [x["Id"] for x in found(api, f"FIND {{{term}}} RETURNING Widget__c(Id)")] == [rid], term
    assert found(api, f'FIND {{"alpha {w}"}} RETURNING Widget__c(Id)') == []  # phrases keep their order
    assert found(api, f"FIND {{{w} AND NOT beta}} RETURNING Widget__c(Id)") == []


def test_errors(api: httpx.Client) -> None:
    r = api.get("/search", params={"q": "FIND {x} RETURNING Widget__c(Id)"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_SEARCH"
    assert r.json()[0]["message"] == "search term must be longer than one character"
    r = api.get("/search", params={"q": 'FIND {"open phrase} RETURNING Widget__c(Id)'})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_SEARCH"
    r = api.get("/search", params={"q": "FIND {(abc} RETURNING Widget__c(Id)"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_SEARCH"
    r = api.get("/search", params={"q": "FIND {abc} RETURNING Nope__c(Id)"})
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "INVALID_TYPE"
