"""Benchmark: scoring 10,000 instances (online read through Feast, then predict), beside the floor.

``seconds`` is what one scoring cycle does: ``FeatureStoreGlue.online_features`` (Feast's
``get_online_features`` on the SQLite online store) plus ``TrainedModel.predict_proba`` (booster and
calibration). ``explain_seconds`` adds the top-feature explanations (``pred_contribs``) that every score
carries. The floor is a raw read of the same values from the same SQLite file (one SELECT, protobuf
values decoded into a matrix) plus the bare ``booster.inplace_predict``.
The fleet: one materialised feature row per instance, the default metrics' window features, values random;
the model: 50 rounds of depth 4 on random labels (its speed, not its skill, is measured).

Run: ``python -m bench.score`` prints one JSON object.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from forewarn.features.store import FeatureStoreGlue
from forewarn.features.windows import all_feature_names
from forewarn.model.calibrate import Calibrator
from forewarn.model.scoring import TrainedModel


def fleet(instances: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = all_feature_names()
    now = pd.Timestamp("2024-01-01T12:00Z")
    frame = pd.DataFrame(rng.random((instances, len(names))), columns=names)
    frame.insert(0, "event_timestamp", now)
    frame.insert(0, "instance_id", [f"vm-{i:06d}" for i in range(instances)])
    return frame


def model_for(frame: pd.DataFrame, names: list[str]) -> TrainedModel:
    rng = np.random.default_rng(1)
    matrix = xgb.DMatrix(frame[names].to_numpy(dtype=np.float32), label=rng.random(len(frame)) < 0.05)
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 4, "nthread": 2}
    booster = xgb.train(params, matrix, num_boost_round=50)
    return TrainedModel(booster, Calibrator(), feature_names=names, horizon_minutes=60, version="bench")


def raw_read(db: Path, names: list[str]) -> np.ndarray:
    """Every feature value of the online tables, decoded into an instances x features matrix."""
    from feast.protos.feast.types.Value_pb2 import Value as ValueProto

    column = {name: j for j, name in enumerate(names)}
    with sqlite3.connect(db) as conn:
        views = ("window_features", "workload_features", "velocity_features")
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'") if str(r[0]).endswith(views)
        ]
        rows = [
            row
            for table in tables
            for row in conn.execute(f'SELECT entity_key, feature_name, value FROM "{table}"').fetchall()
        ]
    keys: dict[bytes, int] = {}
    out = np.full((len({r[0] for r in rows}), len(names)), np.nan, dtype=np.float32)
    for key, feature, value in rows:
        j = column.get(feature)
        if j is not None:
            out[keys.setdefault(key, len(keys)), j] = ValueProto.FromString(value).double_val
    return out


def run(instances: int = 10_000) -> dict[str, Any]:
    """Seconds of one scoring cycle through Feast and of the raw floor, for ``instances`` instances."""
    frame = fleet(instances)
    with tempfile.TemporaryDirectory() as workdir:
        glue = FeatureStoreGlue(Path(workdir))
        names = glue.feature_names
        glue.write_offline(frame)
        glue.apply()
        glue.materialize(
            end=pd.Timestamp("2024-01-01T12:05Z").to_pydatetime(),
            start=pd.Timestamp("2024-01-01T11:00Z").to_pydatetime(),
        )
        model = model_for(frame, names)
        ids = frame["instance_id"].tolist()
        glue.online_features(ids[:10])  # warm the registry cache, as a long-running scorer would be
        began = time.perf_counter()
        online = glue.online_features(ids)
        p = model.predict_proba(online)
        seconds = time.perf_counter() - began
        began = time.perf_counter()
        model.explain(online)
        explain = time.perf_counter() - began
        began = time.perf_counter()
        matrix = raw_read(Path(workdir) / "online.db", names)
        model.booster.inplace_predict(matrix)
        floor = time.perf_counter() - began
    return {
        "benchmark": "score",
        "instances": instances,
        "features": len(names),
        "scored": int(np.isfinite(p).sum()),
        "seconds": round(seconds, 3),
        "explain_seconds": round(explain, 3),
        "floor_seconds": round(floor, 3),
        "ratio": round(seconds / floor, 2),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
