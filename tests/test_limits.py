"""One limit engine: what the allocator plans, the guardrails let through (nothing is planned to be dropped);
"touched" means the same to both; dependent actions are kept or dropped together by guardrails and claims."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forewarn.allocation import plan_actions
from forewarn.policy.guardrails import GuardrailState, budget, enforce
from forewarn.policy.limits import ActionRecord, touched, units
from forewarn.policy.schema import Policy
from forewarn.schemas import Action, ActionType, Band, Decision, Instance, Plan, PolicyMode, Task

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
KINDS = [
    ActionType.MIGRATE,
    ActionType.CORDON,
    ActionType.SCALE_BACK,
    ActionType.RESERVE_BUFFER,
    ActionType.AUTOSCALE,
    ActionType.NOTIFY,
    ActionType.RELEASE,
    ActionType.RESTORE_SNAPSHOT,
]


def _policy(guardrails: dict[str, Any]) -> Policy:
    return Policy.model_validate({"name": "limits", "mode": "auto", "guardrails": guardrails})


def _plan(actions: list[Action]) -> Plan:
    return Plan(policy="limits", mode=PolicyMode.AUTO, actions=actions)


Cycle = tuple[list[Instance], list[Task], dict[str, float], list[Decision], Policy, GuardrailState]


@st.composite
def cycles(draw: st.DrawFn) -> Cycle:
    """A fleet, its decisions, random guardrails and a journal's worth of charges and migrations in flight."""
    n = draw(st.integers(2, 12))
    ids = [f"i{k}" for k in range(n)]
    instances = [Instance(instance_id=i, cpu_capacity=2.0, memory_capacity=2.0) for i in ids]
    risk = {i: draw(st.floats(0.0, 1.0)) for i in ids}
    tasks = [
        Task(
            task_id=f"t{j}",
            instance_id=ids[draw(st.integers(0, n - 1))],
            cpu=0.25,
            memory=0.25,
            splittable=draw(st.booleans()),
            min_chunk=0.5,
        )
        for j in range(draw(st.integers(0, 3 * n)))
    ]
    decisions = []
    for i in draw(st.lists(st.sampled_from(ids), unique=True, max_size=n)):
        kind = draw(st.sampled_from(KINDS))
        params: dict[str, Any] = {"drain": draw(st.booleans())} if kind is ActionType.CORDON else {}
        if kind is ActionType.AUTOSCALE:
            params = {"min": 1, "max": 20, "low_utilisation": 0.9, "high_utilisation": 0.95}
        band = Band.LOW if kind is ActionType.AUTOSCALE else Band.HIGH
        decisions.append(Decision(instance_id=i, band=band, action=kind, rule="r", params=params))
    cap = draw(st.integers(0, 12))
    per_type = {k.value: draw(st.integers(0, 4)) for k in draw(st.lists(st.sampled_from(KINDS), max_size=3))}
    window = draw(st.floats(0, 100))
    guardrails = {
        "max-actions-per-cycle": cap,
        "max-actions-per-type": {k: min(v, cap) for k, v in per_type.items()},
        "max-concurrent-migrations": draw(st.integers(0, 6)),
        "max-migrations-per-target": draw(st.integers(0, 2)),
        "max-fleet-percent-per-cycle": draw(st.floats(0, window)),
        "max-fleet-percent-per-window": {"percent": window, "window-minutes": 60},
        "cooldown-minutes": draw(st.sampled_from([0, 30])),
    }
    guardrails["max-concurrent-migrations"] = max(guardrails["max-concurrent-migrations"], 2)
    history = [
        ActionRecord(
            action_id=f"old-{k}",
            instance_id=draw(st.sampled_from(ids)),
            type=draw(st.sampled_from(KINDS)),
            at=T0 - timedelta(minutes=draw(st.integers(1, 90))),
            target_instance_id=draw(st.sampled_from([None, *ids])),
        )
        for k in range(draw(st.integers(0, 6)))
    ]
    flying = [r.action_id for r in history if r.type is ActionType.MIGRATE and draw(st.booleans())]
    state = GuardrailState(history=history, in_flight_migrations=flying)
    return instances, tasks, risk, decisions, _policy(guardrails), state


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cycle=cycles())
def test_the_guardrails_drop_nothing_the_allocator_planned(cycle: Cycle) -> None:
    instances, tasks, risk, decisions, policy, state = cycle
    engine = budget(policy, len(instances), state, T0)
    result = plan_actions(decisions, instances, tasks, risk, policy.velocity_limits(), engine=engine)
    size = len(instances)
    limited, _ = enforce(_plan(result.actions), policy, fleet_size=size, high_risk_count=0, state=state, now=T0)
    assert [a.action_id for a in limited.actions] == [a.action_id for a in result.actions], limited.notes
    assert limited.notes == []


