"""The history database feeds the loop: no dataset directory anywhere. A simulated fleet is ingested in
two halves; materialize runs at two clock times (the second reads only the new rows and the look-back);
training reads a rolling window of history; the one cycle scores from the online store and plans."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from forewarn import compose, pipeline
from forewarn.cycle import OnlineScoring, run_cycle
from forewarn.dataset import Dataset, read_dataset, write_dataset
from forewarn.features.incremental import WATERMARK
from forewarn.features.store import FeatureStoreGlue
from forewarn.features.windows import LOOKBACK_MINUTES, compute_window_features, feature_names
from forewarn.ingest import ingest_files
from forewarn.model.registry import ModelRegistry
from forewarn.service import Context
from forewarn.settings import Settings
from forewarn.sim import SimConfig
from forewarn.sim.core import simulate
from forewarn.store import Repository
from forewarn.store.watermarks import WatermarkStore
from tests.servers import throwaway_postgres
from tests.test_feast import redis_url as redis_url  # fixture

CONFIG = SimConfig(instances=24, days=3, seed=5, failure_rate_per_day=0.6)


def halves(data: Dataset, cut: pd.Timestamp, root: Path) -> tuple[Path, Path]:
    """Two dataset directories: the rows up to ``cut``, and those after it (instances in both)."""
    dirs = []
    for name, keep in (("first", lambda s: s <= cut), ("second", lambda s: s > cut)):
        part = Dataset(
            telemetry=data.telemetry[keep(data.telemetry["timestamp"])],
            failures=data.failures[keep(data.failures["timestamp"])],
            errors=None if data.errors is None else data.errors[keep(data.errors["timestamp"])],
            instances=data.instances,
            workloads=data.workloads if name == "first" else None,
        )
        dirs.append(write_dataset(part, root / name))
    return dirs[0], dirs[1]


def use(monkeypatch: pytest.MonkeyPatch, home: Path, url: str, redis: str = "") -> Settings:
    monkeypatch.setenv("FOREWARN_HOME", str(home))
    monkeypatch.setenv("FOREWARN_DATABASE_URL", url)
    monkeypatch.setenv("FOREWARN_DATASET", str(home / "no-such-dataset"))
    monkeypatch.setenv("FOREWARN_FEAST_REDIS_URL", redis)
    return Settings()


def run_loop(tmp_path: Path, settings: Settings) -> None:
    data = simulate(CONFIG)
    cut = data.start + pd.Timedelta(days=2)
    first, second = halves(data, cut, tmp_path / "in")
    repo = Repository(settings.resolved_database_url())
    repo.create_all()

    def glue_for(metrics: list[str]) -> FeatureStoreGlue:
        return FeatureStoreGlue(settings.features_dir, settings=settings, metrics=metrics)

    ingest_files(first, repository=repo)
    at1 = cut.to_pydatetime()
    one = pipeline.materialize_history(repo, glue_for, now=at1)
    assert one.new_rows == (data.telemetry["timestamp"] <= cut).sum() and one.until == at1
    assert WatermarkStore(repo.engine).get(WATERMARK) == at1

    ingest_files(second, repository=repo)
    at2 = data.end.to_pydatetime()
    two = pipeline.materialize_history(repo, glue_for, now=at2)
    stamps = data.telemetry["timestamp"]
    assert two.new_rows == (stamps > cut).sum()
    look = cut - pd.Timedelta(minutes=LOOKBACK_MINUTES)
    assert two.rows_read == (stamps > look).sum() < len(stamps)  # new rows and the look-back, not the history
    assert "nothing done" in pipeline.materialize_history(repo, glue_for, now=at2).summary()

    stored = [read_dataset(first), read_dataset(second)]  # as ingested (CSV rounds the simulated values)
    expected = compute_window_features(
        pd.concat([d.telemetry for d in stored], ignore_index=True),
        errors=pd.concat([d.errors for d in stored if d.errors is not None], ignore_index=True),
        failures=pd.concat([d.failures for d in stored], ignore_index=True),
        instances=data.instances,
        metrics=data.metrics,
    )
    latest = expected.sort_values("event_timestamp").groupby("instance_id").tail(1).set_index("instance_id")
    ids = sorted(latest.index)
    ctx = Context(settings=settings, dry_run=True)
    online = ctx.glue.online_features(ids).set_index("instance_id").loc[ids]
    window = feature_names(data.metrics)
    np.testing.assert_allclose(
        online[window].to_numpy(float), latest.loc[ids, window].to_numpy(float), rtol=1e-6, atol=1e-9, equal_nan=True
    )

    registry = ModelRegistry(settings.models_dir)
    outcome = pipeline.train_from_history(
        repo, ctx.glue, registry, now=at2, days=settings.train_days, horizon_minutes=60
    )
    assert outcome.card is not None and outcome.promoted, outcome.validation.failures
    assert outcome.card.telemetry_metrics == data.metrics
    assert outcome.card.data_window[1] < at2

    model = registry.current()
    assert model is not None
    cloud = compose.simulated_fleet(repo.load_instances(), [])
    now = at2 + timedelta(minutes=1)
    result = run_cycle(ctx, cloud, now, scoring=OnlineScoring(ctx.glue, model), model_version=model.version)
    age = timedelta(minutes=ctx.policy.fallback.max_feature_age_minutes)
    quiet = sorted(i for i, t in latest["event_timestamp"].items() if t < pd.Timestamp(now - age))  # down at the end
    assert sorted(result.stale) == quiet and len(quiet) < len(ids) // 4
    assert sorted(s.instance_id for s in result.scores) == sorted(set(ids) - set(quiet))
    assert result.plan is not None and result.plan.model_version == model.version


def test_history_loop_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = use(monkeypatch, tmp_path / "home", f"sqlite:///{tmp_path / 'history.db'}")
    run_loop(tmp_path, settings)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with throwaway_postgres("forewarn_history") as url:
        yield url


@pytest.mark.integration
def test_history_loop_on_postgres_and_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str
) -> None:
    settings = use(monkeypatch, tmp_path / "home", postgres_url, redis_url)
    run_loop(tmp_path, settings)


def test_a_model_missing_a_metric_goes_to_the_fallback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """When a metric the model learnt from is no longer materialized, scoring says which and scores none."""
    from tests.test_feast import IDS, make_telemetry

    class Model:
        version = "v-old"
        feature_names: ClassVar[list[str]] = [*feature_names(("cpu", "gone")), "minutes_since_boot"]

    telemetry = make_telemetry(metrics=("cpu",))
    glue = FeatureStoreGlue(tmp_path, metrics=["cpu"])
    glue.apply()
    glue.push_online(compute_window_features(telemetry, metrics=["cpu"]))
    frame = pipeline.online_features(glue, IDS, Model())  # type: ignore[arg-type]
    assert "online store lacks (metrics gone:" in caplog.text and "policy's fallback" in caplog.text
    assert frame.attrs[pipeline.MISSING] == [f for f in Model.feature_names if f.startswith("gone_")]
    assert frame["event_timestamp"].isna().all()
    assert pipeline.score(Model(), frame, now=datetime.now()) == []  # type: ignore[arg-type]


def test_backblaze_goes_through_history_with_its_smart_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Backblaze import (daily SMART values, its own column names) through ingest, materialize, train, score."""
    from forewarn.settings import shared_data_dir
    from forewarn.telemetry.importers import import_backblaze

    source = shared_data_dir() / "backblaze_2019_subsets" / "TOSHIBA MQ01ABF050_last_10_day_all_q_raw.csv"
    if not source.exists():
        pytest.skip(f"public data file {source} is absent")
    settings = use(monkeypatch, tmp_path / "home", f"sqlite:///{tmp_path / 'history.db'}")
    dataset = import_backblaze(source, tmp_path / "bb")
    repo = Repository(settings.resolved_database_url())
    repo.create_all()
    ingest_files(dataset, repository=repo)
    data = read_dataset(dataset)
    now = (data.end + pd.Timedelta(minutes=1)).to_pydatetime()

    def glue_for(metrics: list[str]) -> FeatureStoreGlue:
        return FeatureStoreGlue(settings.features_dir, settings=settings, metrics=metrics)

    year = timedelta(days=366)  # the failed drives' last ten days are spread over 2019
    outcome = pipeline.materialize_history(repo, glue_for, now=now, backfill=year)
    stored = len(repo.telemetry_keys_between(None, now))  # rows with at least one value (refused: quarantined)
    assert outcome.new_rows == stored > 0 and set(outcome.metrics) == set(data.metrics)
    glue = Context(settings=settings).glue
    assert glue.metrics == outcome.metrics  # recorded in the Feast registry
    registry = ModelRegistry(settings.models_dir)
    trained = pipeline.train_from_history(repo, glue, registry, now=now, days=366, horizon_minutes=2 * 1440)
    assert trained.card is not None, trained.validation.failures
    assert set(trained.card.telemetry_metrics) == set(data.metrics)
    model = registry.load(trained.card.version)
    features = pipeline.online_features(glue, data.instance_ids, model)
    scores = pipeline.score(model, features, now=now)
    assert len(scores) > len(data.instance_ids) // 2
    assert all(s.model_version == model.version for s in scores)
