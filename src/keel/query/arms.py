"""A sorted, limited page under a union-of-grants row filter, read as a merge of one ordered stream per grant.

``ORDER BY Name LIMIT 50`` under private sharing has a filter "owned below me OR shared with me OR …". No index
serves an OR in Name order, so the database walks the Name index and tests each entry until 50 pass: about
880 entries for a manager who sees 5.8% of the rows, twice the unshared query. When the row filter carries a
``storage.streams.Streams`` mark, whose lead grant has an index in Name order (``security/lineage.py``), the page is
instead

    SELECT … WHERE lead                                         -- (role_<d>, Name) index: ~55 entries
    UNION ALL SELECT … WHERE other_1 AND NOT lead AND key <= B  -- e.g. the flagged-shared Name index
    UNION ALL …                                                 -- each other grant, disjoint from those before
    ORDER BY key, id LIMIT n     -- selected from as a subquery

which SQLite runs as a merge of co-routines and PostgreSQL as a Merge Append: each stream is read only as far as
the page needs. ``B``, the key of the lead stream's n-th row, bounds the other streams: a row after it cannot
be on the page (the lead alone fills it), so a stream with no visible rows ends at ``B`` instead of walking its
whole index. Where the sort key may be NULL, each other stream is also read for its NULL keys, which ``key <= B``
leaves out. The rows, their order and the page are exactly those of the plain query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement

from keel.storage.streams import Streams


@dataclass(frozen=True, eq=False)
class Merge:
    """What a records plan needs to be read as streams: the mark, the plan's select without the row filter, and
    the root table (for the bound's fallback)."""

    streams: Streams
    open_base: sa.Select[Any]
    table: sa.FromClause


def merged(m: Merge, keys: list[Any], key_at: int, clause: Callable[[Any], ColumnElement[Any]],
           extra: list[ColumnElement[bool]], rows: ColumnElement[Any], dialect: str) -> sa.Subquery:
    """The streams of a page, to be selected from in the page's order. ``keys`` are the page's ``OrderKey``s (the
    sort key, then the id) and ``key_at`` the position of their columns in the select list, ``clause`` makes an
    ORDER BY clause of one, ``extra`` adds filters (a next page's keyset) and ``rows`` is how many rows the page
    reads (LIMIT + OFFSET).

    SQLite merges a UNION ALL that is ordered as a whole, reading each stream only as far as the merge needs; the
    bound is read by a second walk of the lead's index. PostgreSQL 15 appends the arms of a UNION ALL and sorts
    everything, so there each stream is read in order up to ``rows`` rows by itself and only those are sorted;
    the lead is read once, as a CTE, and the bound is its last row's key. Either way the bound is the key of the
    lead's ``rows``-th row, or none: when that key is NULL (a descending page ending in unnamed rows, which sort
    last), every named row of the other streams comes before it."""
    s = m.streams
    key = keys[0]
    order_by = [clause(k) for k in keys]
    base = m.open_base.where(*extra)
    edge = sa.select((sa.func.min if key.desc else sa.func.max)(key.expr)).select_from(m.table)
    lead: sa.Select[Any]
    if dialect == "postgresql":
        first = base.where(s.lead).order_by(*order_by).limit(rows).cte("lead")
        in_lead = [clause(replace(k, expr=first.c[key_at + i])) for i, k in enumerate(keys)]
        nth = sa.select(first.c[key_at]).order_by(*in_lead).limit(1).offset(rows - 1)
        lead = sa.select(*first.c)
    else:
        # Uncorrelated by construction: it reads the same table alias as the arm it bounds, in its own scope.
        nth = base.with_only_columns(key.expr).where(s.lead).order_by(*order_by).limit(1).offset(rows - 1)
        lead = base.where(s.lead)
    bound = sa.func.coalesce(nth.correlate(None).scalar_subquery(), edge.correlate(None).scalar_subquery())
    within = key.expr >= bound if key.desc else key.expr <= bound
    arms = [lead]
    before: list[ColumnElement[bool]] = [s.lead]
    for grant in s.others:
        disjoint = [sa.not_(sa.func.coalesce(g, sa.false(), type_=sa.Boolean)) for g in before]
        arms.append(base.where(grant, *disjoint, within))
        if s.nullable:
            arms.append(base.where(grant, *disjoint, key.expr.is_(None)))
        before.append(grant)
    if dialect == "postgresql":
        arms[1:] = [sa.select(*sub.c) for sub in (a.order_by(*order_by).limit(rows).subquery() for a in arms[1:])]
    return sa.union_all(*arms).subquery("streams")
