"""A baseline that won the champion race, served behind the same interface as the XGBoost model.

A :class:`BaselineModel` wraps the static rules (:mod:`forewarn.model.baselines`) or the logistic regression
(:mod:`forewarn.model.logistic`) with a calibrator fitted like the model's (isotonic on the validation
period), so its probabilities mean what the model's mean and the policy's risk bands keep their sense. It
scores and explains as :class:`forewarn.model.scoring.TrainedModel` does, and is saved and loaded beside it
(:mod:`forewarn.model.persist`):

    static: the top features are the rules that fire, each with the log-odds lift of an alert over a quiet
        row (rows where no rule fires carry none).
    logistic: the top features are the largest terms of the log-odds (weight times standardised value).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from forewarn.model.baselines import StaticThresholds
from forewarn.model.calibrate import Calibrator
from forewarn.model.explaining import top_contributions
from forewarn.model.logistic import LogisticModel
from forewarn.model.scoring import TrainedModel
from forewarn.schemas import FeatureContribution

Baseline = StaticThresholds | LogisticModel


def _logit(p: float) -> float:
    q = min(max(p, 1e-6), 1.0 - 1e-6)
    return float(np.log(q / (1.0 - q)))


class BaselineModel(TrainedModel):
    """The static rules or the logistic regression, calibrated, as a servable model (no booster)."""

    def __init__(
        self,
        baseline: Baseline,
        calibrator: Calibrator,
        *,
        feature_names: Sequence[str],
        horizon_minutes: int,
        version: str,
        threshold: float = 0.5,
        metrics: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            None,
            calibrator,
            feature_names=feature_names,
            horizon_minutes=horizon_minutes,
            version=version,
            threshold=threshold,
            metrics=metrics,
            params=params,
        )
        self.baseline = baseline
        self.kind = "static" if isinstance(baseline, StaticThresholds) else "logistic"

    def set_threads(self, nthread: int) -> None:
        """Nothing to set: a baseline scores in numpy."""

    def importance(self) -> dict[str, float]:
        """Static: each rule's F1 on the training rows; logistic: each feature's absolute weight."""
        if isinstance(self.baseline, StaticThresholds):
            return {rule.column: rule.train_f1 for rule in self.baseline.rules}
        return {n: abs(float(w)) for n, w in zip(self.baseline.feature_names, self.baseline.weights, strict=True)}

    def raw_proba(self, features: pd.DataFrame) -> np.ndarray:
        """The baseline's own score before calibration."""
        if features.empty:
            return np.zeros(0)
        return np.asarray(self.baseline.predict_proba(self._matrix(features)), dtype=float)

    def _contributions(self, matrix: pd.DataFrame) -> np.ndarray:
        """Rows x ``feature_names``: each feature's share of the log-odds."""
        if isinstance(self.baseline, LogisticModel):
            by_name = dict(zip(self.baseline.feature_names, self.baseline.contributions(matrix).T, strict=True))
            return np.column_stack([by_name.get(n, np.zeros(len(matrix))) for n in self.feature_names])
        low, high = self.calibrator.transform(np.array([self.baseline.p_quiet, self.baseline.p_alert]))
        lift = _logit(float(high)) - _logit(float(low))
        out = np.zeros((len(matrix), len(self.feature_names)))
        for rule in self.baseline.rules:
            fires = StaticThresholds(rules=[rule], p_alert=1.0, p_quiet=0.0).fires(matrix)
            out[fires, self.feature_names.index(rule.column)] = lift
        return out

    def explain(self, features: pd.DataFrame, top_k: int = 3) -> list[list[FeatureContribution]]:
        """Per row, the ``top_k`` features with the largest share of the log-odds (none that contribute 0)."""
        if features.empty:
            return []
        matrix = self._matrix(features)
        contribs = self._contributions(matrix)
        return top_contributions(contribs, matrix.to_numpy(dtype=float), self.feature_names, top_k, skip_zero=True)
