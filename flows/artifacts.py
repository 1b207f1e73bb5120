"""Prefect artifacts of every run: the risk table, the plan with reasons, the model report with its plots.

Prefect 3.9's image artifact takes a URL the browser fetches, so plots of local files are embedded in a
Markdown artifact as base64 PNG data URIs instead (a few tens of kB each).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from forewarn import markdown
from forewarn.features.store import FeatureStoreGlue
from forewarn.model.registry import ModelCard
from forewarn.model.scoring import TrainedModel
from forewarn.schemas import Band, Plan, RiskScore

RISK_TABLE_KEY = "risk-table"
PLAN_KEY = "plan"
MODEL_REPORT_KEY = "model-report"


def risk_table(
    scores: Sequence[RiskScore], plan: Plan, bands: Mapping[str, Band], top: int = 20
) -> list[dict[str, Any]]:
    """The riskiest instances with probability, band, planned action and top features."""
    rows = markdown.risk_rows(scores, plan, top=top)
    return [
        {
            "instance": row["instance"],
            "probability": row["probability"],
            "band": bands[row["instance"]].value if row["instance"] in bands else "-",
            "action": row["action"],
            "top features": row["top features"],
        }
        for row in rows
    ]


def publish_cycle(scores: Sequence[RiskScore], plan: Plan, bands: Mapping[str, Band]) -> None:
    """The risk table and the plan (with each action's reason) of one score-and-allocate run."""
    rows = risk_table(scores, plan, bands)
    if not rows:
        rows = [{"instance": "-", "probability": None, "band": "-", "action": "-", "top features": "no model scored"}]
    create_table_artifact(rows, key=RISK_TABLE_KEY, description="Instances by failure probability")
    create_markdown_artifact(markdown.plan_markdown(plan), key=PLAN_KEY, description="This cycle's plan")


def feature_age_seconds(glue: FeatureStoreGlue, now: datetime) -> float | None:
    """Seconds from the newest materialized feature to ``now``; None before the first materialization."""
    ends = [view.most_recent_end_time for view in glue.store.list_feature_views()]
    known = [end for end in ends if end is not None]
    return max(0.0, (now - max(known)).total_seconds()) if known else None


def _png_data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def model_plots(model: TrainedModel, top: int = 12) -> dict[str, str]:
    """Plot title -> PNG data URI: feature importance (gain; a baseline's rule F1 or weights) and test-set
    metrics against the constant baseline."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plots: dict[str, str] = {}
    gain = sorted(model.importance().items(), key=lambda kv: kv[1])[-top:]
    if gain:
        figure, axis = plt.subplots(figsize=(6, 0.3 * len(gain) + 1))
        axis.barh([name for name, _ in gain], [value for _, value in gain], color="#4c72b0")
        axis.set_xlabel({"xgboost": "gain", "static": "rule F1 on training rows"}.get(model.kind, "|weight|"))
        plots["Feature importance"] = _png_data_uri(figure)
        plt.close(figure)
    briers = {k: model.metrics.get(k) for k in ("brier", "brier_constant")}
    if all(isinstance(v, float) for v in briers.values()):
        figure, axis = plt.subplots(figsize=(4, 2.5))
        axis.bar(["model", "constant"], [float(v) for v in briers.values()], color=["#4c72b0", "#999999"])  # type: ignore[arg-type]
        axis.set_ylabel("Brier score (lower is better)")
        plots["Brier score on the test period"] = _png_data_uri(figure)
        plt.close(figure)
    return plots


def model_report(summary: str, card: ModelCard | None, model: TrainedModel | None) -> str:
    """The training summary followed by the model's plots, as Markdown."""
    lines = [summary]
    if card is not None:
        lines += [
            "",
            f"Scorer {card.kind}, horizon {card.horizon_minutes} min, operating threshold {card.threshold:.3f}, "
            f"{len(card.features)} features.",
        ]
    for title, uri in (model_plots(model) if model is not None else {}).items():
        lines += ["", f"## {title}", "", f"![{title}]({uri})"]
    return "\n".join(lines)


def publish_model_report(summary: str, card: ModelCard | None, model: TrainedModel | None) -> None:
    create_markdown_artifact(
        model_report(summary, card, model), key=MODEL_REPORT_KEY, description="The model trained by this run"
    )
