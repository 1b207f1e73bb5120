"""``make bench``: every benchmark, each figure printed beside its floor, JSON under ``--out``.

Runs the production cycle (bench/cycle.py) at 10k and 100k instances and at 100k with its read and scoring
sharded on 2 Dask workers (bench/cycle_dask.py), allocation alone (bench/allocate.py), the CLI's start-up
(bench/cli_startup.py), training (bench/train.py), ingestion (bench/ingest.py, when present), ingest +
incremental materialize from history (bench/ingest_materialize.py), the simulator and the window features.
Writes ``<out>/<name>.json`` per benchmark and ``<out>/summary.json``; a benchmark that cannot run is
recorded with its reason rather than stopping the others.

Run: ``python -m bench.run --out bench/results [--only cycle,train] [--quick]`` (``--quick`` drops the
100k-instance sizes).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("DO_NOT_TRACK", "1")

Result = list[dict[str, Any]]


def cycle(quick: bool) -> Result:
    """The production cycle, each size in its own process (so ``peak_mb`` is that size's), then the largest
    size again with the read and scoring sharded on a LocalCluster of :data:`bench.cycle.DASK_WORKERS`."""
    import subprocess
    import sys

    from bench.cycle import DASK_WORKERS, SIZES

    runs = [(size, 0) for size in SIZES] + [(SIZES[-1], DASK_WORKERS)]
    out = []
    for size, workers in runs:
        if quick and size > 10_000:
            continue
        argv = [sys.executable, "-m", "bench.cycle", "--instances", str(size), "--dask-workers", str(workers)]
        done = subprocess.run(argv, check=True, capture_output=True, text=True)
        out.append(json.loads(done.stdout))
    return out


def allocate(quick: bool) -> Result:
    from bench.allocate import run

    return [run(size, size * 10) for size in (1_000, 10_000, 100_000) if not (quick and size > 10_000)]


def train(quick: bool) -> Result:
    module = _optional("bench.train")
    if module is None:
        return [{"skipped": "bench/train.py is not here"}]
    return [module.run(rows=100_000 if quick else 300_000)]


def ingest(quick: bool) -> Result:
    module = _optional("bench.ingest")
    if module is None or not hasattr(module, "run"):
        return [{"skipped": "bench/ingest.py (with a run() function) is not here yet"}]
    result = module.run(20_000 if quick else 100_000)
    common = {k: v for k, v in result.items() if not isinstance(v, dict)}
    return [{"source": k, **common, **v} for k, v in result.items() if isinstance(v, dict)]


def ingest_materialize(quick: bool) -> Result:
    from bench.ingest_materialize import run

    return [run(300 if quick else 1_000)]


def simulator(quick: bool) -> Result:
    from bench.bench_sim import CASES
    from forewarn.sim import simulate

    out = []
    for config, floor in CASES[:1] if quick else CASES:
        began = time.perf_counter()
        data = simulate(config)
        took = time.perf_counter() - began
        out.append({"instances": config.instances, "days": config.days, "rows": len(data.telemetry),
                    "seconds": round(took, 3), "floor_seconds": floor, "ratio": round(took / floor, 3)})  # fmt: skip
    return out


def features(quick: bool) -> Result:
    from bench.bench_features import CASES, fleet
    from forewarn.features.windows import compute_window_features

    out = []
    for instances, days, floor in CASES:
        telemetry, errors, failures = fleet(instances, days)
        began = time.perf_counter()
        frame = compute_window_features(telemetry, errors=errors, failures=failures)
        took = time.perf_counter() - began
        out.append({"instances": instances, "days": days, "rows": len(frame), "seconds": round(took, 3),
                    "floor_seconds": floor, "ratio": round(took / floor, 3)})  # fmt: skip
    return out


def cli_startup(quick: bool) -> Result:
    from bench.cli_startup import run

    result = run(runs=3 if quick else 7)
    return [{"command": name, **figures} for name, figures in result["commands"].items()]


BENCHMARKS: dict[str, Callable[[bool], Result]] = {
    "cli_startup": cli_startup,
    "cycle": cycle,
    "allocate": allocate,
    "train": train,
    "ingest": ingest,
    "ingest_materialize": ingest_materialize,
    "simulator": simulator,
    "features": features,
}


def _optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def line(name: str, row: dict[str, Any]) -> str:
    """One figure beside its floor, such as ``cycle 10000 instances: 5.9 s (floor 0.072 s, 82x)``."""
    if "skipped" in row:
        return f"{name}: skipped ({row['skipped']})"
    if "error" in row:
        return f"{name}: FAILED ({row['error']})"
    size = next((f"{row[k]:,} {k}" for k in ("instances", "rows") if k in row), row.get("command", ""))
    if "seconds" not in row:  # figures of another shape (rates): print them as they come, floors included
        shown = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("instances", "rows"))
        return f"{name} {size}: {shown}"
    floor = row.get("floor_seconds")
    beside = f" (floor {floor:.3g} s, {row['seconds'] / floor:.3g}x)" if floor else " (no floor)"
    return f"{name} {size}: {row['seconds']:.3g} s{beside}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {list(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="skip the 100k-instance sizes")
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)} (allowed: {', '.join(BENCHMARKS)})")
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Result] = {}
    for name in chosen:
        try:
            rows = BENCHMARKS[name](args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            rows = [{"error": f"{type(exc).__name__}: {exc}"}]
        for row in rows:
            print(line(name, row), flush=True)
        (args.out / f"{name}.json").write_text(json.dumps(rows, indent=2))
        summary[name] = rows
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    if {"cycle", "cli_startup"} & set(chosen):
        from bench.readme import update

        update(args.out)
    return 1 if any("error" in row for rows in summary.values() for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
