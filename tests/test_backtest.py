"""`forewarn backtest`: time-honest evaluation beside the static and logistic baselines, JSON and report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from forewarn.backtest import KEYS, METHODS, BacktestConfig, parse_horizon, run_backtest
from forewarn.cli import app
from forewarn.errors import ConfigError
from forewarn.model.baselines import fit_static
from forewarn.model.evaluate import pr_auc
from forewarn.model.logistic import fit_logistic

T0 = pd.Timestamp("2024-05-01T00:00Z")


def planted_dataset(out: Path, *, instances: int = 12, hours: int = 36, step: int = 1, seed: int = 0) -> Path:
    """Metrics with free names at ``step``-minute steps; 'disk.lat-ms' climbs in the 40 min before each failure."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(T0, periods=hours * 60 // step, freq=f"{step}min")
    parts, failures = [], []
    for k in range(instances):
        fail_at = sorted(rng.choice(np.arange(120, hours * 60 - 30), size=3, replace=False))
        minutes = (times - T0).total_seconds().to_numpy() / 60
        ramp = np.zeros(len(times))
        for f in fail_at:
            ramp += np.clip((minutes - (f - 40)) / 40, 0, 1) * (minutes < f)
            failures.append({"instance_id": f"vm {k}", "timestamp": T0 + pd.Timedelta(minutes=int(f))})
        parts.append(
            pd.DataFrame(
                {
                    "instance_id": f"vm {k}",
                    "timestamp": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "disk.lat-ms": 5 + rng.normal(0, 1, len(times)) + 8 * ramp,
                    "Temp (C)": 40 + rng.normal(0, 2, len(times)),
                }
            )
        )
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(parts).to_csv(out / "telemetry.csv", index=False)
    frame = pd.DataFrame(failures)
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.to_csv(out / "failures.csv", index=False)
    return out


def test_horizons_read_with_units_and_refuse_nonsense() -> None:
    assert [parse_horizon(h) for h in ("30m", "2h", "3d", "45")] == [30, 120, 4320, 45]
    with pytest.raises(ConfigError, match="--horizon"):
        parse_horizon("soon")


def test_static_rules_find_the_metric_and_its_direction() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(4000) < 0.05
    half = rng.random(4000) < 0.5  # half the failures show in one metric, half in the other
    frame = pd.DataFrame(
        {
            "up": rng.normal(size=4000) + 4 * (y & half),
            "down": rng.normal(size=4000) - 4 * (y & ~half),
            "noise": rng.normal(size=4000),
            "label": y.astype(int),
        }
    )
    static = fit_static(frame, {"u": "up", "d": "down", "n": "noise"}, "label")
    used = {(r.column, r.direction) for r in static.rules}
    assert ("up", ">") in used and ("down", "<") in used and "noise" not in {r.column for r in static.rules}
    p = static.predict_proba(frame)
    assert set(np.unique(p)) == {static.p_quiet, static.p_alert} and static.p_alert > 5 * static.p_quiet


def test_logistic_learns_the_signal_and_survives_nan_and_constant_columns() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(5000) < 0.1
    frame = pd.DataFrame(
        {
            "signal": rng.normal(size=5000) + 2 * y,
            "flat": 1.0,
            "holes": np.where(rng.random(5000) < 0.3, np.nan, rng.normal(size=5000)),
            "label": y.astype(int),
        }
    )
    model = fit_logistic(frame, ["signal", "flat", "holes"], "label")
    assert model.feature_names == ["signal", "holes"]
    p = model.predict_proba(frame)
    assert np.all((p > 0) & (p < 1)) and pr_auc(y, p) > 0.5
    assert abs(p.mean() - y.mean()) < 0.02  # an unweighted logistic fit is calibrated in the large


