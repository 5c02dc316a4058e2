"""SOQL: Salesforce's query language compiled to SQL for SQLite and PostgreSQL.

- ``compile_soql(text, schema, *, dialect, row_filter=None, field_mask=None, query_all=False, now=None,
  time_zone="UTC", fiscal_start_month=1, formula_sql=None, user_id=None) -> CompiledQuery`` is pure.
- ``run_soql(conn, schema, text, *, dialect, …) -> dict`` runs a query (through the plan cache) and returns the
  first page: ``{"totalSize", "done", "records"[, "nextRecordsUrl"]}``.
- ``fetch_more(conn, schema, locator, *, dialect, …) -> dict`` returns the next page of a cursor.
- ``create_cursor_tables(conn)`` creates the cursor table (``keel_query_cursor``).
- ``format_query(ast) -> str`` prints a parsed query back as SOQL.

See docs/soql.md for the supported grammar, semantics and known gaps.
"""

from __future__ import annotations

from keel.query.compiler import CompiledQuery, PlanCache, compile_soql
from keel.query.cursors import create_cursor_tables
from keel.query.format import format_query
from keel.query.parser import parse
from keel.query.run import execute, fetch_more, run_soql

__all__ = ["CompiledQuery", "PlanCache", "compile_soql", "create_cursor_tables", "execute", "fetch_more",
           "format_query", "parse", "run_soql"]
