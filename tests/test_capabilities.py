"""Adapters declare what they can do and the planner asks first: an action a cloud cannot carry out is replaced
by the next best one the policy allows, or dropped with the reason in the plan, never sent to fail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from adapters.openstack import OpenStackAdapter
from adapters.simulated import SimulatedAdapter
from forewarn.allocation.capable import fit_decisions
from forewarn.cloud import EVERY_ACTION, capabilities
from forewarn.errors import AdapterError
from forewarn.pipeline import plan_cycle
from forewarn.policy import GuardrailState, PolicyEngine
from forewarn.policy.schema import Policy
from forewarn.schemas import ActionType, Band, Decision, Instance, PlanState, RiskScore, Task
from tests.execution_support import applier, journal

T0 = datetime(2024, 3, 1, tzinfo=UTC)
WIDE = {
    "max-fleet-percent-per-cycle": 100,
    "max-fleet-percent-per-window": {"percent": 100},
    "circuit-breaker": {"max-high-risk-jump-percent": 100, "max-high-risk-rise-percent": 100},
}
POLICY = Policy.model_validate(
    {
        "name": "move",
        "mode": "auto",
        "rules": [{"name": "evacuate", "match": {"band": "high"}, "action": {"type": "migrate"}}],
        "guardrails": WIDE,
    }
)


class NoGroups(SimulatedAdapter):
    """A simulated cloud that, like OpenStack without Heat or Senlin, cannot change a group's size."""

    name = "no-groups"
    capabilities = EVERY_ACTION - {ActionType.AUTOSCALE}

    def scale(
        self, instance_id_or_group: str, *, factor: float | None = None, delta: int | None = None, key: str
    ) -> float | None:
        if delta is not None:
            raise AdapterError("scale: growing a group needs an orchestrator (Heat, Senlin)")
        return super().scale(instance_id_or_group, factor=factor, key=key)


def _full_fleet() -> tuple[list[Instance], list[Task]]:
    """Three instances at 80%: no room anywhere for the work of i0 (two tasks) but for its small one."""
    instances = [Instance(instance_id=f"i{k}", group="g") for k in range(3)]
    tasks = [Task(task_id=f"t{k}", instance_id=f"i{k}", cpu=0.7, memory=0.7) for k in range(3)]
    tasks.append(Task(task_id="small", instance_id="i0", cpu=0.1, memory=0.1))
    return instances, tasks


def _scores(ids: Sequence[str]) -> list[RiskScore]:
    return [
        RiskScore(instance_id=i, timestamp=T0, probability=0.95 if i == "i0" else 0.01, horizon_minutes=60,
                  model_version="m")
        for i in ids
    ]  # fmt: skip


def _plan_and_run(tmp_path: Path, *, ask: bool) -> tuple[list[ActionType], PlanState, list[str]]:
    instances, tasks = _full_fleet()
    adapter = NoGroups(instances, tasks)
    can = capabilities(adapter) if ask else None
    cycle = plan_cycle(
        _scores([i.instance_id for i in instances]), instances, tasks, engine=PolicyEngine(POLICY), policy=POLICY,
        guard_state=GuardrailState(), now=T0,
        model_version="m", can=can, cloud=adapter.name,
    )  # fmt: skip
    kinds = [a.type for a in cycle.plan.actions]
    done = applier(adapter, journal(tmp_path)).run(cycle.plan)
    return kinds, done.state, cycle.plan.notes


def test_openstack_declares_it_cannot_change_a_group_size() -> None:
    assert ActionType.AUTOSCALE not in capabilities(OpenStackAdapter)
    assert {ActionType.MIGRATE, ActionType.CORDON, ActionType.SCALE_BACK} <= capabilities(OpenStackAdapter)
    assert capabilities(SimulatedAdapter([], [])) == EVERY_ACTION


def test_without_asking_the_scale_up_fails_and_the_migrations_roll_back(tmp_path: Path) -> None:
    kinds, state, _ = _plan_and_run(tmp_path, ask=False)
    assert ActionType.AUTOSCALE in kinds and ActionType.MIGRATE in kinds
    assert state is PlanState.ROLLED_BACK  # what the issue saw on OpenStack


def test_asking_first_drops_the_scale_up_with_its_reason_and_the_plan_runs(tmp_path: Path) -> None:
    kinds, state, notes = _plan_and_run(tmp_path, ask=True)
    assert ActionType.AUTOSCALE not in kinds and ActionType.MIGRATE in kinds
    assert state is PlanState.SUCCEEDED
    assert any(n.startswith("capability: no-groups cannot change a group's size; dropped autoscale") for n in notes)


def _decision(kind: ActionType) -> Decision:
    return Decision(instance_id="i0", band=Band.HIGH, action=kind, rule="r", probability=0.9)


def test_a_decision_the_cloud_cannot_do_gets_the_next_best_the_policy_allows() -> None:
    can = EVERY_ACTION - {ActionType.MIGRATE}
    allowed = {ActionType.MIGRATE, ActionType.CORDON}
    kept, notes = fit_decisions([_decision(ActionType.MIGRATE)], can, allowed, "c")
    assert [d.action for d in kept] == [ActionType.CORDON] and kept[0].params == {"drain": False}
    assert notes == ["capability: c cannot migrate; cordon on i0 instead (rule r)"]


def test_a_decision_with_no_allowed_stand_in_is_dropped_with_the_reason() -> None:
    kept, notes = fit_decisions([_decision(ActionType.AUTOSCALE)], EVERY_ACTION - {ActionType.AUTOSCALE}, set(), "c")
    assert kept == [] and "c cannot autoscale; dropped autoscale on i0" in notes[0]
