"""The static-threshold baseline: what an operator's alert rules would do, with thresholds fit on training data.

Each metric gets one rule, ``value > limit`` or ``value < limit`` (whichever direction serves it better),
on its latest level (the ``<metric>_mean_5m`` window feature, or any column named in ``columns``), with the
limit that maximises F1 on the training rows. Rules are then added greedily, best first, into one
"any rule fires" alert while that improves the training F1 (at most ``max_rules``). The score is the
training precision of the alert where it fires and the training failure rate elsewhere, so it is a
two-level probability whose Brier score is fair and whose operating threshold is its upper level.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from forewarn.errors import InputError


class Rule(BaseModel):
    """``column`` above (``direction`` = ``>``) or below (``<``) ``limit``."""

    model_config = ConfigDict(extra="forbid")

    column: str
    direction: str
    limit: float
    train_f1: float


class StaticThresholds(BaseModel):
    """The fitted rules and the two score levels (when any rule fires, and when none does)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule]
    p_alert: float
    p_quiet: float

    def fires(self, features: pd.DataFrame) -> np.ndarray:
        """True where any rule fires (NaN never fires)."""
        out = np.zeros(len(features), dtype=bool)
        for rule in self.rules:
            if rule.column not in features.columns:
                raise InputError("feature frame lacks a column of the static baseline", field=rule.column)
            values = features[rule.column].to_numpy(dtype=float)
            with np.errstate(invalid="ignore"):
                out |= values > rule.limit if rule.direction == ">" else values < rule.limit
        return out

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        return np.where(self.fires(features), self.p_alert, self.p_quiet)

    @property
    def threshold(self) -> float:
        """The operating threshold: scores at the upper level are alerts."""
        return self.p_alert if self.rules else 1.0 + 1e-9


def _f1(fired: np.ndarray, y: np.ndarray) -> float:
    tp = float((fired & y).sum())
    return 2 * tp / (fired.sum() + y.sum()) if tp else 0.0


def best_rule(values: np.ndarray, y: np.ndarray, column: str) -> Rule | None:
    """The single rule on ``values`` with the best F1 against ``y`` (bool), or None when nothing helps."""
    best: Rule | None = None
    known = ~np.isnan(values)
    for direction, signed in ((">", values), ("<", -values)):
        v, t = signed[known], y[known]
        order = np.argsort(-v, kind="mergesort")
        v, t = v[order], t[order]
        last = np.r_[np.flatnonzero(np.diff(v) != 0), len(v) - 1][:-1]  # a cut that leaves some rows out
        if len(last) == 0:
            continue
        tp = np.cumsum(t)[last]
        f1 = 2 * tp / ((last + 1) + y.sum())
        pick = int(np.argmax(f1))
        if f1[pick] <= 0 or (best is not None and f1[pick] <= best.train_f1):
            continue
        limit = float((v[last[pick]] + v[last[pick] + 1]) / 2)  # between the last alerting and next value
        best = Rule(
            column=column, direction=direction, limit=limit if direction == ">" else -limit, train_f1=float(f1[pick])
        )
    return best


def fit_static(
    frame: pd.DataFrame, metric_columns: Mapping[str, str], label_column: str, *, max_rules: int = 3
) -> StaticThresholds:
    """Fit the baseline on training rows. ``metric_columns`` maps each metric to the column its rule reads."""
    y = pd.to_numeric(frame[label_column], errors="coerce").fillna(0).to_numpy() > 0.5
    if not y.any():
        raise InputError("the static baseline needs a failure in the training part", field=label_column)
    candidates = []
    for column in metric_columns.values():
        if column not in frame.columns:
            raise InputError("training frame lacks a metric column", field=column)
        rule = best_rule(frame[column].to_numpy(dtype=float), y, column)
        if rule is not None:
            candidates.append(rule)
    candidates.sort(key=lambda r: -r.train_f1)
    chosen: list[Rule] = []
    score = 0.0
    for rule in candidates:
        trial = StaticThresholds(rules=[*chosen, rule], p_alert=1.0, p_quiet=0.0)
        f1 = _f1(trial.fires(frame), y)
        if f1 > score:
            chosen, score = [*chosen, rule], f1
        if len(chosen) >= max_rules:
            break
    fired = StaticThresholds(rules=chosen, p_alert=1.0, p_quiet=0.0).fires(frame)
    p_alert = float(y[fired].mean()) if fired.any() else 1.0
    p_quiet = float(y[~fired].mean()) if (~fired).any() else 0.0
    return StaticThresholds(rules=chosen, p_alert=max(p_alert, p_quiet + 1e-9), p_quiet=p_quiet)
