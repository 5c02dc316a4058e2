"""A random batch of valid and invalid drafts never leaves a partial write in all-or-none mode."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.context import Context
from keel.errors import BatchError
from keel.metadata.tables import table_for
from keel.records import save_many

GOOD = st.fixed_dictionaries({
    "Name": st.text(min_size=1, max_size=20).filter(str.strip),
    "Department__c": st.sampled_from(["Operations", "field", "SUPPORT"]),
}, optional={
    "Max_Pay__c": st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False),
    "Remote__c": st.booleans(),
    "Headcount__c": st.integers(min_value=0, max_value=99999),
})
BAD = st.one_of(
    st.just({"Name": "x"}),  # missing the required department
    st.fixed_dictionaries({"Name": st.just("x"), "Department__c": st.sampled_from(["Sales", "", "HR"])}),
    st.fixed_dictionaries({"Name": st.just("x"), "Department__c": st.just("Field"),
                           "Max_Pay__c": st.sampled_from(["abc", "1e30", True])}),
    st.fixed_dictionaries({"Name": st.text(min_size=81, max_size=90), "Department__c": st.just("Field")}),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.one_of(GOOD, BAD), min_size=1, max_size=12))
def test_all_or_none_never_writes_part_of_a_batch(crm: Context, batch: list[dict[str, Any]]) -> None:
    schema = crm.schema()
    t = table_for(schema, schema.get_object("Position__c"))

    def rows() -> int:
        with crm.db.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar())

    before = rows()
    try:
        results = save_many(crm, "Position__c", batch)
    except BatchError as e:
        assert any(r.errors for r in e.results)
        assert rows() == before
    else:
        assert all(r.success for r in results)
        assert rows() == before + len(batch)
