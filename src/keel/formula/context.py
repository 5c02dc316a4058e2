"""What a formula can see besides the record: the clock, the user's time zone, ``$User``, ``$Organization``,
change tracking, and a way to fetch parent records. Passed explicitly, never global (DESIGN §3)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

ParentResolver = Callable[[str, Any], Mapping[str, Any] | None]


class FormulaContext:
    """The environment of one evaluation.

    ``now`` is naive UTC (how datetimes are stored). ``today`` is the date in ``time_zone`` at ``now``, because
    Salesforce's TODAY() is the user's date. ``prior`` is the record before this write (None for a new record).
    ``resolve_parent(object_api_name, id)`` returns a parent record when the record mapping does not already carry
    it under its relationship name.
    """

    __slots__ = ("is_new", "now", "organization", "prior", "resolve_parent", "time_zone", "today", "user")

    def __init__(self, *, now: dt.datetime | None = None, time_zone: str = "UTC",
                 user: Mapping[str, Any] | None = None, organization: Mapping[str, Any] | None = None,
                 is_new: bool | None = None, prior: Mapping[str, Any] | None = None,
                 resolve_parent: ParentResolver | None = None, today: dt.date | None = None) -> None:
        if now is None:
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        elif now.tzinfo is not None:
            now = now.astimezone(dt.UTC).replace(tzinfo=None)
        self.now = now
        self.time_zone = time_zone
        self.user: Mapping[str, Any] = user or {}
        self.organization: Mapping[str, Any] = organization or {}
        self.prior = prior
        self.is_new = prior is None if is_new is None else is_new
        self.resolve_parent = resolve_parent
        if today is None:
            today = now.replace(tzinfo=dt.UTC).astimezone(ZoneInfo(time_zone)).date()
        self.today = today

    def for_row(self, prior: Mapping[str, Any] | None) -> FormulaContext:
        """The same context for another row of a batch (its prior values); cheap, for the bulk path."""
        new = FormulaContext.__new__(FormulaContext)
        new.now, new.time_zone, new.today = self.now, self.time_zone, self.today
        new.user, new.organization, new.resolve_parent = self.user, self.organization, self.resolve_parent
        new.prior = prior
        new.is_new = prior is None
        return new
