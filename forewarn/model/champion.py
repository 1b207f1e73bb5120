"""Champion and challenger: a new model replaces the one in service only if it does better on the same rows.

The holdout is the newest period of the training frame (the test period the challenger never learnt from).
Both models score exactly those rows; censored rows are left out. The challenger wins when its PR-AUC is at
least the champion's less ``tolerance`` (or, for ``brier``, at most the champion's plus it). It is never
promoted when the comparison cannot be made (the holdout has no failure), except when there is no champion
yet or the champion cannot score the rows at all (its features are no longer in the frame).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from forewarn.errors import InputError
from forewarn.model.evaluate import brier, pr_auc
from forewarn.model.registry import ModelRegistry
from forewarn.model.train import TrainedModel

Metric = Literal["pr_auc", "brier"]


class ChallengeResult(BaseModel):
    """The outcome of one champion/challenger comparison, written into the challenger's card."""

    model_config = ConfigDict(extra="forbid")

    challenger: str
    champion: str | None
    metric: Metric
    challenger_score: float | None
    champion_score: float | None
    rows: int
    positives: int
    holdout_from: str | None
    promoted: bool
    reason: str


def newest_holdout(frame: pd.DataFrame, fraction: float = 0.2, time_col: str = "event_timestamp") -> pd.DataFrame:
    """The rows of the newest ``fraction`` of ``frame``'s timestamps (by row count, whole timestamps)."""
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"holdout fraction must be in (0, 1], got {fraction}", field="fraction")
    times = pd.to_datetime(frame[time_col], utc=True)
    cut = times.quantile(1.0 - fraction) if fraction < 1.0 else times.min()
    return frame.loc[times >= cut]


def _score(model: TrainedModel, rows: pd.DataFrame, y: np.ndarray, metric: Metric) -> float | None:
    p = model.predict_proba(rows)
    value = pr_auc(y, p) if metric == "pr_auc" else brier(y, p)
    return None if np.isnan(value) else float(value)


def _verdict(new: float | None, old: float | None, metric: Metric, tolerance: float) -> tuple[bool, str]:
    if new is None or old is None:
        return False, f"{metric} is undefined on the holdout (no failure in it); the champion stays"
    better = new >= old - tolerance if metric == "pr_auc" else new <= old + tolerance
    word = "at least as good as" if better else "worse than"
    return better, f"challenger {metric} {new:.4f} is {word} champion {old:.4f} (tolerance {tolerance})"


def challenge(
    registry: ModelRegistry,
    version: str,
    holdout: pd.DataFrame,
    label_column: str,
    *,
    metric: Metric = "pr_auc",
    tolerance: float = 0.0,
) -> ChallengeResult:
    """Score challenger ``version`` and the champion on ``holdout``; promote the challenger if it wins."""
    card = registry.card(version)
    if label_column not in holdout.columns:
        raise InputError("holdout frame has no label column", field=label_column)
    censored = label_column.replace("label_", "censored_", 1)
    rows = holdout.loc[~holdout[censored].astype(bool)] if censored in holdout.columns else holdout
    y = pd.to_numeric(rows[label_column]).to_numpy(dtype=float)
    challenger = registry.load(version)
    champion_version = registry.current_version()
    new = _score(challenger, rows, y, metric) if len(rows) else None
    old: float | None = None
    if card.status == "rejected":
        promoted, reason = False, "the challenger was rejected by validation"
    elif champion_version is None:
        promoted, reason = True, "no champion yet"
    elif champion_version == version:
        promoted, reason = True, "the challenger is already the champion"
    else:
        champion = registry.load(champion_version)
        if champion.horizon_minutes != challenger.horizon_minutes:
            promoted, reason = (
                False,
                f"the champion predicts {champion.horizon_minutes} min ahead, not "
                f"{challenger.horizon_minutes}; promote by hand to change the horizon",
            )
        elif missing := [f for f in champion.feature_names if f not in rows.columns]:
            promoted, reason = True, f"the champion cannot score these rows (no feature {missing[0]})"
        else:
            old = _score(champion, rows, y, metric) if len(rows) else None
            promoted, reason = _verdict(new, old, metric, tolerance)
    times = pd.to_datetime(rows["event_timestamp"], utc=True) if "event_timestamp" in rows.columns else None
    result = ChallengeResult(
        challenger=version,
        champion=champion_version,
        metric=metric,
        challenger_score=new,
        champion_score=old,
        rows=len(rows),
        positives=int(y.sum()),
        holdout_from=times.min().isoformat() if times is not None and len(times) else None,
        promoted=promoted,
        reason=reason,
    )
    if promoted and champion_version != version:
        registry.promote(version, how="challenge")
    registry.record_challenge(version, result.model_dump(mode="json"))
    return result
