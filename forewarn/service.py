"""What every flow works with, built once per run from settings: the store, journal, registry, feature store,
policy and the cycle state they share. The cloud is picked by :mod:`forewarn.compose`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from forewarn.cloud import CloudAdapter
from forewarn.dataset import Dataset, read_dataset
from forewarn.execution.applier import Applier
from forewarn.execution.journal import Journal
from forewarn.execution.runner import ActionRunner
from forewarn.features.store import FeatureStoreGlue
from forewarn.model.registry import ModelRegistry
from forewarn.model.train import TrainedModel
from forewarn.pipeline import CyclePlan, TrainOutcome
from forewarn.pipeline import apply_plan as pipeline_apply
from forewarn.policy.engine import BandTracker, PolicyEngine
from forewarn.policy.guardrails import GuardrailState
from forewarn.policy.loader import load_policy
from forewarn.policy.schema import Policy
from forewarn.schemas import Instance, Plan, RiskScore, Task
from forewarn.settings import Settings, get_settings
from forewarn.store import Repository
from forewarn.store.state import MERGES, StateStore, Versioned


def load_dataset(path: str | Path) -> Dataset:
    return read_dataset(path)


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


def instances_from(dataset: Dataset) -> list[Instance]:
    """The fleet's instances: from instances.csv where present, else every instance in the telemetry."""
    if dataset.instances is None:
        return [Instance(instance_id=i) for i in dataset.instance_ids]
    allowed = set(Instance.model_fields) - {"tags", "state"}
    rows = dataset.instances.to_dict("records")
    return [Instance(**{k: v for k, v in row.items() if k in allowed and not pd.isna(v)}) for row in rows]


def workload_tasks(rows: pd.DataFrame) -> list[Task]:
    """Tasks from rows of workloads.csv (batch and ETL work can be split; services cannot)."""
    return [
        Task(
            task_id=str(r.task_id),
            instance_id=str(r.instance_id),
            kind=str(r.kind),
            cpu=float(r.cpu),
            memory=float(r.memory),
            data_size=0.0 if pd.isna(r.data_size) else float(r.data_size),
            expected_duration_minutes=60.0 if pd.isna(r.expected_duration) else float(r.expected_duration),
            splittable=str(r.kind) in {"batch", "etl"},
            start=r.start.to_pydatetime(),
            end=None if pd.isna(r.end) else r.end.to_pydatetime(),
        )
        for r in rows.itertuples(index=False)
    ]


def tasks_at(dataset: Dataset, at: pd.Timestamp) -> list[Task]:
    """Tasks running at ``at`` per workloads.csv; without one, a unit task per instance."""
    if dataset.workloads is None:
        return [Task(task_id=f"task-{i}", instance_id=i) for i in dataset.instance_ids]
    w = dataset.workloads
    return workload_tasks(w[(w["start"] <= at) & (w["end"].isna() | (w["end"] > at))])


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


def describe_training(outcome: TrainOutcome) -> str:
    lines = [f"# Training: {outcome.rows:,} rows", ""]
    if outcome.card is None:
        lines.append("The training frame failed validation; the current model stays.")
        lines += [f"- {failure}" for failure in outcome.validation.failures]
        return "\n".join(lines)
    card = outcome.card
    lines.append(
        f"Model **{card.version}** ({card.kind}) {'promoted to current' if outcome.promoted else 'kept as candidate'}."
    )
    lines += race_lines(card.challenge)
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in card.metrics.items()]
    return "\n".join(lines)


def race_lines(race: dict[str, Any] | None) -> list[str]:
    """The champion race in words and as a table: each candidate's PR-AUC with its 90% interval."""
    if not race:
        return []
    lines = [
        "",
        f"Champion race on the newest {race['rows']:,} rows ({race['positives']} positive, "
        f"{race['instances']} instances; 90% intervals from {race['resamples']} resamples of whole instances):",
        "",
        "| scorer | PR-AUC | 90% interval |",
        "|---|---|---|",
    ]
    for standing in race["standings"]:
        value, ci = standing["pr_auc"], standing["ci"]
        shown = "n/a" if value is None else f"{value:.3f}"
        lines.append(f"| {standing['name']} | {shown} | {'-' if ci is None else f'{ci[0]:.3f}-{ci[1]:.3f}'} |")
    return [*lines, "", str(race["reason"]) + "."]


def risk_rows(scores: Sequence[RiskScore], plan: Plan, top: int = 20) -> list[dict[str, Any]]:
    """The risk table: the riskiest instances with score, action planned and top features."""
    planned = {a.instance_id: a.type.value for a in plan.actions}
    ranked = sorted(scores, key=lambda s: s.probability, reverse=True)[:top]
    return [
        {
            "instance": s.instance_id,
            "probability": round(s.probability, 4),
            "action": planned.get(s.instance_id, "-"),
            "top features": ", ".join(f"{f.feature} ({f.contribution:+.2f})" for f in s.top_features),
        }
        for s in ranked
    ]


def plan_markdown(plan: Plan) -> str:
    lines = [f"# Plan {plan.plan_id}: {plan.state}", "", f"Policy `{plan.policy}`, mode `{plan.mode}`.", ""]
    if plan.actions:
        lines += ["| action | instance | target | tasks | rule | probability |", "|---|---|---|---|---|---|"]
        for a in plan.actions:
            p = "" if a.reason.probability is None else f"{a.reason.probability:.3f}"
            lines.append(
                f"| {a.type} | {a.instance_id} | {a.target_instance_id or ''} | {len(a.task_ids)} | "
                f"{a.reason.rule} | {p} |"
            )
    lines += ["", *[f"- {n}" for n in plan.notes]]
    return "\n".join(lines)
