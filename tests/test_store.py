"""The historical repository on SQLite (always) and the machine's PostgreSQL 15 (when it can be started)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from forewarn.dataset import Dataset
from forewarn.schemas import Instance
from forewarn.settings import shared_data_dir
from forewarn.store.migrate import current_revision, head_revision, upgrade
from forewarn.store.models import Base
from forewarn.store.repository import QuarantineRecord, Repository
from tests.servers import throwaway_postgres

T0 = pd.Timestamp("2024-03-01T00:00:00Z")


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Repository]:
    sqlite = f"sqlite:///{tmp_path / 'history.db'}"
    url = sqlite if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    repository = Repository(url)
    repository.create_all()
    yield repository
    if request.param == "postgres":
        with repository.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(table.delete())
    repository.dispose()


def small_dataset() -> Dataset:
    times = pd.date_range(T0, periods=3, freq="5min")
    telemetry = pd.DataFrame(
        {
            "instance_id": ["a"] * 3 + ["b"] * 3,
            "timestamp": list(times) * 2,
            "cpu": [0.1, 0.2, np.nan, 0.4, 0.5, 0.6],
            "disk_errors": [0.0, 0.0, 1.0, 0.0, 2.0, 3.0],
        }
    )
    failures = pd.DataFrame(
        {
            "instance_id": ["a"],
            "timestamp": [times[2]],
            "type": ["disk"],
            "root_cause": ["hardware"],
            "recovery_minutes": [42.0],
        }
    )
    errors = pd.DataFrame(
        {
            "instance_id": ["a"],
            "timestamp": [times[1]],
            "severity": ["error"],
            "category": ["disk"],
            "message": ["I/O error, dev sda"],
        }
    )
    workloads = pd.DataFrame(
        {
            "task_id": ["t1", "t2"],
            "instance_id": ["a", "b"],
            "start": [times[0], times[0]],
            "end": [times[2], pd.NaT],
            "cpu": [0.5, 0.25],
            "memory": [0.5, 0.125],
            "kind": ["batch", "service"],
            "data_size": [1.0, np.nan],
            "expected_duration": [60.0, np.nan],
        }
    )
    return Dataset(telemetry=telemetry, failures=failures, errors=errors, workloads=workloads)


def test_dataset_round_trip(repo: Repository) -> None:
    data = small_dataset()
    batch = repo.save_dataset(data, source="unit")
    back = repo.load_dataset()
    pd.testing.assert_frame_equal(back.telemetry, data.telemetry[["instance_id", "timestamp", "cpu", "disk_errors"]])
    pd.testing.assert_frame_equal(back.failures, data.failures)
    pd.testing.assert_frame_equal(back.errors, data.errors)
    pd.testing.assert_frame_equal(back.workloads, data.workloads)
    batches = repo.list_batches()
    assert batches.loc[0, "batch_id"] == batch and batches.loc[0, "row_count"] == 6
    assert batches.loc[0, "start"] == T0 and batches.loc[0, "end"] == T0 + pd.Timedelta("10min")
    window = repo.load_telemetry(["b"], start=T0 + pd.Timedelta("5min"))
    assert window["instance_id"].tolist() == ["b", "b"] and window["cpu"].tolist() == [0.5, 0.6]


def test_records_round_trip(repo: Repository) -> None:
    boot = datetime(2024, 1, 1, tzinfo=UTC)
    instances = [Instance(instance_id="a", tags={"rack": "r1"}, boot_time=boot), Instance(instance_id="b")]
    repo.save_instances(instances)
    repo.save_instances([instances[1].model_copy(update={"cpu_capacity": 4.0})])
    assert repo.load_instances() == [instances[0], instances[1].model_copy(update={"cpu_capacity": 4.0})]
    record = QuarantineRecord(
        source_file="telemetry.csv", line=7, reason="cpu: 'x' is not a number", row={"cpu": "x"}, batch_id="b1"
    )
    repo.save_quarantine([record])
    assert repo.load_quarantine("b1") == [record] and repo.load_quarantine("b2") == []
    repo.save_snapshot("snap-1", adapter="simulated", plan_id="p1")
    repo.save_snapshot("snap-2", adapter="simulated", plan_id="p1")
    assert repo.snapshot_of("p1") == "snap-2" and repo.snapshot_of("p2") is None


def test_migrations_match_the_models(repo: Repository) -> None:
    assert current_revision(repo.engine) == head_revision() == "0004"
    with repo.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_by_url_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
    upgrade(url)
    upgrade(url)
    repo = Repository(url)
    assert current_revision(repo.engine) == "0004"


def test_real_failure_log_round_trips(tmp_path: Path) -> None:
    """LANL's failure records (1996-2005), as failure events, survive the repository unchanged."""
    path = shared_data_dir() / "lanl_hpc_failures_1996_2005" / "LA-UR-05-7318-failure-data-1996-2005.csv.xz"
    if not path.exists():
        pytest.skip(f"public data not found: {path}")
    raw = pd.read_csv(path, nrows=500, dtype=str, keep_default_na=False)
    causes = ["Facilities", "Hardware", "Human Error", "Network", "Undetermined", "Software"]
    failures = (
        pd.DataFrame(
            {
                "instance_id": "lanl-" + raw["System"] + "-" + raw["nodenum"],
                "timestamp": pd.to_datetime(raw["Prob Started"], format="%m/%d/%Y %H:%M", utc=True),
                "type": raw["fru type"],
                "root_cause": [next((c for c in causes if row[c]), "undetermined") for _, row in raw.iterrows()],
                "recovery_minutes": pd.to_numeric(raw["Down Time"], errors="coerce").astype(float),
            }
        )
        .sort_values(["timestamp", "instance_id"], kind="stable")
        .reset_index(drop=True)
    )
    repo = Repository(f"sqlite:///{tmp_path / 'real.db'}")
    repo.create_all()
    repo.save_failures(failures)
    pd.testing.assert_frame_equal(repo.load_failures(), failures)
