"""Salesforce's dependencies between object and field permissions, as one pure check.

Salesforce refuses to save an object permission that grants Edit without Read, or Modify All without View All
and Delete, and a field permission that grants Edit without Read; it does not quietly add the missing rights,
because an administrator who unticks Read must learn that Edit goes with it rather than find it still granted.
The setup editor calls this before it writes anything, so one inconsistent row refuses the whole save with every
problem listed. Package deploys are not checked here: shipped sets predate the rule and the access engine reads
them leniently (field Edit counts as Read).
"""

from __future__ import annotations

from collections.abc import Mapping

# (permission, the ones it needs): the direct rules; the closure follows by applying them repeatedly.
OBJECT_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Create", ("Read",)),
    ("Edit", ("Read",)),
    ("Delete", ("Read", "Edit")),
    ("ViewAllRecords", ("Read",)),
    ("ModifyAllRecords", ("Read", "Edit", "Delete", "ViewAllRecords")),
)
OBJECT_PERMISSIONS = ("Read", "Create", "Edit", "Delete", "ViewAllRecords", "ModifyAllRecords")
LABELS = {"Read": "Read", "Create": "Create", "Edit": "Edit", "Delete": "Delete", "ViewAllRecords": "View All",
          "ModifyAllRecords": "Modify All"}


def object_problems(label: str, granted: Mapping[str, bool]) -> list[str]:
    """Why this set of object permissions (keys of ``OBJECT_PERMISSIONS``) cannot be saved; empty when it can."""
    out = []
    for perm, needs in OBJECT_RULES:
        missing = [LABELS[n] for n in needs if granted.get(perm) and not granted.get(n)]
        if missing:
            out.append(f"{label}: {LABELS[perm]} requires {' and '.join(missing)}.")
    return out


def field_problems(label: str, read: bool, edit: bool) -> list[str]:
    """Why a field permission cannot be saved: Edit without Read (a user cannot write what they cannot see)."""
    return [f"{label}: Edit requires Read."] if edit and not read else []
