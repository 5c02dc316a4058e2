"""Reading ``cases/*.txt``: one case a line, ``name | formula | record json | expected | type``.

The record's keys are API names; ``Parent__r`` nests a parent record (and ``Grand__r`` inside it). Keys starting
with ``$`` set the context: ``$now`` (UTC), ``$tz``, ``$user``, ``$org``, ``$prior`` (prior values; makes the
record an update), ``$new``, ``$blank_as`` (default blank) and ``$kind`` (default field, or flow when change
tracking is used). Type ``error`` expects a check error whose message contains the expected text.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from keel.formula import FormulaContext
from keel.metadata.model import ObjectDef, SchemaSnapshot
from keel.metadata.package import load_package
from keel.metadata.plan import plan
from keel.metadata.types import value_coercer
from keel.metadata.values import parse_datetime, parse_time

CASES = Path(__file__).parent / "cases"
ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2024, 3, 15, 10, 30, 0)


@dataclass(frozen=True)
class Case:
    file: str
    line: int
    name: str
    formula: str
    raw_record: dict[str, Any]
    expected_raw: str
    type: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"

    @property
    def kind(self) -> str:
        default = "flow" if ("$prior" in self.raw_record or "$new" in self.raw_record) else "field"
        return str(self.raw_record.get("$kind", default))

    @property
    def blank_as(self) -> str:
        return str(self.raw_record.get("$blank_as", "blank"))

    def expected(self) -> Any:
        raw = self.expected_raw
        if raw == "null":
            return None
        if self.type in ("number", "currency", "percent"):
            return Decimal(raw)
        if self.type == "boolean":
            assert raw in ("true", "false"), f"{self.id}: boolean expected true or false"
            return raw == "true"
        value = json.loads(raw)
        if self.type == "date":
            return dt.date.fromisoformat(value)
        if self.type == "datetime":
            return parse_datetime(value)
        if self.type == "time":
            return parse_time(value)
        return value


def load_cases() -> list[Case]:
    out: list[Case] = []
    for path in sorted(CASES.glob("*.txt")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = [p.strip() for p in line.split(" | ")]
            if len(parts) != 5:
                raise AssertionError(f"{path.name}:{i}: expected 5 fields separated by ' | ', got {len(parts)}")
            name, formula, record, expected, type_ = parts
            out.append(Case(path.name, i, name, formula, json.loads(record), expected, type_))
    names = [c.id for c in out]
    dupes = {n for n in names if names.count(n) > 1}
    assert not dupes, f"duplicate case names: {sorted(dupes)}"
    return out


def build_schema() -> SchemaSnapshot:
    """The standard objects plus the test objects in ``objects/``, planned without a database."""
    objects = load_package(ROOT / "src/keel/metadata/standard", standard=True)
    objects += load_package(Path(__file__).parent / "objects")
    return plan(SchemaSnapshot(0, ()), objects).after


def coerce(obj: ObjectDef, schema: SchemaSnapshot, raw: dict[str, Any]) -> dict[str, Any]:
    """Typed values for a JSON record, through the same coercers the lifecycle uses."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("$"):
            continue
        lookup = obj.find_relationship(key)
        if lookup is not None and isinstance(value, dict):
            out[lookup.relationship_name or key] = coerce(schema.get_object(lookup.reference_to[0]), schema, value)
            continue
        f = obj.get_field(key)
        conv = value_coercer(f)
        out[f.api_name] = conv(value) if conv else value
    return out


def context_for(case: Case, schema: SchemaSnapshot, obj: ObjectDef) -> FormulaContext:
    raw = case.raw_record
    now = parse_datetime(raw["$now"]) if "$now" in raw else NOW
    prior = coerce(obj, schema, raw["$prior"]) if "$prior" in raw else None
    user = coerce(schema.get_object("User"), schema, raw.get("$user", {}))
    org = coerce(schema.get_object("Organization"), schema, raw.get("$org", {}))
    is_new = bool(raw["$new"]) if "$new" in raw else None
    return FormulaContext(now=now, time_zone=str(raw.get("$tz", "UTC")), user=user, organization=org,
                          prior=prior, is_new=is_new)
