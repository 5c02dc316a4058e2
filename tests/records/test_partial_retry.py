"""A partial save whose after-save automation fails one row leaves nothing of that row behind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from keel.context import Context
from keel.metadata.tables import table_for
from keel.records import save_many
from keel.records.hooks import RowError, RowState


class FailNamed:
    """After-save hook that creates a Task per Account and refuses accounts named 'bad'."""

    def before_save(self, *a: Any) -> None: ...
    def before_delete(self, *a: Any) -> None: ...
    def after_delete(self, *a: Any) -> None: ...
    def after_undelete(self, *a: Any) -> None: ...

    def after_save(self, ctx: Context, conn: sa.Connection, obj: Any, rows: Sequence[RowState]) -> None:
        if obj.api_name != "Account":
            return
        save_many(ctx.nested(), "Task", [{"Name": f"follow up {r.values['Name']}", "WhatId": None} for r in rows],
                  conn=conn)
        for r in rows:
            if r.values["Name"] == "bad":
                raise RowError(r.index, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "bad account")


def test_failed_after_save_row_is_rolled_back_and_others_retried(org: Context) -> None:
    from dataclasses import replace

    ctx = replace(org, hooks=FailNamed())
    res = save_many(ctx, "Account", [{"Name": "good1"}, {"Name": "bad"}, {"Name": "good2"}], all_or_none=False)
    assert [r.success for r in res] == [True, False, True]
    assert res[1].errors[0].message == "bad account"
    schema = org.schema()
    with org.db.read() as conn:
        names = sorted(conn.execute(sa.select(table_for(schema, schema.get_object("Account")).c.name)).scalars())
        tasks = sorted(conn.execute(sa.select(table_for(schema, schema.get_object("Task")).c.name)).scalars())
    assert names == ["good1", "good2"]
    assert tasks == ["follow up good1", "follow up good2"]
