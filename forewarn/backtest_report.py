"""The backtest report: ``report.md`` with a table of the three scorers and three plots beside it.

``pr_curve.png`` (precision against recall of the per-sample scores), ``calibration.png`` (observed failure
rate against mean predicted probability, in quantile bins) and ``lead_times.png`` (how long before each
caught failure the first alert fired).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from forewarn.backtest import KEYS, Evaluated

COLOURS = {"model": "tab:blue", "static": "tab:orange", "logistic": "tab:green"}


def pr_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct threshold, from the highest score down."""
    order = np.argsort(-p, kind="mergesort")
    y, p = y[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(p) != 0), len(p) - 1]
    tp = np.cumsum(y)[last]
    return tp / max(y.sum(), 1), tp / (last + 1)


def calibration_points(y: np.ndarray, p: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Mean predicted and observed rate per quantile bin of ``p`` (bins with equal scores merge)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, max(len(edges) - 2, 0))
    counts = np.bincount(which)
    used = counts > 0
    mean_p = np.bincount(which, weights=p)[used] / counts[used]
    rate = np.bincount(which, weights=y)[used] / counts[used]
    return mean_p, rate


def _known(result: Evaluated) -> tuple[np.ndarray, np.ndarray]:
    keep = ~result.scores["censored"].to_numpy(dtype=bool)
    y = result.scores["label"].to_numpy(dtype=float)[keep]
    return y, result.scores["probability"].to_numpy(dtype=float)[keep]


def plot(results: dict[str, Evaluated], out: Path) -> list[Path]:
    """Write the three PNGs into ``out``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [out / "pr_curve.png", out / "calibration.png", out / "lead_times.png"]
    figures = [plt.subplots(figsize=(5.5, 4.5)) for _ in paths]
    (_, pr_ax), (_, cal_ax), (_, lead_ax) = figures
    for name, result in results.items():
        y, p = _known(result)
        if y.sum() > 0:
            recall, precision = pr_points(y, p)
            pr_ax.step(recall, precision, where="post", color=COLOURS[name], label=name)
        if len(y):
            mean_p, rate = calibration_points(y, p)
            cal_ax.plot(mean_p, rate, "o-", color=COLOURS[name], label=name)
    leads = [r.lead_minutes for r in results.values()]
    if any(leads):
        lead_ax.hist(leads, bins=12, label=list(results), color=[COLOURS[n] for n in results])
    cal_ax.plot([0, 1], [0, 1], ":", color="grey")
    titles = [
        ("recall", "precision", "Precision-recall, evaluation part"),
        ("mean predicted probability", "observed failure rate", "Calibration (quantile bins)"),
        ("minutes from first alert to failure", "caught failures", "Lead time of caught failures"),
    ]
    for (figure, axis), (xlabel, ylabel, title), path in zip(figures, titles, paths, strict=True):
        axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
        axis.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
    return paths


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown(summary: dict[str, Any], dataset: str) -> str:
    """The report text: the figures of every scorer side by side, then the plots."""
    details = summary.get("details", {})
    lines = [
        f"# Backtest of `{dataset}`",
        "",
        f"Horizon {summary['horizon_minutes']} minutes; the model the train flow ships when trained on the first "
        f"{details.get('train_fraction', 0):.0%} of the rows in time (one row per instance per "
        f"{details.get('train_every_minutes', '?')} min: {details.get('rows_train', 0):,} rows with a known label, "
        f"{summary['events_train']} failures), evaluated on every sample from {details.get('eval_from', '?')} "
        f"({details.get('rows_eval', 0):,} rows, {summary['events_eval']} failures).",
        "",
        "| scorer | " + " | ".join(KEYS) + " |",
        "|---|" + "---|" * len(KEYS),
    ]
    for name in ("model", "static", "logistic"):
        lines.append(f"| {name} | " + " | ".join(_cell(summary[name][k]) for k in KEYS) + " |")
    rules = details.get("static_rules", [])
    described = ", ".join(f"`{r['column']} {r['direction']} {r['limit']:.4g}`" for r in rules) or "none"
    lines += ["", f"Static rules fit on the training part: {described}.", ""]
    lines += ["![PR curve](pr_curve.png)", "![Calibration](calibration.png)", "![Lead times](lead_times.png)", ""]
    return "\n".join(lines)


def write_report(summary: dict[str, Any], results: dict[str, Evaluated], out: Path, *, dataset: str) -> Path:
    """Write ``report.md`` and its plots into ``out``; returns the Markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    plot(results, out)
    path = out / "report.md"
    path.write_text(markdown(summary, dataset))
    return path
