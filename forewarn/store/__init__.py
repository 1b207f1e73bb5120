"""The historical repository (SQL: SQLite by default, Postgres at scale) and its migrations.

Terms:
    batch: one import of telemetry, with its source, row count, quarantined count and time range.
    quarantine: rows refused by validation, kept with their source file, line and reason.
    journal: the plans and actions tables, written ahead of every action (see forewarn.execution.journal).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forewarn.store.migrate import upgrade
    from forewarn.store.repository import QuarantineRecord, Repository

__all__ = ["QuarantineRecord", "Repository", "upgrade"]
_HOMES = {"upgrade": "forewarn.store.migrate"} | dict.fromkeys(__all__[:2], "forewarn.store.repository")


def __getattr__(name: str) -> Any:
    # Loaded on first use: the journal's tables (forewarn.store.models) must not pull in pandas.
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
