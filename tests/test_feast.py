"""The Feast glue: apply, materialise and read back (SQLite and a real Redis), and point-in-time joins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forewarn.errors import ConfigError, InputError
from forewarn.features.repo import DEFAULT_REPO, redis_connection_string
from forewarn.features.store import FeatureStoreGlue
from forewarn.features.windows import METRICS, all_feature_names, compute_window_features
from tests.servers import free_port, require_binary, start, stop, wait_for_port

os.environ.setdefault("DO_NOT_TRACK", "1")

T0 = pd.Timestamp("2024-05-01T00:00:00Z")
STEPS = 72  # six hours of 5-minute samples
IDS = ["vm-a", "vm-b", "vm-c"]


def make_telemetry(seed: int = 0, metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = pd.date_range(T0, periods=STEPS, freq="5min")
    frame = pd.DataFrame({"instance_id": np.repeat(IDS, STEPS), "timestamp": np.tile(times, len(IDS))})
    for metric in metrics:
        frame[metric] = rng.uniform(0.0, 1.0, len(frame))
    return frame


def latest(features: pd.DataFrame, until: pd.Timestamp) -> pd.DataFrame:
    rows = features[features["event_timestamp"] <= until].sort_values("event_timestamp")
    return rows.groupby("instance_id").tail(1).set_index("instance_id").loc[IDS].reset_index()


def assert_online_equals(online: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(online["instance_id"]) == list(expected["instance_id"])
    np.testing.assert_allclose(
        online[all_feature_names()].to_numpy(dtype=float),
        expected[all_feature_names()].to_numpy(dtype=float),
        equal_nan=True,
    )


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return compute_window_features(make_telemetry())


def test_sqlite_round_trip_stays_in_the_working_directory(tmp_path: Path, features: pd.DataFrame) -> None:
    before = sorted(p.name for p in DEFAULT_REPO.rglob("*"))
    glue = FeatureStoreGlue(tmp_path / "fs")
    assert glue.feature_names == all_feature_names()
    path = glue.write_offline(features)
    assert path.is_relative_to(tmp_path) and path.exists()
    glue.apply()
    middle = T0 + pd.Timedelta(hours=3)
    glue.materialize(end=middle.to_pydatetime())
    assert_online_equals(glue.online_features(IDS), latest(features, middle))
    end = features["event_timestamp"].max()
    glue.materialize(end=(end + pd.Timedelta(minutes=1)).to_pydatetime())  # incremental from the last run
    assert_online_equals(glue.online_features(IDS), latest(features, end))
    unknown = glue.online_features(["vm-zzz"])
    assert unknown["instance_id"].tolist() == ["vm-zzz"] and unknown[all_feature_names()].isna().all(axis=None)
    assert {p.name for p in (tmp_path / "fs").iterdir()} >= {"registry.db", "online.db", "data"}
    assert sorted(p.name for p in DEFAULT_REPO.rglob("*")) == before


def test_training_frame_never_sees_a_spike_after_each_label(tmp_path: Path) -> None:
    telemetry = make_telemetry(seed=3)
    label_times = {
        "vm-a": T0 + pd.Timedelta(minutes=100),
        "vm-b": T0 + pd.Timedelta(minutes=200),
        "vm-c": T0 + pd.Timedelta(minutes=300),
    }
    after = telemetry["timestamp"] > telemetry["instance_id"].map(label_times)
    telemetry.loc[after, list(METRICS)] = 1e6  # the spike: everything after each label's time
    features = compute_window_features(telemetry)
    glue = FeatureStoreGlue(tmp_path)
    glue.write_offline(features)
    glue.apply()
    stored = pd.read_parquet(glue.offline_path)
    assert stored["cpu_max_5m"].max() == 1e6  # the spike is in the offline store

    entity = pd.DataFrame(
        {
            "instance_id": [*label_times, *label_times, "vm-a"],
            "event_timestamp": [
                *label_times.values(),
                *(t + pd.Timedelta(minutes=4) for t in label_times.values()),
                label_times["vm-a"],
            ],
            "label_60m": [1, 0, 1, 0, 1, 0, 1],
        },
        index=range(10, 17),
    )
    frame = glue.training_frame(entity)
    assert list(frame.columns) == ["instance_id", "event_timestamp", "label_60m", *all_feature_names()]
    assert frame.index.tolist() == list(range(10, 17)) and frame["label_60m"].tolist() == [1, 0, 1, 0, 1, 0, 1]
    assert (frame[all_feature_names()].fillna(0.0).abs() < 1e5).all(axis=None)
    for instance, when in label_times.items():  # rows between samples get the sample before, not after
        expected = features[(features["instance_id"] == instance) & (features["event_timestamp"] == when)]
        got = frame[frame["instance_id"] == instance]
        assert len(got) == 3 if instance == "vm-a" else len(got) == 2
        for _, row in got.iterrows():
            np.testing.assert_allclose(
                row[all_feature_names()].to_numpy(dtype=float),
                expected[all_feature_names()].to_numpy(dtype=float)[0],
                equal_nan=True,
            )


def test_training_frame_leaves_stale_and_early_rows_empty(tmp_path: Path, features: pd.DataFrame) -> None:
    glue = FeatureStoreGlue(tmp_path)
    glue.write_offline(features)
    glue.apply()
    entity = pd.DataFrame(
        {
            "instance_id": ["vm-a", "vm-a", "vm-new"],
            "event_timestamp": [T0 - pd.Timedelta(minutes=1), T0 + pd.Timedelta(hours=20), T0 + pd.Timedelta(hours=1)],
        }
    )
    frame = glue.training_frame(entity)
    assert frame[all_feature_names()].isna().all(axis=None)  # before any data, beyond the 6 h TTL, unknown


def test_push_reaches_online_and_offline(tmp_path: Path, features: pd.DataFrame) -> None:
    glue = FeatureStoreGlue(tmp_path)
    glue.write_offline(features)
    glue.apply()
    fresh = latest(features, features["event_timestamp"].max())
    fresh["event_timestamp"] = fresh["event_timestamp"] + pd.Timedelta(minutes=5)
    fresh["cpu_mean_5m"] = [7.0, 8.0, 9.0]
    glue.push(fresh)
    assert glue.online_features(["vm-c", "vm-a"])["cpu_mean_5m"].tolist() == [9.0, 7.0]
    stored = pd.read_parquet(glue.offline_path)
    assert len(stored) == len(features) + 3 and set(stored["cpu_mean_5m"]) >= {7.0, 8.0, 9.0}


def test_user_mistakes_are_readable_errors(tmp_path: Path, features: pd.DataFrame) -> None:
    glue = FeatureStoreGlue(tmp_path)
    with pytest.raises(InputError, match="field 'cpu_mean_5m'"):
        glue.write_offline(features.drop(columns="cpu_mean_5m"))
    with pytest.raises(InputError, match="field 'event_timestamp'"):
        glue.training_frame(pd.DataFrame({"instance_id": ["vm-a"]}))
    with pytest.raises(ConfigError, match="redis_url"):
        FeatureStoreGlue(tmp_path, online="redis")
    with pytest.raises(InputError, match="allowed: failure_model_v1"):
        FeatureStoreGlue(tmp_path, service="nope")


def test_other_metrics_retype_the_view(tmp_path: Path) -> None:
    metrics = ("cpu_util_percent", "mem.util")
    features = compute_window_features(make_telemetry(metrics=metrics), metrics=metrics)
    glue = FeatureStoreGlue(tmp_path, metrics=metrics)
    assert glue.feature_names == all_feature_names(metrics) and "mem_util_max_1h" in glue.feature_names
    glue.write_offline(features)
    glue.apply()
    glue.materialize(end=(T0 + pd.Timedelta(hours=7)).to_pydatetime())
    online = glue.online_features(["vm-b"])
    expected = latest(features, T0 + pd.Timedelta(hours=7)).set_index("instance_id").loc["vm-b"]
    assert online.loc[0, "mem_util_mean_1h"] == pytest.approx(expected["mem_util_mean_1h"])


def test_redis_connection_strings() -> None:
    assert redis_connection_string("redis://127.0.0.1:6390") == "127.0.0.1:6390"
    assert redis_connection_string("redis://:pw@host") == "host:6379,password=pw"
    assert redis_connection_string("127.0.0.1:7000") == "127.0.0.1:7000"
    with pytest.raises(ConfigError, match="allowed"):
        redis_connection_string("http://example")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = require_binary("redis-server")
    port = free_port()
    argv = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    process = start(argv, log=tmp_path / "redis.log")
    try:
        wait_for_port(port, process=process)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop(process)


@pytest.mark.integration
def test_redis_online_store_round_trip(tmp_path: Path, redis_url: str, features: pd.DataFrame) -> None:
    glue = FeatureStoreGlue(tmp_path / "fs", online="redis", redis_url=redis_url)
    glue.write_offline(features)
    glue.apply()
    end = features["event_timestamp"].max()
    glue.materialize(end=(end + pd.Timedelta(minutes=1)).to_pydatetime())
    assert_online_equals(glue.online_features(IDS), latest(features, end))
    assert not (tmp_path / "fs" / "online.db").exists()


def test_replay_features_equal_what_the_online_store_serves_at_each_cycle(
    tmp_path: Path, features: pd.DataFrame
) -> None:
    """Replay takes each cycle's features from the computed rows (FrameScoring) instead of Feast: the same
    values and timestamps the online store serves once materialized up to the cycle's time."""
    from forewarn.cycle import FrameScoring

    glue = FeatureStoreGlue(tmp_path / "fs")
    glue.write_offline(features)
    glue.apply()
    frame = FrameScoring(features, lambda rows, now: [])
    for hours in (1.0, 2.5, 5.9):
        at = T0 + pd.Timedelta(hours=hours)
        glue.materialize(end=at.to_pydatetime())
        online = glue.online_features(IDS)
        replayed = frame.latest(IDS, at.to_pydatetime()).set_index("instance_id").loc[IDS].reset_index()
        assert_online_equals(online, replayed)
        assert list(online["event_timestamp"]) == list(replayed["event_timestamp"])
