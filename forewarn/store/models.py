"""The historical repository's tables (SQLAlchemy 2, typed declarative).

Telemetry rows are stored long (``instance_id, timestamp, metric, value``), not wide: metric names are free
in the dataset format and differ between sources, so a wide table would need a schema change for every
new metric; the long table keeps one fixed schema on SQLite and Postgres, and pivots back to the wide
dataset format on read. Each batch (one import) has a row in ``telemetry_batches``.

Every timestamp is stored as UTC and read back time-zone aware, on SQLite (which keeps no zone) too.

Every table is here, on :data:`Base.metadata`, and every one is created by the Alembic migrations
(``forewarn/store/migrations``): no code creates a table itself. Opening the database
(:meth:`forewarn.store.database.Database.create_all`) upgrades it to the newest migration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, Column, DateTime, Float, ForeignKey, Index, Integer, String, Table, Text, TypeDecorator
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """A time-zone aware timestamp, stored as UTC on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"timestamp {value} has no time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class InstanceRow(Base):
    __tablename__ = "instances"
    instance_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    cpu_capacity: Mapped[float] = mapped_column(Float)
    memory_capacity: Mapped[float] = mapped_column(Float)
    group: Mapped[str] = mapped_column(String(200))
    zone: Mapped[str] = mapped_column(String(200))
    tags: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20))
    boot_time: Mapped[datetime | None]


class TelemetryBatchRow(Base):
    __tablename__ = "telemetry_batches"
    batch_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(500))
    row_count: Mapped[int] = mapped_column(Integer)
    quarantined_count: Mapped[int] = mapped_column(Integer)
    start: Mapped[datetime | None]
    end: Mapped[datetime | None]
    created_at: Mapped[datetime]


class TelemetrySampleRow(Base):
    __tablename__ = "telemetry_samples"
    __table_args__ = (
        Index("ix_telemetry_instance_time", "instance_id", "timestamp"),
        Index("ix_telemetry_time", "timestamp", "instance_id", "metric", "value"),  # covers materialize's read
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("telemetry_batches.batch_id", ondelete="CASCADE"), index=True)
    instance_id: Mapped[str] = mapped_column(String(200))
    timestamp: Mapped[datetime]
    metric: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)


class FailureEventRow(Base):
    __tablename__ = "failure_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(200), index=True)
    timestamp: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(200))
    root_cause: Mapped[str] = mapped_column(String(500))
    recovery_minutes: Mapped[float | None] = mapped_column(Float)


class ErrorEventRow(Base):
    __tablename__ = "error_events"
    __table_args__ = (Index("ix_error_events_time", "timestamp"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(String(200), index=True)
    timestamp: Mapped[datetime]
    severity: Mapped[str] = mapped_column(String(20))
    category: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)


class WorkloadRow(Base):
    __tablename__ = "workloads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(String(200), index=True)
    instance_id: Mapped[str] = mapped_column(String(200))
    start: Mapped[datetime]
    end: Mapped[datetime | None]
    cpu: Mapped[float] = mapped_column(Float)
    memory: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(200))
    data_size: Mapped[float | None] = mapped_column(Float)
    expected_duration: Mapped[float | None] = mapped_column(Float)


class QuarantineRow(Base):
    __tablename__ = "quarantine"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str | None] = mapped_column(String(64), index=True)
    source_file: Mapped[str] = mapped_column(String(1000))
    line: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    row: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class PlanRow(Base):
    __tablename__ = "plans"
    plan_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    policy: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20), index=True)
    model_version: Mapped[str | None] = mapped_column(String(200))
    notes: Mapped[list[Any]]
    rolling_back: Mapped[bool] = mapped_column(default=False)


class ActionRow(Base):
    """One journal entry: an action, with when its intent and outcome were written."""

    __tablename__ = "actions"
    action_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.plan_id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(20))
    instance_id: Mapped[str] = mapped_column(String(200))
    target_instance_id: Mapped[str | None] = mapped_column(String(200))
    task_ids: Mapped[list[Any]]
    params: Mapped[dict[str, Any]]
    reason: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20))
    error: Mapped[str | None] = mapped_column(Text)
    applied: Mapped[bool] = mapped_column(default=False)
    intent_at: Mapped[datetime | None]
    outcome_at: Mapped[datetime | None]
    revert_intent_at: Mapped[datetime | None]


class SnapshotRow(Base):
    __tablename__ = "snapshots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[str] = mapped_column(String(200))
    plan_id: Mapped[str | None] = mapped_column(String(64), index=True)
    adapter: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]


# -- coordination between runs: Core tables, written with dialect-specific upserts ------------------------
leases = Table(
    "leases",
    Base.metadata,
    Column("name", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("acquired_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
)
"""Named locks with an owner and an expiry (:mod:`forewarn.store.lease`)."""

instance_claims = Table(
    "instance_claims",
    Base.metadata,
    Column("instance_id", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("cycle", String(200), nullable=False),
    Column("claimed_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
)
"""One instance reserved by one run until an expiry (:mod:`forewarn.store.lease`)."""

cycle_state = Table(
    "cycle_state",
    Base.metadata,
    Column("key", String(200), primary_key=True),
    Column("value", JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(200), nullable=False),
)
"""Versioned JSON rows shared by every run: bands, guardrail budgets (:mod:`forewarn.store.state`)."""

watermarks = Table(
    "watermarks",
    Base.metadata,
    Column("name", String(200), primary_key=True),
    Column("until", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("note", Text(), nullable=False, default=""),
)
"""How far each source and incremental job has been taken in (:mod:`forewarn.store.watermarks`)."""
