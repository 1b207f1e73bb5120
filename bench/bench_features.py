"""Window-feature speed: seconds for a fleet beside the floor the brief sets.

Run: .venv/bin/python -m bench.bench_features
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from forewarn.features.windows import METRICS, compute_window_features

CASES = ((200, 3.0, 5.0),)
"""(instances, days, floor in seconds) at 5-minute steps; 200 x 3 days is about 170k rows."""


def fleet(instances: int, days: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Synthetic telemetry (5 % of samples dropped), errors and failures."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2024-01-01", periods=int(days * 24 * 12), freq="5min", tz="UTC")
    ids = [f"vm-{i:05d}" for i in range(instances)]
    telemetry = pd.DataFrame({"instance_id": np.repeat(ids, len(times)), "timestamp": np.tile(times, instances)})
    for metric in METRICS:
        telemetry[metric] = rng.random(len(telemetry))
    telemetry = telemetry[rng.random(len(telemetry)) > 0.05].reset_index(drop=True)
    count = instances * 20
    offsets = pd.to_timedelta(rng.integers(0, int(days * 1440), count), unit="min")
    errors = pd.DataFrame(
        {
            "instance_id": rng.choice(ids, count),
            "timestamp": times[0] + offsets,
            "category": rng.choice(["disk", "memory", "kernel", "other"], count),
        }
    )
    failures = errors.iloc[: instances // 2][["instance_id", "timestamp"]].reset_index(drop=True)
    return telemetry, errors, failures


def main() -> None:
    for instances, days, floor in CASES:
        telemetry, errors, failures = fleet(instances, days)
        began = time.perf_counter()
        out = compute_window_features(telemetry, errors=errors, failures=failures)
        took = time.perf_counter() - began
        verdict = "ok" if took <= floor else "SLOW"
        print(
            f"window features {instances} instances x {days:g} days: {took:.2f} s (floor {floor:.0f} s) {verdict}"
            f"; {len(out):,} rows x {out.shape[1] - 2} features"
        )


if __name__ == "__main__":
    main()
