"""The backtest flow, on demand: `forewarn backtest` on a dataset, its figures as a table artifact.

It runs the command line in a child process so the deployment runs exactly what an operator runs by hand.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact

from forewarn.errors import ForewarnError
from forewarn.settings import get_settings

SCORERS = ("model", "static", "logistic")


def forewarn_command() -> list[str]:
    """The `forewarn` console script beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "forewarn"
    found = str(beside) if beside.exists() else shutil.which("forewarn")
    if found is None:
        raise ForewarnError("the `forewarn` command is not installed beside this Python")
    return [found]


@task(name="run-backtest")
def run_backtest(dataset: str, horizon: str, train_fraction: float, out: Path) -> dict[str, Any]:
    argv = [*forewarn_command(), "backtest", dataset, "--horizon", horizon, "--train-fraction", str(train_fraction)]
    result = subprocess.run([*argv, "--json", str(out)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ForewarnError(f"forewarn backtest exited with {result.returncode}: {result.stderr.strip()[-500:]}")
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def figure_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scorer (model and its baselines): each figure with its 90% interval, then the event figures
    at the matched alert budget, and whether the champion race would promote it."""
    from forewarn.backtest import KEYS
    from forewarn.backtest_report import with_ci
    from forewarn.backtest_stats import EVENT_KEYS

    rows = []
    for name in SCORERS:
        if not isinstance(figures.get(name), dict):
            continue
        row = {"scorer": name, **{key: with_ci(figures[name], key) for key in KEYS}}
        matched = figures[name].get("matched", {})
        row |= {f"matched {key}": with_ci(matched, key) for key in EVENT_KEYS}
        rows.append(row | {"champion": name == figures.get("champion")})
    return rows


@flow(name="backtest", log_prints=True)
def backtest(
    dataset: str | None = None, horizon: str = "60m", train_fraction: float = 0.6, dry_run: bool = True
) -> str:
    """Train the model the train flow would ship on the earlier part of a dataset; evaluate the later part
    against the baselines.

    Args:
        dataset: dataset directory; default FOREWARN_DATASET.
        horizon: prediction horizon, such as 30m or 2h.
        train_fraction: share of the rows, earliest first, before the cut the model is trained up to.
        dry_run: unused (a backtest changes nothing); kept so every flow takes the same options.
    """
    settings = get_settings()
    out = settings.reports_dir / "backtest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = run_backtest(str(dataset or settings.dataset), horizon, train_fraction, out)
    verdict = f"; the race would promote {figures.get('champion')}: {figures.get('champion_reason', '')}"
    create_table_artifact(figure_rows(figures), key="backtest", description=f"Backtest, horizon {horizon}{verdict}")
    return f"backtest written to {out}"
