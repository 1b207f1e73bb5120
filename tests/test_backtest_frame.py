"""The backtest trains the model the train flow ships: same rows, labels, features and training call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from forewarn import backtest, pipeline
from forewarn.dataset import Dataset, read_dataset
from forewarn.errors import InputError
from forewarn.features.store import FeatureStoreGlue
from forewarn.model.frame import training_labels
from forewarn.model.registry import ModelRegistry
from forewarn.sim import SimConfig
from forewarn.sim.core import write
from forewarn.validation import ValidationReport

HORIZON = 60


class Stop(Exception):
    """Raised by the recording stand-in of fit_candidates once it has seen its arguments."""


def recorder(seen: list[tuple[Any, ...]]) -> Any:
    def fit_candidates(frame: pd.DataFrame, features: Any, label: str, config: Any, *, static: Any) -> None:
        seen.append((frame.copy(), list(features), label, config, dict(static)))
        raise Stop

    return fit_candidates


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    out = tmp_path_factory.mktemp("fleet")
    return read_dataset(write(SimConfig(instances=8, days=1.5, seed=4, failure_rate_per_day=1.5), out))


def train_flow_call(data: Dataset, until: pd.Timestamp, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """What ``pipeline.train`` hands to fit_candidates, its features read back through Feast."""
    glue = FeatureStoreGlue(workdir / "features", metrics=data.metrics)
    glue.write_offline(pipeline.build_features(data))  # what the materialize flow writes
    glue.apply()
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(pipeline, "fit_candidates", recorder(seen))
    passed = ValidationReport(success=True, suite="stand-in")  # the gate only reads the frame; GX is slow to import
    monkeypatch.setattr(pipeline, "validate_training_frame", lambda *_args, **_kwargs: passed)
    with pytest.raises(Stop):
        pipeline.train(data, glue, ModelRegistry(workdir / "models"), horizon_minutes=HORIZON, until=until)
    return seen[0]


def backtest_call(data: Dataset, monkeypatch: pytest.MonkeyPatch) -> tuple:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(backtest, "fit_candidates", recorder(seen))
    with pytest.raises(Stop):
        backtest.run_backtest(data, backtest.BacktestConfig(horizon_minutes=HORIZON, train_fraction=0.6))
    return seen[0]


def test_backtest_trains_on_the_train_flows_frame(
    fleet: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = backtest_call(fleet, monkeypatch)
    cut = backtest.prepare(fleet, HORIZON, 0.6).cut
    theirs = train_flow_call(fleet, cut, tmp_path, monkeypatch)
    (frame, features, label, config, static), (flow_frame, flow_features, flow_label, flow_config, flow_static) = (
        ours,
        theirs,
    )
    assert features == flow_features and label == flow_label and config == flow_config
    assert static == flow_static and len(static) == len(fleet.metrics)
    assert frame[label].sum() > 0 and len(frame) > 100
    pd.testing.assert_frame_equal(
        frame.reset_index(drop=True), flow_frame.reset_index(drop=True), check_exact=True, check_dtype=False
    )


def test_features_built_a_few_instances_at_a_time_give_the_same_rows(
    fleet: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = backtest.prepare(fleet, HORIZON, 0.6)
    monkeypatch.setattr(backtest, "FEATURE_CHUNK_ROWS", 700)
    assert len(backtest.instance_groups(fleet.telemetry)) >= 4
    pieces = backtest.prepare(fleet, HORIZON, 0.6)
    assert pieces.cut == whole.cut
    pd.testing.assert_frame_equal(pieces.train, whole.train, check_exact=True)
    pd.testing.assert_frame_equal(pieces.evaluate, whole.evaluate, check_exact=True)


def test_training_labels_see_no_failure_after_the_cut(fleet: Dataset) -> None:
    cut = backtest.prepare(fleet, HORIZON, 0.5).cut
    soon = fleet.failures.assign(timestamp=cut + pd.Timedelta(minutes=1))  # every instance fails just after the cut
    rows = training_labels(Dataset(telemetry=fleet.telemetry, failures=soon), HORIZON, until=cut)
    assert (rows["event_timestamp"] < cut).all() and rows[f"label_{HORIZON}m"].sum() == 0
    late = rows["event_timestamp"] > cut - pd.Timedelta(minutes=HORIZON)
    assert rows.loc[late, f"censored_{HORIZON}m"].all()  # unknown at the cut, so left out of the fit
    buckets = rows["event_timestamp"].dt.floor(f"{pipeline.TRAIN_EVERY_MINUTES}min")
    assert not pd.DataFrame({"i": rows["instance_id"], "b": buckets}).duplicated().any()
    assert np.isin(rows["instance_id"].unique(), fleet.telemetry["instance_id"].unique()).all()


def test_training_cuts_by_failures_when_rows_crowd_into_one_period() -> None:
    """Backblaze's shape: failing instances all along, healthy ones only at the end. Cuts by rows would
    leave the validation period without a failure; train_model cuts by failures there instead."""
    from forewarn.model.config import TrainConfig
    from forewarn.model.split import time_split
    from forewarn.model.train import training_split

    rng = np.random.default_rng(0)
    days = pd.date_range("2024-01-01", periods=300, freq="D", tz="UTC")
    failing = pd.DataFrame({"event_timestamp": days[:-10], "label_1440m": 1})
    crowd = pd.DataFrame({"event_timestamp": rng.choice(days[-10:], 3000), "label_1440m": 0})
    frame = pd.concat([failing, crowd], ignore_index=True)
    config = TrainConfig(horizon_minutes=1440)
    try:
        by_rows = time_split(frame, fractions=config.fractions, gap=pd.Timedelta(days=1))
        assert by_rows[1]["label_1440m"].sum() == 0
    except InputError:
        pass  # or a period is left empty
    parts = training_split(frame, "label_1440m", config)
    assert all(part["label_1440m"].sum() > 0 for part in parts[:2])
    assert parts[1]["event_timestamp"].min() - parts[0]["event_timestamp"].max() > pd.Timedelta(days=1)
