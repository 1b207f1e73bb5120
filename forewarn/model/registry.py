"""The model registry: versioned directories on disk, model cards, and a guarded "current" pointer.

Layout under ``root``::

    versions/<version>/booster.json, calibrator.json, model.json, card.json
    CURRENT                 the version in service (absent until one is promoted)

A model whose validation failed is registered as ``rejected`` and is never promoted.
"""

from __future__ import annotations

import builtins
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from forewarn.errors import InputError, ModelUnavailable
from forewarn.model.train import TrainedModel
from forewarn.schemas import UtcDatetime, utcnow

LOWER_IS_BETTER = frozenset({"brier", "brier_constant", "log_loss"})
Status = Literal["registered", "current", "retired", "rejected"]


class ModelCard(BaseModel):
    """What a model is, what it was trained on, how well it did and whether it serves."""

    model_config = ConfigDict(extra="forbid")

    version: str
    created_at: UtcDatetime
    horizon_minutes: int
    features: list[str]
    params: dict[str, Any]
    metrics: dict[str, Any]
    threshold: float
    data_window: tuple[UtcDatetime, UtcDatetime]
    validation: dict[str, Any]
    status: Status = "registered"


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
        self, model: TrainedModel, *, data_window: tuple[datetime, datetime], validation: dict[str, Any]
    ) -> ModelCard:
        """Store ``model`` under its version with a card; a failed ``validation`` marks it rejected."""
        directory = self.versions / model.version
        if directory.exists():
            raise InputError(f"model version {model.version} is already registered", field="version")
        card = ModelCard(
            version=model.version,
            created_at=utcnow(),
            horizon_minutes=model.horizon_minutes,
            features=model.feature_names,
            params=model.params,
            metrics=model.metrics,
            threshold=model.threshold,
            data_window=data_window,
            validation=validation,
            status="rejected" if validation.get("success") is False else "registered",
        )
        model.save(directory)
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
        return TrainedModel.load(self.versions / version) if version else None

    def load(self, version: str) -> TrainedModel:
        """Any registered version, loaded."""
        self.card(version)
        return TrainedModel.load(self.versions / version)

    def promote_if_better(self, version: str, *, metric: str = "pr_auc", tolerance: float = 0.0) -> bool:
        """Make ``version`` current unless it is worse than the current model on ``metric``.

        The candidate wins when it is at least as good as the current model less ``tolerance`` (higher is
        better, except for the metrics in ``LOWER_IS_BETTER``). A rejected model, a model of another horizon
        or one without the metric is never promoted over a current one.

        Returns:
            True when ``version`` is current afterwards.
        """
        candidate = self.card(version)
        if candidate.status == "rejected":
            return False
        current_version = self.current_version()
        if current_version == version:
            return True
        if current_version is not None:
            current = self.card(current_version)
            if not self._better(candidate, current, metric, tolerance):
                return False
            current.status = "retired"
            self._save_card(current)
        candidate.status = "current"
        self._save_card(candidate)
        _write_atomic(self.root / "CURRENT", version)
        return True

    @staticmethod
    def _better(candidate: ModelCard, current: ModelCard, metric: str, tolerance: float) -> bool:
        if candidate.horizon_minutes != current.horizon_minutes:
            return False
        new, old = candidate.metrics.get(metric), current.metrics.get(metric)
        if new is None:
            return False
        if old is None:
            return True
        if metric in LOWER_IS_BETTER:
            return float(new) <= float(old) + tolerance
        return float(new) >= float(old) - tolerance

    def list(self) -> builtins.list[ModelCard]:
        """Every registered card, oldest first."""
        cards = [ModelCard.model_validate_json(p.read_text()) for p in self.versions.glob("*/card.json")]
        return sorted(cards, key=lambda c: (c.created_at, c.version))
