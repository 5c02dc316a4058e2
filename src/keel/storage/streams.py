"""A row filter that is a union of streams, one of which an index yields in sort order: a hint for the planner.

Under private sharing a manager's rows are "owned below me" OR "shared with me" OR …; no single index serves an
OR, so a sorted page walks the sort index and tests every entry. When the security layer knows that the first
grant has an index in sort order (``security/lineage.py``) it marks its predicate with ``Streams``; the query
layer may then read a sorted, limited page as a merge of one stream per grant (``query/arms.py``). The mark is
an SQLAlchemy annotation: the predicate compiles to the same SQL wherever it is used as a plain filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement

_KEY = "keel_streams"


@dataclass(frozen=True, eq=False)
class Streams:
    lead: ColumnElement[bool]  # has an index in ``sort`` order: it is read first and bounds the others
    others: tuple[ColumnElement[bool], ...]  # each has some index of its own (or is cheap to test)
    sort: ColumnElement[Any]  # the column every stream can be read in order of (the Name column)
    nullable: bool  # whether ``sort`` may be NULL: then the others are read once more for their NULL keys


def mark(expr: ColumnElement[bool], streams: Streams) -> ColumnElement[bool]:
    return expr._annotate({_KEY: streams})


def streams_of(expr: ColumnElement[Any] | None) -> Streams | None:
    found = getattr(expr, "_annotations", None) or {}
    s = found.get(_KEY)
    return s if isinstance(s, Streams) else None
