"""A history database from the first migration, with the tables earlier versions created outside Alembic,
upgrades to the newest migration on SQLite and the machine's PostgreSQL 15: its schema is then exactly the
models', and what was written before the upgrade reads back through today's code."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, Column, Connection, Engine, Integer, MetaData, String, Table, Text, insert, inspect
from sqlalchemy.dialects import postgresql

from forewarn.execution.journal import Journal
from forewarn.schemas import Action, ActionType, Instance, Plan, PolicyMode
from forewarn.store.lease import LeaseStore
from forewarn.store.migrate import alembic_config, current_revision, head_revision, upgrade
from forewarn.store.models import Base, UtcDateTime
from forewarn.store.repository import QuarantineRecord, Repository
from forewarn.store.state import StateStore
from forewarn.store.watermarks import WatermarkStore
from tests.servers import throwaway_postgres
from tests.test_store import small_dataset

T0 = datetime(2024, 3, 1, tzinfo=UTC)
FAR = datetime(2100, 1, 1, tzinfo=UTC)


def legacy_tables() -> MetaData:
    """The four tables as versions before migration 0003 created them on first use (``create_all``)."""
    metadata = MetaData()
    Table(
        "leases",
        metadata,
        Column("name", String(200), primary_key=True),
        Column("owner", String(200), nullable=False),
        Column("acquired_at", UtcDateTime(), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False),
    )
    Table(
        "instance_claims",
        metadata,
        Column("instance_id", String(200), primary_key=True),
        Column("owner", String(200), nullable=False),
        Column("cycle", String(200), nullable=False),
        Column("claimed_at", UtcDateTime(), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False, index=True),
    )
    Table(
        "cycle_state",
        metadata,
        Column("key", String(200), primary_key=True),
        Column("value", JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        Column("version", Integer, nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
        Column("updated_by", String(200), nullable=False),
    )
    Table(
        "watermarks",
        metadata,
        Column("name", String(200), primary_key=True),
        Column("until", UtcDateTime(), nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
        Column("note", Text(), nullable=False, default=""),
    )
    return metadata


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with throwaway_postgres("forewarn_upgrade") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    """A database at the first migration, holding a dataset, instances, a quarantined row, a plan and a
    snapshot; then at 0002 with the coordination tables and rows an earlier version wrote itself."""
    sqlite = f"sqlite:///{tmp_path / 'history.db'}"
    url = sqlite if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    repo = Repository(url)
    upgrade(repo.engine, "0001")
    repo.save_dataset(small_dataset(), source="before-upgrade")
    repo.save_instances([Instance(instance_id="a", tags={"rack": "r1"}), Instance(instance_id="b")])
    repo.save_quarantine([QuarantineRecord(source_file="t.csv", line=3, reason="cpu: not a number")])
    Journal(repo).save_plan(the_plan())
    repo.save_snapshot("snap-1", adapter="simulated", plan_id="plan-old")
    upgrade(repo.engine, "0002")
    legacy = legacy_tables()
    legacy.create_all(repo.engine, checkfirst=True)
    with repo.engine.begin() as conn:
        lease = {"name": "plan:x", "owner": "h:1:a", "acquired_at": T0, "expires_at": FAR}
        conn.execute(insert(legacy.tables["leases"]).values(lease))
        claim = {"instance_id": "a", "owner": "run-1", "cycle": "c1", "claimed_at": T0, "expires_at": FAR}
        conn.execute(insert(legacy.tables["instance_claims"]).values(claim))
        state = {"key": "bands", "value": {"states": {"a": "high"}}, "version": 3, "updated_by": "run-1"}
        conn.execute(insert(legacy.tables["cycle_state"]).values(updated_at=T0, **state))
        conn.execute(insert(legacy.tables["watermarks"]).values(name="fleet", until=T0, updated_at=T0))
    yield repo
    if request.param == "postgres":
        with repo.engine.begin() as conn:
            command.downgrade(_config(conn), "base")
            legacy.drop_all(conn, checkfirst=True)
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
    repo.dispose()


def the_plan() -> Plan:
    action = Action(action_id="act-old", type=ActionType.CORDON, instance_id="a")
    return Plan(plan_id="plan-old", created_at=T0, policy="default", mode=PolicyMode.RECOMMEND, actions=[action])


def _config(conn: Connection) -> Config:
    config = alembic_config()
    config.attributes["connection"] = conn
    return config


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def assert_history_kept(repo: Repository) -> None:
    data, back = small_dataset(), repo.load_dataset()
    pd.testing.assert_frame_equal(back.telemetry, data.telemetry[["instance_id", "timestamp", "cpu", "disk_errors"]])
    pd.testing.assert_frame_equal(back.failures, data.failures)
    pd.testing.assert_frame_equal(back.errors, data.errors)
    pd.testing.assert_frame_equal(back.workloads, data.workloads)
    assert [i.instance_id for i in repo.load_instances()] == ["a", "b"]
    assert [q.reason for q in repo.load_quarantine()] == ["cpu: not a number"]
    plan = Journal(repo).get("plan-old")
    assert plan.created_at == T0 and [a.action_id for a in plan.actions] == ["act-old"]
    assert repo.snapshot_of("plan-old") == "snap-1"


def test_an_old_database_upgrades_to_the_models_and_keeps_its_rows(old_database: Repository) -> None:
    repo = old_database
    repo.create_all()  # what opening the store does
    assert current_revision(repo.engine) == head_revision()
    assert schema_diff(repo.engine) == []
    assert not {"model_versions", "velocity_parameters"} & set(inspect(repo.engine).get_table_names())
    assert_history_kept(repo)
    leases = LeaseStore(repo.engine, clock=lambda: T0 + timedelta(minutes=1))
    holder = leases.holder("plan:x")
    assert holder is not None and holder.owner == "h:1:a"
    assert leases.claimed_by("run-1") == {"a"}
    state = StateStore(repo.engine).get("bands")
    assert state is not None and state.value == {"states": {"a": "high"}} and state.version == 3
    assert WatermarkStore(repo.engine).get("fleet") == T0


def test_a_downgrade_to_the_first_migration_and_back_keeps_the_history(old_database: Repository) -> None:
    repo = old_database
    repo.create_all()
    with repo.engine.begin() as conn:
        command.downgrade(_config(conn), "0001")
    assert current_revision(repo.engine) == "0001"
    assert "watermarks" not in inspect(repo.engine).get_table_names()
    repo.create_all()
    assert schema_diff(repo.engine) == []
    assert_history_kept(repo)
    marks = WatermarkStore(repo.engine)
    assert marks.get("fleet") is None and marks.advance("fleet", T0) == T0


def test_processes_opening_a_new_postgres_database_at_once_upgrade_it_in_turn(postgres_url: str) -> None:
    errors: list[Exception] = []

    def open_it() -> None:
        try:
            upgrade(postgres_url)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    runs = [threading.Thread(target=open_it) for _ in range(4)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    repo = Repository(postgres_url)
    try:
        assert not any(run.is_alive() for run in runs) and errors == []
        assert current_revision(repo.engine) == head_revision()
        assert schema_diff(repo.engine) == []
    finally:
        with repo.engine.begin() as conn:
            command.downgrade(_config(conn), "base")
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        repo.dispose()
