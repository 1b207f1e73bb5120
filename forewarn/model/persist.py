"""Models on disk: one directory per model, plain JSON files (no pickles), read back by the kind they record.

    model.json        kind (``xgboost``, ``static``, ``logistic``), feature names, horizon, version,
                      threshold, metrics, params
    calibrator.json   the fitted calibrator
    booster.json      the XGBoost booster (kind ``xgboost``)
    baseline.json     the static rules or the logistic regression (the baselines)

A ``model.json`` without ``kind`` (written before baselines could serve) is an XGBoost model. The registry
(:mod:`forewarn.model.registry`) keeps one such directory per version.
"""

from __future__ import annotations

import json
from pathlib import Path

import xgboost as xgb

from forewarn.model.baseline_model import Baseline, BaselineModel
from forewarn.model.baselines import StaticThresholds
from forewarn.model.calibrate import Calibrator
from forewarn.model.logistic import LogisticModel
from forewarn.model.scoring import TrainedModel


def save_model(model: TrainedModel, directory: Path) -> None:
    """Write ``model`` into ``directory``: its booster or baseline, ``calibrator.json`` and ``model.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(model, BaselineModel):
        baseline = model.baseline
        body = baseline.model_dump() if isinstance(baseline, StaticThresholds) else baseline.to_dict()
        (directory / "baseline.json").write_text(json.dumps(body, indent=2))
    else:
        model.require_booster().save_model(str(directory / "booster.json"))
    (directory / "calibrator.json").write_text(model.calibrator.model_dump_json(indent=2))
    meta = {
        "kind": model.kind,
        "feature_names": model.feature_names,
        "horizon_minutes": model.horizon_minutes,
        "version": model.version,
        "threshold": model.threshold,
        "metrics": model.metrics,
        "params": model.params,
    }
    (directory / "model.json").write_text(json.dumps(meta, indent=2, default=str))


def load_model(directory: Path, *, nthread: int = 2) -> TrainedModel:
    """The model stored in ``directory`` by :func:`save_model`: XGBoost, or a baseline that won the race."""
    meta = json.loads((directory / "model.json").read_text())
    kind = meta.pop("kind", "xgboost")
    calibrator = Calibrator.model_validate_json((directory / "calibrator.json").read_text())
    if kind == "xgboost":
        booster = xgb.Booster(params={"nthread": nthread})
        booster.load_model(str(directory / "booster.json"))
        return TrainedModel(booster, calibrator, **meta)
    body = json.loads((directory / "baseline.json").read_text())
    baseline: Baseline = StaticThresholds.model_validate(body) if kind == "static" else LogisticModel.from_dict(body)
    return BaselineModel(baseline, calibrator, **meta)
