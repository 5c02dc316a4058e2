"""Onboarding a recipient charity so that its users see its allocations and nobody else's.

Allocations are private (OWD). Each charity gets a public group holding its finance users and two
criteria-based sharing rules: "Allocation__c where Recipient_Code__c equals <the charity's code> → Edit for the
group", and "Account where Charity_Code__c equals <code> → Read" so its users see their own charity's name.
``Recipient_Code__c`` is copied from the recipient's ``Charity_Code__c`` by the app's ``Allocation_Recipient_Code``
flow, so a new allocation is shared the moment it is saved, and adding or removing
a group member grants or revokes access at once. Everything is ordinary records (Group, GroupMember,
SharingRule) that an administrator can also manage by hand; this module only saves the administrator typing.
Install-time only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from keel.context import Context
from keel.records import save_many
from keel.services.query import query


def _developer_name(code: str) -> str:
    return "Charity_" + re.sub(r"[^A-Za-z0-9]+", "_", code).strip("_")


def onboard_charity(ctx: Context, account_id: str, code: str, user_ids: Sequence[str] = ()) -> str:
    """Give the charity ``account_id`` the code ``code``, a users group with ``user_ids`` and the sharing rule
    for its allocations; idempotent. Returns the group id."""
    dev = _developer_name(code)
    found = query(ctx, f"SELECT Id FROM Group WHERE DeveloperName = '{dev}'")["records"]
    if found:
        group = str(found[0]["Id"])
    else:
        name = query(ctx, f"SELECT Name FROM Account WHERE Id = '{account_id}'")["records"][0]["Name"]
        group = str(save_many(ctx, "Group", [{"Name": f"{name} users"[:80], "DeveloperName": dev}])[0].id)
    save_many(ctx, "Account", [{"Id": account_id, "Charity_Code__c": code, "Charity_Group_Id__c": group}])
    # Edit on the charity's allocations (to decide them); Read on the charity's own account (to see its name).
    for obj, field, level in (("Allocation__c", "Recipient_Code__c", "Edit"), ("Account", "Charity_Code__c", "Read")):
        rule = query(ctx, f"SELECT Id FROM SharingRule WHERE SobjectType = '{obj}' AND "
                          f"CriteriaValue = '{code}' AND TargetId = '{group}'")["records"]
        if not rule:
            save_many(ctx, "SharingRule", [{
                "Name": f"{obj.replace('__c', '')} of {code}"[:80], "SobjectType": obj, "RuleType": "Criteria",
                "CriteriaField": field, "CriteriaOperator": "equals", "CriteriaValue": code, "TargetId": group,
                "AccessLevel": level}])
    add_charity_users(ctx, group, user_ids)
    return group


def add_charity_users(ctx: Context, group_id: str, user_ids: Sequence[str]) -> None:
    """Add users to a charity's group (members already there are skipped)."""
    have = {str(r["UserOrGroupId"]) for r in query(
        ctx, f"SELECT UserOrGroupId FROM GroupMember WHERE GroupId = '{group_id}'")["records"]}
    new = [{"GroupId": group_id, "UserOrGroupId": u} for u in dict.fromkeys(user_ids) if u not in have]
    if new:
        save_many(ctx, "GroupMember", new)
