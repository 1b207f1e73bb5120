"""The champion race in the registry, the operator's promote and rollback, `forewarn model list|promote|rollback`."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.errors import ModelUnavailable
from forewarn.model.candidates import Candidates, fit_candidates
from forewarn.model.champion import RaceResult, crown
from forewarn.model.config import TrainConfig
from forewarn.model.registry import ModelRegistry
from forewarn.model.scoring import TrainedModel
from forewarn.model.train import train_model
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


def xor_frame(seed: int, signal: bool = True) -> pd.DataFrame:
    """Failures follow an XOR of two metrics (both high or both low); healthy rows are often high on one and
    low on the other. No single threshold and no linear model can tell them apart; trees can. Without
    ``signal`` the two metrics are noise."""
    frame = planted_frame(seed=seed)
    rng = np.random.default_rng(seed)
    n, y = len(frame), frame["label_60m"].to_numpy() > 0
    side = rng.choice([-1.0, 1.0], n)
    odd = rng.random(n) < 0.5  # healthy rows: half far out on opposite sides, half near the middle
    u = np.where(y, side * 2.5, np.where(odd, side * 2.5, 0.0)) + rng.normal(scale=0.5, size=n)
    v = np.where(y, side * 2.5, np.where(odd, -side * 2.5, 0.0)) + rng.normal(scale=0.5, size=n)
    if not signal:
        u, v = rng.permutation(u), rng.permutation(v)
    return frame.assign(u=u, v=v)


@functools.cache
def candidates(seed: int, signal: bool = True) -> Candidates:
    config = TrainConfig(max_rounds=80, seed=seed)
    return fit_candidates(xor_frame(seed, signal), ["u", "v"], "label_60m", config, static={"u": "u", "v": "v"})


def crowned(registry: ModelRegistry, fitted: Candidates, holdout: pd.DataFrame | None = None) -> RaceResult:
    rows = fitted.test if holdout is None else holdout
    return crown(registry, fitted.models, rows, "label_60m", data_window=WINDOW, validation={"success": True})[1]


def test_xgboost_clearly_better_than_the_baselines_is_promoted(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    race = crowned(registry, candidates(seed=1))
    assert race.champion == "xgboost" and race.promoted and race.in_service is None
    card = registry.card(registry.current_version() or "")
    assert card.kind == "xgboost" and card.challenge == race.model_dump(mode="json")
    assert "XGBoost is champion" in race.reason and "clearly better" in race.reason
    figures = {s.name: s for s in race.standings}
    assert figures["xgboost"].ci is not None and figures["static"].ci is not None
    assert figures["xgboost"].ci[0] > figures["static"].ci[1]


def test_a_baseline_serves_when_xgboost_cannot_be_told_apart(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    race = crowned(registry, candidates(seed=2, signal=False))
    assert race.champion == "static" and race.promoted
    assert "cannot be told apart" in race.reason and "keeping static" in race.reason
    model = registry.current()
    assert model is not None and model.kind == "static"
    rows = candidates(seed=3, signal=False).test.head(50)
    p = model.predict_proba(rows)
    assert ((p >= 0) & (p <= 1)).all()
    scores = model.score(rows)
    assert len(scores) == 50 and all(f.feature in ("u", "v") for s in scores for f in s.top_features)
    listed = CliRunner().invoke(app, ["model", "list", "--registry", str(tmp_path)], terminal_width=250)
    assert listed.exit_code == 0 and f"in service: {model.version} (static)" in listed.output
    assert "why: static is champion" in listed.output and "cannot be told apart" in listed.output


def test_the_model_in_service_stays_when_it_clearly_beats_the_new_winner(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    strong = candidates(seed=1)
    assert crowned(registry, strong).promoted
    serving = registry.current_version()
    weak = candidates(seed=2, signal=False)  # trained on noise, judged on rows where the signal holds
    race = crowned(registry, weak, holdout=strong.test)
    assert not race.promoted and race.in_service == serving and registry.current_version() == serving
    assert "against the model in service" in race.reason and "keeping in service" in race.reason
    assert registry.card(race.version or "").status == "registered"

    quiet = crowned(registry, candidates(seed=1), holdout=strong.test.assign(label_60m=0))
    assert not quiet.promoted and "no failure" in quiet.reason and registry.current_version() == serving


def test_a_baseline_champion_round_trips_through_the_registry(tmp_path: Path) -> None:
    fitted = candidates(seed=1)
    registry = ModelRegistry(tmp_path)
    for name in ("static", "logistic"):
        model = fitted.models[name]
        registry.register(model, data_window=WINDOW, validation={"success": True})
        loaded = registry.load(model.version)
        assert loaded.kind == name and registry.card(model.version).kind == name
        np.testing.assert_allclose(loaded.predict_proba(fitted.test), model.predict_proba(fitted.test))
        assert [t.feature for t in loaded.explain(fitted.test.head(3))[0]] == [
            t.feature for t in model.explain(fitted.test.head(3))[0]
        ]
        assert loaded.threshold == model.threshold and set(loaded.importance()) <= {"u", "v"}


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
