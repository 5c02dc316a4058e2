"""Keeping ``RecordType`` records in step with the record types objects declare, inside a deploy's transaction.

A deploy (``keel apply``, an app install or upgrade) writes the schema and then calls ``sync_record_types`` in the
same transaction, so the metadata and the rows that records point at never disagree. A declared type without a row
gets one; a row whose label, description or active flag differs is updated; a row whose type is no longer declared
is deactivated, never deleted, because records still point at it (Salesforce keeps them too).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from keel.context import SYSTEM_ACTOR, Context
from keel.metadata.recordtypes import record_types
from keel.records import save_many
from keel.records.recordtypes import load_rows


def sync_record_types(ctx: Context, conn: Connection) -> int:
    """Create, update and deactivate ``RecordType`` rows to match the schema ``conn`` sees; the rows written."""
    sysctx = ctx.as_actor(SYSTEM_ACTOR)
    schema = sysctx.schema(conn)
    if schema.find_object("RecordType") is None:
        return 0
    drafts: list[dict[str, Any]] = []
    for obj in schema:
        have = {row.developer_name.lower(): row for row in load_rows(conn, schema, obj.api_name)}
        declared = record_types(obj)
        for d in declared:
            row = have.pop(d.developer_name.lower(), None)
            want = {"Name": d.label, "IsActive": d.active, "Description": d.description}
            if row is None:
                drafts.append({**want, "DeveloperName": d.developer_name, "SobjectType": obj.api_name})
            elif (row.label, row.active, row.description) != (d.label, d.active, d.description):
                drafts.append({**want, "Id": row.id})
        drafts += [{"Id": row.id, "IsActive": False} for row in have.values() if row.active]
    if drafts:
        save_many(sysctx, "RecordType", drafts, conn=conn)
    return len(drafts)
