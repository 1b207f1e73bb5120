"""What every flow works with, built once per run from settings: the store, journal, registry, feature store,
policy and the cycle state they share. The cloud is picked by :mod:`forewarn.compose`; a dataset's fleet is
read by :mod:`forewarn.dataset_fleet`; the flows' Markdown is written by :mod:`forewarn.markdown`.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from forewarn.cloud import CloudAdapter
from forewarn.execution.applier import Applier
from forewarn.execution.journal import Journal
from forewarn.execution.runner import ActionRunner
from forewarn.features.store import FeatureStoreGlue
from forewarn.model.registry import ModelRegistry
from forewarn.model.scoring import TrainedModel
from forewarn.pipeline import CyclePlan
from forewarn.pipeline import apply_plan as pipeline_apply
from forewarn.policy.engine import BandTracker, PolicyEngine
from forewarn.policy.guardrails import GuardrailState
from forewarn.policy.loader import load_policy
from forewarn.policy.schema import Policy
from forewarn.schemas import Plan
from forewarn.settings import Settings, get_settings
from forewarn.store import Repository
from forewarn.store.state import MERGES, StateStore, Versioned


@dataclass
class Context:
    """Everything a flow needs, built once per run from settings."""

    settings: Settings
    dry_run: bool = True
    policy_path: Path | None = None
    given_policy: Policy | None = None
    """The policy itself, when the caller has it in hand (replay); else it is read from ``policy_path``."""
    ephemeral_state: bool = False
    """Keep the cycle state (bands, guardrail budgets) in this object only: a replay's runs, which must not
    share it with each other or with production."""
    _state: dict[str, Any] = field(default_factory=dict)
    _read: dict[str, Versioned] = field(default_factory=dict)

    @cached_property
    def repo(self) -> Repository:
        self.settings.home.mkdir(parents=True, exist_ok=True)
        repo = Repository(self.settings.resolved_database_url())
        repo.create_all()
        return repo

    @cached_property
    def journal(self) -> Journal:
        return Journal(self.repo)

    @cached_property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.settings.models_dir)

    @cached_property
    def glue(self) -> FeatureStoreGlue:
        return FeatureStoreGlue(self.settings.features_dir, settings=self.settings)

    @cached_property
    def policy(self) -> Policy:
        if self.given_policy is not None:
            return self.given_policy
        return load_policy(self.policy_path or self.settings.policy)

    @property
    def state_file(self) -> Path:
        """A local copy of the cycle state this context last read or saved (the repository holds the shared
        one); read once, on the first cycle after an upgrade, when the repository has none yet."""
        return self.settings.home / "state.json"

    def _states(self) -> StateStore:
        return StateStore(self.repo.engine)

    def _load_state(self) -> dict[str, Any]:
        """The cycle state (``bands``, ``guardrails``) from the repository, read once per context."""
        if self.ephemeral_state:
            return self._state
        if not self._read:
            stored = self._states().read(MERGES)
            self._read = {key: stored.get(key) or Versioned(key=key) for key in MERGES}
            self._state.update({key: row.value for key, row in stored.items()})
            if not stored and self.state_file.exists():  # state.json of an older version
                self._state.update(json.loads(self.state_file.read_text()))
        return self._state

    def engine(self) -> PolicyEngine:
        saved = self._load_state().get("bands")
        tracker = BandTracker.model_validate(saved) if saved else None
        return PolicyEngine(self.policy, tracker)

    def guard_state(self, now: datetime | None = None) -> GuardrailState:
        """The guardrails' state at ``now``: the breaker as saved, the charges (actions that succeeded within the
        longer of the cooldown and the window before ``now``) and the migrations still running, from the journal.
        Records of an older version's saved history are kept beside them."""
        saved = self._load_state().get("guardrails")
        state = GuardrailState.model_validate(saved) if saved else GuardrailState()
        since = None
        if now is not None:
            g = self.policy.guardrails
            since = now - timedelta(minutes=max(g.cooldown_minutes, g.max_fleet_percent_per_window.window_minutes))
        known = {r.action_id for r in state.history}
        state.history += [r for r in self.journal.charges(since) if r.action_id not in known]
        flying = [r for r in self.journal.in_flight_migrations() if r.action_id not in known]
        state.history += flying
        state.in_flight_migrations += [r.action_id for r in flying if r.action_id not in state.in_flight_migrations]
        return state

    def reset_breaker(self, note: str = "reset by an operator") -> GuardrailState:
        """Close the circuit breaker now (``forewarn policy reset-breaker``); returns the saved state."""
        state = self.guard_state()
        state.breaker.reset(note)
        self.save_state(engine=self.engine(), guard_state=state)
        return state

    def save_state(self, *, engine: PolicyEngine, guard_state: GuardrailState) -> None:
        """Write the cycle state to the repository; when another run wrote it since this context read it, the
        newest is re-read and this cycle's changes are merged into it (never overwritten)."""
        self._load_state()
        mine = {
            "bands": engine.tracker.model_dump(mode="json"),
            "guardrails": _without_journal(guard_state, self._state.get("guardrails")),
        }
        if self.ephemeral_state:
            self._state.update(mine)
            return
        store, owner = self._states(), f"{socket.gethostname()}:{os.getpid()}"
        for key, value in mine.items():
            saved = store.save(key, self._read[key], value, merge=MERGES[key], owner=owner)
            self._read[key] = saved
            self._state[key] = saved.value

    def cycle_state(self, key: str) -> Any:
        """One part of the saved cycle state (``bands`` or ``guardrails``) as JSON data, or None."""
        return self._load_state().get(key)


def _without_journal(state: GuardrailState, saved: Any) -> dict[str, Any]:
    """What of the guardrail state is saved: the breaker and counts, not what the journal holds (charges and
    running migrations are read from it each cycle); records saved by an older version stay until they age out."""
    out = state.model_dump(mode="json")
    legacy = {str(r["action_id"]) for r in (saved or {}).get("history", [])}
    out["history"] = [r for r in out["history"] if r["action_id"] in legacy]
    out["in_flight_migrations"] = [
        a for a in out["in_flight_migrations"] if a in set((saved or {}).get("in_flight_migrations", []))
    ]
    return out


def context(*, dry_run: bool | None = None, settings: Settings | None = None, policy: Path | None = None) -> Context:
    s = settings or get_settings()
    return Context(settings=s, dry_run=s.dry_run if dry_run is None else dry_run, policy_path=policy)


def usable_model(ctx: Context, now: datetime) -> tuple[TrainedModel | None, bool]:
    """The current model and whether the policy may use it at the cycle's time ``now``: trained, and its
    training data not older than ``fallback.max-model-age-hours`` (whenever it was built)."""
    model = ctx.registry.current()
    if model is None:
        return None, False
    version = ctx.registry.current_version()
    data_end = ctx.registry.card(version).data_window[1] if version else None
    return model, ctx.policy.model_is_fresh(data_end, now)


def apply_plan(ctx: Context, adapter: CloudAdapter, cycle: CyclePlan, *, runner: ActionRunner | None = None) -> Plan:
    """Journal the plan before anything runs; run it when the policy's mode approved it.

    ``runner`` carries out each change (flows pass one that makes each a Prefect task run with retries).
    """
    applier = Applier(adapter, ctx.journal, dry_run=ctx.dry_run, runner=runner)
    return pipeline_apply(ctx.journal, applier, cycle.plan)


def journal() -> Journal:
    return context().journal