@pytest.mark.slow
def test_backtest_command_writes_the_json_and_the_report(tmp_path: Path) -> None:
    data = planted_dataset(tmp_path / "data", instances=12, hours=48)  # the shipped model needs some rows to split
    out, report = tmp_path / "bt.json", tmp_path / "report"
    result = CliRunner().invoke(
        app, ["backtest", str(data), "--horizon", "30m", "--json", str(out), "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(out.read_text())
    assert summary["horizon_minutes"] == 30
    assert summary["events_train"] > 0 and summary["events_eval"] > 0
    for method in METHODS:  # today's keys, each figure's 90% interval, the same at the matched budget
        assert set(KEYS) <= set(summary[method])
        for key in ("pr_auc", "roc_auc", "event_recall", "alert_precision", "median_lead_minutes"):
            assert f"{key}_ci" in summary[method]
        matched = summary[method]["matched"]
        assert {"event_recall", "event_recall_ci", "alert_precision_ci", "median_lead_minutes_ci"} <= set(matched)
    assert all(summary["model"][f"ratio_to_{base}"].keys() == {"pr_auc", "ci"} for base in ("static", "logistic"))
    assert summary["champion"] in METHODS and summary["alert_budget"] > 0
    low, high = summary["model"]["roc_auc_ci"]
    assert low <= summary["model"]["roc_auc"] <= high
    assert abs(summary["logistic"]["matched"]["alert_share_train"] - summary["alert_budget"]) < 0.01
    assert summary["model"]["event_recall"] >= 0.5 and summary["model"]["roc_auc"] > 0.8
    assert summary["details"]["static_rules"][0]["column"] == "disk_lat_ms_mean_5m"
    text = (report / "report.md").read_text()
    assert text.count("| model |") == 2  # own operating point, matched budget
    assert "the static baseline on this data" in text.split("\n\n")[1]  # the verdict comes first
    assert all((report / name).stat().st_size > 1000 for name in ("pr_curve.png", "calibration.png", "lead_times.png"))


@pytest.mark.slow
def test_backtest_at_five_minute_steps_compares_on_the_same_rows(tmp_path: Path) -> None:
    data = planted_dataset(tmp_path / "data", instances=16, hours=60, step=5, seed=3)
    summary, results = run_backtest(data, BacktestConfig(horizon_minutes=60, train_fraction=0.5))
    frames = [results[m].scores[["instance_id", "event_timestamp"]] for m in METHODS]
    assert all(f.equals(frames[0]) for f in frames[1:])
    assert summary["model"]["pr_auc"] > 0.3 and summary["logistic"]["pr_auc"] > 0.3
    assert summary["events_train"] + summary["events_eval"] <= 60


def test_backtest_names_bad_input_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["backtest", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "nowhere" in missing.output and "Traceback" not in missing.output
    data = planted_dataset(tmp_path / "data", instances=3, hours=6)
    bad = runner.invoke(app, ["backtest", str(data), "--train-fraction", "1.5"])
    assert bad.exit_code == 2 and "--train-fraction" in bad.output


BACKBLAZE = Path(__file__).resolve().parents[2] / "shared/data/backblaze_2019_subsets"
TOSHIBA = BACKBLAZE / "TOSHIBA MQ01ABF050_last_10_day_all_q_raw.csv"


@pytest.mark.slow
@pytest.mark.skipif(not TOSHIBA.exists(), reason=f"real data file {TOSHIBA} is absent")
def test_backtest_on_backblaze_drives(tmp_path: Path) -> None:
    """The whole path on real failures: import (caveat of the 10-day file handled), features, three scorers."""
    from forewarn.telemetry.importers import run_import

    imported = run_import("backblaze", TOSHIBA, tmp_path / "drives")
    assert imported.failures == 79  # one failure per failed drive, not one per relabelled row
    summary, _ = run_backtest(Path(imported.out), BacktestConfig(horizon_minutes=2 * 1440))
    assert summary["events_train"] + summary["events_eval"] <= 79
    assert summary["events_eval"] >= 1
    for method in METHODS:
        assert summary[method]["roc_auc"] is not None and 0.0 <= summary[method]["roc_auc"] <= 1.0
