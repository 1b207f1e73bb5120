"""A baseline that won the champion race, served behind the same interface as the XGBoost model.

A :class:`BaselineModel` wraps the static rules (:mod:`forewarn.model.baselines`) or the logistic regression
(:mod:`forewarn.model.logistic`) with a calibrator fitted like the model's (isotonic on the validation
period), so its probabilities mean what the model's mean and the policy's risk bands keep their sense. It
scores, explains and is saved and loaded as :class:`forewarn.model.train.TrainedModel` is:

    static: the top features are the rules that fire, each with the log-odds lift of an alert over a quiet
        row (rows where no rule fires carry none).
    logistic: the top features are the largest terms of the log-odds (weight times standardised value).

:func:`load_model` reads either kind from a registry directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forewarn.model.baselines import StaticThresholds
from forewarn.model.calibrate import Calibrator
from forewarn.model.logistic import LogisticModel
from forewarn.model.train import TrainedModel
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
        from forewarn.model.train import top_k_by_magnitude

        matrix = self._matrix(features)
        contribs = self._contributions(matrix)
        picks = top_k_by_magnitude(contribs, top_k)
        values = matrix.to_numpy(dtype=float)
        out = []
        for row, chosen in enumerate(picks.tolist()):
            out.append(
                [
                    FeatureContribution(
                        feature=self.feature_names[j],
                        value=None if np.isnan(values[row, j]) else float(values[row, j]),
                        contribution=float(contribs[row, j]),
                    )
                    for j in chosen
                    if contribs[row, j] != 0.0
                ]
            )
        return out

    def save(self, directory: Path) -> None:
        """Write ``baseline.json``, ``calibrator.json`` and ``model.json`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        body = self.baseline.model_dump() if isinstance(self.baseline, StaticThresholds) else self.baseline.to_dict()
        (directory / "baseline.json").write_text(json.dumps(body, indent=2))
        self._save_common(directory)

    @classmethod
    def load(cls, directory: Path, *, nthread: int = 2) -> BaselineModel:
        """Read a baseline written by :meth:`save`."""
        meta = json.loads((directory / "model.json").read_text())
        kind = meta.pop("kind")
        body = json.loads((directory / "baseline.json").read_text())
        baseline: Baseline = (
            StaticThresholds.model_validate(body) if kind == "static" else LogisticModel.from_dict(body)
        )
        calibrator = Calibrator.model_validate_json((directory / "calibrator.json").read_text())
        return cls(baseline, calibrator, **meta)


def load_model(directory: Path) -> TrainedModel:
    """The model stored in ``directory``: XGBoost, or a baseline that won the race (by ``model.json``'s kind)."""
    meta = json.loads((directory / "model.json").read_text())
    if meta.get("kind", "xgboost") == "xgboost":
        return TrainedModel.load(directory)
    return BaselineModel.load(directory)
