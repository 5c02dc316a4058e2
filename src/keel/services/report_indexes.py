"""Report indexes derived from a package's reports (``app.yaml`` ``reports:`` and ``reports/*.yaml``).

A report that groups one object's own stored fields, and filters and aggregates only such fields, can be answered
from a covering index (``metadata.indexes``): its grouped fields first, then every other field it reads. Reports
that read a parent path, a formula or a subquery are left to an index the administrator declares (for a formula,
one that includes the fields it reads). Reports are read where the web app reads them
(``services.package_reports.package_document``), so the index follows the report as it is deployed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from keel.metadata.indexes import UNINDEXABLE
from keel.metadata.model import IndexDef, ObjectDef
from keel.metadata.package import load_package
from keel.query import ast as A
from keel.query.parser import parse
from keel.services.package_reports import package_document


def load_package_objects(path: str | Path) -> list[ObjectDef]:
    """A package's objects (``load_package``) with the indexes its reports call for. The reports (``app.yaml``,
    ``reports/``) sit beside ``objects/``: an app passes either its folder or its ``objects/`` folder."""
    root = Path(path)
    package = root.parent if root.name == "objects" else root
    return with_report_indexes(load_package(root), package)


def with_report_indexes(objects: Sequence[ObjectDef], package: Path) -> list[ObjectDef]:
    """``objects`` with an index for each report of ``package`` on one of them that an index can cover."""
    found = _reports(package)
    by_key = {o.key: o for o in objects}
    extra: dict[str, list[IndexDef]] = {}
    for raw in found:
        derived = _derive(raw, by_key)
        if derived is not None:
            obj, ix = derived
            extra.setdefault(obj.key, []).append(ix)
    out = []
    for o in objects:
        mine = [ix for ix in extra.get(o.key, []) if not _covered(ix, [*o.indexes, *extra[o.key]])]
        out.append(replace(o, indexes=(*o.indexes, *_unique(mine))) if mine else o)
    return out


def _reports(package: Path) -> list[Mapping[str, Any]]:
    try:
        found = package_document(package)
    except (OSError, ValueError, AttributeError):  # the web app lists a broken report file; a plan does not fail
        return []
    return [r for r in found[1]["reports"] if isinstance(r, Mapping)] if found else []


def _derive(raw: Mapping[str, Any], objects: Mapping[str, ObjectDef]) -> tuple[ObjectDef, IndexDef] | None:
    name = str(raw.get("report") or raw.get("name") or "")
    if raw.get("soql"):
        parsed = _from_soql(str(raw["soql"]))
        if parsed is None:
            return None
        target, groups, read = parsed
    else:
        groups = [str(g) for g in raw.get("groupings") or []][:3]
        flt = raw.get("filter") if isinstance(raw.get("filter"), Mapping) else {}
        target = str(raw.get("object") or "")
        read = [str(x) for x in (raw.get("field"), (flt or {}).get("field")) if x]
    obj = objects.get(target.lower())
    if obj is None or not groups:
        return None
    fields = [obj.find_field(n) for n in (*groups, *read)]
    if any(f is None or f.column is None or f.type in UNINDEXABLE for f in fields):
        return None
    names = [f.api_name for f in fields if f is not None and f.type != "id"]
    keys = tuple(dict.fromkeys(names[:len(groups)]))
    include = tuple(n for n in dict.fromkeys(names[len(groups):]) if n not in keys)
    return obj, IndexDef(keys, "report", include, f"report:{name}")


def _from_soql(text: str) -> tuple[str, list[str], list[str]] | None:
    """(object, grouped fields, other fields read) of an aggregate query on one object's own fields, else None."""
    try:
        q = parse(text)
    except Exception:  # any SOQL the parser refuses is the web app's error to show, not the plan's
        return None
    if not q.group_by:
        return None
    refs: list[tuple[str, ...]] = []
    for node in _walk(q):
        if (isinstance(node, A.Query) and node is not q) or isinstance(node, A.SubSelect | A.TypeOf | A.FieldsFn):
            return None
        if isinstance(node, A.FieldRef):
            path = node.path[1:] if q.alias and len(node.path) > 1 and node.path[0].lower() == q.alias.lower() \
                else node.path
            if len(path) != 1:
                return None  # a parent path is another table: no single index covers the join
            refs.append(path)
    grouped = [g.path[-1] for g in q.group_by if isinstance(g, A.FieldRef)]
    if len(grouped) != len(q.group_by):
        return None  # grouping by a date function (CALENDAR_YEAR(…)) is an expression, not a column
    return q.from_, grouped, [r[0] for r in refs]


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, tuple):
        for item in node:
            yield from _walk(item)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            if f.compare:
                yield from _walk(getattr(node, f.name))


def _covered(ix: IndexDef, others: Sequence[IndexDef]) -> bool:
    """Another report index begins with the same grouped fields and holds every field this one reads."""
    cols = (*ix.fields, *ix.include)
    for other in others:
        if other is ix or other.kind != "report" or other == ix:
            continue
        if other.fields[:len(ix.fields)] == ix.fields and set(cols) <= {*other.fields, *other.include}:
            return True
    return False


def _unique(items: list[IndexDef]) -> list[IndexDef]:
    seen: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    out = []
    for ix in items:
        if (ix.fields, ix.include) not in seen:
            seen.add((ix.fields, ix.include))
            out.append(ix)
    return out
