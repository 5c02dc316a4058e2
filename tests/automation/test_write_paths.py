"""Flows live in the lifecycle, so they run on every write path: direct save_many, the REST API, CSV import."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from starlette.testclient import TestClient

from keel.api.app import create_app
from keel.context import Context
from keel.records import save_many
from keel.security import sessions
from keel.services.csvio import import_csv
from keel.services.query import query
from keel.storage import system as S
from tests.conftest import ADMIN, ADMIN_PASSWORD


def _emails(ctx: Context) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(S.outbox)
                                .where(S.outbox.c.topic == "email")).scalar_one())


def test_flow_runs_on_save_many(auto: Context) -> None:
    save_many(auto, "Applicant__c", [{"Name": "S", "Stage__c": "Offer", "Email__c": "s@example.com"}])
    assert _emails(auto) == 1


def _login(auto: Context) -> tuple[TestClient, dict[str, str]]:
    with auto.db.transaction() as conn:
        admin = sessions._find_user(conn, auto, ADMIN)
        assert admin is not None
        client_id, secret = sessions.create_connected_app(auto, conn, "tests", run_as_user_id=admin[0])
    client = TestClient(create_app(auto))
    r = client.post("/services/oauth2/token", data={"grant_type": "password", "username": ADMIN,
                                                     "password": ADMIN_PASSWORD, "client_id": client_id,
                                                     "client_secret": secret})
    assert r.status_code == 200, r.text
    return client, {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_flow_runs_on_rest_api(auto: Context) -> None:
    client, headers = _login(auto)
    r = client.post("/services/data/v59.0/sobjects/Applicant__c", headers=headers,
                    json={"Name": "R", "Stage__c": "Offer", "Email__c": "r@example.com"})
    assert r.status_code == 201, r.text
    rec = query(auto, f"SELECT Flag__c FROM Applicant__c WHERE Id = '{r.json()['id']}'")["records"][0]
    assert rec["Flag__c"] == "offer for R"
    assert _emails(auto) == 1


def test_flow_runs_on_csv_import(auto: Context, tmp_path: Path) -> None:
    f = tmp_path / "in.csv"
    f.write_text("Name,Stage__c,Email__c\nC1,Offer,c1@example.com\nC2,Applied,c2@example.com\n")
    import_csv(auto, "Applicant__c", f)
    assert _emails(auto) == 1
    names = {r["Name"]: r["Flag__c"] for r in query(auto, "SELECT Name, Flag__c FROM Applicant__c")["records"]}
    assert names == {"C1": "offer for C1", "C2": None}


def test_change_events_stream_with_replay(auto: Context) -> None:
    client, headers = _login(auto)
    a = save_many(auto, "Applicant__c", [{"Name": "E1", "Stage__c": "Applied"}])[0].id
    save_many(auto, "Applicant__c", [{"Id": a, "Stage__c": "Interview"}])
    save_many(auto, "Position__c", [{"Name": "P"}])

    def read(url: str) -> list[dict]:
        import orjson

        with client.stream("GET", url, headers=headers) as r:
            assert r.status_code == 200
            text = "".join(r.iter_text())
        out = []
        for block in text.split("\n\n"):
            lines = dict(x.split(": ", 1) for x in block.splitlines() if x and not x.startswith(":"))
            if "data" in lines:
                out.append(orjson.loads(lines["data"]) | {"id": int(lines["id"])})
        return out

    events = read("/events/data/Applicant__ChangeEvent?replayId=-2&idle=0.2")
    heads = [e["payload"]["ChangeEventHeader"] for e in events]
    assert [h["changeType"] for h in heads] == ["CREATE", "UPDATE"]
    assert heads[0]["recordIds"] == [a] and "Stage__c" in heads[1]["changedFields"]
    # replay after the first event; a named subscriber resumes where it stopped
    assert len(read(f"/events/data/Applicant__ChangeEvent?replayId={events[0]['id']}&idle=0.2")) == 1
    first = read("/events/data/ChangeEvents?replayId=-2&subscriber=s1&limit=1")
    rest = read("/events/data/ChangeEvents?subscriber=s1&idle=0.2")
    assert first[0]["id"] < rest[0]["id"] and rest[-1]["payload"]["ChangeEventHeader"]["entityName"] == "Position__c"
