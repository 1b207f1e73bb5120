"""The historical repository: one SQL database (SQLite by default, Postgres at scale) behind one class.

``Repository(url)`` opens it; ``create_all()`` brings the schema to the newest migration (Alembic), so
the same code path creates a fresh database and upgrades an old one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import pandas as pd
from pydantic import Field, field_validator
from sqlalchemy import Table, bindparam, insert, select, update

from forewarn.dataset import Dataset
from forewarn.redacted import Redacted
from forewarn.schemas import Instance, Model, utcnow
from forewarn.store.database import Database
from forewarn.store.engine import make_engine as make_engine
from forewarn.store.history import HistoryStore
from forewarn.store.models import InstanceRow, QuarantineRow

INSTANCE_COLUMNS = ("instance_id", "cpu_capacity", "memory_capacity", "group", "zone", "boot_time")


PAYLOAD_CHARS = 1024
"""The most characters of one quarantined value kept; the rest is cut with a marker."""


class QuarantineRecord(Model):
    """A row refused by validation: where it came from, why, and its values (long text cut)."""

    source_file: Redacted
    line: int | None = None
    reason: str
    row: dict[str, Any] = Field(default_factory=dict)
    batch_id: str | None = None

    @field_validator("row")
    @classmethod
    def _capped(cls, row: dict[str, Any]) -> dict[str, Any]:
        return {
            key: f"{value[:PAYLOAD_CHARS]}...[cut {len(value) - PAYLOAD_CHARS:,} characters]"
            if isinstance(value, str) and len(value) > PAYLOAD_CHARS
            else value
            for key, value in row.items()
        }


class Repository(Database, HistoryStore):
    """The historical repository.

    Args:
        url: a SQLAlchemy URL (``sqlite:///path.db``, ``sqlite://`` in memory, ``postgresql://...``);
            default: the settings' database URL, a SQLite file under FOREWARN_HOME.
    """

    # -- instances -----------------------------------------------------------------------------------------
    def save_instances(self, instances: Iterable[Instance]) -> int:
        """Insert or update instances by id, with their nominal capacity; returns how many were given.

        One read of the stored rows, then one bulk insert of the new and one bulk update of the changed
        (an unchanged fleet re-sent every minute costs a read, not a statement per instance). A scale-back
        factor or buffer in force is the cloud's live state, not history: it is not stored.
        """
        rows: dict[str, dict[str, Any]] = {}
        count = 0
        for inst in instances:
            row = inst.model_dump(mode="python", exclude={"capacity_factor", "reserved"})
            row["cpu_capacity"] = inst.cpu_capacity / inst.capacity_factor
            row["memory_capacity"] = inst.memory_capacity / inst.capacity_factor
            rows[inst.instance_id] = row
            count += 1
        table = cast(Table, InstanceRow.__table__)
        ids = list(rows)
        with self.transaction() as conn:
            stored: dict[str, dict[str, Any]] = {}
            for first in range(0, len(ids), 500):
                query = select(table).where(table.c.instance_id.in_(ids[first : first + 500]))
                stored.update((r["instance_id"], dict(r)) for r in conn.execute(query).mappings())
            new = [row for key, row in rows.items() if key not in stored]
            changed = [{**row, "b_id": key} for key, row in rows.items() if key in stored and stored[key] != row]
            if new:
                conn.execute(insert(table), new)
            if changed:
                conn.execute(update(table).where(table.c.instance_id == bindparam("b_id")), changed)
        return count

    def load_instances(self) -> list[Instance]:
        with self.session() as session:
            rows = session.scalars(select(InstanceRow).order_by(InstanceRow.instance_id)).all()
            return [Instance.model_validate(_columns(row)) for row in rows]

    def instances_frame(self) -> pd.DataFrame | None:
        """The stored instances in the dataset's ``instances`` format (id, capacities, group, zone,
        boot time), or None when none is stored: what window features read boot times and capacity from."""
        instances = self.load_instances()
        if not instances:
            return None
        rows = [i.model_dump(mode="python", include=set(INSTANCE_COLUMNS)) for i in instances]
        frame = pd.DataFrame(rows, columns=list(INSTANCE_COLUMNS))
        frame["boot_time"] = pd.to_datetime(frame["boot_time"], utc=True)
        return frame

    # -- dataset -------------------------------------------------------------------------------------------
    def save_dataset(self, dataset: Dataset, *, source: str) -> str:
        """Store every table of a dataset; the telemetry becomes one batch, whose id is returned."""
        batch_id = self.save_telemetry(dataset.telemetry, source=source)
        self.save_failures(dataset.failures)
        if dataset.errors is not None:
            self.save_errors(dataset.errors)
        if dataset.workloads is not None:
            self.save_workloads(dataset.workloads)
        return batch_id

    def load_dataset(self) -> Dataset:
        errors, workloads = self.load_errors(), self.load_workloads()
        return Dataset(
            telemetry=self.load_telemetry(),
            failures=self.load_failures(),
            errors=errors if len(errors) else None,
            workloads=workloads if len(workloads) else None,
        )

    # -- quarantine ----------------------------------------------------------------------------------------
    def save_quarantine(self, records: Iterable[QuarantineRecord]) -> int:
        rows = [{**r.model_dump(), "created_at": utcnow()} for r in records]
        if rows:
            with self.transaction() as conn:
                conn.execute(insert(QuarantineRow), rows)
        return len(rows)

    def quarantined_keys(self, source_file: str) -> set[tuple[int | None, str]]:
        """(line, reason) of every record already quarantined from ``source_file``: a re-run skips them."""
        q = QuarantineRow
        with self.engine.connect() as conn:
            rows = conn.execute(select(q.line, q.reason).where(q.source_file == source_file)).all()
        return {(line, reason) for line, reason in rows}

    def load_quarantine(self, batch_id: str | None = None) -> list[QuarantineRecord]:
        query = select(QuarantineRow).order_by(QuarantineRow.id)
        if batch_id is not None:
            query = query.where(QuarantineRow.batch_id == batch_id)
        with self.session() as session:
            rows = session.scalars(query).all()
            return [QuarantineRecord.model_validate(_columns(r, skip=("id", "created_at"))) for r in rows]


def _columns(row: Any, skip: Iterable[str] = ()) -> dict[str, Any]:
    """A mapped row's column values as a dict."""
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in set(skip)}
