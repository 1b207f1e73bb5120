"""Failures of the simulated cloud reach the history database once, close when repaired, and become labels."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from adapters.failures import CloudFailureSource, failure_source
from adapters.persistent import PersistentSimulatedAdapter
from adapters.simulated import SimulatedAdapter
from forewarn.errors import ConfigError
from forewarn.model.labels import label_column, make_labels
from forewarn.schemas import Instance
from forewarn.store.repository import Repository
from forewarn.telemetry.sources import Pulled, Source

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    repository = Repository(f"sqlite:///{tmp_path / 'history.db'}")
    repository.create_all()
    return repository


def fleet() -> SimulatedAdapter:
    return SimulatedAdapter([Instance(instance_id=f"i{k}") for k in range(1, 4)], [])


def commit(repo: Repository, pulled: Pulled) -> None:
    """What the ingest flow does with a pull: failures first, then the recoveries of stored ones."""
    if pulled.failures is not None:
        repo.save_failures(pulled.failures)
    if pulled.recoveries is not None:
        repo.record_recoveries(pulled.recoveries)


def label_before(repo: Repository, instance_id: str, at: datetime, horizon: int = 60) -> int:
    """The label of an entity row 10 minutes before ``at``, from the failures stored in ``repo``."""
    entities = pd.DataFrame({"instance_id": [instance_id], "event_timestamp": [pd.Timestamp(at - minutes(10))]})
    labelled = make_labels(entities, repo.load_failures(), [horizon])
    return int(labelled[label_column(horizon)].iloc[0])


def test_the_cloud_source_is_a_source_named_cloud(repo: Repository) -> None:
    source = failure_source(fleet(), repo)
    assert isinstance(source, Source) and source.name == "cloud"


def test_a_failed_instance_is_recorded_once_and_recovers_when_repaired(repo: Repository) -> None:
    adapter = fleet()
    source = failure_source(adapter, repo)
    adapter.fail_instance("i2", at=T0)
    first = source.pull(None, T0 + minutes(1))
    assert first.failures is not None and list(first.failures["instance_id"]) == ["i2"]
    row = first.failures.iloc[0]
    assert row["timestamp"] == pd.Timestamp(T0) and row["type"] == "instance-failure"
    assert math.isnan(row["recovery_minutes"])
    commit(repo, first)
    again = source.pull(T0 + minutes(1), T0 + minutes(2))  # still down: nothing new
    assert again.failures is not None and again.failures.empty
    commit(repo, again)
    commit(repo, first)  # a pull committed twice (a crash before the watermark moved) stores nothing twice
    assert len(repo.load_failures()) == 1

    adapter.repair_instance("i2")
    back = source.pull(T0 + minutes(2), T0 + minutes(30))
    assert back.recoveries is not None and back.recoveries["recovery_minutes"].tolist() == [30.0]
    commit(repo, back)
    stored = repo.load_failures()
    assert stored[["instance_id", "type", "recovery_minutes"]].values.tolist() == [["i2", "instance-failure", 30.0]]
    assert stored["root_cause"].iloc[0]
    later = source.pull(T0 + minutes(30), T0 + minutes(31))
    assert later.failures is not None and later.failures.empty
    assert later.recoveries is not None and later.recoveries.empty


def test_a_second_failure_after_repair_is_a_new_event(repo: Repository) -> None:
    adapter = fleet()
    source = failure_source(adapter, repo)
    adapter.fail_instance("i1", at=T0)
    commit(repo, source.pull(None, T0 + minutes(1)))
    adapter.repair_instance("i1")
    commit(repo, source.pull(T0 + minutes(1), T0 + minutes(5)))
    adapter.fail_instance("i1", at=T0 + minutes(50))
    commit(repo, source.pull(T0 + minutes(5), T0 + minutes(51)))
    stored = repo.load_failures()
    assert stored["timestamp"].tolist() == [pd.Timestamp(T0), pd.Timestamp(T0 + minutes(50))]
    assert stored["recovery_minutes"].iloc[0] == 5.0 and math.isnan(stored["recovery_minutes"].iloc[1])


def test_a_failure_after_the_pull_waits_for_a_later_pull(repo: Repository) -> None:
    adapter = fleet()
    source = failure_source(adapter, repo)
    adapter.fail_instance("i3", at=T0 + minutes(10))
    early = source.pull(None, T0)
    assert early.failures is not None and early.failures.empty
    late = source.pull(T0, T0 + minutes(10))
    assert late.failures is not None and late.failures["instance_id"].tolist() == ["i3"]


def test_the_persistent_fleet_is_read_from_its_file_at_every_pull(tmp_path: Path, repo: Repository) -> None:
    path = tmp_path / "fleet.json"
    driver = PersistentSimulatedAdapter(path, [Instance(instance_id="a"), Instance(instance_id="b")], [])
    reader = PersistentSimulatedAdapter(path, [], [])  # another process: the ingest flow's own adapter
    source = failure_source(reader, repo)
    driver.fail_instance("b", at=T0)
    pulled = source.pull(None, T0 + minutes(1))
    assert pulled.failures is not None and pulled.failures["instance_id"].tolist() == ["b"]


def test_a_failure_from_the_simulated_cloud_becomes_a_positive_label(repo: Repository) -> None:
    adapter = fleet()
    adapter.fail_instance("i2", at=T0)
    commit(repo, failure_source(adapter, repo).pull(None, T0 + minutes(1)))
    assert label_before(repo, "i2", T0) == 1
    assert label_before(repo, "i1", T0) == 0


def test_store_keeps_one_row_per_instance_and_time_and_closes_in_one_batch(repo: Repository) -> None:
    frame = pd.DataFrame(
        {
            "instance_id": ["a", "a", "b"],
            "timestamp": pd.to_datetime([T0, T0, T0 + minutes(1)], utc=True),
            "type": ["x", "x", "y"],
            "root_cause": ["c", "c", "d"],
        }
    )
    assert repo.save_failures(frame) == 2
    assert repo.save_failures(frame) == 0
    assert repo.open_failures()["instance_id"].tolist() == ["a", "b"]
    recoveries = pd.DataFrame(
        {"instance_id": ["a", "b"], "timestamp": [T0, T0 + minutes(1)], "recovery_minutes": [3.0, 4.5]}
    )
    assert repo.record_recoveries(recoveries) == 2
    assert repo.record_recoveries(recoveries.assign(recovery_minutes=99.0)) == 0  # known recoveries are kept
    assert repo.load_failures()["recovery_minutes"].tolist() == [3.0, 4.5]
    assert repo.open_failures().empty
    assert repo.open_failures(T0 + minutes(1))["instance_id"].tolist() == ["b"]


def test_an_unknown_cloud_is_refused_with_the_ones_it_knows() -> None:
    class Other(SimulatedAdapter):
        name = "azure"

    with pytest.raises(ConfigError, match="azure"):
        failure_source(Other([], []))


def test_without_a_history_the_source_reads_the_settings_database(
    forewarn_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{forewarn_home / 'h.db'}"
    monkeypatch.setenv("FOREWARN_DATABASE_URL", url)
    Repository(url).create_all()
    source = failure_source(fleet())
    assert isinstance(source, CloudFailureSource)
    assert source.pull(None, T0).failures is not None
