"""The historical repository (SQL: SQLite by default, Postgres at scale) and its migrations.

Terms:
    batch: one import of telemetry, with its source, row count, quarantined count and time range.
    quarantine: rows refused by validation, kept with their source file, line and reason.
    journal: the plans and actions tables, written ahead of every action (see forewarn.execution.journal).
"""

from forewarn.store.migrate import upgrade
from forewarn.store.repository import ModelVersion, QuarantineRecord, Repository

__all__ = ["ModelVersion", "QuarantineRecord", "Repository", "upgrade"]
