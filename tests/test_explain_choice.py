"""Explanations where they matter: by default every score from the moderate band up carries its top
features and only a sample of the low ones does; a policy with ``explain: all`` gets every score explained."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from forewarn import pipeline
from forewarn.errors import PolicyError
from forewarn.model.calibrate import Calibrator
from forewarn.model.explaining import MIN_SAMPLE
from forewarn.model.scoring import TrainedModel
from forewarn.policy.loader import load_policy
from forewarn.settings import PROJECT_ROOT

NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)
NAMES = [f"f{k}" for k in range(6)]


@pytest.fixture(scope="module")
def scored_fleet() -> tuple[TrainedModel, pd.DataFrame]:
    rng = np.random.default_rng(1)
    x = rng.random((4_000, len(NAMES)))
    y = (rng.random(4_000) < 0.01 + 0.6 * (x[:, 0] > 0.9)).astype(float)
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "verbosity": 0}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=20)
    model = TrainedModel(
        booster, Calibrator.fit(booster.inplace_predict(x), y), feature_names=NAMES, horizon_minutes=60, version="t"
    )
    frame = pd.DataFrame(rng.random((3_000, len(NAMES))), columns=NAMES)
    frame.insert(0, "instance_id", [f"vm-{k}" for k in range(len(frame))])
    return model, frame


def _policy(tmp_path: Path, explain: str | None) -> Path:
    text = (PROJECT_ROOT / "policies" / "default.yaml").read_text()
    path = tmp_path / "p.yaml"
    path.write_text(text + (f"explain: {explain}\n" if explain else ""))
    return path


def test_default_explains_the_risky_and_a_sample(
    tmp_path: Path, scored_fleet: tuple[TrainedModel, pd.DataFrame]
) -> None:
    model, frame = scored_fleet
    policy = load_policy(_policy(tmp_path, None))
    scores = pipeline.score(model, frame, now=NOW, explain=pipeline.explain_choice(policy))
    every = pipeline.score(model, frame, now=NOW)
    risky = [s.probability >= policy.bands.moderate.enter for s in scores]
    assert 0 < sum(risky) < len(scores)
    assert all(s.top_features for s, r in zip(scores, risky, strict=True) if r)
    low_explained = sum(1 for s, r in zip(scores, risky, strict=True) if not r and s.top_features)
    assert low_explained == max(MIN_SAMPLE, int(np.ceil(0.01 * (len(scores) - sum(risky)))))
    for mine, full in zip(scores, every, strict=True):  # the same scores; explained ones the same reasons
        assert mine.probability == full.probability
        assert not mine.top_features or mine.top_features == full.top_features


def test_policy_can_ask_for_every_explanation(tmp_path: Path, scored_fleet: tuple[TrainedModel, pd.DataFrame]) -> None:
    model, frame = scored_fleet
    policy = load_policy(_policy(tmp_path, "all"))
    scores = pipeline.score(model, frame, now=NOW, explain=pipeline.explain_choice(policy))
    assert all(s.top_features for s in scores)
    with pytest.raises(PolicyError, match="explain"):
        load_policy(_policy(tmp_path, "some"))
