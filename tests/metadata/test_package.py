from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import MetadataError
from keel.metadata.model import SchemaSnapshot
from keel.metadata.package import load_package, parse_object
from keel.metadata.plan import plan
from keel.metadata.types import TYPES

FIXTURE = Path(__file__).parent.parent / "fixtures" / "every_type"
STANDARD = Path(__file__).parents[2] / "src" / "keel" / "metadata" / "standard"


def test_every_field_type_parses() -> None:
    objs = {o.api_name: o for o in load_package(FIXTURE)}
    pos = objs["Position__c"]
    used = {f.type for o in objs.values() for f in o.fields}
    assert used >= set(TYPES) - {"formula", "rollup", "composite"}
    assert pos.get_field("hiring_manager__c").relationship_name == "Hiring_Manager__r"
    assert pos.get_field("Job_Code__c").external_id
    assert objs["Posting__c"].get_field("Position__c").child_relationship_name == "Postings__r"
    assert all(f.track_history for f in pos.fields if not f.standard)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"object": "Bad"}, "custom object names end in __c"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "nope"}]}, "field 'A__c': unknown type 'nope'"),
        ({"object": "X__c", "fields": [{"name": "A", "type": "text"}]}, "custom field names end in __c"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "text", "length": 0}]}, "length must be"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "text", "scale": 2}]}, "do not apply to type text"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "number", "scale": 20}]}, "scale must be between"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "picklist"}]}, "non-empty 'values'"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "picklist", "values": ["a", "A"]}]}, "repeated"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "lookup"}]}, "needs 'to'"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "lookup", "to": "Account", "on_delete": "cascade"}]},
         "on_delete must be set_null or restrict"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "lookup", "to": "Account", "required": True,
                                        "on_delete": "set_null"}]}, "a required lookup cannot be cleared"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "auto_number"}]}, "needs a format"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "checkbox", "default": "zz"}]},
         "field 'A__c': default 'zz' is not a valid checkbox value"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "number", "default": "abc"}]},
         "field 'A__c': default 'abc' is not a valid number value"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "number", "precision": 3, "default": 12345}]},
         "number outside valid range"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "date", "default": "notadate"}]},
         "field 'A__c': default 'notadate' is not a valid date value"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "text", "length": 3, "default": "toolong"}]},
         "default 'toolong' is not a valid text value"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "email", "default": "nobody"}]},
         "is not a valid email value"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "picklist", "values": ["a", "b"], "restricted": True,
                                        "default": "c"}]}, "default 'c' is not a valid picklist value"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "picklist", "values": ["a", "b"], "default": "c"}]},
         "default 'c' is not one of the picklist's values"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "lookup", "to": "Account", "default": "001"}]},
         "fields of type lookup take no literal default"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "number", "default": {"expr": "1"}}]},
         "default must be a literal value or {formula"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "text", "required": "yes"}]}, "must be true or false"),
        ({"object": "X__c", "sharing": "open"}, "sharing must be one of"),
        ({"object": "X__c", "sharing": "controlled_by_parent", "fields": [{"name": "A__c", "type": "lookup",
                                                                            "to": "Account"}]},
         "object 'X__c': sharing controlled_by_parent needs a master_detail field"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "text"}, {"name": "a__c", "type": "text"}]},
         "defined twice"),
        ({"object": "X__c", "fields": [{"name": "A__c", "type": "formula", "returns": "blob", "formula": "1"}]},
         "formula 'returns'"),
    ],
)
def test_invalid_options_name_file_object_and_field(doc: dict[str, object], message: str) -> None:
    with pytest.raises(MetadataError) as e:
        parse_object(doc, source="x.yaml")
    assert message in str(e.value)
    assert "x.yaml" in str(e.value)


def test_bad_yaml_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "Broken__c.yaml").write_text("object: [unclosed")
    with pytest.raises(MetadataError) as e:
        load_package(tmp_path)
    assert "Broken__c.yaml" in str(e.value)


def test_lookups_clear_on_delete_unless_required() -> None:
    obj = parse_object({"object": "X__c", "fields": [
        {"name": "A__c", "type": "lookup", "to": "Account"},
        {"name": "B__c", "type": "lookup", "to": "Account", "required": True},
        {"name": "C__c", "type": "master_detail", "to": "Account"}]})
    assert [obj.get_field(n).on_delete for n in ("A__c", "B__c", "C__c")] == ["set_null", "restrict", "cascade"]


def test_a_detail_follows_its_master_unless_it_declares_a_model() -> None:
    md = {"name": "Master__c", "type": "master_detail", "to": "Account"}
    detail = parse_object({"object": "D__c", "fields": [md]})
    assert detail.sharing == "controlled_by_parent"
    assert parse_object({"object": "D__c", "sharing": "private", "fields": [md]}).sharing == "private"
    assert parse_object({"object": "L__c", "fields": [{"name": "A__c", "type": "lookup", "to": "Account"}]}
                        ).sharing == "private"


def test_the_apps_details_keep_their_sharing() -> None:
    """Philanthropy's Allocation__c is a detail kept private on purpose; every other detail follows its master."""
    apps = Path(__file__).parents[2] / "src" / "keel" / "apps"
    details = {o.api_name: o.sharing for app in ("recruiting", "vendors", "philanthropy")
               for o in load_package(apps / app) if any(f.type == "master_detail" for f in o.fields)}
    assert details.pop("Allocation__c") == "private"
    assert details and set(details.values()) == {"controlled_by_parent"}


def test_good_literal_defaults_parse() -> None:
    obj = parse_object({"object": "X__c", "fields": [
        {"name": "A__c", "type": "checkbox", "default": True},
        {"name": "B__c", "type": "number", "precision": 5, "scale": 1, "default": "12.5"},
        {"name": "C__c", "type": "date", "default": "2026-01-31"},
        {"name": "D__c", "type": "picklist", "values": ["Low", "High"], "restricted": True, "default": "high"},
        {"name": "E__c", "type": "date", "default": {"formula": "TODAY()"}}]})
    assert [obj.get_field(n).default for n in ("A__c", "B__c", "C__c", "D__c")] == [True, "12.5", "2026-01-31",
                                                                                     "high"]


def test_a_lookup_to_an_unknown_object_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "Thing__c.yaml").write_text("object: Thing__c\nfields:\n  - {name: Nope__c, type: lookup, "
                                            "to: Missing__c}\n")
    with pytest.raises(MetadataError) as e:
        plan(SchemaSnapshot(version=0, objects=()), [*load_package(STANDARD, standard=True), *load_package(tmp_path)])
    assert e.value.message == ("Thing__c.yaml: object 'Thing__c', field 'Nope__c': points at unknown object "
                            "'Missing__c'")
