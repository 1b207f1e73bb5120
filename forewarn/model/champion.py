"""The champion race: XGBoost against the static rules and the logistic model, judged with intervals.

Every candidate scores the same holdout rows (the newest period of the training frame, which none of them
learnt, stopped or calibrated on). The figure is PR-AUC with a 90% interval from a bootstrap over whole
instances (:mod:`forewarn.model.bootstrap`); two candidates are compared by the ratio of their PR-AUCs,
whose interval comes from the same (paired) resamples.

The rule (:func:`decide`, one function for the train flow and ``forewarn backtest``): candidates are
ordered simplest first (static, logistic, XGBoost); a candidate is *clearly beaten* when another one's
ratio to it has an interval wholly above 1; the champion is the simplest candidate that no other clearly
beats. A more complex scorer is therefore never promoted on a difference inside the noise, and when
nothing can be told apart the static rules serve.

:func:`crown` runs the race for a training run: it registers the winner, then makes it champion unless the
model in service clearly beats it on the same rows (or predicts another horizon, or the holdout holds no
failure, when the one in service stays).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from forewarn.model import bootstrap as bs
from forewarn.model.evaluate import pr_auc
from forewarn.model.registry import ModelCard, ModelRegistry
from forewarn.model.scoring import TrainedModel

ORDER = ("static", "logistic", "xgboost")
"""The train flow's candidates, simplest first."""
LABELS = {"xgboost": "XGBoost", "model": "the model (XGBoost)"}
IN_SERVICE = "in service"


def label(name: str) -> str:
    """How a candidate is named in words."""
    return LABELS.get(name, name)


class Comparison(BaseModel):
    """``challenger``'s PR-AUC over ``against``'s, its interval, and where that interval lies against 1."""

    model_config = ConfigDict(extra="forbid")

    challenger: str
    against: str
    ratio: float | None
    ci: list[float] | None
    verdict: str


class Standing(BaseModel):
    """One candidate's PR-AUC on the holdout and its 90% interval."""

    model_config = ConfigDict(extra="forbid")

    name: str
    pr_auc: float | None
    ci: list[float] | None


class RaceResult(BaseModel):
    """The outcome of one race, written into the winner's model card (``challenge``)."""

    model_config = ConfigDict(extra="forbid")

    champion: str
    reason: str
    standings: list[Standing]
    comparisons: list[Comparison]
    rows: int
    positives: int
    instances: int
    holdout_from: str | None = None
    resamples: int = bs.RESAMPLES
    level: float = bs.LEVEL
    version: str | None = None
    in_service: str | None = None
    promoted: bool = False


def verdict_of(ci: list[float] | None, point: float | None) -> str:
    """``better``, ``worse`` or ``indistinguishable``: where a ratio's interval lies against 1."""
    if ci is None or point is None:
        return "indistinguishable"
    if ci[0] > 1.0:
        return "better"
    if ci[1] < 1.0:
        return "worse"
    return "indistinguishable"


def compare(top: str, bottom: str, points: Mapping[str, float | None], draws: Mapping[str, np.ndarray]) -> Comparison:
    """``top`` against ``bottom`` by the ratio of their PR-AUCs over the paired resamples."""
    a, b = points.get(top), points.get(bottom)
    point = a / b if a is not None and b else None
    ci = bs.interval(bs.ratio(draws[top], draws[bottom]))
    return Comparison(challenger=top, against=bottom, ratio=point, ci=ci, verdict=verdict_of(ci, point))


def _figure(name: str, points: Mapping[str, float | None], draws: Mapping[str, np.ndarray]) -> str:
    value, ci = points.get(name), bs.interval(draws[name])
    if value is None:
        return f"{label(name)} n/a"
    return f"{label(name)} {value:.3f}" + (f" [{ci[0]:.3f}-{ci[1]:.3f}]" if ci else "")


def _ratio(c: Comparison) -> str:
    if c.ratio is None:
        return "ratio undefined"
    return f"ratio {c.ratio:.2f}" + (f", 90% interval {c.ci[0]:.2f}-{c.ci[1]:.2f}" if c.ci else ", no interval")


def words(
    c: Comparison, points: Mapping[str, float | None], draws: Mapping[str, np.ndarray], keeping: str | None = None
) -> str:
    """``XGBoost 0.050 [0.020-0.090] vs static 0.040 [0.020-0.070]: cannot be told apart (...), keeping static``."""
    head = f"{_figure(c.challenger, points, draws)} vs {_figure(c.against, points, draws)}"
    said = {"better": "clearly better", "worse": "clearly worse", "indistinguishable": "cannot be told apart"}
    tail = f", keeping {label(keeping)}" if keeping else ""
    return f"{head}: {said[c.verdict]} ({_ratio(c)}){tail}"


