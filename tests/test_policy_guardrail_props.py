"""End to end, for any fleet, any risk input and any valid guardrails, over several cycles: no guardrail is
ever exceeded by what comes out of PolicyEngine.decide -> allocation.plan_actions -> guardrails.enforce
(``forewarn.pipeline.plan_cycle``, the path the score-and-allocate flow and the replay take)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from forewarn.pipeline import finish_cycle, plan_cycle
from forewarn.policy import GuardrailState, PolicyEngine
from forewarn.policy.guardrails import PASSIVE, SEVERITY, ActionRecord
from forewarn.policy.schema import Policy
from forewarn.schemas import Action, ActionType, Instance, Plan, PlanState, RiskScore, Task

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
OPT_OUT = "forewarn/opt-out"
WIDE = {"max-fleet-percent-per-cycle": 100, "max-fleet-percent-per-window": {"percent": 100}}
RULES: list[dict[str, Any]] = [
    {"name": "db-by-hand", "match": {"band": "high", "workload-kinds": ["database"]}, "action": {"type": "notify"}},
    {"name": "evacuate", "match": {"band": "high"}, "action": {"type": "migrate", "split": {"enabled": True}}},
    {"name": "fence", "match": {"band": "high"}, "action": {"type": "cordon", "drain": True}},
    {"name": "restore", "match": {"band": "high", "groups": ["web"]}, "action": {"type": "restore-snapshot"}},
    {"name": "ease", "match": {"band": "moderate"}, "action": {"type": "scale-back", "factor": 0.6}},
    {"name": "buffer", "match": {"band": "moderate"}, "action": {"type": "reserve-buffer", "fraction": 0.2}},
    {"name": "grow", "match": {"band": "low", "groups": ["batch"]}, "action": {"type": "autoscale", "max": 4}},
    {"name": "quiet", "match": {"band": "low"}, "action": {"type": "none"}},
    {"name": "stale", "match": {"band": "high", "model-fresh": False}, "action": {"type": "cordon"}},
]


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    cycle = draw(st.integers(0, 15))
    concurrent = draw(st.integers(0, 8))
    share = draw(st.one_of(st.sampled_from([5.0, 20.0, 50.0, 100.0]), st.floats(0, 100)))
    guardrails = {
        "max-actions-per-cycle": cycle,
        "max-concurrent-migrations": concurrent,
        "max-migrations-per-target": draw(st.integers(0, concurrent)),
        "max-actions-per-type": {
            kind: draw(st.integers(0, cycle)) for kind in draw(st.sets(st.sampled_from(["migrate", "cordon"])))
        },
        "max-fleet-percent-per-cycle": share,
        "max-fleet-percent-per-window": {
            "percent": draw(st.floats(share, 100, allow_nan=False)),
            "window-minutes": draw(st.sampled_from([10, 30, 120])),
        },
        "cooldown-minutes": draw(st.sampled_from([0, 0, 15, 60])),
        "circuit-breaker": {
            "max-high-risk-jump-percent": draw(st.one_of(st.sampled_from([50, 100]), st.floats(0, 100)))
        },
    }
    rules = draw(st.lists(st.sampled_from(RULES), unique_by=lambda r: r["name"], max_size=6))
    if draw(st.booleans()):
        rules = [RULES[1], *[r for r in rules if r is not RULES[1]]]  # often: evacuate first
    return Policy.model_validate(
        {
            "name": "prop",
            "mode": draw(st.sampled_from(["auto", "recommend"])),
            "bands": {"min-dwell-minutes": draw(st.sampled_from([0, 20]))},
            "rules": rules,
            "guardrails": guardrails,
            "fallback": {"static-thresholds": {"cpu": 0.9}, "action": draw(st.sampled_from(["cordon", "migrate"]))},
        }
    )


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Instance], list[Task]]:
    n = draw(st.integers(2, 30))
    instances = [
        Instance(
            instance_id=f"i{k}",
            cpu_capacity=draw(st.sampled_from([1.0, 2.0, 4.0])),
            memory_capacity=4.0,
            group=draw(st.sampled_from(["web", "batch"])),
            tags={OPT_OUT: "yes"} if draw(st.integers(0, 9)) == 0 else {},
        )
        for k in range(n)
    ]
    tasks = [
        Task(
            task_id=f"t{k}-{j}",
            instance_id=f"i{k}",
            kind=draw(st.sampled_from(["batch", "web", "database"])),
            cpu=draw(st.sampled_from([0.1, 0.5, 1.0])),
            memory=0.5,
            splittable=draw(st.booleans()),
            tags={OPT_OUT: "yes"} if draw(st.integers(0, 9)) == 0 else {},
        )
        for k in range(n)
        for j in range(draw(st.integers(0, 2)))
    ]
    return instances, tasks


risk = st.one_of(st.sampled_from([0.7, 0.95, 1.0, 0.0, 0.45]), st.floats(0, 1), st.none())


def _check_plan(
    plan: Plan, policy: Policy, fleet: int, before: GuardrailState, log: list[Action], now: datetime
) -> None:
    g = policy.guardrails
    kept = plan.actions
    assert len(kept) <= g.max_actions_per_cycle
    for kind, cap in g.max_actions_per_type.items():
        assert sum(a.type is kind for a in kept) <= cap
    migrations = [a for a in kept if a.type is ActionType.MIGRATE]
    if migrations:
        assert len(before.in_flight_migrations) + len(migrations) <= g.max_concurrent_migrations
    flying = {r.action_id: r for r in before.history if r.action_id in before.in_flight_migrations}
    for target in {a.target_instance_id for a in migrations if a.target_instance_id}:
        earlier = sum(r.target_instance_id == target for r in flying.values())
        assert earlier + sum(a.target_instance_id == target for a in migrations) <= g.max_migrations_per_target
    changed = {a.instance_id for a in kept if a.type not in PASSIVE}
    assert len(changed) <= math.floor(fleet * g.max_fleet_percent_per_cycle / 100 + 1e-9)
    window = g.max_fleet_percent_per_window
    recent = {a.instance_id for a in log if a.params["_at"] > now - timedelta(minutes=window.window_minutes)}
    if changed:
        assert len(recent | changed) <= math.floor(fleet * window.percent / 100 + 1e-9)
    for action in kept:
        if action.type in PASSIVE:
            continue
        cooling = [
            SEVERITY[a.type]
            for a in log
            if a.instance_id == action.instance_id and a.params["_at"] > now - timedelta(minutes=g.cooldown_minutes)
        ]
        assert not cooling or SEVERITY[action.type] > max(cooling), f"cooldown broken on {action.instance_id}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(policy=policies(), fleet=fleets(), data=st.data())
def test_no_guardrail_is_ever_exceeded_end_to_end(
    policy: Policy, fleet: tuple[list[Instance], list[Task]], data: st.DataObject
) -> None:
    instances, tasks = fleet
    engine, state = PolicyEngine(policy), GuardrailState()
    log: list[Action] = []
    previous_high: int | None = None
    for cycle in range(data.draw(st.integers(1, 5), label="cycles")):
        now = T0 + timedelta(minutes=10 * cycle)
        fresh = data.draw(st.booleans(), label="model fresh") or cycle == 0
        probabilities = [data.draw(risk, label=f"risk {i.instance_id}") for i in instances]
        scores = [
            RiskScore(instance_id=i.instance_id, timestamp=now, probability=p, horizon_minutes=60, model_version="m")
            for i, p in zip(instances, probabilities, strict=True)
            if p is not None and fresh
        ]
        features = {
            i.instance_id: {"cpu": p if p is not None else 0.0} for i, p in zip(instances, probabilities, strict=True)
        }
        result = plan_cycle(
            scores,
            instances,
            tasks,
            engine=engine,
            policy=policy,
            guard_state=state,
            now=now,
            model_version="m" if fresh else None,
            model_fresh=fresh,
            features=features,
        )
        plan = result.plan
        event("plan kept actions" if plan.actions else "plan kept none")
        event("guardrail dropped some" if any(n.startswith("guardrail ") for n in plan.notes) else "none dropped")
        _check_plan(plan, policy, len(instances), state, log, now)
        jump = policy.guardrails.circuit_breaker.max_high_risk_jump_percent
        if previous_high is not None and 100 * (result.high_risk - previous_high) / len(instances) > jump:
            assert plan.state is PlanState.SHADOW and any("circuit-breaker" in n for n in plan.notes)
        if plan.state is not PlanState.SHADOW:
            log += [a.model_copy(update={"params": {"_at": now}}) for a in plan.actions if a.type not in PASSIVE]
        else:
            assert not {a.action_id for a in plan.actions} & {r.action_id for r in result.guard_state.history}
        previous_high = result.high_risk
        state = result.guard_state
        if plan.state is not PlanState.SHADOW:  # every kept action succeeded: the journal charges it
            state.history += [
                ActionRecord(action_id=a.action_id, instance_id=a.instance_id, type=a.type, at=now,
                             target_instance_id=a.target_instance_id)
                for a in plan.actions
            ]  # fmt: skip
            state.in_flight_migrations += [a.action_id for a in plan.actions if a.type is ActionType.MIGRATE]
        assert len(state.in_flight_migrations) <= policy.guardrails.max_concurrent_migrations
        done = data.draw(st.lists(st.sampled_from(state.in_flight_migrations or ["none"]), max_size=3), label="done")
        state.mark_finished(done)
        state = finish_cycle(plan, state)


def _one_cycle(rule: dict[str, object], instances: list[Instance], tasks: list[Task], risky: str) -> Plan:
    """One auto cycle under ``rule`` with wide guardrails, ``risky`` at 0.9 and every other instance at 0."""
    policy = Policy.model_validate({"name": "pin", "mode": "auto", "rules": [rule], "guardrails": WIDE})
    scores = [
        RiskScore(
            instance_id=i.instance_id,
            timestamp=T0,
            probability=0.9 if i.instance_id == risky else 0.0,
            horizon_minutes=60,
            model_version="m",
        )
        for i in instances
    ]
    return plan_cycle(
        scores,
        instances,
        tasks,
        engine=PolicyEngine(policy),
        policy=policy,
        guard_state=GuardrailState(),
        now=T0,
        model_version="m",
    ).plan


def test_a_task_that_opted_out_is_never_migrated() -> None:
    instances = [Instance(instance_id=f"i{k}", memory_capacity=4.0) for k in range(4)]
    tasks = [Task(task_id="pinned", instance_id="i0", tags={OPT_OUT: "yes"}), Task(task_id="free", instance_id="i0")]
    plan = _one_cycle(RULES[1], instances, tasks, "i0")
    moved = {t for a in plan.actions if a.type is ActionType.MIGRATE for t in a.task_ids}
    assert "free" in moved
    assert "pinned" not in moved


def test_no_work_is_moved_off_an_instance_that_opted_out() -> None:
    opted = {OPT_OUT: "yes"}
    instances = [Instance(instance_id="risky", memory_capacity=4.0)]
    instances += [Instance(instance_id=f"calm{k}", memory_capacity=4.0, tags=opted) for k in range(2)]
    tasks = [Task(task_id="big", instance_id="risky", cpu=1.0)]
    tasks += [Task(task_id=f"small{k}", instance_id=f"calm{k}", cpu=0.1) for k in range(2)]
    plan = _one_cycle(RULES[2], instances, tasks, "risky")
    migrations = [a for a in plan.actions if a.type is ActionType.MIGRATE]
    assert all(a.instance_id == "risky" for a in migrations)  # nothing made room by moving opted-out work
    assert not any(a.target_instance_id in {"calm0", "calm1"} for a in migrations)  # nor put work on it
    assert any(a.type is ActionType.AUTOSCALE for a in plan.actions)  # so the task waits for new room
