"""Whole query results for the command line: every queryMore page followed (or up to a limit) into one REST-shaped
response, and the same records as columns and rows for a table or a CSV file.

Pages come from ``services.query`` as the acting user, so sharing, field-level security and the sensitive-read
audit apply exactly as they do for the REST API. The columns are laid out the way Bulk query results are
(``Account.Name`` for parent paths), so a CSV from ``keel query`` reads like one from a Bulk job; cells are
neutralised against spreadsheet formulas like ``keel export``'s."""

from __future__ import annotations

import csv
import io
from typing import Any

from keel.context import Context
from keel.query import ast as A
from keel.query import parse
from keel.services.bulk_query import cells, column_paths, flatten, soql_columns
from keel.services.export import cell
from keel.services.query import query, query_more


def collect(ctx: Context, soql: str, *, query_all: bool = False, limit: int | None = None) -> dict[str, Any]:
    """The query's records from every page, as one response (``totalSize``, ``done``, ``records``). With ``limit``
    it stops after that many records; ``done`` then says whether any were left unread."""
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")
    page = query(ctx, soql, query_all=query_all, batch_size=limit or None)
    total = page["totalSize"]
    records = list(page["records"])
    while not page.get("done", True) and page.get("nextRecordsUrl") and (limit is None or len(records) < limit):
        page = query_more(ctx, str(page["nextRecordsUrl"]).rsplit("/", 1)[-1])
        records.extend(page["records"])
    done = bool(page.get("done", True))
    if limit is not None and len(records) > limit:
        records, done = records[:limit], False
    return {"totalSize": total, "done": done, "records": records}


def is_count(soql: str) -> bool:
    """``SELECT COUNT() FROM …``: Salesforce answers it with ``totalSize`` alone, so tables show that."""
    q = parse(soql)
    if len(q.select) != 1 or q.group_by:
        return False
    item = q.select[0]
    return (isinstance(item, A.SelectExpr) and isinstance(item.expr, A.Call) and item.expr.name.upper() == "COUNT"
            and not item.expr.args)


def tabulate(soql: str, response: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns (dotted parent paths, aggregate aliases or ``exprN``) and one row of raw values per record. Child
    subquery results become a JSON array in their cell, as in Bulk query results."""
    if is_count(soql):
        return ["totalSize"], [[response["totalSize"]]]
    records: list[dict[str, Any]] = response["records"]
    cols = soql_columns(soql)
    if cols is None:  # FIELDS(), TYPEOF, subqueries: the columns the records actually have
        cols = list(dict.fromkeys(k for r in records for k in flatten(r)))
    paths = column_paths(cols, records)
    return [".".join(p) for p in paths], [cells(r, paths) for r in records]


def to_csv(soql: str, response: dict[str, Any]) -> str:
    """The response as CSV text; text cells that a spreadsheet would run as a formula are neutralised."""
    header, rows = tabulate(soql, response)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows([cell(v) for v in row] for row in rows)
    return buf.getvalue()
