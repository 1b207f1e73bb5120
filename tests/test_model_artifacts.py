"""Models saved by an earlier release load, score and save as they did: the registry's files are a format.

``tests/model_artifacts`` was written at commit f7e1f46, before the model package was split into modules: the
three candidates of :func:`~forewarn.model.candidates.fit_candidates` (XGBoost, the static rules, the logistic
model; 20 rounds of depth 2 on ``xor_frame(5)`` of ``tests/test_model_registry.py``) registered in a
:class:`~forewarn.model.registry.ModelRegistry`, a few rows, and the scores that release gave them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forewarn.model.persist import save_model
from forewarn.model.registry import ModelRegistry

ARTIFACTS = Path(__file__).parent / "model_artifacts"
EXPECTED: dict[str, Any] = json.loads((ARTIFACTS / "expected.json").read_text())


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry(ARTIFACTS / "registry")


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_a_model_saved_before_scores_and_explains_as_it_did(registry: ModelRegistry, version: str) -> None:
    rows = pd.read_csv(ARTIFACTS / "rows.csv", parse_dates=["event_timestamp"], float_precision="round_trip")
    model = registry.load(version)
    assert model.kind == EXPECTED[version]["kind"] == registry.card(version).kind
    got = [
        {"probability": s.probability, "top_features": [[f.feature, f.value, f.contribution] for f in s.top_features]}
        for s in model.score(rows, top_k=2)
    ]
    assert got == EXPECTED[version]["scores"]


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_a_model_saved_before_is_saved_again_in_the_same_files(
    registry: ModelRegistry, version: str, tmp_path: Path
) -> None:
    before = registry.versions / version
    save_model(registry.load(version), tmp_path)
    written = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert written == {p.name: p.read_text() for p in before.iterdir() if p.name != "card.json"}
