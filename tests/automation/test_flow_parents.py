"""A flow condition that reads a parent (``Team__r.Status__c``) reads a batch's parents in one query, not one per
row, and still sees each row's own parent (including a missing one)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from keel.context import Context
from keel.records import save_many
from keel.services.automation import wire_automation
from keel.services.metadata import apply_package
from keel.services.query import query

OBJECTS = [
    {"object": "Team__c", "fields": [{"name": "Status__c", "type": "picklist", "values": ["Open", "Closed"]}]},
    {"object": "Member__c", "fields": [
        {"name": "Team__c", "type": "lookup", "to": "Team__c", "relationship_name": "Team__r",
         "child_relationship_name": "Members__r"},
        {"name": "Note__c", "type": "text", "length": 80}]},
]
FLOW = {"flow": "Joined_Open_Team", "object": "Member__c", "event": "created",
        "condition": "ISPICKVAL(Team__r.Status__c, 'Open')",
        "actions": [{"update": {"target": "self", "values": {"Note__c": "'joined ' & Team__r.Name"}}}]}


def test_a_flow_condition_reads_the_batch_parents_at_once(org: Context, tmp_path: Path) -> None:
    (tmp_path / "objects").mkdir()
    (tmp_path / "flows").mkdir()
    for d in OBJECTS:
        (tmp_path / "objects" / f"{d['object']}.yaml").write_text(yaml.safe_dump(d))
    (tmp_path / "flows" / "joined.yaml").write_text(yaml.safe_dump(FLOW))
    ctx = wire_automation(org)
    apply_package(ctx, tmp_path)
    teams = save_many(ctx, "Team__c", [{"Name": f"T{i}", "Status__c": "Open" if i % 2 else "Closed"}
                                       for i in range(300)])
    team_table = ctx.schema().get_object("Team__c").table
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and re.search(rf"\b{team_table}\b", statement):
            reads.append(statement)

    sa.event.listen(ctx.db.engine, "before_cursor_execute", count)
    try:
        save_many(ctx, "Member__c", [{"Name": f"M{i}", "Team__c": teams[i].id} for i in range(300)]
                  + [{"Name": "Loner"}])
    finally:
        sa.event.remove(ctx.db.engine, "before_cursor_execute", count)
    # 300 distinct parents: the lifecycle's lookup check, then one IN query for the flow (301 before: one a row)
    assert 1 <= len(reads) <= 3, len(reads)
    notes = {r["Name"]: r["Note__c"] for r in query(ctx, "SELECT Name, Note__c FROM Member__c")["records"]}
    assert notes["M1"] == "joined T1" and notes["M0"] is None and notes["Loner"] is None
    assert sum(1 for v in notes.values() if v) == 150