def decide(
    order: Sequence[str], points: Mapping[str, float | None], draws: Mapping[str, np.ndarray]
) -> tuple[str, str, list[Comparison]]:
    """The champion among ``order`` (simplest first): the simplest candidate no other clearly beats.

    ``points`` holds each candidate's PR-AUC, ``draws`` its PR-AUC in every resample (the same resamples
    for all). Returns the champion, the reason in words and every comparison of a more complex candidate
    with a simpler one.
    """
    pairs = {(a, b): compare(a, b, points, draws) for a in order for b in order if a != b}
    beaten = {n: [m for m in order if m != n and pairs[(m, n)].verdict == "better"] for n in order}
    winner = next((n for n in order if not beaten[n]), order[0])
    reasons = []
    for name in order:
        if name == winner:
            continue
        if order.index(name) < order.index(winner):
            by = winner if winner in beaten[name] else beaten[name][0]
            reasons.append(words(pairs[(by, name)], points, draws))
        else:
            reasons.append(words(pairs[(name, winner)], points, draws, winner))
    if all(points.get(n) is None for n in order):
        reasons.insert(0, "no failure among the holdout rows, so nothing can be told apart")
    text = f"{label(winner)} is champion: " + "; ".join(reasons) if reasons else f"{label(winner)} is the only one"
    comparisons = [pairs[(a, b)] for i, a in enumerate(order) for b in order[:i]]
    return winner, text, comparisons


def race(
    scores: Mapping[str, np.ndarray],
    y: np.ndarray,
    instance: np.ndarray,
    order: Sequence[str],
    *,
    resamples: int = bs.RESAMPLES,
    seed: int = 0,
) -> tuple[RaceResult, dict[str, float | None], dict[str, np.ndarray]]:
    """Bootstrap the PR-AUC of every scorer in ``scores`` on the rows ``y`` of instances ``instance`` and
    :func:`decide` among ``order``. Also returns the points and the draws (for further comparisons)."""
    names, codes = np.unique(np.asarray(instance).astype(str), return_inverse=True)
    y = np.asarray(y, dtype=float)
    scores = {n: bs.untie(p, seed) for n, p in scores.items()}  # ties score as chance, not below it
    points = {n: (float(pr_auc(y, p)) if y.sum() else None) for n, p in scores.items()}
    parts = {n: bs.RowPart.of(codes, y > 0.5, p) for n, p in scores.items()}
    drawn = bs.bootstrap(parts, {}, max(len(names), 1), count=resamples, seed=seed)
    draws = {n: drawn[n]["pr_auc"] for n in scores}
    winner, reason, comparisons = decide(order, points, draws)
    result = RaceResult(
        champion=winner,
        reason=reason,
        standings=[Standing(name=n, pr_auc=points[n], ci=bs.interval(draws[n])) for n in scores],
        comparisons=comparisons,
        rows=len(y),
        positives=int(y.sum()),
        instances=len(names),
        resamples=resamples,
    )
    return result, points, draws


def _known(rows: pd.DataFrame, label_column: str) -> pd.DataFrame:
    censored = label_column.replace("label_", "censored_", 1)
    return rows.loc[~rows[censored].astype(bool)] if censored in rows.columns else rows


def crown(
    registry: ModelRegistry,
    candidates: Mapping[str, TrainedModel],
    holdout: pd.DataFrame,
    label_column: str,
    *,
    data_window: tuple[datetime, datetime],
    validation: dict[str, Any],
    telemetry_metrics: list[str] | None = None,
    registered: Callable[[ModelCard], object] | None = None,
    seed: int = 0,
) -> tuple[ModelCard, RaceResult]:
    """Race ``candidates`` on ``holdout``, register the winner (``registered`` is called with its card) and
    make it champion unless the model in service clearly beats it there. Returns the card and the race."""
    rows = _known(holdout, label_column)
    y = pd.to_numeric(rows[label_column]).to_numpy(dtype=float)
    scores = {name: model.predict_proba(rows) for name, model in candidates.items()}
    current = registry.current_version()
    incumbent = registry.load(current) if current is not None else None
    note = ""
    if incumbent is not None and (gone := [f for f in incumbent.feature_names if f not in rows.columns]):
        note, incumbent = f"; the model in service cannot score these rows (no feature {gone[0]})", None
    if incumbent is not None:
        scores[IN_SERVICE] = incumbent.predict_proba(rows)
    order = [n for n in ORDER if n in candidates]
    result, points, draws = race(scores, y, rows["instance_id"].to_numpy(), order, seed=seed)
    winner = candidates[result.champion]
    card = registry.register(
        winner, data_window=data_window, validation=validation, telemetry_metrics=telemetry_metrics
    )
    if registered is not None:
        registered(card)
    promoted, reason = True, result.reason + note
    if card.status == "rejected":
        promoted, reason = False, reason + "; rejected by validation, so not promoted"
    elif incumbent is not None and current is not None:
        if incumbent.horizon_minutes != winner.horizon_minutes:
            promoted = False
            reason += (
                f"; the model in service predicts {incumbent.horizon_minutes} min ahead, not "
                f"{winner.horizon_minutes}: promote by hand to change the horizon"
            )
        elif not y.sum():
            promoted, reason = False, reason + f"; the model in service ({current}) stays"
        else:
            against = compare(IN_SERVICE, result.champion, points, draws)
            keeping = IN_SERVICE if against.verdict == "better" else result.champion
            promoted = keeping != IN_SERVICE
            reason += f"; against the model in service ({current}, {incumbent.kind}): " + words(
                against, points, draws, keeping
            )
    times = pd.to_datetime(rows["event_timestamp"], utc=True) if "event_timestamp" in rows.columns else None
    result = result.model_copy(
        update={
            "reason": reason,
            "version": card.version,
            "in_service": current,
            "promoted": promoted,
            "holdout_from": times.min().isoformat() if times is not None and len(times) else None,
        }
    )
    if promoted:
        registry.promote(card.version, how="race")
    return registry.record_challenge(card.version, result.model_dump(mode="json")), result
