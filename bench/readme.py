"""Regenerate the README's figures rows of the cycle and CLI benchmarks from ``bench/results``.

The rows live between ``<!-- bench:cycle -->`` and ``<!-- /bench:cycle -->`` in README.md; nothing there is
typed by hand. ``make bench`` calls this after the benchmarks ran; ``python -m bench.readme`` redoes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- bench:cycle -->", "<!-- /bench:cycle -->"


def _s(value: float) -> str:
    return f"{value:.3g} s"


def _x(seconds: float, floor: float) -> str:
    return f"{seconds / floor:.3g}x" if floor > 0 else "-"


def _label(r: dict[str, Any]) -> str:
    """How a run is named: its size, and its Dask workers when the read and scoring were sharded."""
    n = f"{r['instances']:,}"
    return f"{n} on {r['dask_workers']} Dask workers" if r.get("dask_workers") else n


def cycle_rows(results: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r in results:
        if "seconds" not in r:
            continue
        n = _label(r)
        peak = f"peak {r['peak_mb']:,} MB" + (
            f", largest worker {r['worker_rss_mb']:,} MB resident; shards of {r['shard_size']:,}; cluster start "
            f"{_s(r['cluster_start_seconds'])} not timed"
            if r.get("dask_workers")
            else ""
        )
        rows.append(
            f"| production cycle, {r['instances']:,} instances"
            + (f", read and scored on {r['dask_workers']} Dask workers" if r.get("dask_workers") else "")
            + f", {r['features']} features ({peak}) "
            f"| {_s(r['seconds'])} | {_s(r['floor_seconds'])} (sum of the stages' floors) "
            f"| {_x(r['seconds'], r['floor_seconds'])} |"
        )
        for name, stage in r["stages"].items():
            if name == "other":
                rows.append(f"| &nbsp;&nbsp;{name} (recover, list the cloud), {n} | {_s(stage['seconds'])} | - | - |")
                continue
            rows.append(
                f"| &nbsp;&nbsp;{name}, {n} | {_s(stage['seconds'])} | {_s(stage['floor_seconds'])} "
                f"| {_x(stage['seconds'], stage['floor_seconds'])} |"
            )
    return rows


def verdicts(results: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, met or missed in this run, and the stages furthest above their floors."""
    lines = []
    for r in results:
        if "seconds" not in r:
            continue
        n, checks = r["instances"], []
        label = f"{n:,} instances" + (f" on {r['dask_workers']} Dask workers" if r.get("dask_workers") else "")
        if n >= 100_000:
            checks.append(f"under 20 s end to end: {'met' if r['seconds'] < 20 else 'missed'} ({_s(r['seconds'])})")
            checks.append(f"peak under 4 GB: {'met' if r['peak_mb'] < 4096 else 'missed'} ({r['peak_mb']:,} MB)")
        if n == 10_000:
            ok = r["seconds"] <= 3 * r["floor_seconds"]
            ratio = _x(r["seconds"], r["floor_seconds"])
            checks.append(f"within 3x the sum of floors: {'met' if ok else 'missed'} ({ratio})")
        stages = {k: v for k, v in r["stages"].items() if k != "other"}
        excess = sorted(stages, key=lambda k: stages[k]["seconds"] - stages[k]["floor_seconds"], reverse=True)[:3]
        costly = ", ".join(f"{k} {_s(stages[k]['seconds'] - stages[k]['floor_seconds'])}" for k in excess)
        lines.append(f"- {label}: {'; '.join(checks) or 'no target'}; most above floor: {costly}.")
    return lines


def cli_rows(results: list[dict[str, Any]]) -> list[str]:
    return [
        f"| `forewarn {r['command'].replace('help', '--help')}` start-up | {_s(r['seconds'])} "
        f'| {_s(r["floor_seconds"])} (`python -c "import typer"`) | {_x(r["seconds"], r["floor_seconds"])} |'
        for r in results
        if "seconds" in r
    ]


def update(results_dir: Path = ROOT / "bench" / "results", readme: Path = ROOT / "README.md") -> bool:
    """Rewrite the block from whatever of ``cycle.json`` and ``cli_startup.json`` is there; True if changed."""
    rows: list[str] = []
    notes: list[str] = []
    for name, render in (("cycle", cycle_rows), ("cli_startup", cli_rows)):
        path = results_dir / f"{name}.json"
        if path.exists():
            rows += render(json.loads(path.read_text()))
            if name == "cycle":
                notes = verdicts(json.loads(path.read_text()))
    text = readme.read_text()
    if not rows or BEGIN not in text or END not in text:
        return False
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    table = ["| what | figure | floor | ratio |", "|---|---|---|---|", *rows]
    if notes:
        table += ["", "Targets of the cycle in this run (issue 19):", "", *notes]
    new = head + BEGIN + "\n" + "\n".join(table) + "\n" + END + tail
    readme.write_text(new)
    return new != text


if __name__ == "__main__":
    print("README updated" if update() else "README unchanged")
