"""Fiscal date literals follow the organisation's ``FiscalYearStartMonth`` on every read path, from the very next
query after it changes, and a queryMore cursor keeps the fiscal year its first page used."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from keel.context import Context
from keel.records import save_many
from keel.services.org import org_id
from keel.services.query import query, query_more
from keel.services.security import user_context
from keel.services.users import administrator_id

NOW = dt.datetime(2024, 6, 15, 12, 0)  # naive UTC, as the clock gives it
SOQL = "SELECT Name FROM Opportunity WHERE CloseDate = THIS_FISCAL_QUARTER ORDER BY Name"


def _names(ctx: Context, soql: str = SOQL) -> list[str]:
    return [r["Name"] for r in query(ctx, soql)["records"]]


def _set_fiscal_start(org: Context, month: int) -> None:
    with org.db.transaction() as conn:
        save_many(org, "Organization", [{"Id": org_id(org), "FiscalYearStartMonth": month}], conn=conn)


def test_changing_the_fiscal_year_start_changes_this_fiscal_quarter(org: Context) -> None:
    with org.db.transaction() as conn:
        save_many(org, "Opportunity", [
            {"Name": "May 31", "CloseDate": "2024-05-31", "StageName": "Prospecting"},
            {"Name": "Jun 15", "CloseDate": "2024-06-15", "StageName": "Prospecting"},
            {"Name": "Jul 15", "CloseDate": "2024-07-15", "StageName": "Prospecting"},
            {"Name": "Aug 31", "CloseDate": "2024-08-31", "StageName": "Prospecting"},
        ], conn=conn)
    admin = replace(user_context(org, administrator_id(org)), clock=lambda: NOW)
    assert _names(admin) == ["Jun 15", "May 31"]  # January: Apr-Jun
    _set_fiscal_start(org, 2)
    assert _names(admin) == ["Jul 15", "Jun 15", "May 31"]  # February: May-Jul
    _set_fiscal_start(org, 3)
    assert _names(admin) == ["Aug 31", "Jul 15", "Jun 15"]  # March: Jun-Aug
    assert _names(admin, SOQL.replace("THIS_", "LAST_")) == ["May 31"]
    _set_fiscal_start(org, 7)  # July: FY 2023-07..2024-07; next fiscal year holds July and August
    assert _names(admin, SOQL.replace("THIS_FISCAL_QUARTER", "NEXT_FISCAL_YEAR")) == ["Aug 31", "Jul 15"]


def test_a_cursor_keeps_the_fiscal_year_of_its_first_page(org: Context) -> None:
    with org.db.transaction() as conn:
        save_many(org, "Opportunity", [
            {"Name": f"Jul {i:03d}", "CloseDate": "2024-07-15", "StageName": "Prospecting"} for i in range(250)
        ], conn=conn)
    _set_fiscal_start(org, 2)
    admin = replace(user_context(org, administrator_id(org)), clock=lambda: NOW)
    first = query(admin, SOQL, batch_size=200)
    assert first["totalSize"] == 250 and len(first["records"]) == 200 and not first["done"]
    _set_fiscal_start(org, 1)  # Jul 15 leaves this fiscal quarter for new queries, not for the open cursor
    more = query_more(admin, first["nextRecordsUrl"].rsplit("/", 1)[-1])
    assert [r["Name"] for r in more["records"]] == [f"Jul {i:03d}" for i in range(200, 250)] and more["done"]
    assert query(admin, SOQL)["totalSize"] == 0
