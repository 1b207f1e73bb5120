"""The same answers on a Dask LocalCluster of 2 worker processes as in one process (slow: starts a cluster)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pytest

from forewarn import pipeline
from forewarn.dataset import Dataset, read_dataset
from forewarn.distributed import compute
from forewarn.distributed.config import ScaleSettings, dask_client
from forewarn.distributed.shards import shard_of, shards
from forewarn.distributed.train import train_model_dask
from forewarn.execution.journal import Journal
from forewarn.features.store import FeatureStoreGlue
from forewarn.model.config import TrainConfig
from forewarn.model.labels import make_labels
from forewarn.model.registry import ModelRegistry
from forewarn.model.train import train_model
from forewarn.policy.loader import load_policy
from forewarn.schemas import PlanState
from forewarn.settings import PROJECT_ROOT
from forewarn.sim.config import SimConfig
from forewarn.sim.core import write
from forewarn.store import Repository

HORIZON = 60
LABEL = f"label_{HORIZON}m"


def test_an_instance_keeps_its_shard_in_every_process() -> None:
    ids = [f"vm-{n}" for n in range(500)]
    groups = shards(ids, shard_size=100)
    assert sorted(i for g in groups for i in g) == sorted(ids)
    assert all(shard_of(g[0], 5) == shard_of(i, 5) for g in groups for i in g)
    assert shard_of("vm-1", 5) == 0, "a stable hash (blake2b, not hash()): the same shard on every worker and every run"


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = SimConfig(
        instances=50, days=2.0, seed=11, failure_rate_per_day=0.4, sudden_fraction=0.0, noisy_fraction=0.05
    )
    return write(config, tmp_path_factory.mktemp("fleet") / "fleet")


@pytest.fixture(scope="module")
def fleet(fleet_dir: Path) -> Dataset:
    return read_dataset(fleet_dir)


@pytest.fixture(scope="module")
def cluster_settings() -> ScaleSettings:
    return ScaleSettings(dask_address="", dask_workers=2, dask_threads_per_worker=1, dask_processes=True, shard_size=12)


@pytest.fixture(scope="module")
def client(cluster_settings: ScaleSettings) -> Iterator[Any]:
    with dask_client(cluster_settings) as dask:
        assert len(dask.scheduler_info()["workers"]) == 2
        yield dask


def labelled_frame(fleet: Dataset) -> pd.DataFrame:
    features = pipeline.build_features(fleet, every_minutes=pipeline.TRAIN_EVERY_MINUTES)
    entities = features[["instance_id", "event_timestamp"]]
    labels = make_labels(entities, fleet.failures, [HORIZON], data_end=fleet.end)
    return labels.merge(features, on=["instance_id", "event_timestamp"], how="left")


@pytest.mark.slow
def test_sharded_features_on_two_workers_equal_one_process(fleet: Dataset, client: Any) -> None:
    groups = shards(fleet.instance_ids, shard_size=12)
    assert len(groups) > 2
    futures = client.map(compute.features_shard, [compute.shard_dataset(fleet, g) for g in groups])
    sharded = compute.merge_features(client.gather(futures))
    pd.testing.assert_frame_equal(sharded, pipeline.build_features(fleet), check_exact=True)


@pytest.mark.slow
def test_xgboost_dask_trains_a_model_as_good_as_one_process(fleet: Dataset, client: Any) -> None:
    frame = labelled_frame(fleet)
    names = [c for c in frame.columns if c not in ("instance_id", "event_timestamp", LABEL, f"censored_{HORIZON}m")]
    config = TrainConfig(horizon_minutes=HORIZON, max_rounds=150)
    single = train_model(frame, names, LABEL, config)
    one_partition = train_model_dask(client, frame, names, LABEL, config, partitions=1)
    assert one_partition.metrics["pr_auc"] == single.metrics["pr_auc"], "the same procedure, step for step"
    dask = train_model_dask(client, frame, names, LABEL, config, partitions=2)
    for count in ("n_train", "n_validation", "n_test"):
        assert dask.metrics[count] == single.metrics[count], count
    assert dask.metrics["pr_auc"] == pytest.approx(single.metrics["pr_auc"], abs=0.05)
    assert dask.metrics["brier"] == pytest.approx(single.metrics["brier"], abs=0.02)
    assert 0.0 < dask.threshold < 1.0
    scores = dask.score(frame.tail(5))
    assert [s.model_version for s in scores] == [dask.version] * 5


@pytest.mark.slow
def test_scaled_flows_score_the_fleet_as_one_process(
    fleet_dir: Path,
    fleet: Dataset,
    client: Any,
    forewarn_home: Path,
    prefect_harness: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.scaled import ScaledCycle, materialize_scaled, on_cluster, score_and_allocate_scaled

    monkeypatch.setenv("FOREWARN_DATASET", str(fleet_dir))
    monkeypatch.setenv("FOREWARN_SHARD_SIZE", "12")
    shadow = forewarn_home.parent / "shadow.yaml"  # plans are journalled, not run: this test is about scores
    shadow.write_text(re.sub(r"(?m)^mode: \w+", "mode: shadow", (PROJECT_ROOT / "policies/default.yaml").read_text()))
    monkeypatch.setenv("FOREWARN_POLICY", str(shadow))
    remote = ScaleSettings(dask_address=client.scheduler.address, shard_size=12)
    on_cluster(materialize_scaled, remote)(str(fleet_dir))
    glue = FeatureStoreGlue(forewarn_home / "features")
    frame = labelled_frame(fleet)
    model = train_model(frame, glue.feature_names, LABEL, TrainConfig(horizon_minutes=HORIZON, max_rounds=60))
    registry = ModelRegistry(forewarn_home / "models")
    window = (fleet.start.to_pydatetime(), fleet.end.to_pydatetime())
    registry.promote(registry.register(model, data_window=window, validation={"success": True}).version)

    at = fleet.end.isoformat()  # the cycle runs as of the end of the recorded data, not the wall clock
    cycle = cast(ScaledCycle, on_cluster(score_and_allocate_scaled, remote)(str(fleet_dir), at=at))

    assert cycle.shards > 2
    assert cycle.plan.state == PlanState.SHADOW
    assert Journal(Repository(f"sqlite:///{forewarn_home / 'forewarn.db'}")).get(cycle.plan.plan_id).plan_id
    now = fleet.end.to_pydatetime()
    explain = pipeline.explain_choice(load_policy(shadow))  # risky ones and a sample, as one process explains them
    alone = pipeline.score(model, pipeline.online_features(glue, fleet.instance_ids, model), now=now, explain=explain)
    assert len(alone) == len(fleet.instance_ids)
    assert [s.model_dump() for s in cycle.scores] == [s.model_dump() for s in alone]
