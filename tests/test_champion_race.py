"""The train flow's champion race on simulated fleets: a baseline serves where failures have no precursor,
and the flow says why in the model card, the training summary and the Prefect artifact's text."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flows import artifacts
from forewarn import markdown, pipeline
from forewarn.dataset import Dataset
from forewarn.features.store import FeatureStoreGlue
from forewarn.model.registry import ModelRegistry
from forewarn.sim import SimConfig
from forewarn.sim.scenarios import simulate_scenario

HORIZON = 60


def trained(name: str, config: SimConfig, root: Path) -> tuple[pipeline.TrainOutcome, ModelRegistry, Dataset]:
    data = simulate_scenario(name, config)
    glue = FeatureStoreGlue(root / "features", metrics=data.metrics)
    glue.write_offline(pipeline.build_features(data))  # what the materialize flow writes
    glue.apply()
    registry = ModelRegistry(root / "models")
    outcome = pipeline.train(data, glue, registry, horizon_minutes=HORIZON, until=data.end)
    return outcome, registry, data


@pytest.fixture(scope="module")
def sudden(tmp_path_factory: pytest.TempPathFactory) -> tuple[pipeline.TrainOutcome, ModelRegistry, Dataset]:
    config = SimConfig(instances=30, days=2, seed=3, failure_rate_per_day=1.5)
    return trained("sudden", config, tmp_path_factory.mktemp("sudden"))


def test_without_precursors_a_baseline_is_promoted_and_the_flow_says_why(
    sudden: tuple[pipeline.TrainOutcome, ModelRegistry, Dataset],
) -> None:
    outcome, registry, _ = sudden
    card = outcome.card
    assert card is not None and outcome.promoted, outcome.validation.failures
    assert card.kind in ("static", "logistic") and registry.current_version() == card.version
    race = card.challenge
    assert race is not None and race["champion"] == card.kind and race["positives"] > 0
    reason = race["reason"]
    assert reason.startswith(f"{card.kind} is champion") and "XGBoost" in reason
    assert "cannot be told apart" in reason or "clearly worse" in reason
    summary = markdown.describe_training(outcome)
    assert f"({card.kind}) promoted to current" in summary and reason in summary
    assert "| xgboost |" in summary and "| static |" in summary
    model = registry.current()
    assert model is not None
    report = artifacts.model_report(summary, card, model)
    assert f"Scorer {card.kind}" in report and reason in report


def test_a_baseline_champion_scores_the_fleet_as_the_model_would(
    sudden: tuple[pipeline.TrainOutcome, ModelRegistry, Dataset],
) -> None:
    """The cycle's scoring path (pipeline.score) takes the baseline champion as it takes XGBoost."""
    _, registry, data = sudden
    model = registry.current()
    assert model is not None
    features = pipeline.build_features(data)
    latest = features.sort_values("event_timestamp").groupby("instance_id").tail(1)
    scores = pipeline.score(model, latest, now=data.end.to_pydatetime())
    assert len(scores) == latest["instance_id"].nunique()
    assert all(0.0 <= s.probability <= 1.0 and s.model_version == model.version for s in scores)
    named = {f.feature for s in scores for f in s.top_features}
    assert named <= set(model.feature_names)
    assert pd.Series([s.probability for s in scores]).between(0, 1).all()
