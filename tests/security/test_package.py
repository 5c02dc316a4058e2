"""Permission sets as YAML: parsed strictly, checked against the schema, deployed through the lifecycle."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from keel.context import Context
from keel.errors import MetadataError
from keel.security.package import parse_permission_set
from keel.services.security import deploy_permission_sets, user_context
from tests.security.conftest import new_user


def test_yaml_permission_sets(org: Context, tmp_path: Path) -> None:
    folder = tmp_path / "permission_sets"
    folder.mkdir()
    (folder / "sales_ops.yaml").write_text(yaml.safe_dump({
        "name": "Sales_Ops", "label": "Sales Ops", "system": ["ExportReport"],
        "objects": {"Opportunity": ["read", "edit", "view_all"]}, "fields": {"Opportunity.Amount": ["read"]}}))
    (folder / "auditor.yaml").write_text(yaml.safe_dump({
        "name": "Auditor", "profile": True, "system": ["ViewAllData"]}))
    assert len(deploy_permission_sets(org, tmp_path)) == 2
    uid = new_user(org, "aud@example.com", "Auditor")
    aud = user_context(org, uid).actor.access
    assert aud.can("Account", "read") and not aud.can("Account", "edit")
    assert aud.field_readable("Opportunity", "Amount") and not aud.field_editable("Opportunity", "Amount")
    # Redeploying replaces the set's object and field permissions instead of adding to them.
    (folder / "auditor.yaml").write_text(yaml.safe_dump({"name": "Auditor", "profile": True,
                                                         "objects": {"Case": ["read"]}}))
    deploy_permission_sets(org, tmp_path)
    aud = user_context(org, uid).actor.access
    assert aud.can("Case", "read") and not aud.can("Account", "read")


@pytest.mark.parametrize("doc", [
    {"label": "no name"},
    {"name": "X", "system": ["GodMode"]},
    {"name": "X", "objects": {"Account": ["read", "fly"]}},
    {"name": "X", "fields": {"Account": ["read"]}},
    {"name": "X", "colour": "red"},
])
def test_bad_permission_sets_are_rejected(doc: dict[str, object]) -> None:
    with pytest.raises(MetadataError):
        parse_permission_set(doc)


def test_unknown_names_fail_the_deploy(org: Context, tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(yaml.safe_dump({"name": "X", "fields": {"Account.Nope__c": ["read"]}}))
    with pytest.raises(MetadataError):
        deploy_permission_sets(org, tmp_path)


def test_user_administrator_without_modify_all_data(org: Context, tmp_path: Path) -> None:
    """Manage Users is enough to administer users, roles and assignments created by someone else; setup records
    have no record-level sharing. It is not enough to read business data."""
    from keel.records import save_many
    from keel.services.security import deploy_permission_set

    with org.db.transaction() as conn:
        deploy_permission_set(org, conn, parse_permission_set({"name": "User Admin", "profile": True,
                                                               "system": ["ManageUsers"]}))
    admin = user_context(org, new_user(org, "ua@example.com", "User Admin"))
    other = new_user(org, "sam@example.com", "Standard User")
    save_many(admin, "User", [{"Id": other, "Title": "Detective"}])
    role = save_many(admin, "UserRole", [{"Name": "Squad", "DeveloperName": "Squad"}])[0].id
    save_many(admin, "User", [{"Id": other, "UserRoleId": role}])
    assert user_context(org, other).actor.role_id is not None
    assert not admin.actor.access.can("Account", "read")
    assert not admin.actor.access.can("PermissionSet", "edit")  # that is Customize Application
