"""Two organisations in two PostgreSQL schemas of one database: nothing crosses between them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from keel.context import Context
from keel.records import save_many
from keel.services.org import init_org, org_id
from keel.services.query import query
from tests.conftest import ADMIN, ADMIN_PASSWORD, PG_URL
from tests.ops.apiclient import V, client_and_token

PG_ONLY = ["postgresql"] if PG_URL else []


@pytest.mark.parametrize("backend", PG_ONLY)
def test_two_schemas_are_isolated(backend: str, make_db: Callable[[str], Context]) -> None:
    a, b = make_db("postgresql"), make_db("postgresql")
    assert a.db.schema != b.db.schema
    for ctx, name in ((a, "A"), (b, "B")):
        init_org(ctx, admin_username=ADMIN, admin_password=ADMIN_PASSWORD, org_name=f"Org {name}")
        save_many(ctx, "Account", [{"Name": f"{name} account {i}"} for i in range(3)])
    assert org_id(a) == org_id(b)  # same ids in both schemas: isolation cannot rely on ids being different
    names_a = {r["Name"] for r in query(a, "SELECT Name FROM Account")["records"]}
    names_b = {r["Name"] for r in query(b, "SELECT Name FROM Account")["records"]}
    assert names_a == {f"A account {i}" for i in range(3)}
    assert names_b == {f"B account {i}" for i in range(3)}
    with a.db.read() as conn:  # every connection is pinned to its own schema
        assert str(conn.exec_driver_sql("SHOW search_path").scalar()).strip('"') == a.db.schema

    client_a, token_a = client_and_token(a)
    client_b, token_b = client_and_token(b)
    auth_a = {"Authorization": f"Bearer {token_a}"}
    mine = client_a.get(f"/services/data/{V}/query", params={"q": "SELECT Name FROM Account"}, headers=auth_a)
    assert mine.status_code == 200 and {r["Name"] for r in mine.json()["records"]} == names_a
    # Org A's token means nothing to org B, even though the user ids are identical.
    crossed = client_b.get(f"/services/data/{V}/query", params={"q": "SELECT Name FROM Account"}, headers=auth_a)
    assert crossed.status_code == 401 and crossed.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    created = client_b.post(f"/services/data/{V}/sobjects/Account", json={"Name": "B only"},
                            headers={"Authorization": f"Bearer {token_b}"})
    assert created.status_code == 201
    assert "B only" not in {r["Name"] for r in query(a, "SELECT Name FROM Account")["records"]}
