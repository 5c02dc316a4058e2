"""The one record lifecycle: every write of every record goes through ``save_many``, ``delete_many`` or
``undelete_many``, whatever the surface (REST, collections, Bulk, UI forms, kanban moves, import, automation)."""

from keel.records.delete import delete_many, hard_delete_many, undelete_many
from keel.records.save import save_many, upsert_many

__all__ = ["delete_many", "hard_delete_many", "save_many", "undelete_many", "upsert_many"]
