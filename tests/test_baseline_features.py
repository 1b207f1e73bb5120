"""Per-instance baseline features (forewarn.features.baselines): values on a hand-made frame, listed names,
off by default, and an incremental run equal to the full computation with them on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forewarn.features import baselines
from forewarn.features.incremental import LOOKBACK
from forewarn.features.windows import all_feature_names, compute_window_features, feature_names

START = pd.Timestamp("2026-03-01T00:00:00Z")


@pytest.fixture
def baseline_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "BASELINE_FEATURES", True)


def _steps() -> pd.DataFrame:
    """One instance at a 5-minute step for 6 hours: cpu 1 for the first 5 h 45 min, then 5, 5, 9 (3 samples);
    memory constant."""
    times = pd.date_range(START + pd.Timedelta(minutes=5), periods=72, freq="5min")
    cpu = np.ones(72)
    cpu[-3:] = [5.0, 5.0, 9.0]
    return pd.DataFrame({"instance_id": "a", "timestamp": times, "cpu": cpu, "memory": 4.0})


def test_off_by_default_and_listed_when_on(monkeypatch: pytest.MonkeyPatch) -> None:
    out = compute_window_features(_steps(), metrics=["cpu", "memory"])
    assert not any("_delta_" in c or "_z_" in c for c in out.columns)
    monkeypatch.setattr(baselines, "BASELINE_FEATURES", True)
    names = feature_names(["cpu", "mem.x"])
    added = ["cpu_delta_15m", "cpu_delta_1h", "cpu_z_6h", "mem_x_delta_15m", "mem_x_delta_1h", "mem_x_z_6h"]
    assert [n for n in names if "_delta_" in n or "_z_" in n] == added
    assert all_feature_names(["cpu", "mem.x"])[: len(names)] == names


@pytest.mark.usefixtures("baseline_on")
def test_values_on_a_hand_made_frame() -> None:
    out = compute_window_features(_steps(), metrics=["cpu", "memory"]).set_index("event_timestamp")
    last = out.iloc[-1]
    cpu = np.r_[np.ones(69), 5.0, 5.0, 9.0]
    assert last["cpu_delta_15m"] == pytest.approx(9.0 - (5 + 5 + 9) / 3)  # 15 min = the last three samples
    assert last["cpu_delta_1h"] == pytest.approx(9.0 - cpu[-12:].mean())
    assert last["cpu_z_6h"] == pytest.approx((9.0 - cpu.mean()) / cpu.std())
    before = out.iloc[-4]  # still flat: no change, no spread
    assert before["cpu_delta_15m"] == 0.0 and before["cpu_delta_1h"] == 0.0 and np.isnan(before["cpu_z_6h"])
    assert (out["memory_delta_1h"] == 0.0).all() and out["memory_z_6h"].isna().all()  # a constant metric
    first = out.iloc[0]  # one sample: deltas are 0, the spread undefined
    assert first["cpu_delta_15m"] == 0.0 and np.isnan(first["cpu_z_6h"])


@pytest.mark.usefixtures("baseline_on")
def test_incremental_run_equals_the_full_computation_with_baselines() -> None:
    rng = np.random.default_rng(3)
    times = pd.date_range(START + pd.Timedelta(minutes=1), START + pd.Timedelta(hours=8), freq="1min")
    parts = [
        pd.DataFrame(
            {
                "instance_id": name,
                "timestamp": times + pd.Timedelta(seconds=shift),
                "cpu": rng.normal(0.5, 0.1, len(times)),
                "memory": 2e9 + rng.normal(0, 1e6, len(times)).cumsum(),
            }
        )
        for name, shift in (("a", 0), ("b", 20))
    ]
    telemetry = pd.concat(parts, ignore_index=True)
    telemetry.loc[telemetry.sample(frac=0.05, random_state=1).index, "cpu"] = np.nan
    full = compute_window_features(telemetry, metrics=["cpu", "memory"])
    assert full["cpu_z_6h"].notna().mean() > 0.9
    since = START + pd.Timedelta(hours=6, minutes=7)
    read = telemetry[telemetry["timestamp"] > since - pd.Timedelta(LOOKBACK)]
    incremental = compute_window_features(read, metrics=["cpu", "memory"], since=since)
    expected = full[full["event_timestamp"] > since].reset_index(drop=True)
    pd.testing.assert_frame_equal(incremental, expected, check_exact=True)
