"""The backtest report: ``report.md`` with a table of the three scorers and three plots beside it.

``pr_curve.png`` (precision against recall of the per-sample scores), ``calibration.png`` (observed failure
rate against mean predicted probability, in quantile bins) and ``lead_times.png`` (how long before each
caught failure the first alert fired).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from forewarn.backtest import KEYS, METHODS, Evaluated
from forewarn.backtest_stats import EVENT_KEYS, verdict

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


def with_ci(figures: dict[str, Any], key: str) -> str:
    """``0.050 [0.021-0.094]``: the figure and its 90% interval, or the figure alone (minutes as integers)."""
    ci, value = figures.get(f"{key}_ci"), figures.get(key)
    if value is None:
        return "n/a"
    form = ".0f" if key.endswith("_minutes") else ".3f"
    text = format(value, form)
    return text if ci is None else f"{text} [{format(ci[0], form)}-{format(ci[1], form)}]"


def _share(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def ratio_sentence(summary: dict[str, Any], base: str) -> str:
    """Whether the model can be told apart from ``base``, in words, with the ratio and its interval."""
    ratio = summary["model"].get(f"ratio_to_{base}", {})
    call = verdict(ratio) if ratio else "indistinguishable"
    if ratio.get("pr_auc") is None:
        return f"The model cannot be compared with the {base} baseline here (its PR-AUC is undefined)."
    ci = ratio.get("ci")
    span = f", 90% interval {ci[0]:.2f}-{ci[1]:.2f}" if ci else ", no interval"
    figure = f"PR-AUC {ratio['pr_auc']:.2f} times the {base} baseline's{span}"
    if call == "better":
        return f"The model beats the {base} baseline on this data ({figure})."
    if call == "worse":
        return f"The model does worse than the {base} baseline on this data ({figure})."
    return f"The model cannot be told apart from the {base} baseline on this data ({figure}: the interval contains 1)."


def headline(summary: dict[str, Any]) -> list[str]:
    """The report's first paragraph: does the model beat the static rules, and what would be promoted."""
    champion = summary.get("champion", "?")
    return [
        ratio_sentence(summary, "static") + " " + ratio_sentence(summary, "logistic"),
        f"The champion race would promote **{champion}** ({summary.get('champion_reason', '')}).",
    ]


def matched_lines(summary: dict[str, Any]) -> list[str]:
    """The matched-budget table: every scorer alerting the same share of instance-time on training rows."""
    budget, details = summary.get("alert_budget"), summary.get("details", {})
    lines = [
        f"At a matched alert budget of {100 * (budget or 0):.2f}% of instance-time "
        f"({details.get('alert_budget_source', '?')}), thresholds chosen on the training rows:",
        "",
        "| scorer | event_recall | alert_precision | median_lead_minutes | alert share train | alert share eval |",
        "|---|---|---|---|---|---|",
    ]
    for name in METHODS:
        m = summary[name].get("matched", {})
        cells = [with_ci(m, k) for k in EVENT_KEYS] + [
            _cell(m.get("alert_share_train")),
            _cell(m.get("alert_share_eval")),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def markdown(summary: dict[str, Any], dataset: str) -> str:
    """The report text: the verdict in words, the figures with intervals, the matched budget, then the plots."""
    details = summary.get("details", {})
    lines = [
        f"# Backtest of `{dataset}`",
        "",
        *headline(summary),
        "",
        f"Horizon {summary['horizon_minutes']} minutes; the model the train flow ships when trained on the first "
        f"{details.get('train_fraction', 0):.0%} of the rows in time (one row per instance per "
        f"{details.get('train_every_minutes', '?')} min: {details.get('rows_train', 0):,} rows with a known label, "
        f"{summary['events_train']} failures), evaluated on every sample from {details.get('eval_from', '?')} "
        f"({details.get('rows_eval', 0):,} rows, {summary['events_eval']} failures). Intervals: 90%, from "
        f"{details.get('resamples', '?')} bootstrap resamples of the {details.get('instances_resampled', '?')} "
        "evaluated instances (whole instances). Comparisons of recall, precision and lead use the matched budget "
        "below; the first table gives each scorer at its own operating point.",
        "",
        "| scorer | " + " | ".join(KEYS) + " |",
        "|---|" + "---|" * len(KEYS),
    ]
    for name in METHODS:
        lines.append(f"| {name} | " + " | ".join(with_ci(summary[name], k) for k in KEYS) + " |")
    lines += ["", *matched_lines(summary)]
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
