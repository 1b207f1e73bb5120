"""Champion and challenger, the operator's promote and rollback, and `forewarn model list|promote|rollback`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.errors import ModelUnavailable
from forewarn.model.champion import challenge, newest_holdout
from forewarn.model.registry import ModelRegistry
from forewarn.model.train import TrainConfig, TrainedModel, train_model
from tests.test_model import FEATURES, WINDOW, planted_frame


@pytest.fixture(scope="module")
def good() -> TrainedModel:
    return train_model(planted_frame(seed=1), FEATURES, "label_60m", TrainConfig(max_rounds=60))


@pytest.fixture(scope="module")
def blind() -> TrainedModel:
    """Same features, but trained where 'stress' carries no signal: worse on any honest holdout."""
    frame = planted_frame(seed=2)
    frame["stress"] = np.random.default_rng(2).permutation(frame["stress"].to_numpy())
    return train_model(frame, FEATURES, "label_60m", TrainConfig(max_rounds=60))


def registered(root: Path, *models: TrainedModel) -> ModelRegistry:
    registry = ModelRegistry(root)
    for model in models:
        registry.register(model, data_window=WINDOW, validation={"success": True})
    return registry


def test_challenger_is_promoted_only_when_it_beats_the_champion_on_the_same_rows(
    tmp_path: Path, good: TrainedModel, blind: TrainedModel
) -> None:
    registry = registered(tmp_path, good, blind)
    holdout = newest_holdout(planted_frame(seed=3), fraction=0.3)
    first = challenge(registry, blind.version, holdout, "label_60m")
    assert first.promoted and first.champion is None  # no champion yet: the first model serves

    won = challenge(registry, good.version, holdout, "label_60m")
    assert won.promoted and won.champion == blind.version
    assert won.challenger_score is not None and won.champion_score is not None
    assert won.challenger_score > won.champion_score
    assert won.rows == len(holdout) and won.positives == int(holdout["label_60m"].sum())

    lost = challenge(registry, blind.version, holdout, "label_60m")  # the old model challenges back and loses
    assert not lost.promoted and "worse" in lost.reason
    assert registry.current_version() == good.version
    assert registry.card(blind.version).challenge == lost.model_dump(mode="json")


def test_no_promotion_when_the_holdout_cannot_decide(tmp_path: Path, good: TrainedModel, blind: TrainedModel) -> None:
    registry = registered(tmp_path, good, blind)
    registry.promote(blind.version)
    quiet = newest_holdout(planted_frame(seed=3), fraction=0.3).assign(label_60m=0)
    result = challenge(registry, good.version, quiet, "label_60m")
    assert not result.promoted and "undefined" in result.reason
    assert registry.current_version() == blind.version


def test_promote_and_rollback_walk_the_champion_history(
    tmp_path: Path, good: TrainedModel, blind: TrainedModel
) -> None:
    registry = registered(tmp_path, good, blind)
    with pytest.raises(ModelUnavailable, match="nothing to roll back"):
        registry.rollback()
    registry.promote(good.version)
    registry.promote(blind.version)
    assert registry.card(good.version).status == "retired"
    assert registry.rollback().version == good.version
    assert registry.current_version() == good.version
    assert registry.card(blind.version).status == "retired"
    with pytest.raises(ModelUnavailable, match="no predecessor"):
        registry.rollback()  # good was the first champion
    assert [e["how"] for e in registry.history()] == ["manual", "manual", "rollback"]


def test_a_rejected_model_cannot_be_promoted_even_by_hand(tmp_path: Path, good: TrainedModel) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(good, data_window=WINDOW, validation={"success": False, "failures": ["row count"]})
    with pytest.raises(ModelUnavailable, match="row count"):
        registry.promote(good.version)


def test_model_commands(tmp_path: Path, good: TrainedModel, blind: TrainedModel) -> None:
    registered(tmp_path, good, blind)
    runner = CliRunner()
    where = ["--registry", str(tmp_path)]
    listed = runner.invoke(app, ["model", "list", *where])
    assert listed.exit_code == 0 and "no model in service" in listed.output
    assert runner.invoke(app, ["model", "promote", good.version, *where]).exit_code == 0
    assert runner.invoke(app, ["model", "promote", blind.version, *where]).exit_code == 0
    back = runner.invoke(app, ["model", "rollback", *where])
    assert back.exit_code == 0 and good.version in back.output
    listed = runner.invoke(app, ["model", "list", *where], terminal_width=250)
    assert f"in service: {good.version}" in listed.output
    unknown = runner.invoke(app, ["model", "promote", "v-nope", *where])
    assert unknown.exit_code == 1 and "v-nope" in unknown.output and "Traceback" not in unknown.output
