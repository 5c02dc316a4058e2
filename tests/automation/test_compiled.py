"""Flows are compiled once per schema snapshot and automation version: a redeploy must still take effect on the
next save, a before-save update honours the flow's event, and flows of one save see each other's updates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from keel.context import Context
from keel.records import save_many
from keel.services.automation import deploy_automation
from keel.services.query import query


def _deploy(ctx: Context, root: Path, *flows: dict[str, Any]) -> None:
    (root / "flows").mkdir(parents=True, exist_ok=True)
    for f in flows:
        (root / "flows" / f"{f['flow']}.yaml").write_text(yaml.safe_dump(f))
    deploy_automation(ctx, root)


def _flag(ctx: Context, rid: str | None) -> Any:
    return query(ctx, f"SELECT Flag__c FROM Applicant__c WHERE Id = '{rid}'")["records"][0]["Flag__c"]


def test_redeployed_flow_takes_effect_on_the_next_save(auto: Context, tmp_path: Path) -> None:
    flow = {"flow": "Tagger", "object": "Applicant__c", "event": "created",
            "condition": "ISPICKVAL(Stage__c, 'Applied')", "before_save": {"set": {"Flag__c": "'first'"}}}
    _deploy(auto, tmp_path / "v1", flow)
    a = save_many(auto, "Applicant__c", [{"Name": "A", "Stage__c": "Applied"}])[0].id
    _deploy(auto, tmp_path / "v2", {**flow, "before_save": {"set": {"Flag__c": "'second ' & Name"}}})
    b = save_many(auto, "Applicant__c", [{"Name": "B", "Stage__c": "Applied"}])[0].id
    assert (_flag(auto, a), _flag(auto, b)) == ("first", "second B")


def test_before_save_update_runs_only_on_its_event(auto: Context, tmp_path: Path) -> None:
    _deploy(auto, tmp_path / "p", {"flow": "On_Create", "object": "Applicant__c", "event": "created",
                                   "before_save": {"set": {"Flag__c": "'created ' & Name"}}})
    rid = save_many(auto, "Applicant__c", [{"Name": "C", "Stage__c": "Applied"}])[0].id
    assert _flag(auto, rid) == "created C"
    save_many(auto, "Applicant__c", [{"Id": rid, "Name": "C2", "Flag__c": "edited"}])
    assert _flag(auto, rid) == "edited"


def test_a_later_flow_sees_an_earlier_flows_before_save_update(auto: Context, tmp_path: Path) -> None:
    # definitions load in name order: A_Set runs before B_Read, and B_Read's condition reads what A_Set wrote
    _deploy(auto, tmp_path / "p",
            {"flow": "A_Set", "object": "Applicant__c", "event": "created",
             "before_save": {"set": {"Counter__c": "7"}}},
            {"flow": "B_Read", "object": "Applicant__c", "event": "created", "condition": "Counter__c = 7",
             "before_save": {"set": {"Flag__c": "'saw ' & TEXT(Counter__c)"}}})
    rows = save_many(auto, "Applicant__c", [{"Name": f"N{i}", "Stage__c": "Applied"} for i in range(3)])
    assert {_flag(auto, r.id) for r in rows} == {"saw 7"}
