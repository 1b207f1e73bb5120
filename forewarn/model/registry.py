"""The model registry: versioned directories on disk, model cards, and a guarded "current" pointer.

Layout under ``root``::

    versions/<version>/booster.json, calibrator.json, model.json, card.json   (:mod:`forewarn.model.persist`)
    CURRENT                 the version in service, the champion (absent until one is promoted)
    HISTORY                 one JSON line per change of champion: version, time, how (auto, manual, rollback)

A model whose validation failed is registered as ``rejected`` and is never promoted. A training run
registers the winner of its champion race (XGBoost or a baseline, :mod:`forewarn.model.champion`), which
becomes champion unless the one in service clearly beats it on the same holdout rows. ``promote`` and
``rollback`` are the operator's overrides (``forewarn model promote VERSION`` and ``forewarn model rollback``).
A version (:func:`new_version`) sorts by the time it was made.
"""

from __future__ import annotations

import builtins
import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from forewarn.errors import InputError, ModelUnavailable
from forewarn.model.persist import load_model, save_model
from forewarn.model.scoring import TrainedModel
from forewarn.schemas import UtcDatetime, utcnow

Status = Literal["registered", "current", "retired", "rejected"]


class ModelCard(BaseModel):
    """What a model is, what it was trained on, how well it did and whether it serves."""

    model_config = ConfigDict(extra="forbid")

    version: str
    created_at: UtcDatetime
    horizon_minutes: int
    features: list[str]
    telemetry_metrics: list[str] = Field(default_factory=list)
    """The telemetry metrics its features were computed from (discovered from the data at materialize)."""
    params: dict[str, Any]
    metrics: dict[str, Any]
    threshold: float
    data_window: tuple[UtcDatetime, UtcDatetime]
    validation: dict[str, Any]
    status: Status = "registered"
    kind: str = "xgboost"
    """The scorer: ``xgboost``, or the baseline that won the champion race (``static``, ``logistic``)."""
    challenge: dict[str, Any] | None = None
    """The champion race that decided its promotion (:class:`forewarn.model.champion.RaceResult`)."""


def new_version(now: datetime | None = None) -> str:
    """A sortable, unique model version such as ``20240301T120000Z-3f9a1c``."""
    return f"{(now or utcnow()):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class ModelRegistry:
    """Models on disk under ``root``; see the module docstring for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.versions = self.root / "versions"
        self.versions.mkdir(parents=True, exist_ok=True)

    def register(
        self,
        model: TrainedModel,
        *,
        data_window: tuple[datetime, datetime],
        validation: dict[str, Any],
        telemetry_metrics: builtins.list[str] | None = None,
    ) -> ModelCard:
        """Store ``model`` under its version with a card; a failed ``validation`` marks it rejected.
        ``telemetry_metrics``: the metrics its features come from, recorded in the card."""
        directory = self.versions / model.version
        if directory.exists():
            raise InputError(f"model version {model.version} is already registered", field="version")
        card = ModelCard(
            version=model.version,
            created_at=utcnow(),
            horizon_minutes=model.horizon_minutes,
            features=model.feature_names,
            telemetry_metrics=list(telemetry_metrics or []),
            params=model.params,
            metrics=model.metrics,
            threshold=model.threshold,
            data_window=data_window,
            validation=validation,
            status="rejected" if validation.get("success") is False else "registered",
            kind=model.kind,
        )
        save_model(model, directory)
        self._save_card(card)
        return card

    def _save_card(self, card: ModelCard) -> None:
        _write_atomic(self.versions / card.version / "card.json", card.model_dump_json(indent=2))

    def card(self, version: str) -> ModelCard:
        """The card of ``version``. Raises ModelUnavailable naming the known versions when unknown."""
        path = self.versions / version / "card.json"
        if not path.exists():
            known = ", ".join(c.version for c in self.list()) or "none"
            raise ModelUnavailable(f"no model version '{version}' in {self.root} (known: {known})")
        return ModelCard.model_validate_json(path.read_text())

    def current_version(self) -> str | None:
        """The version in service, or None."""
        pointer = self.root / "CURRENT"
        return pointer.read_text().strip() if pointer.exists() else None

    def current(self) -> TrainedModel | None:
        """The model in service, loaded, or None when none was promoted."""
        version = self.current_version()
        return load_model(self.versions / version) if version else None

    def load(self, version: str) -> TrainedModel:
        """Any registered version, loaded."""
        self.card(version)
        return load_model(self.versions / version)

    def _make_current(self, card: ModelCard, *, how: str) -> None:
        previous = self.current_version()
        if previous is not None and previous != card.version:
            old = self.card(previous)
            old.status = "retired"
            self._save_card(old)
        card.status = "current"
        self._save_card(card)
        _write_atomic(self.root / "CURRENT", card.version)
        entry = {"version": card.version, "at": utcnow().isoformat(), "how": how, "replaced": previous}
        with (self.root / "HISTORY").open("a") as handle:
            handle.write(json.dumps(entry) + "\n")

    def history(self) -> builtins.list[dict[str, Any]]:
        """Every change of champion, oldest first."""
        path = self.root / "HISTORY"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def promote(self, version: str, *, how: str = "manual") -> ModelCard:
        """Make ``version`` the champion now, whatever its metrics (an operator's decision, or a won challenge).

        Raises:
            ModelUnavailable: an unknown version, or one rejected by validation.
        """
        card = self.card(version)
        if card.status == "rejected":
            failed = ", ".join(map(str, card.validation.get("failures", []))) or "see its card"
            raise ModelUnavailable(f"model {version} was rejected by validation ({failed}); it cannot serve")
        if self.current_version() != version:
            self._make_current(card, how=how)
        return self.card(version)

    def rollback(self) -> ModelCard:
        """Bring back the champion before the current one; returns its card.

        Raises:
            ModelUnavailable: no champion, or none before it.
        """
        current = self.current_version()
        if current is None:
            raise ModelUnavailable(f"no model is in service in {self.root}; nothing to roll back")
        stack: builtins.list[str] = []  # champions in order; a rollback pops the one it replaced
        for entry in self.history():
            if entry["how"] == "rollback":
                stack = stack[:-1]
            if not stack or stack[-1] != entry["version"]:
                stack.append(entry["version"])
        stack = stack if stack and stack[-1] == current else [*stack, current]
        previous = stack[-2] if len(stack) >= 2 else None
        if previous is None:
            raise ModelUnavailable(f"model {current} has no predecessor in {self.root / 'HISTORY'}")
        self._make_current(self.card(previous), how="rollback")
        return self.card(previous)

    def record_challenge(self, version: str, result: dict[str, Any]) -> ModelCard:
        """Write the champion race that decided ``version``'s promotion into its card."""
        card = self.card(version)
        card.challenge = result
        self._save_card(card)
        return card

    def list(self) -> builtins.list[ModelCard]:
        """Every registered card, oldest first."""
        cards = [ModelCard.model_validate_json(p.read_text()) for p in self.versions.glob("*/card.json")]
        return sorted(cards, key=lambda c: (c.created_at, c.version))
