"""End-to-end with django-salesforce's DB-API driver (no Django project): its default OAuth password login checks
the HMAC ``signature``, it sends ``Authorization: OAuth``, needs https, pages through cursors and writes through
sObject Collections."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from apihelp import ADMIN, ADMIN_PW, Live, V
from salesforce.dbapi import driver


@pytest.fixture(scope="module")
def dj(live: Live) -> Iterator[Any]:
    from django.conf import settings

    if not settings.configured:
        settings.configure()  # the driver reads a few SF_* settings; their defaults are what we want
    mp = pytest.MonkeyPatch()
    mp.setenv("REQUESTS_CA_BUNDLE", str(live.cert))  # django-salesforce passes verify=True explicitly
    conn = driver.connect(settings_dict={
        "ENGINE": "salesforce.backend", "HOST": live.https, "CONSUMER_KEY": live.client_id,
        "CONSUMER_SECRET": live.client_secret, "USER": ADMIN, "PASSWORD": ADMIN_PW, "API_VERSION": V,
    }, alias=f"keel-{live.backend}")
    try:
        yield conn
    finally:
        conn.close()
        mp.undo()


def test_django_salesforce_collections_and_queries(dj: Any) -> None:
    ids = dj.sobject_collections_request("POST", [
        {"type_": "Widget__c", "Name": f"dj{i}", "Count__c": str(i), "Active__c": "true",
         "When__c": "2024-01-02T03:04:05.000+0100"} for i in range(3)])
    assert len(ids) == 3 and all(len(x) == 18 for x in ids)
    cur = dj.cursor()
    cur.execute("SELECT Widget__c.Id, Widget__c.Name, Widget__c.Count__c, Widget__c.When__c FROM Widget__c "
                "WHERE (Widget__c.Name LIKE 'dj%%' AND Widget__c.Active__c = true) ORDER BY Widget__c.Name")
    rows = cur.fetchall()
    assert [r[1] for r in rows] == ["dj0", "dj1", "dj2"]
    assert rows[1][2] == 1
    assert str(rows[0][3]).startswith("2024-01-02 02:04:05")  # parsed from .000+0000 into a datetime
    cur.execute("SELECT COUNT() FROM Widget__c WHERE Widget__c.Name LIKE 'dj%%'")
    assert cur.fetchone() == (3,)
    with pytest.raises(driver.SalesforceError):
        dj.sobject_collections_request("POST", [{"type_": "Widget__c", "Name": "ok"},
                                                {"type_": "Widget__c", "Color__c": "Purple"}])
    dj.sobject_collections_request("DELETE", ids)
    cur.execute("SELECT Widget__c.Id FROM Widget__c WHERE Widget__c.Name LIKE 'dj%%'")
    assert cur.fetchall() == []
