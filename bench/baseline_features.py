"""Measurement: do the per-instance baseline features (forewarn.features.baselines) help the backtest?

Builds the backtest's frame once with the baselines on (``forewarn.backtest.prepare``), fits the train
flow's candidates twice on the same training rows (without and with the 3 baseline features per metric),
and bootstraps both variants on the same evaluated rows with the same resamples of instances, so the ratio
with / without has a paired 90% interval. The static rules read ``<metric>_mean_5m`` either way.

Run: ``python -m bench.baseline_features DATASET_DIR HORIZON_MINUTES`` prints one JSON object. Figures
and the decision are in docs/backtest.md ("Per-instance baselines").
"""

from __future__ import annotations

import json
import sys
from typing import Any

from forewarn.features import baselines


def measure(path: str, horizon: int) -> dict[str, Any]:
    """PR-AUC with its interval of every candidate without / with the baselines, and the paired ratios."""
    baselines.BASELINE_FEATURES = True
    from forewarn.backtest import prepare
    from forewarn.dataset import read_dataset
    from forewarn.model import bootstrap as bs
    from forewarn.model.candidates import fit_candidates
    from forewarn.model.champion import race
    from forewarn.model.config import TrainConfig
    from forewarn.model.labels import label_column

    rows = prepare(read_dataset(path), horizon, 0.6)
    label = label_column(horizon)
    added = {c for c in rows.columns if c.endswith(tuple(f"_{stat}" for stat in baselines.BASELINE_STATS))}
    scores = {}
    for tag, columns in (("off", [c for c in rows.columns if c not in added]), ("on", rows.columns)):
        config = TrainConfig(horizon_minutes=horizon)
        fitted = fit_candidates(rows.train, columns, label, config, static=rows.static_columns)
        for name, model in fitted.models.items():
            scores[f"{name}_{tag}"] = model.predict_proba(rows.evaluate)
    ev = rows.evaluate
    _, points, draws = race(scores, ev[label].to_numpy(dtype=float), ev["instance_id"].to_numpy(), list(scores))
    out: dict[str, Any] = {"baseline_features": len(added), "pr_auc": {}, "ratio_on_to_off": {}}
    for name in scores:
        out["pr_auc"][name] = {"point": points[name], "ci": bs.interval(draws[name])}
    for name in ("xgboost", "logistic"):
        on, off = points[f"{name}_on"], points[f"{name}_off"]
        ratio = bs.interval(bs.ratio(draws[f"{name}_on"], draws[f"{name}_off"]))
        out["ratio_on_to_off"][name] = {"point": on / off if on is not None and off else None, "ci": ratio}
    return out


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2])), indent=1))
