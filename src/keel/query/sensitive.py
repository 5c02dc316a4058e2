"""Which fields marked ``sensitive`` a query returns, known when it compiles, and a per-page summary of them.

Reads of sensitive fields (SSN, medical, polygraph) are audited (issue 5), on every surface that runs SOQL. The
compiler already resolves every selected path to a ``FieldDef``, across parent paths, child subqueries, TYPEOF and
aggregates, so it records the sensitive ones in the plan (``Plan.sensitive``) once per compiled query. A query that
selects none carries an empty tuple and pays nothing when it runs; one that does costs one pass over the page's id
column. Filters on a sensitive field (``WHERE SSN__c = …``) return no value and are not recorded here.

This module stays pure (no database, no security layer): ``summarise`` turns a page's rows into one
``SensitiveAccess`` per object, and the service layer writes them to the audit log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keel.storage import ids

MAX_IDS = 100  # record ids named per audit entry; the count is always exact


@dataclass(frozen=True, slots=True)
class SensitiveRead:
    """One sensitive field a plan returns, and where the rows carrying it keep the owning record's id."""

    obj: str  # API name of the object that owns the field
    field: str
    via: str = ""  # relationship path from the query's rows: "" (own field), "Candidate__r", "Job_Applications__r"
    child: int | None = None  # index of the child subquery whose rows carry it; None for the main rows
    id_idx: int | None = None  # row position of the owning record's integer id; None for aggregates
    prefix: str = ""  # the owning object's key prefix
    type_idx: int | None = None  # row position of a polymorphic parent's key prefix: count rows of ``prefix`` only
    aggregate: bool = False


@dataclass(frozen=True, slots=True)
class SensitiveAccess:
    """What one page (or record, or job page) returned of one object's sensitive fields."""

    obj: str
    fields: tuple[str, ...]
    via: tuple[str, ...]
    count: int  # distinct records whose values were returned (result rows, for an aggregate)
    ids: tuple[str, ...]  # the first ``MAX_IDS`` of them, 18-character
    record_pk: int | None  # the record's integer id when exactly one record was read
    aggregate: bool


def summarise(reads: Sequence[SensitiveRead], rows: Sequence[Sequence[Any]],
              child_rows: Mapping[int, Sequence[Sequence[Any]]] | None = None) -> list[SensitiveAccess]:
    """One entry per object (aggregate reads apart) for the rows a page returned: the main rows, and each child
    subquery's rows by child index. Objects with no returned record are left out."""
    groups: dict[tuple[str, bool], list[SensitiveRead]] = {}
    for r in reads:
        groups.setdefault((r.obj, r.aggregate), []).append(r)
    out: list[SensitiveAccess] = []
    for (obj, aggregate), rs in groups.items():
        fields = tuple(sorted({r.field for r in rs}))
        via = tuple(sorted({r.via for r in rs if r.via}))
        if aggregate:
            if rows:
                out.append(SensitiveAccess(obj, fields, via, len(rows), (), None, True))
            continue
        seen: dict[int, None] = {}  # ordered set of record pks
        prefix = rs[0].prefix
        for where in {(r.child, r.id_idx, r.type_idx) for r in rs}:
            child, idx, tidx = where
            src = rows if child is None else (child_rows or {}).get(child, ())
            assert idx is not None
            for row in src:
                pk = row[idx]
                if pk is not None and (tidx is None or row[tidx] == prefix):
                    seen[int(pk)] = None
        if not seen:
            continue
        pks = list(seen)
        out.append(SensitiveAccess(obj, fields, via, len(pks), tuple(ids.encode(prefix, pk) for pk in pks[:MAX_IDS]),
                                   pks[0] if len(pks) == 1 else None, False))
    return out
