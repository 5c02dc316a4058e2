"""Runs every case file: compile (pure) for errors and SQL fragments, then execute on each database and compare."""

from __future__ import annotations

import json
from typing import Any

import pytest
from soqlcases import Case, load_cases
from soqldata import NOW, Seeded, label_ids

from keel.errors import KeelError
from keel.metadata.model import SchemaSnapshot
from keel.query import compile_soql, run_soql

CASES = load_cases()
RUNNABLE = [c for c in CASES if not c.get("error")]


def _labels(s: Seeded, records: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in records:
        url = r["attributes"].get("url", "")
        out.append(s.labels.get(url.rsplit("/", 1)[-1], "?"))
    return out


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            _contains(a, e) for a, e in zip(actual, expected, strict=True))
    if isinstance(expected, float) or isinstance(actual, float):
        return isinstance(actual, int | float) and abs(actual - expected) < 1e-6
    return bool(actual == expected and type(actual) is type(expected))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_compile(case: Case, schema: SchemaSnapshot) -> None:
    soql = case.soql
    for lab, rid in label_ids(schema).items():
        soql = soql.replace("{" + lab + "}", rid)
    errors = case.get("error")
    if errors:
        code, _, where = errors[0].partition(" ")
        with pytest.raises(KeelError) as info:
            compile_soql(soql, schema, dialect="sqlite", now=NOW, user_id=1)
        assert info.value.code == code, str(info.value)
        if where:
            line, col = (int(x) for x in where.split(":"))
            assert (getattr(info.value, "line", None), getattr(info.value, "column", None)) == (line, col), \
                str(info.value)
        return
    cq = compile_soql(soql, schema, dialect="sqlite", now=NOW, user_id=1)
    sql = " ".join(cq.sql.split())
    for frag in case.get("sql"):
        assert frag in sql, sql
    for frag in case.get("nosql"):
        assert frag not in sql, sql


@pytest.mark.parametrize("case", RUNNABLE, ids=[c.name for c in RUNNABLE])
def test_execute(case: Case, seeded: Seeded) -> None:
    soql = case.soql
    for lab, rid in seeded.ids.items():
        soql = soql.replace("{" + lab + "}", rid)
    query_all = bool(case.get("all"))
    fiscal = case.get("fiscal")
    with seeded.db.read() as conn:
        res = run_soql(conn, seeded.schema, soql, dialect=seeded.db.dialect, now=NOW, query_all=query_all,
                       user_id=1, time_zone=(case.get("tz") or ["UTC"])[0],
                       fiscal_start_month=int(fiscal[0]) if fiscal else None)
    json.dumps(res)  # JSON-ready
    for want in case.get("ids"):
        assert sorted(_labels(seeded, res["records"])) == sorted(want.split()), res
    for want in case.get("ids!"):
        assert _labels(seeded, res["records"]) == want.split(), res
    for want in case.get("count"):
        assert res["totalSize"] == int(want), res
    for want in case.get("json"):
        exp = json.loads(_sub(want, seeded))
        assert _contains(res, exp), json.dumps(res, indent=1)
    for want in case.get("first"):
        exp = json.loads(_sub(want, seeded))
        assert res["records"] and _contains(res["records"][0], exp), json.dumps(res["records"][:1], indent=1)
    assert res["done"] is True
    if not case.get("json") and not case.get("first"):
        assert case.get("ids") or case.get("ids!") or case.get("count"), "case has no expectation"


def _sub(text: str, s: Seeded) -> str:
    for lab, rid in s.ids.items():
        text = text.replace("{" + lab + "}", rid)
    return text
