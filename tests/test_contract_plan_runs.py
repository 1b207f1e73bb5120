"""The allocator's plans are executable: every action it emits runs to SUCCEEDED through the applier on the
very fleet it was planned for (its params are the ones the execution layer accepts, its order is feasible)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.simulated import SimulatedAdapter
from forewarn.allocation.planner import plan_actions
from forewarn.schemas import ActionType, Band, Decision, Instance, Plan, PlanState, PolicyMode, Task, VelocityLimits
from tests.execution_support import applier, journal

LIMITS = VelocityLimits(
    max_actions_per_cycle=50, max_concurrent_migrations=20, max_migrations_per_target=4, max_fleet_fraction=1.0
)


def _run(instances: list[Instance], tasks: list[Task], decisions: list[Decision], risk: dict[str, float]) -> Plan:
    result = plan_actions(decisions, instances, tasks, risk, LIMITS)
    plan = Plan(policy="contract", mode=PolicyMode.AUTO, state=PlanState.APPROVED, actions=result.actions)
    adapter = SimulatedAdapter(instances, tasks)
    with tempfile.TemporaryDirectory() as tmp:
        return applier(adapter, journal(Path(tmp))).run(plan)


def _fleet(n: int, load: float) -> tuple[list[Instance], list[Task]]:
    instances = [Instance(instance_id=f"i{k}", group="g") for k in range(n)]
    tasks = [Task(task_id=f"t{k}", instance_id=f"i{k}", cpu=load, memory=load, splittable=k % 2 == 0) for k in range(n)]
    return instances, tasks


def test_capacity_shortage_asks_for_a_scale_up_the_applier_accepts() -> None:
    instances, tasks = _fleet(3, 0.8)  # no room anywhere for i0's task
    decisions = [Decision(instance_id="i0", band=Band.HIGH, action=ActionType.MIGRATE, rule="r", probability=0.9)]
    plan = _run(instances, tasks, decisions, {"i0": 0.9, "i1": 0.01, "i2": 0.02})
    assert ActionType.AUTOSCALE in {a.type for a in plan.actions}
    assert plan.state is PlanState.SUCCEEDED, plan.notes


def test_underused_group_scales_down_and_the_applier_accepts() -> None:
    instances = [Instance(instance_id=f"i{k}", group="g") for k in range(4)]
    tasks = [Task(task_id="t0", instance_id="i0", cpu=0.1, memory=0.1)]
    decisions = [
        Decision(
            instance_id=f"i{k}", band=Band.LOW, action=ActionType.AUTOSCALE, rule="r", params={"min": 1, "max": 10}
        )
        for k in range(4)
    ]
    plan = _run(instances, tasks, decisions, {f"i{k}": 0.01 for k in range(4)})
    scale = [a for a in plan.actions if a.type is ActionType.AUTOSCALE]
    assert scale and scale[0].params["delta"] < 0
    assert plan.state is PlanState.SUCCEEDED, plan.notes


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(3, 8),
    load=st.floats(0.05, 0.9),
    risks=st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8),
    kinds=st.lists(
        st.sampled_from(
            [ActionType.MIGRATE, ActionType.SCALE_BACK, ActionType.CORDON, ActionType.AUTOSCALE, ActionType.NONE]
        ),
        min_size=8,
        max_size=8,
    ),
)
def test_any_allocator_plan_runs_to_success(n: int, load: float, risks: list[float], kinds: list[ActionType]) -> None:
    instances, tasks = _fleet(n, load)
    risk = {f"i{k}": risks[k] for k in range(n)}
    params = {
        ActionType.SCALE_BACK: {"factor": 0.7, "reserve_buffer": 0.1},
        ActionType.AUTOSCALE: {"min": 1},
        ActionType.CORDON: {"drain": False},
    }
    decisions = [
        Decision(
            instance_id=f"i{k}",
            band=Band.HIGH if risks[k] > 0.5 else Band.LOW,
            action=kinds[k],
            rule="r",
            probability=risks[k],
            params=params.get(kinds[k], {}),
        )
        for k in range(n)
    ]
    plan = _run(instances, tasks, decisions, risk)
    assert plan.state in (PlanState.SUCCEEDED, PlanState.APPROVED), plan.notes  # APPROVED: nothing to do
