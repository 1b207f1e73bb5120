"""A feature service per model version, and workload and velocity features through Feast."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forewarn.errors import InputError
from forewarn.features.store import FeatureStoreGlue, service_name
from forewarn.features.velocity import VELOCITY_FEATURES
from forewarn.features.windows import METRICS, all_feature_names, compute_window_features
from forewarn.features.workloads import WORKLOAD_FEATURES
from forewarn.schemas import VelocityLimits

os.environ.setdefault("DO_NOT_TRACK", "1")

T0 = pd.Timestamp("2024-05-01T00:00:00Z")
IDS = ["vm-a", "vm-b", "vm-c"]
V1, V2 = "20240501T060000Z-aaaaaa", "20240502T060000Z-bbbbbb"
FEATURES_V1 = ["cpu_mean_1h", "memory_max_6h", "err_disk_1h"]
FEATURES_V2 = ["cpu_mean_1h", "tasks_running", "task_cpu_share", "velocity_max_concurrent_migrations"]


def make_inputs(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    times = pd.date_range(T0, periods=72, freq="5min")
    telemetry = pd.DataFrame({"instance_id": np.repeat(IDS, 72), "timestamp": np.tile(times, 3)})
    for metric in METRICS:
        telemetry[metric] = rng.uniform(0.0, 1.0, len(telemetry))
    starts = [T0 + pd.Timedelta(minutes=m) for m in (0, 30, 61, 10, 200)]
    workloads = pd.DataFrame(
        {
            "task_id": [f"t{i}" for i in range(5)],
            "instance_id": ["vm-a", "vm-a", "vm-a", "vm-b", "vm-b"],
            "start": starts,
            "end": [pd.NaT, starts[1] + pd.Timedelta(hours=1), pd.NaT, pd.NaT, pd.NaT],
            "cpu": [0.5, 0.25, 2.0, 1.0, 1.0],
            "memory": [1.0, 1.0, 1.0, 1.0, 1.0],
            "kind": ["batch", "etl", "service", "batch", "batch"],
            "data_size": [1.0, 2.0, 3.0, 4.0, 5.0],
            "expected_duration": [600.0, 60.0, 30.0, np.nan, 60.0],
        }
    )
    return telemetry, workloads


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    telemetry, workloads = make_inputs()
    return compute_window_features(telemetry, workloads=workloads, velocity=VelocityLimits(max_concurrent_migrations=4))


@pytest.fixture
def glue(tmp_path: Path, features: pd.DataFrame) -> FeatureStoreGlue:
    glue = FeatureStoreGlue(tmp_path / "fs")
    glue.write_offline(features)
    glue.apply()
    glue.materialize(end=(features["event_timestamp"].max() + pd.Timedelta(minutes=1)).to_pydatetime())
    return glue


def latest(features: pd.DataFrame) -> pd.DataFrame:
    return features.sort_values("event_timestamp").groupby("instance_id").tail(1).set_index("instance_id")


def test_the_default_service_lists_every_view(tmp_path: Path) -> None:
    glue = FeatureStoreGlue(tmp_path)
    assert glue.feature_names == all_feature_names()
    assert set(WORKLOAD_FEATURES) <= set(glue.feature_names) and set(VELOCITY_FEATURES) <= set(glue.feature_names)


def test_two_versions_each_read_their_own_features(glue: FeatureStoreGlue, features: pd.DataFrame) -> None:
    first = glue.register_service(V1, FEATURES_V1)
    second = glue.register_service(V2, FEATURES_V2)
    assert (
        (first, second)
        == (service_name(V1), service_name(V2))
        == ("failure_model_20240501T060000Z_aaaaaa", "failure_model_20240502T060000Z_bbbbbb")
    )
    expected = latest(features)
    fresh = FeatureStoreGlue(glue.workdir)  # another process: the services come from the registry
    for name, wanted in ((first, FEATURES_V1), (second, FEATURES_V2)):
        online = fresh.online_features(["vm-b", "vm-a"], service=name)
        assert list(online.columns) == ["instance_id", *wanted, "event_timestamp"]
        np.testing.assert_allclose(online[wanted].to_numpy(), expected.loc[["vm-b", "vm-a"], wanted].to_numpy())
    online = fresh.online_features(["vm-a"], service=second)
    assert online.loc[0, "tasks_running"] == 2.0 and online.loc[0, "velocity_max_concurrent_migrations"] == 4.0
    assert list(fresh.online_features(["vm-a"]).columns) == ["instance_id", *all_feature_names(), "event_timestamp"]
    entity = pd.DataFrame({"instance_id": ["vm-a"], "event_timestamp": [T0 + pd.Timedelta(minutes=45)]})
    frame = fresh.training_frame(entity, service=second)
    assert list(frame.columns) == ["instance_id", "event_timestamp", *FEATURES_V2]
    assert frame.loc[0, "tasks_running"] == 2.0
    assert list(fresh.online_features([], service=first).columns) == ["instance_id", *FEATURES_V1, "event_timestamp"]


def test_registering_again_replaces_the_service(glue: FeatureStoreGlue) -> None:
    name = glue.register_service(V1, FEATURES_V1)
    assert glue.register_service(V1, ["tasks_running"]) == name
    columns = list(glue.online_features(["vm-a"], service=name).columns)
    assert columns == ["instance_id", "tasks_running", "event_timestamp"]


def test_a_fresh_registry_accepts_a_service(tmp_path: Path, features: pd.DataFrame) -> None:
    glue = FeatureStoreGlue(tmp_path)
    glue.write_offline(features)
    name = glue.register_service(V2, FEATURES_V2)  # applies the views it needs
    entity = pd.DataFrame({"instance_id": ["vm-b"], "event_timestamp": [T0 + pd.Timedelta(minutes=205)]})
    assert glue.training_frame(entity, service=name).loc[0, "tasks_running"] == 2.0


def test_workload_features_are_point_in_time_in_the_training_frame(glue: FeatureStoreGlue) -> None:
    # vm-a: tasks start at 0, 30 and 61 minutes; the one at 30 ends at 90. vm-b: 10 and 200.
    at = [0, 55, 60, 64, 65, 90, 95, 195, 200]  # feature rows every 5 minutes: 64 reads the row of 60
    entity = pd.DataFrame(
        {"instance_id": ["vm-a"] * 7 + ["vm-b"] * 2, "event_timestamp": [T0 + pd.Timedelta(minutes=m) for m in at]}
    )
    frame = glue.training_frame(entity)
    assert frame["tasks_running"].tolist() == [1, 2, 2, 2, 3, 2, 2, 1, 2]  # a task starting after t never counts
    assert frame["task_cpu"].tolist() == pytest.approx([0.5, 0.75, 0.75, 0.75, 2.75, 2.5, 2.5, 1.0, 2.0])
    assert frame["tasks_service"].tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0]


def test_push_updates_every_view_and_appends_once(glue: FeatureStoreGlue, features: pd.DataFrame) -> None:
    fresh = latest(features).loc[IDS].reset_index()
    fresh["event_timestamp"] = fresh["event_timestamp"] + pd.Timedelta(minutes=5)
    fresh["tasks_running"] = [7.0, 8.0, 9.0]
    fresh["cpu_mean_5m"] = [0.1, 0.2, 0.3]
    glue.push(fresh)
    online = glue.online_features(["vm-c", "vm-a"])
    assert online["tasks_running"].tolist() == [9.0, 7.0] and online["cpu_mean_5m"].tolist() == [0.3, 0.1]
    assert len(pd.read_parquet(glue.offline_path)) == len(features) + 3


def test_mistakes_are_readable(glue: FeatureStoreGlue) -> None:
    with pytest.raises(InputError, match="feature 'nope' of model v9 is in no feature view"):
        glue.register_service("v9", ["cpu_mean_1h", "nope"])
    with pytest.raises(InputError, match="names no features"):
        glue.register_service("v9", [])
    with pytest.raises(InputError, match=r"no feature service 'failure_model_v8'.*allowed: failure_model_v1"):
        glue.online_features(["vm-a"], service=service_name("v8"))
    with pytest.raises(InputError, match="field 'version'"):
        service_name(" ")
    assert service_name("2024.1-rc") == "failure_model_2024_1_rc"


def test_ensure_service_registers_only_when_missing(glue: FeatureStoreGlue) -> None:
    name = glue.ensure_service(V1, FEATURES_V1)  # a champion from before services: registered on first read
    columns = list(glue.online_features(["vm-a"], service=name).columns)
    assert columns == ["instance_id", *FEATURES_V1, "event_timestamp"]
    assert glue.ensure_service(V1, list(reversed(FEATURES_V1))) == name
    assert [s.name for s in glue.store.list_feature_services()].count(name) == 1
