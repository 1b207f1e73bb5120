"""Simulator scenarios: the default unchanged, bursts shaped on the disk-failure records, sudden failures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from forewarn.errors import ConfigError
from forewarn.settings import shared_data_dir
from forewarn.sim import SimConfig, simulate
from forewarn.sim.scenarios import BURST_FIT, SCENARIOS, fit_bursts, scenario_config, simulate_scenario

SMALL = SimConfig(instances=200, days=3, seed=1)


def dispersion(failures: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> float:
    """Variance over mean of failures per hour: 1 for a Poisson stream, more when failures cluster."""
    hourly = failures["timestamp"].dt.floor("h").value_counts()
    hourly = hourly.reindex(pd.date_range(start.floor("h"), end, freq="h"), fill_value=0)
    return float(hourly.var() / hourly.mean())


def test_the_burst_constants_are_what_the_records_give() -> None:
    folder = shared_data_dir() / "hpc_disk_failures_alpine_campaign"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not here")
    assert fit_bursts(folder) == BURST_FIT


def test_default_is_exactly_the_simulator() -> None:
    pd.testing.assert_frame_equal(simulate_scenario("default", SMALL).failures, simulate(SMALL).failures)


def test_bursty_keeps_the_rate_but_clusters_the_failures() -> None:
    ratios, counts = [], []
    for seed in (1, 2, 3):
        config = SMALL.model_copy(update={"seed": seed})
        plain, bursty = simulate(config), simulate_scenario("bursty", config)
        ratios.append(
            dispersion(bursty.failures, bursty.start, bursty.end) / dispersion(plain.failures, plain.start, plain.end)
        )
        counts.append(len(bursty.failures) / len(plain.failures))
        downtime = bursty.failures.sort_values("timestamp").groupby("instance_id")
        for _, rows in downtime:  # no instance fails again before it is back up
            back = rows["timestamp"] + pd.to_timedelta(rows["recovery_minutes"], unit="min")
            assert (rows["timestamp"].iloc[1:].to_numpy() >= back.iloc[:-1].to_numpy()).all()
    assert sum(ratios) / len(ratios) > 1.3
    assert 0.7 < sum(counts) / len(counts) < 1.3


def test_sudden_makes_most_failures_come_without_warning() -> None:
    failures = simulate_scenario("sudden", SMALL).failures
    assert (failures["type"] == "sudden").mean() > 0.8
    assert scenario_config("sudden", SMALL).failure_rate_per_day == SMALL.failure_rate_per_day


def test_an_unknown_scenario_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown scenario 'stormy'.*allowed: default, bursty, sudden"):
        simulate_scenario("stormy", SMALL)
    assert SCENARIOS == ("default", "bursty", "sudden")


@pytest.mark.slow
def test_in_a_sudden_scenario_prediction_does_no_harm(tmp_path: Path) -> None:
    from forewarn.model.config import TrainConfig
    from forewarn.model.labels import make_labels
    from forewarn.model.train import train_model
    from forewarn.pipeline import build_features, training_entities
    from forewarn.policy.loader import load_policy
    from forewarn.replay import Replay
    from forewarn.settings import PROJECT_ROOT

    data = simulate_scenario("sudden", SimConfig(instances=120, days=3, seed=4))
    features = build_features(data)
    cut = data.end - pd.Timedelta(hours=12)
    labelled = make_labels(training_entities(data.telemetry, until=cut), data.failures, [60], data_end=cut)
    frame = labelled.merge(features, on=["instance_id", "event_timestamp"], how="left")
    names = [c for c in features.columns if c not in ("instance_id", "event_timestamp")]
    model = train_model(frame, names, "label_60m", TrainConfig(max_rounds=60))
    replay = Replay(data, features, start=cut, workdir=tmp_path)
    policy = load_policy(PROJECT_ROOT / "policies" / "default.yaml")
    forewarn, reactive = replay.run("forewarn", model=model, policy=policy), replay.run("reactive")
    assert forewarn.failures == reactive.failures > 0
    assert forewarn.interrupted_task_hours <= reactive.interrupted_task_hours * 1.1 + 0.5
    assert forewarn.migrations <= max(3, forewarn.failures // 2)
