"""The security hooks: ``row_filter`` is ANDed everywhere rows are read; ``field_mask`` makes fields not exist."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from soqldata import NOW, Seeded

from keel.errors import InvalidFieldError
from keel.metadata.model import FieldDef, ObjectDef, SchemaSnapshot
from keel.query import PlanCache, compile_soql, run_soql


def owned_by(user: int) -> Any:
    """A hand-made 'private sharing' filter: only rows the user owns; Users are visible to all."""

    def row_filter(obj: ObjectDef, table: sa.FromClause) -> sa.ColumnElement[bool] | None:
        if obj.api_name == "User":
            return None
        return table.c.owner_id == user

    return row_filter


def hide(*names: str) -> Any:
    hidden = {n.lower() for n in names}

    def mask(obj: ObjectDef, f: FieldDef) -> bool:
        return f"{obj.api_name}.{f.api_name}".lower() not in hidden

    return mask


def run(s: Seeded, soql: str, **kw: Any) -> dict[str, Any]:
    for lab, rid in s.ids.items():
        soql = soql.replace("{" + lab + "}", rid)
    with s.db.read() as conn:
        return run_soql(conn, s.schema, soql, dialect=s.db.dialect, now=NOW, cache=PlanCache(), **kw)


def labels(s: Seeded, res: dict[str, Any]) -> list[str]:
    return sorted(s.labels[r["attributes"]["url"].rsplit("/", 1)[-1]] for r in res["records"])


def test_row_filter_main_query(seeded: Seeded) -> None:
    res = run(seeded, "SELECT Id FROM Account", row_filter=owned_by(2))
    assert labels(seeded, res) == ["acc2", "acc4"]


def test_row_filter_count(seeded: Seeded) -> None:
    assert run(seeded, "SELECT COUNT() FROM Account", row_filter=owned_by(2))["totalSize"] == 2


def test_row_filter_aggregate(seeded: Seeded) -> None:
    res = run(seeded, "SELECT COUNT(Id) n FROM Contact", row_filter=owned_by(1))
    assert res["records"][0]["n"] == 3


def test_row_filter_child_subquery(seeded: Seeded) -> None:
    res = run(seeded, "SELECT Id, (SELECT LastName FROM Contacts) FROM Account WHERE Name = 'Acme'",
              row_filter=owned_by(1))
    assert [c["LastName"] for c in res["records"][0]["Contacts"]["records"]] == ["Smith"]


def test_row_filter_parent_is_null_not_hidden(seeded: Seeded) -> None:
    # con2 is owned by u2 and its account (acc1) by u1: u2 sees the contact but its Account comes back null.
    res = run(seeded, "SELECT Id, Account.Name FROM Contact WHERE Id = '{con2}'", row_filter=owned_by(2))
    assert res["totalSize"] == 1
    assert res["records"][0]["Account"] is None


def test_row_filter_parent_in_where(seeded: Seeded) -> None:
    res = run(seeded, "SELECT Id FROM Contact WHERE Account.Name = 'Acme'", row_filter=owned_by(2))
    assert res["totalSize"] == 0


def test_row_filter_semijoin(seeded: Seeded) -> None:
    # u1 owns acc1, acc3, acc5; among contacts u1 owns: con1 (acc1), con4 (acc3), con7 (acc5).
    res = run(seeded, "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE LastName != 'x')",
              row_filter=owned_by(1))
    assert labels(seeded, res) == ["acc1", "acc3", "acc5"]
    res = run(seeded, "SELECT Id FROM Account WHERE Id IN (SELECT AccountId FROM Contact)", row_filter=owned_by(2))
    assert labels(seeded, res) == ["acc2"]  # acc1 has con2 (u2) but acc1 itself is u1's


def test_row_filter_in_compiled_sql(schema: SchemaSnapshot) -> None:
    cq = compile_soql("SELECT Id, Owner.Name, (SELECT Id FROM Contacts) FROM Account "
                      "WHERE Id IN (SELECT AccountId FROM Opportunity)", schema, dialect="sqlite",
                      row_filter=lambda o, t: t.c.owner_id == 99)
    sql = cq.sql
    assert sql.count("owner_id = ?") == 3  # main, parent join (User too: the filter does not special-case), semi-join
    child = cq.plan.children[0].select
    assert "owner_id" in str(child.compile())


def test_field_mask_select(schema: SchemaSnapshot) -> None:
    with pytest.raises(InvalidFieldError) as info:
        compile_soql("SELECT Id, Secret__c FROM Position__c", schema, dialect="sqlite",
                     field_mask=hide("Position__c.Secret__c"))
    assert "No such column 'Secret__c' on entity 'Position__c'" in info.value.message
    assert (info.value.line, info.value.column) == (1, 12)  # type: ignore[attr-defined]


@pytest.mark.parametrize("soql", [
    "SELECT Id FROM Position__c WHERE Secret__c = 'x'",
    "SELECT Id FROM Position__c ORDER BY Secret__c",
    "SELECT Secret__c, COUNT(Id) FROM Position__c GROUP BY Secret__c",
    "SELECT Id, (SELECT Secret__c FROM Positions__r) FROM Account",
    "SELECT Id FROM Account WHERE Id IN (SELECT Account__c FROM Position__c WHERE Secret__c = 'x')",
    "SELECT Account.AnnualRevenue FROM Contact",
    "SELECT Id FROM Contact WHERE Account.AnnualRevenue > 0",
])
def test_field_mask_everywhere(schema: SchemaSnapshot, soql: str) -> None:
    with pytest.raises(InvalidFieldError):
        compile_soql(soql, schema, dialect="sqlite",
                     field_mask=hide("Position__c.Secret__c", "Account.AnnualRevenue"))


def test_field_mask_relationship_field(schema: SchemaSnapshot) -> None:
    with pytest.raises(InvalidFieldError):
        compile_soql("SELECT Account.Name FROM Contact", schema, dialect="sqlite", field_mask=hide("Contact.AccountId"))


def test_field_mask_fields_all_skips_hidden(seeded: Seeded) -> None:
    res = run(seeded, "SELECT FIELDS(ALL) FROM Position__c WHERE Id = '{pos1}' LIMIT 1",
              field_mask=hide("Position__c.Secret__c"))
    rec = res["records"][0]
    assert "Secret__c" not in rec and rec["Title__c"] == "Engineer"


def test_field_mask_allows_visible(seeded: Seeded) -> None:
    res = run(seeded, "SELECT Title__c FROM Position__c WHERE Secret__c = 's1'", field_mask=hide("Account.Name"))
    assert res["records"][0]["Title__c"] == "Engineer"


def test_formula_field_needs_hook() -> None:
    from soqldata import make_schema

    from keel.metadata.package import parse_object
    from keel.metadata.plan import plan
    base = make_schema()
    obj = parse_object({"object": "Thing__c", "label": "Thing", "plural_label": "Things",
                        "fields": [{"name": "Qty__c", "type": "number"},
                                   {"name": "Double__c", "type": "formula", "returns": "number",
                                    "formula": "Qty__c * 2"}]})
    schema = plan(base, [obj]).after
    with pytest.raises(InvalidFieldError):
        compile_soql("SELECT Double__c FROM Thing__c", schema, dialect="sqlite")

    def formula_sql(o: ObjectDef, f: FieldDef, t: sa.FromClause) -> sa.ColumnElement[Any]:
        assert f.api_name == "Double__c"
        return t.c[o.get_field("Qty__c").column] * 2  # type: ignore[index, no-any-return]

    cq = compile_soql("SELECT Double__c FROM Thing__c WHERE Double__c > 4 ORDER BY Double__c", schema,
                      dialect="sqlite", formula_sql=formula_sql)
    assert cq.sql.count("* ?") >= 2
