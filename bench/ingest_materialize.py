"""Benchmark: does ingest + incremental materialize keep up with 10,000 instances at one sample per minute?

A fleet of ``instances`` is simulated at a 1-minute step over the longest window's look-back plus one
materialize period (:data:`PERIOD_MINUTES`). Everything but the last period is ingested and materialized
first (not timed); then the last period arrives and is timed through ``ingest_files`` and
``materialize_history`` (reading the new rows and the look-back, window features, offline part, online
push), beside two floors: the same telemetry rows read raw from the database (one ``SELECT``, no pandas),
and the bare window computation over them. The figures scale linearly with the fleet, so each is also given
per 10,000 instances; the loop keeps up when that total fits in one period.

Run: ``.venv/bin/python -m bench.ingest_materialize [INSTANCES]`` prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from forewarn.dataset import Dataset, write_dataset
from forewarn.features.incremental import LOOKBACK, materialize_history
from forewarn.features.store import FeatureStoreGlue
from forewarn.features.windows import compute_window_features
from forewarn.ingest import ingest_files, open_repository
from forewarn.settings import Settings
from forewarn.sim import SimConfig, simulate
from forewarn.store.models import TelemetrySampleRow

PERIOD_MINUTES = 5
"""How often materialize runs (prefect.yaml: every few minutes): the new rows of one run."""
TARGET = 10_000


def _part(data: Dataset, keep: pd.Series, workloads: bool) -> Dataset:
    return Dataset(
        telemetry=data.telemetry[keep.to_numpy()],
        failures=data.failures.iloc[0:0],
        instances=data.instances,
        workloads=data.workloads if workloads else None,
    )


def run(instances: int = 1_000) -> dict[str, Any]:
    minutes = int(LOOKBACK / timedelta(minutes=1)) + 2 * PERIOD_MINUTES
    data = simulate(SimConfig(instances=instances, days=minutes / 1440, step_minutes=1, seed=3))
    cut = data.end - pd.Timedelta(minutes=PERIOD_MINUTES)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        old = write_dataset(_part(data, data.telemetry["timestamp"] <= cut, True), root / "old")
        new = write_dataset(_part(data, data.telemetry["timestamp"] > cut, False), root / "new")
        settings = Settings(home=root / "home", database_url=f"sqlite:///{root / 'history.db'}")
        repo = open_repository(settings.database_url)

        def glue_for(metrics: list[str]) -> FeatureStoreGlue:
            return FeatureStoreGlue(settings.features_dir, settings=settings, metrics=metrics)

        ingest_files(old, repository=repo)
        materialize_history(repo, glue_for, now=cut.to_pydatetime())
        began = time.perf_counter()
        summary = ingest_files(new, repository=repo)
        ingest_s = time.perf_counter() - began
        began = time.perf_counter()
        outcome = materialize_history(repo, glue_for, now=data.end.to_pydatetime())
        materialize_s = time.perf_counter() - began

        t = TelemetrySampleRow
        query = select(t.instance_id, t.timestamp, t.metric, t.value).where(t.timestamp > cut - LOOKBACK)
        began = time.perf_counter()
        with repo.engine.connect() as conn:
            raw = conn.execute(query).all()
        read_floor = time.perf_counter() - began
        window = data.telemetry[data.telemetry["timestamp"] > cut - LOOKBACK]
        began = time.perf_counter()
        compute_window_features(window, metrics=data.metrics)
        compute_floor = time.perf_counter() - began
    scale = TARGET / instances
    total = (ingest_s + materialize_s) * scale
    return {
        "instances": instances,
        "period_minutes": PERIOD_MINUTES,
        "new_rows": outcome.new_rows,
        "stored_rows": summary.stored,
        "rows_read": outcome.rows_read,
        "samples_read_raw": len(raw),
        "ingest_seconds": round(ingest_s, 3),
        "materialize_seconds": round(materialize_s, 3),
        "floor_read_seconds": round(read_floor, 3),
        "floor_window_seconds": round(compute_floor, 3),
        "per_10k_seconds": round(total, 1),
        "per_10k_floor_seconds": round((read_floor + compute_floor) * scale, 1),
        "budget_seconds": PERIOD_MINUTES * 60,
        "keeps_up": total < PERIOD_MINUTES * 60,
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000), indent=2))
