from __future__ import annotations

import httpx
from apihelp import Live


def test_smoke(live: Live, api: httpx.Client) -> None:
    r = api.get("/sobjects/Widget__c/describe")
    assert r.status_code == 200, r.text
    r = api.post("/sobjects/Widget__c/", json={"Name": "w1", "Ext_Id__c": "E1"})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    r = api.get(f"/sobjects/Widget__c/{wid}")
    assert r.status_code == 200, r.text
    print(r.json())
    r = api.get("/query", params={"q": "SELECT Id, Name FROM Widget__c"})
    assert r.status_code == 200, r.text
    print(r.json())
