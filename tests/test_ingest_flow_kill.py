"""Kill the ingest for real (SIGKILL) between fetching and committing, and between committing and moving the
watermark: the next run loses no sample and stores none twice (telemetry, errors, workloads, failures)."""

from __future__ import annotations

import multiprocessing
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from forewarn.dataset import read_dataset
from forewarn.ingest import open_repository
from forewarn.sim import SimConfig, write
from forewarn.sources.replay import DatasetReplaySource
from forewarn.sources.step import ingest_source
from forewarn.store.watermarks import WatermarkStore

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["tests.test_ingest_flow_kill"])
NOW = datetime(2024, 3, 1, 3, tzinfo=UTC)


def _doomed(url: str, dataset: str, point: str) -> None:
    """The child: one ingest step that kills its own process at ``point``."""

    def hook(at: str) -> None:
        if at == point:
            os.kill(os.getpid(), signal.SIGKILL)

    source = DatasetReplaySource(dataset, name="fleet")
    ingest_source(source, repository=open_repository(url), now=NOW, retries=0, hook=hook)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["fetched", "committed"])
def test_killed_ingest_loses_nothing_and_stores_nothing_twice(tmp_path: Path, point: str) -> None:
    data = write(SimConfig(instances=4, days=0.2, seed=2), tmp_path / "data")
    url = f"sqlite:///{tmp_path / 'history.db'}"
    child = CONTEXT.Process(target=_doomed, args=(url, str(data), point))
    child.start()
    child.join(300)
    assert child.exitcode == -signal.SIGKILL
    repository = open_repository(url)
    marks = WatermarkStore(repository.engine)
    assert marks.get("fleet") is None  # the watermark moves only after the commit, which it never reached
    stored_before = len(repository.load_telemetry())
    assert stored_before == 0 if point == "fetched" else stored_before > 0  # committed, watermark not moved

    report = ingest_source(DatasetReplaySource(data, name="fleet"), repository=repository, now=NOW, retries=0)
    assert report.landed and marks.get("fleet") == NOW
    expected = read_dataset(data)
    visible = expected.telemetry[expected.telemetry["timestamp"] <= pd.Timestamp(NOW)]
    telemetry = repository.load_telemetry()
    assert len(telemetry) == len(visible) and not telemetry.duplicated(["instance_id", "timestamp"]).any()
    errors = expected.errors if expected.errors is not None else pd.DataFrame()
    assert len(repository.load_errors()) == int((errors["timestamp"] <= pd.Timestamp(NOW)).sum())
    workloads = expected.workloads if expected.workloads is not None else pd.DataFrame()
    assert len(repository.load_workloads()) == int((workloads["start"] <= pd.Timestamp(NOW)).sum())
    again = ingest_source(
        DatasetReplaySource(data, name="fleet"), repository=repository, now=NOW + timedelta(minutes=1), retries=0
    )
    assert again.summary is not None and again.summary.stored == 0
