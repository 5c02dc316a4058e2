"""Every validation rule of the three apps is exercised over the REST API, or says here why it cannot be."""

from __future__ import annotations

import re
from pathlib import Path

from tests.apps.rest import all_app_rules

MODULES = ("test_api_recruiting_rules.py", "test_api_vendor_rules.py", "test_api_philanthropy_rules.py",
           "test_api_approvals.py")
# The line amounts are recomputed by the PO_Line_Amounts before-save flow on every save, so a wrong one never
# reaches these rules (test_api_vendor_rules checks that a wrong amount sent is corrected).
NOT_OVER_REST = {"PO_Line__c.Amount_Is_Quantity_Times_Price", "PO_Line__c.Received_Amount_Matches"}


def test_every_app_rule_is_refused_over_rest_somewhere() -> None:
    here = Path(__file__).parent
    named = set().union(*(re.findall(r'"(\w+\.\w+)"\)', (here / m).read_text(encoding="utf-8")) for m in MODULES))
    rules = set(all_app_rules())
    assert not NOT_OVER_REST - rules, "listed as unreachable but no longer a rule"
    assert not named - rules, f"tests name rules that do not exist: {sorted(named - rules)}"
    assert rules - NOT_OVER_REST <= named, f"not exercised over REST: {sorted(rules - NOT_OVER_REST - named)}"
