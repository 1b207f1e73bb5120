"""`forewarn backtest`: train on the past of a dataset, evaluate on its later part, beside two baselines.

Registered in forewarn.cli as a single command, `command` below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from forewarn.commands.common import console, friendly


@friendly
def command(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory (docs/data-format.md).")],
    horizon: Annotated[str, typer.Option(help="Look-ahead of a prediction: 30m, 2h, 3d.")] = "30m",
    train_fraction: Annotated[
        float, typer.Option(help="Share of the rows, earliest first, before the cut the model trains up to.")
    ] = 0.6,
    alert_budget: Annotated[
        float | None,
        typer.Option(
            help="Matched alert budget, a share of instance-time (default: the static rules' share in training)."
        ),
    ] = None,
    resamples: Annotated[
        int, typer.Option(help="Bootstrap resamples of whole instances for the 90% intervals.")
    ] = 1000,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
    report: Annotated[
        Path | None, typer.Option(help="Directory for report.md and its plots (default FOREWARN_HOME/reports/...).")
    ] = None,
) -> None:
    """Train on the earlier part of DATASET in time and evaluate the later part, event by event.

    The XGBoost model is the one the train flow would ship if trained up to the cut (same rows, labels,
    features and training); it is reported beside a static-threshold baseline and a logistic regression fit
    on the same training rows. A report with a PR curve, a calibration curve and a lead-time histogram is
    written.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from forewarn.backtest import KEYS, METHODS, BacktestConfig, parse_horizon, run_backtest
    from forewarn.backtest_report import headline, with_ci, write_report
    from forewarn.backtest_stats import EVENT_KEYS
    from forewarn.errors import ConfigError
    from forewarn.settings import get_settings

    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"must be between 0 and 1, got {train_fraction}", field="--train-fraction")
    if alert_budget is not None and not 0.0 < alert_budget < 1.0:
        raise ConfigError(f"must be a share between 0 and 1, got {alert_budget}", field="--alert-budget")
    if resamples < 10:
        raise ConfigError(f"must be at least 10, got {resamples}", field="--resamples")
    config = BacktestConfig(
        horizon_minutes=parse_horizon(horizon),
        train_fraction=train_fraction,
        alert_budget=alert_budget,
        resamples=resamples,
    )
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("backtest", total=6)

        def step(text: str) -> None:
            bar.update(task, description=text, advance=1)

        summary, results = run_backtest(dataset, config, progress=step)
        out = report or get_settings().reports_dir / f"backtest-{dataset.resolve().name}"
        bar.update(task, description="writing the report")
        path = write_report(summary, results, out, dataset=str(dataset))
    table = Table(
        "scorer",
        *KEYS,
        title=f"{summary['events_eval']} failures evaluated, "
        f"{summary['events_train']} in training; horizon {summary['horizon_minutes']} min; [90% interval]",
    )
    for name in METHODS:
        table.add_row(name, *(with_ci(summary[name], k) for k in KEYS))
    console.print(table)
    matched = Table(
        "scorer", *EVENT_KEYS, "alert share eval", title=f"matched alert budget {100 * summary['alert_budget']:.2f}%"
    )
    for name in METHODS:
        m = summary[name]["matched"]
        matched.add_row(name, *(with_ci(m, k) for k in EVENT_KEYS), f"{100 * m['alert_share_eval']:.2f}%")
    console.print(matched)
    for line in headline(summary):
        console.print(line.replace("**", ""))
    console.print(f"report: {path}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2))
        console.print(f"wrote {json_out}")
