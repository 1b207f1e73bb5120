"""Per-instance baseline features: each metric's latest level against the instance's own recent history.

Terms:
    now: the metric's mean over the last 5 minutes (``<metric>_mean_5m``, the latest level the static rules
        read too; one sample at the usual 5-minute step, smoothed at a 1-minute step).
    delta: ``now`` minus the metric's mean over the trailing 15 minutes (``<metric>_delta_15m``) or the
        trailing hour (``<metric>_delta_1h``); a jump away from the recent level.
    z-score: ``(now - mean_6h) / std_6h`` (``<metric>_z_6h``), the latest level in units of the instance's own
        6-hour spread; NaN when that spread is 0 (a constant metric) or undefined.

All windows end at the row and look backwards only (causal), and none is longer than
:data:`forewarn.features.windows.LOOKBACK_MINUTES`, so an incremental run over the usual look-back gives the
values of a full computation. A day-long baseline (trailing median/MAD over 24 h) would need a 24-hour
look-back, four times the materialize read, and was not built (docs/backtest.md, "Per-instance baselines").

They are off by default (:data:`BASELINE_FEATURES`): measured with the backtest they did not help beyond
noise (docs/backtest.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BASELINE_FEATURES = False
"""Whether :func:`forewarn.features.windows.compute_window_features` adds the baseline features (and
``feature_names`` lists them). Read at call time, so a process sets it once before building features."""

BASELINE_WINDOWS = {"15m": 15}
"""Extra windows (name -> minutes) whose mean only the baseline features need."""

BASELINE_STATS = ("delta_15m", "delta_1h", "z_6h")


def baseline_feature_names(safe_metrics: Sequence[str]) -> list[str]:
    """``<metric>_<stat>`` for every (already safe) metric name and stat of :data:`BASELINE_STATS`."""
    return [f"{metric}_{stat}" for metric in safe_metrics for stat in BASELINE_STATS]


def baseline_values(
    now: np.ndarray, mean_15m: np.ndarray, mean_1h: np.ndarray, mean_6h: np.ndarray, std_6h: np.ndarray
) -> dict[str, np.ndarray]:
    """The three baseline features of one metric from its window statistics (NaN where an input is NaN)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        spread = (std_6h > 0) & (std_6h > 1e-9 * np.abs(mean_6h))  # not a constant drowned in rounding
        z = np.where(spread, (now - mean_6h) / np.where(spread, std_6h, 1.0), np.nan)
        return {"delta_15m": now - mean_15m, "delta_1h": now - mean_1h, "z_6h": z}
