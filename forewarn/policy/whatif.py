"""What a policy change would have done on recorded history: ``forewarn policy diff OLD NEW --replay DATASET``.

The dataset is replayed (:class:`forewarn.replay.Replay`) three times on the same fleet, failures and
model: reactively (no prediction, the baseline), under the old policy and under the new one. For each
policy run the journal it wrote is read back to count the actions planned and carried out by type.

Terms:
    interruptions avoided: tasks the reactive run lost to failures minus the tasks this run lost.
    dropped by guardrails: actions a rule wanted that a guardrail removed from the plan.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from forewarn.policy.actions import PolicyModel
from forewarn.policy.schema import Policy
from forewarn.schemas import ActionState, ActionType

Progress = Callable[[str, int, int], None]


class PolicyRun(PolicyModel):
    """What one run of the replay did."""

    name: str
    policy: str | None = None
    plans: int = 0
    shadow_plans: int = 0
    actions_planned: dict[str, int] = Field(default_factory=dict, description="action type -> count")
    actions_run: dict[str, int] = Field(default_factory=dict, description="action type -> succeeded")
    dropped_by_guardrails: int = 0
    circuit_breaker_trips: int = 0
    migrations: int = 0
    unneeded_migrations: int = 0
    failures: int = 0
    failures_predicted_in_time: int = 0
    tasks_interrupted: int = 0
    interrupted_task_hours: float = 0.0
    interruptions_avoided: int = 0
    task_hours_saved: float = 0.0


class ReplayComparison(PolicyModel):
    """The reactive baseline and both policies over the same replayed window."""

    start: str
    end: str
    model_version: str
    runs: list[PolicyRun]

    def rows(self) -> list[tuple[str, list[str]]]:
        """(label, one value per run) for every line of the side-by-side table."""
        kinds = sorted({k for run in self.runs for k in (*run.actions_planned, *run.actions_run)})
        lines: list[tuple[str, list[str]]] = [("policy", [run.policy or "-" for run in self.runs])]
        lines += [("plans (shadow)", [f"{run.plans} ({run.shadow_plans})" for run in self.runs])]
        for kind in kinds:
            lines.append(
                (
                    f"{kind}: planned / run",
                    [f"{r.actions_planned.get(kind, 0)} / {r.actions_run.get(kind, 0)}" for r in self.runs],
                )
            )
        fields = [
            ("dropped by guardrails", "dropped_by_guardrails"),
            ("circuit-breaker trips", "circuit_breaker_trips"),
            ("migrations", "migrations"),
            ("unneeded migrations", "unneeded_migrations"),
            ("failures", "failures"),
            ("predicted in time", "failures_predicted_in_time"),
            ("tasks interrupted", "tasks_interrupted"),
            ("interrupted task-hours", "interrupted_task_hours"),
            ("interruptions avoided", "interruptions_avoided"),
            ("task-hours saved", "task_hours_saved"),
        ]
        for label, name in fields:
            values = [getattr(run, name) for run in self.runs]
            lines.append((label, [f"{v:.2f}" if isinstance(v, float) else str(v) for v in values]))
        return lines

    def render(self) -> str:
        """A plain-text table for a terminal or a pull-request comment."""
        header = ("", [run.name for run in self.runs])
        table = [header, *self.rows()]
        width = max(len(label) for label, _ in table)
        cols = [max(len(row[1][i]) for row in table) for i in range(len(self.runs))]
        out = [f"replay {self.start} to {self.end}, model {self.model_version}"]
        for label, values in table:
            out.append(f"{label:<{width}}  " + "  ".join(f"{v:>{cols[i]}}" for i, v in enumerate(values)))
        return "\n".join(out)


def _journal_counts(db: Path, run: PolicyRun) -> None:
    from forewarn.execution.journal import Journal
    from forewarn.store import Repository

    planned: Counter[str] = Counter()
    done: Counter[str] = Counter()
    for plan in Journal(Repository(f"sqlite:///{db.resolve()}")).list():
        if plan.policy != run.policy:
            continue  # the replay's own recovery after a failure, not the policy's doing
        run.plans += 1
        run.shadow_plans += plan.state == "SHADOW"
        run.dropped_by_guardrails += sum(note.startswith("guardrail ") for note in plan.notes)
        run.circuit_breaker_trips += any(note.startswith("circuit-breaker") for note in plan.notes)
        for action in plan.actions:
            planned[ActionType(action.type).value] += 1
            done[ActionType(action.type).value] += action.state == ActionState.SUCCEEDED
    run.actions_planned = dict(planned)
    run.actions_run = {kind: count for kind, count in done.items() if count}


def _policy_run(name: str, policy: Policy | None, result: Any) -> PolicyRun:
    run = PolicyRun(
        name=name,
        policy=policy.name if policy else None,
        migrations=result.migrations,
        unneeded_migrations=result.unneeded_migrations,
        failures=result.failures,
        failures_predicted_in_time=result.predicted_in_time,
        tasks_interrupted=result.tasks_interrupted,
        interrupted_task_hours=round(result.interrupted_task_hours, 3),
    )
    if policy is not None:
        _journal_counts(Path(result.home) / "forewarn.db", run)  # each replay run journals in its own home
    return run


def compare_on_replay(
    old: Policy,
    new: Policy,
    dataset: Any,
    features: pd.DataFrame,
    model: Any,
    *,
    start: pd.Timestamp,
    workdir: Path,
    progress: Progress | None = None,
) -> ReplayComparison:
    """Replay ``dataset`` from ``start`` reactively, under ``old`` and under ``new``, and compare.

    Args:
        old: the policy in force; ``new``: the proposed one.
        dataset: a :class:`forewarn.dataset.Dataset`; ``features``: its window features.
        model: the :class:`forewarn.model.scoring.TrainedModel` that scores both policy runs.
        start: first replayed instant (time-zone aware); the replay runs to the dataset's end.
        workdir: each run's FOREWARN_HOME is ``workdir/<run>`` (its journal in ``forewarn.db`` there).
    """
    from forewarn.replay import Replay

    replay = Replay(dataset, features, start=start, workdir=workdir, progress=progress)
    baseline = _policy_run("reactive", None, replay.run("reactive"))
    runs = [baseline]
    for name, policy in (("old", old), ("new", new)):
        run = _policy_run(name, policy, replay.run(name, model=model, policy=policy))
        run.interruptions_avoided = baseline.tasks_interrupted - run.tasks_interrupted
        run.task_hours_saved = round(baseline.interrupted_task_hours - run.interrupted_task_hours, 3)
        runs.append(run)
    return ReplayComparison(
        start=start.isoformat(), end=pd.Timestamp(replay.end).isoformat(), model_version=str(model.version), runs=runs
    )


def replay_policy_change(
    old: Policy,
    new: Policy,
    dataset_dir: Path,
    *,
    model_dir: Path,
    start: str | None = None,
    workdir: Path,
    progress: Progress | None = None,
) -> ReplayComparison:
    """:func:`compare_on_replay` on a dataset directory with the current model of the registry at ``model_dir``.

    ``start`` (RFC 3339) defaults to one day before the dataset's end.

    Raises:
        DatasetError: the dataset is unreadable. ModelUnavailable: the registry has no current model.
        ConfigError: ``start`` is not a time, or not inside the dataset.
    """
    from forewarn.dataset import read_dataset
    from forewarn.errors import ConfigError, ModelUnavailable
    from forewarn.model.registry import ModelRegistry
    from forewarn.pipeline import build_features

    model = ModelRegistry(model_dir).current()
    if model is None:
        raise ModelUnavailable(f"no current model in {model_dir}: run `forewarn run train` or pass --model DIR")
    data = read_dataset(dataset_dir)
    try:
        begin = pd.Timestamp(start) if start else data.end - pd.Timedelta(days=1)
    except ValueError:
        raise ConfigError(
            f"not a time: {start!r}; use RFC 3339 such as 2024-03-03T00:00:00Z", field="--start"
        ) from None
    begin = begin.tz_localize("UTC") if begin.tzinfo is None else begin.tz_convert("UTC")
    if not data.start <= begin < data.end:
        raise ConfigError(f"start {begin} is outside the dataset ({data.start} to {data.end})", field="--start")
    features = build_features(data)
    return compare_on_replay(old, new, data, features, model, start=begin, workdir=workdir, progress=progress)
