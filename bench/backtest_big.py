"""Benchmark: ``forewarn backtest`` on a 450k-row, 19-instance, 38-metric one-minute dataset, beside its floor.

The dataset is synthetic, the shape of the server telemetry of issue 18: 19 instances, 38 metrics, one
sample a minute for about 16.4 days (450k rows), written as ``telemetry.parquet``. Each instance fails
about twice; two thirds of the failures have a precursor (three of the metrics drift away from normal over
the 90 minutes before), the others none.

``seconds`` and ``peak_rss_gb`` are ``forewarn backtest DATASET --horizon 30m --json OUT`` in a child
process (``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``: the child's peak resident set). The floor is,
in another child, reading the same file and one pass of 5-minute rolling means over every metric per
instance: what any backtest that looks at every value must spend. Target (issue 18): 1.5 GB peak and
3 minutes on this machine.

Run: ``python -m bench.backtest_big [--keep DIR]`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

INSTANCES, METRICS, ROWS = 19, 38, 450_000
FLOOR = """
import sys
import pandas as pd
frame = pd.read_parquet(sys.argv[1] + "/telemetry.parquet")
metrics = [c for c in frame.columns if c not in ("instance_id", "timestamp")]
for _, part in frame.groupby("instance_id", sort=False):
    part.set_index("timestamp")[metrics].rolling("5min").mean()
"""


def synthetic(out: Path, seed: int = 0) -> Path:
    """Write the dataset directory ``out`` (telemetry.parquet, failures.csv); returns ``out``."""
    rng = np.random.default_rng(seed)
    steps = ROWS // INSTANCES
    times = pd.date_range("2024-01-01", periods=steps, freq="1min", tz="UTC")
    parts, failures = [], []
    for k in range(INSTANCES):
        values = rng.normal(size=(steps, METRICS)).astype(np.float32) + np.arange(METRICS, dtype=np.float32)
        for at in rng.choice(np.arange(600, steps - 60), size=2, replace=False):
            failures.append({"instance_id": f"srv-{k:02d}", "timestamp": times[at]})
            if rng.random() < 2 / 3:  # a precursor: three metrics drift over the 90 minutes before
                ramp = np.linspace(0.0, 4.0, 90, dtype=np.float32)
                values[at - 90 : at, :3] += ramp[:, None]
        frame = pd.DataFrame(values, columns=[f"metric_{j:02d}" for j in range(METRICS)])
        frame.insert(0, "timestamp", times)
        frame.insert(0, "instance_id", f"srv-{k:02d}")
        parts.append(frame)
    out.mkdir(parents=True, exist_ok=True)
    pd.concat(parts, ignore_index=True).to_parquet(out / "telemetry.parquet", index=False)
    pd.DataFrame(failures).to_csv(out / "failures.csv", index=False)
    return out


def _child(argv: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (GB) of one child process; every child runs alone, one after the other."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    began = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise RuntimeError("the child's peak was not above an earlier child's; run each figure in its own process")
    return seconds, peak / 1024**2


def run(keep: Path | None = None) -> dict[str, Any]:
    """Time the floor, then the backtest, each in its own child process."""
    with tempfile.TemporaryDirectory() as scratch:
        data = synthetic(keep or Path(scratch) / "big")
        floor_s, floor_gb = _child([sys.executable, "-c", FLOOR, str(data)])
        out = Path(scratch) / "out.json"
        cli = "import sys; from forewarn.cli import app; sys.argv[0] = 'forewarn'; app()"
        argv = [sys.executable, "-c", cli, "backtest", str(data), "--horizon", "30m", "--json", str(out)]
        seconds, peak_gb = _child(argv)
        summary = json.loads(out.read_text())
    return {
        "rows": ROWS,
        "instances": INSTANCES,
        "metrics": METRICS,
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(peak_gb, 2),
        "floor_seconds": round(floor_s, 1),
        "floor_peak_rss_gb": round(floor_gb, 2),
        "target": {"seconds": 180, "peak_rss_gb": 1.5},
        "champion": summary.get("champion"),
        "model_pr_auc": summary.get("model", {}).get("pr_auc"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="write the dataset here and keep it")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.keep)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