def _migrations(n: int, cpu: float = 0.5) -> tuple[list[Instance], list[Task], dict[str, float], list[Decision]]:
    """i0 (risky, capacity 4) carries ``n`` tasks of ``cpu`` each; i1..i4 are healthy and empty (capacity 2)."""
    size = {"i0": 4.0, "i1": 2.0, "i2": 2.0, "i3": 2.0, "i4": 2.0}
    instances = [Instance(instance_id=i, cpu_capacity=cpu, memory_capacity=4.0) for i, cpu in size.items()]
    tasks = [Task(task_id=f"t{j}", instance_id="i0", cpu=cpu, memory=cpu) for j in range(n)]
    risk = {"i0": 0.9, "i1": 0.1, "i2": 0.2, "i3": 0.3, "i4": 0.4}
    return instances, tasks, risk, [Decision(instance_id="i0", band=Band.HIGH, action=ActionType.MIGRATE, rule="r")]


def test_velocity_limits_alone_plan_what_the_guardrails_then_drop_the_engine_does_not() -> None:
    """The allocator given only the velocity limits plans migrations a cap per type drops (the old split);
    given the guardrails' engine it plans within the cap and says which task stays."""
    instances, tasks, risk, decisions = _migrations(3)
    policy = _policy({"max-actions-per-type": {"migrate": 1}, "max-fleet-percent-per-cycle": 100,
                      "max-fleet-percent-per-window": {"percent": 100}})  # fmt: skip
    state = GuardrailState()
    alone = plan_actions(decisions, instances, tasks, risk, policy.velocity_limits())
    limited, _ = enforce(_plan(alone.actions), policy, fleet_size=5, high_risk_count=0, state=state, now=T0)
    assert len(limited.actions) < len(alone.actions)  # planned to be dropped
    engine = budget(policy, 5, state, T0)
    shared = plan_actions(decisions, instances, tasks, risk, policy.velocity_limits(), engine=engine)
    assert [a.type for a in shared.actions] == [ActionType.CORDON, ActionType.MIGRATE]
    assert shared.unplaced == ["t1", "t2"] or sorted(shared.unplaced) == ["t1", "t2"]
    limited, _ = enforce(_plan(shared.actions), policy, fleet_size=5, high_risk_count=0, state=state, now=T0)
    assert len(limited.actions) == 2 and limited.notes == []


def test_the_allocator_spends_only_the_window_share_earlier_cycles_left() -> None:
    """Instances touched by what succeeded within the window count for the allocator, as for the guardrails."""
    instances, tasks, risk, decisions = _migrations(2, cpu=1.5)  # each fits i0 (4 cpu) but not two on one target
    policy = _policy({"max-fleet-percent-per-cycle": 60, "max-fleet-percent-per-window": {"percent": 60},
                      "cooldown-minutes": 0})  # fmt: skip  # 3 of 5 instances per window
    earlier = ActionRecord(action_id="old", instance_id="i3", type=ActionType.CORDON, at=T0 - timedelta(minutes=10))
    state = GuardrailState(history=[earlier])
    result = plan_actions(
        decisions, instances, tasks, risk, policy.velocity_limits(), engine=budget(policy, 5, state, T0)
    )
    touched_now = set().union(*(touched(a) for a in result.actions))
    assert touched_now == {"i0", "i1"}, result.explanations  # i3 + i0 + one target = the 3 the window allows
    assert result.unplaced == ["t1"]


def test_touched_is_the_subject_the_target_and_the_instances_a_scale_down_removes() -> None:
    assert touched(Action(type=ActionType.MIGRATE, instance_id="a", target_instance_id="b")) == {"a", "b"}
    down = Action(type=ActionType.AUTOSCALE, instance_id="a", params={"delta": -2, "instances": ["a", "c"]})
    assert touched(down) == {"a", "c"}
    assert touched(Action(type=ActionType.NOTIFY, instance_id="a")) == frozenset()
    assert touched(Action(type=ActionType.RELEASE, instance_id="a")) == {"a"}


def test_units_pair_a_hold_with_the_migrations_off_its_instance() -> None:
    actions = [
        Action(type=ActionType.CORDON, instance_id="a"),
        Action(type=ActionType.MIGRATE, instance_id="h", target_instance_id="x"),  # makes room: on its own
        Action(type=ActionType.MIGRATE, instance_id="a", target_instance_id="h"),
        Action(type=ActionType.CORDON, instance_id="c"),  # nothing moves off c: on its own
        Action(type=ActionType.SCALE_BACK, instance_id="d"),
        Action(type=ActionType.MIGRATE, instance_id="d", target_instance_id="x"),
    ]
    assert units(actions) == [[0, 2], [1], [3], [4, 5]]
