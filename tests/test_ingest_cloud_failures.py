"""Failures learned from what the cloud says, through the ingest flow: the source named ``cloud`` (the
configured cloud's failure events) lands a failure once, its recovery when the instance is healthy again,
and the next training rows are labelled by it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from forewarn import compose
from forewarn.clock import SimulatedClock, parse_time
from forewarn.model.labels import make_labels
from forewarn.service import context
from forewarn.sim import SimConfig, write
from forewarn.store.watermarks import WatermarkStore


@pytest.mark.slow
def test_a_failure_of_the_simulated_cloud_lands_once_with_its_recovery_and_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    from flows.ingest import ingest

    data = write(SimConfig(instances=6, days=0.2, seed=3), tmp_path / "data")
    monkeypatch.setenv("FOREWARN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FOREWARN_DATASET", str(data))
    monkeypatch.delenv("FOREWARN_DATABASE_URL", raising=False)
    monkeypatch.setenv("FOREWARN_SOURCES", json.dumps([{"kind": "cloud"}]))
    ctx = context(dry_run=False)
    clock = SimulatedClock(parse_time("2024-03-02T00:00:00Z"))
    fleet = compose.cloud(ctx, at=clock.now())  # the persistent simulated cloud, seeded from the dataset
    victim = fleet.list_instances()[0].instance_id
    failed_at = clock.advance(timedelta(minutes=3))
    fleet.fail_instance(victim, at=failed_at)  # type: ignore[attr-defined]

    first = ingest(at=clock.advance(timedelta(minutes=2)).isoformat())
    assert isinstance(first, str) and "1 source(s) landed" in first
    ingest(at=clock.advance(timedelta(minutes=1)).isoformat())  # the cloud still reports it: stored once
    stored = ctx.repo.load_failures()
    assert list(stored["instance_id"]) == [victim]
    assert stored["recovery_minutes"].isna().all()
    assert WatermarkStore(ctx.repo.engine).get("cloud") == clock.now()

    compose.cloud(ctx).repair_instance(victim)  # type: ignore[attr-defined]
    ingest(at=clock.advance(timedelta(minutes=30)).isoformat())
    stored = ctx.repo.load_failures()
    assert len(stored) == 1 and stored.loc[0, "recovery_minutes"] > 0

    before = pd.Timestamp(failed_at) - pd.Timedelta(minutes=10)
    entities = pd.DataFrame({"instance_id": [victim, "other"], "event_timestamp": [before, before]})
    labels = make_labels(entities, stored, [60], data_end=pd.Timestamp(clock.now()))
    assert labels["label_60m"].tolist() == [1, 0]
