"""Leakage guard: where labels cannot be known from the features, the model and its figures fall to chance.

On a simulated fleet with precursors, XGBoost on the real labels clearly beats chance (so the guard can
fail). Labels moved to other instances, or moved later by the horizon, can no longer be predicted from an
instance's own past: the model's PR-AUC on the test period must then be told apart from chance by nothing
(the champion rule keeps the constant "chance" scorer, its ratio interval contains 1). The shifted labels
mark the horizon after each failure, which the features that record past failures and errors know by
design (``minutes_since_failure``, error counts); the guards learn from the telemetry windows only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forewarn.dataset import Dataset
from forewarn.features.events import EVENT_FEATURES, error_feature_names
from forewarn.features.windows import feature_names
from forewarn.model.champion import RaceResult, race
from forewarn.model.config import TrainConfig
from forewarn.model.frame import dataset_features, join_features, training_labels
from forewarn.model.train import train_model, training_split
from forewarn.sim import SimConfig
from forewarn.sim.scenarios import simulate_scenario

LABEL = "label_60m"
CONFIG = TrainConfig(horizon_minutes=60, max_rounds=40)


@pytest.fixture(scope="module")
def fleet() -> tuple[Dataset, pd.DataFrame]:
    data = simulate_scenario("default", SimConfig(instances=40, days=3, seed=2, failure_rate_per_day=1.0))
    return data, dataset_features(data)


def frame_of(data: Dataset, features: pd.DataFrame, failures: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    labelled = training_labels(Dataset(telemetry=data.telemetry, failures=failures), 60, until=data.end)
    frame = join_features(labelled, features, columns)
    return frame[~frame["censored_60m"].astype(bool)].reset_index(drop=True)


def own_past(data: Dataset) -> list[str]:
    """The telemetry window features, without those that record past failures and errors."""
    past = {*EVENT_FEATURES, *error_feature_names()}
    return [c for c in feature_names(data.metrics) if c not in past]


def against_chance(frame: pd.DataFrame, columns: list[str]) -> RaceResult:
    """XGBoost trained as the train flow does, raced against a constant score on the test period."""
    model = train_model(frame, columns, LABEL, CONFIG)
    test = training_split(frame, LABEL, CONFIG)[2]
    y = test[LABEL].to_numpy(dtype=float)
    scores = {"chance": np.full(len(y), y.mean()), "xgboost": model.predict_proba(test)}
    return race(scores, y, test["instance_id"].to_numpy(), ["chance", "xgboost"], resamples=300)[0]


def ratio_ci(result: RaceResult) -> list[float]:
    (comparison,) = result.comparisons
    assert comparison.challenger == "xgboost" and comparison.ci is not None
    return comparison.ci


def test_real_labels_are_learnt_and_labels_shuffled_between_instances_are_not(
    fleet: tuple[Dataset, pd.DataFrame],
) -> None:
    data, features = fleet
    columns = own_past(data)
    frame = frame_of(data, features, data.failures, columns)
    real = against_chance(frame, columns)
    assert real.champion == "xgboost" and ratio_ci(real)[0] > 2.0

    ids = sorted(frame["instance_id"].unique())
    other = dict(zip(ids, np.roll(ids, len(ids) // 3), strict=True))  # every instance takes another's labels
    truth = frame.set_index(["instance_id", "event_timestamp"])[LABEL]
    moved = pd.MultiIndex.from_arrays([frame["instance_id"].map(other), frame["event_timestamp"]])
    shuffled = frame.assign(**{LABEL: truth.reindex(moved).fillna(0).to_numpy()})
    assert shuffled[LABEL].sum() > 0
    result = against_chance(shuffled, columns)
    low, high = ratio_ci(result)
    assert result.champion == "chance" and low <= 1.0 <= high


def test_labels_shifted_later_by_the_horizon_fall_to_chance(fleet: tuple[Dataset, pd.DataFrame]) -> None:
    data, features = fleet
    columns = own_past(data)
    later = data.failures.assign(timestamp=data.failures["timestamp"] + pd.Timedelta(minutes=60))
    frame = frame_of(data, features, later, columns)
    assert frame[LABEL].sum() > 0
    result = against_chance(frame, columns)
    low, high = ratio_ci(result)
    assert result.champion == "chance" and low <= 1.0 <= high
