"""Per-source watermarks in the historical repository: how far each source (and each incremental job, such
as materialize) has been taken in.

Terms:
    watermark: the time up to which a source's data is committed to the history database. A pull asks the
        source for what came after it; the watermark moves only after the rows are committed, and only
        forward. A crash between the commit and the move makes the next pull fetch those rows again; the
        stores drop rows they already hold (by instance and time), so nothing is lost and nothing is stored
        twice.

The table (:data:`forewarn.store.models.watermarks`) is created by the Alembic migrations, when the
database is opened. Works on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, insert, select, update

from forewarn.schemas import utcnow
from forewarn.store.models import watermarks


class WatermarkStore:
    """Read and move watermarks by name (a source's name, or ``materialize``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, name: str) -> datetime | None:
        """The watermark of ``name``, or None before its first commit."""
        with self.engine.connect() as conn:
            value: datetime | None = conn.execute(select(watermarks.c.until).where(watermarks.c.name == name)).scalar()
        return value

    def all(self) -> dict[str, datetime]:
        with self.engine.connect() as conn:
            return {str(n): u for n, u in conn.execute(select(watermarks.c.name, watermarks.c.until))}

    def advance(self, name: str, until: datetime, *, note: str = "") -> datetime:
        """Move ``name`` forward to ``until`` (never back); returns the watermark in force afterwards.

        Call it after the rows up to ``until`` are committed.
        """
        now = utcnow()
        with self.engine.begin() as conn:
            current = conn.execute(
                select(watermarks.c.until).where(watermarks.c.name == name).with_for_update()
            ).scalar()
            if current is None:
                conn.execute(insert(watermarks).values(name=name, until=until, updated_at=now, note=note))
                return until
            if until <= current:
                return current
            conn.execute(
                update(watermarks).where(watermarks.c.name == name).values(until=until, updated_at=now, note=note)
            )
            return until
