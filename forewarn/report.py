"""The replay report: a Markdown page with the figures and plots people would rather look at than read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from forewarn.model.scoring import TrainedModel
from forewarn.replay import RunResult


def _interruptions(ax: Any, runs: list[RunResult]) -> None:
    for run in runs:
        times = [t for t, _ in run.timeline]
        hours = [h for _, h in run.timeline]
        ax.step(times, hours, where="post", label=run.name)
    ax.set_title("Interrupted task-hours over the replayed window")
    ax.set_ylabel("task-hours lost (cumulative)")
    ax.legend()
    ax.tick_params(axis="x", rotation=30)


def _comparison(ax: Any, runs: list[RunResult]) -> None:
    """Grouped bars: interrupted task-hours, failures hitting work, migrations, unneeded migrations."""
    keys = ("interrupted_task_hours", "failures_hitting_work", "migrations", "unneeded_migrations")
    width = 0.8 / max(len(runs), 1)
    for k, run in enumerate(runs):
        values = [float(run.summary()[key]) for key in keys]
        ax.bar([i + k * width for i in range(len(keys))], values, width=width, label=run.name)
    ax.set_xticks([i + width * (len(runs) - 1) / 2 for i in range(len(keys))])
    ax.set_xticklabels([key.replace("_", "\n") for key in keys], fontsize=8)
    ax.set_title("Policies compared over the replayed window")
    ax.legend(fontsize=8)


def _risk_traces(
    ax: Any, features: pd.DataFrame, model: TrainedModel, failures: pd.DataFrame, alert: float, limit: int = 6
) -> None:
    first = failures.drop_duplicates("instance_id")
    announced = first[first["type"] != "sudden"]  # sudden failures have no precursor to show
    shown = pd.concat([announced, first[first["type"] == "sudden"]]).head(limit)
    for row in shown.itertuples(index=False):
        at = pd.Timestamp(row.timestamp)
        rows = features[
            (features["instance_id"] == row.instance_id)
            & (features["event_timestamp"] > at - pd.Timedelta(hours=6))
            & (features["event_timestamp"] <= at)
        ]
        if rows.empty:
            continue
        minutes = (rows["event_timestamp"] - at).dt.total_seconds() / 60.0
        ax.plot(minutes, model.predict_proba(rows), label=f"{row.instance_id} ({row.type})")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.axhline(alert, color="grey", linestyle="--", linewidth=0.8, label=f"high band ({alert:g})")
    ax.set_title("Risk before failures in the replayed day")
    ax.set_xlabel("minutes before the failure")
    ax.set_ylabel("P(fail within horizon)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)


def write_report(
    out: Path,
    runs: list[RunResult],
    results: dict[str, Any],
    *,
    features: pd.DataFrame,
    model: TrainedModel,
    failures: pd.DataFrame,
    alert: float,
) -> Path:
    """Write ``report.md`` and ``report.png`` under ``out``; return the Markdown path."""
    fig, axes = plt.subplots(1, 3, figsize=(19, 4.5))
    _interruptions(axes[0], runs)
    _comparison(axes[1], runs)
    _risk_traces(axes[2], features, model, failures, alert)
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=110)
    plt.close(fig)
    names = [r.name for r in runs]
    lines = [
        "# Forewarn replay",
        "",
        f"Window {results['window']['start']} to {results['window']['end']}, policy `{results['policy']}`, "
        f"model `{results['model_version']}`.",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for key in runs[0].summary():
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(f"{r.summary()[key]:,}" for r in runs) + " |")
    lines += [
        "",
        "![interruptions, comparison and risk](report.png)",
        "",
        "A failure counts as predicted in time when the instance's score reached the policy's high band",
        "within the horizon before it. Interrupted task-hours: work since each task's last checkpoint plus",
        "its restart, for every task still on an instance when it failed or still migrating off it.",
        "`reactive` does not predict (recovery after failure only); `static` acts through the same policy on",
        "its fixed fallback thresholds over current telemetry. A migration is unneeded when its source did",
        "not fail within the horizon. Capacity overhead: the mean share of the fleet's CPU held back",
        "(cordoned, buffered, scaled back or added). See docs/evaluation.md.",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
