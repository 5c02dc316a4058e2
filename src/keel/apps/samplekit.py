"""Helpers shared by the apps' sample data generators (install-time only)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from keel.context import Context
from keel.records import save_many
from keel.services.query import query
from keel.services.security import assign_permission_set
from keel.services.users import create_user

BATCH = 2000


def batched_save(ctx: Context, obj: str, drafts: Iterable[dict[str, Any]]) -> list[str]:
    """Save in batches of a few thousand (all or none per batch); returns the ids in order. ``drafts`` may be a
    generator: only one batch of drafts is held at a time, which keeps a million-applicant sample in memory."""
    out: list[str] = []
    it = iter(drafts)
    while chunk := list(islice(it, BATCH)):
        with ctx.db.transaction() as conn:
            results = save_many(ctx, obj, chunk, all_or_none=True, conn=conn)
        out += [str(r.id) for r in results]
    return out


def ensure_staff(ctx: Context, staff: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """Users by role key: existing ones (the demo personas) are reused, missing ones are created without a
    password (they cannot log in) and given their permission set."""
    out: dict[str, str] = {}
    for key, (username, perm_set) in staff.items():
        rows = query(ctx, f"SELECT Id FROM User WHERE Username = '{username}'")["records"]
        if rows:
            out[key] = str(rows[0]["Id"])
            continue
        local = username.split("@")[0]
        uid = create_user(ctx, username=username, password=None, first_name="Sample",
                          last_name=local.capitalize(), email=username)
        with ctx.db.transaction() as conn:
            assign_permission_set(ctx, conn, uid, perm_set)
        out[key] = uid
    return out
