"""Guardrails: each limit drops what exceeds it and says so; the circuit breaker; caps hold for any plan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from forewarn.policy import GuardrailState, enforce
from forewarn.policy.guardrails import ActionRecord
from forewarn.policy.schema import Policy
from forewarn.schemas import Action, ActionType, Plan, PlanState, PolicyMode

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def _policy(**guardrails: object) -> Policy:
    base = {
        "max-actions-per-cycle": 100,
        "max-concurrent-migrations": 100,
        "max-migrations-per-target": 100,
        "max-fleet-percent-per-cycle": 100,
        "max-fleet-percent-per-window": {"percent": 100},
        "cooldown-minutes": 0,
    }
    base.update({k.replace("_", "-"): v for k, v in guardrails.items()})
    return Policy.model_validate({"name": "g", "mode": "auto", "guardrails": base})


def _plan(*actions: Action) -> Plan:
    return Plan(policy="g", mode=PolicyMode.AUTO, actions=list(actions))


def _act(instance: str, kind: ActionType = ActionType.CORDON, target: str | None = None) -> Action:
    return Action(type=kind, instance_id=instance, target_instance_id=target)


def _run(
    plan: Plan,
    policy: Policy,
    state: GuardrailState | None = None,
    *,
    fleet: int = 100,
    high: int = 0,
    now: datetime = T0,
) -> tuple[Plan, GuardrailState]:
    return enforce(plan, policy, fleet_size=fleet, high_risk_count=high, state=state or GuardrailState(), now=now)


def _succeeded(state: GuardrailState, plan: Plan, at: datetime = T0) -> GuardrailState:
    """The state the journal gives the next cycle once every kept action of ``plan`` succeeded at ``at``."""
    state = state.model_copy(deep=True)
    state.history += [
        ActionRecord(action_id=a.action_id, instance_id=a.instance_id, type=a.type, at=at,
                     target_instance_id=a.target_instance_id)
        for a in plan.actions
    ]  # fmt: skip
    return state


def test_max_actions_per_cycle_keeps_the_first_and_notes_the_rest() -> None:
    plan, _ = _run(_plan(*[_act(f"i{n}") for n in range(5)]), _policy(max_actions_per_cycle=3))
    assert [a.instance_id for a in plan.actions] == ["i0", "i1", "i2"]
    assert len(plan.notes) == 2
    assert "max-actions-per-cycle (3)" in plan.notes[0] and "i3" in plan.notes[0]
    assert plan.actions[2].reason.budget_used["actions"] == 3
    assert plan.actions[2].reason.budget_used["actions_max"] == 3


def test_max_actions_per_type() -> None:
    actions = [_act("a", ActionType.MIGRATE), _act("b", ActionType.MIGRATE), _act("c", ActionType.CORDON)]
    plan, _ = _run(_plan(*actions), _policy(max_actions_per_type={"migrate": 1}))
    assert [a.instance_id for a in plan.actions] == ["a", "c"]
    assert "max-actions-per-type.migrate (1)" in plan.notes[0] and "on b" in plan.notes[0]


def test_concurrent_migrations_count_those_still_in_flight() -> None:
    policy = _policy(max_concurrent_migrations=2)
    first, state = _run(_plan(_act("a", ActionType.MIGRATE)), policy)
    assert state.in_flight_migrations == []  # planned is not running: the journal says what is in flight
    state = _succeeded(state, first)
    state.in_flight_migrations = [first.actions[0].action_id]
    later = T0 + timedelta(minutes=5)
    second, state = _run(_plan(_act("b", ActionType.MIGRATE), _act("c", ActionType.MIGRATE)), policy, state, now=later)
    assert [a.instance_id for a in second.actions] == ["b"]
    assert "max-concurrent-migrations (2)" in second.notes[0] and "on c" in second.notes[0]
    state.mark_finished([first.actions[0].action_id])
    third, _ = _run(_plan(_act("c", ActionType.MIGRATE)), policy, state, now=later)
    assert len(third.actions) == 1


def test_max_migrations_per_target() -> None:
    actions = [
        _act("a", ActionType.MIGRATE, "t"),
        _act("b", ActionType.MIGRATE, "t"),
        _act("c", ActionType.MIGRATE, "u"),
    ]
    plan, _ = _run(_plan(*actions), _policy(max_migrations_per_target=1))
    assert [a.instance_id for a in plan.actions] == ["a", "c"]
    assert "max-migrations-per-target (1) for target t" in plan.notes[0]


def test_fleet_percent_per_cycle_counts_distinct_instances() -> None:
    actions = [_act("a"), _act("a", ActionType.MIGRATE), _act("b"), _act("c"), _act("d", ActionType.NOTIFY)]
    plan, _ = _run(_plan(*actions), _policy(max_fleet_percent_per_cycle=10), fleet=20)  # 2 instances
    assert [(a.instance_id, a.type) for a in plan.actions] == [
        ("a", ActionType.CORDON),
        ("a", ActionType.MIGRATE),
        ("b", ActionType.CORDON),
        ("d", ActionType.NOTIFY),
    ]
    assert "max-fleet-percent-per-cycle (10% of 20)" in plan.notes[0] and "on c" in plan.notes[0]
    assert plan.actions[-1].reason.budget_used["fleet_percent"] == 10.0


def test_fleet_percent_per_sliding_window() -> None:
    policy = _policy(max_fleet_percent_per_window={"percent": 30, "window-minutes": 60})
    first, state = _run(_plan(_act("a"), _act("b")), policy, fleet=10)
    state = _succeeded(state, first)
    plan, state = _run(_plan(_act("c"), _act("d")), policy, state, fleet=10, now=T0 + timedelta(minutes=30))
    assert [a.instance_id for a in plan.actions] == ["c"]
    assert "max-fleet-percent-per-window (30% of 10)" in plan.notes[0] and "on d" in plan.notes[0]
    plan, _ = _run(_plan(_act("d")), policy, state, fleet=10, now=T0 + timedelta(minutes=61))
    assert len(plan.actions) == 1  # a and b left the window


def test_cooldown_per_instance() -> None:
    policy = _policy(cooldown_minutes=30)
    first, state = _run(_plan(_act("a")), policy)
    state = _succeeded(state, first)
    plan, _ = _run(
        _plan(_act("a"), _act("b"), _act("a", ActionType.NOTIFY)), policy, state, now=T0 + timedelta(minutes=10)
    )
    assert [(a.instance_id, a.type) for a in plan.actions] == [("b", ActionType.CORDON), ("a", ActionType.NOTIFY)]
    assert "cooldown-minutes (30)" in plan.notes[0] and "on a" in plan.notes[0]
    plan, _ = _run(_plan(_act("a")), policy, state, now=T0 + timedelta(minutes=31))
    assert len(plan.actions) == 1


def test_cooldown_lets_an_escalation_through_but_not_a_repeat() -> None:
    policy = _policy(cooldown_minutes=30)
    first, state = _run(_plan(_act("a", ActionType.SCALE_BACK)), policy)
    state = _succeeded(state, first)
    later = T0 + timedelta(minutes=10)
    plan, _ = _run(
        _plan(_act("a", ActionType.SCALE_BACK), _act("a", ActionType.MIGRATE, "t")), policy, state, now=later
    )
    assert [a.type for a in plan.actions] == [ActionType.MIGRATE]
    assert "cooldown-minutes (30)" in plan.notes[0]


def test_enforce_charges_nothing_only_success_does() -> None:
    policy = _policy(cooldown_minutes=30)
    _, state = _run(_plan(_act("a")), policy)
    assert state.history == []  # planned, not run: the next cycle may plan it again
    plan, _ = _run(_plan(_act("a")), policy, state, now=T0 + timedelta(minutes=1))
    assert len(plan.actions) == 1 and plan.notes == []


def test_circuit_breaker_switches_to_shadow_and_says_so() -> None:
    policy = _policy(circuit_breaker={"max-high-risk-jump-percent": 20, "max-high-risk-rise-percent": 100})
    plan, state = _run(_plan(_act("a")), policy, high=5)
    assert plan.state is PlanState.RECOMMENDED and state.last_high_risk_count == 5  # no baseline yet
    plan, state = _run(_plan(_act("b")), policy, state, high=25, now=T0 + timedelta(minutes=1))
    assert plan.state is PlanState.RECOMMENDED  # +20% of 100: at the limit, not over
    plan, state = _run(_plan(_act("c")), policy, state, high=46, now=T0 + timedelta(minutes=2))
    assert plan.mode is PolicyMode.SHADOW and plan.state is PlanState.SHADOW
    assert any("circuit-breaker" in note and "25.0% to 46.0%" in note for note in plan.notes)
    assert [a.instance_id for a in plan.actions] == ["c"]  # recorded, not run
    assert "c" not in {r.instance_id for r in state.history}


def test_enforce_does_not_modify_its_inputs() -> None:
    plan, state = _plan(_act("a"), _act("b")), GuardrailState()
    _run(plan, _policy(max_actions_per_cycle=1), state)
    assert len(plan.actions) == 2 and plan.notes == [] and state.history == []


def test_state_round_trips_through_model_dump() -> None:
    _, state = _run(_plan(_act("a", ActionType.MIGRATE, "t")), _policy())
    restored = GuardrailState.model_validate(state.model_dump(mode="json"))
    assert restored == state


kinds = st.sampled_from(list(ActionType))
actions = st.builds(
    _act,
    st.sampled_from([f"i{n}" for n in range(12)]),
    kinds,
    st.one_of(st.none(), st.sampled_from(["t1", "t2", "t3"])),
)


@settings(max_examples=150, deadline=None)
@given(
    plan_actions=st.lists(actions, max_size=40),
    cycle=st.integers(0, 15),
    per_type=st.integers(0, 5),
    concurrent=st.integers(0, 8),
    per_target=st.integers(0, 3),
    percent=st.floats(0, 100),
    fleet=st.integers(0, 50),
)
def test_enforce_never_exceeds_any_cap(
    plan_actions: list[Action],
    cycle: int,
    per_type: int,
    concurrent: int,
    per_target: int,
    percent: float,
    fleet: int,
) -> None:
    policy = _policy(
        max_actions_per_cycle=cycle,
        max_actions_per_type={"migrate": per_type, "cordon": per_type},
        max_concurrent_migrations=concurrent,
        max_migrations_per_target=per_target,
        max_fleet_percent_per_cycle=percent,
    )
    plan, _ = _run(_plan(*plan_actions), policy, fleet=fleet)
    kept = plan.actions
    assert len(kept) <= cycle
    assert len(kept) + len(plan.notes) == len(plan_actions)
    for kind in (ActionType.MIGRATE, ActionType.CORDON):
        assert sum(a.type is kind for a in kept) <= per_type
    migrations = [a for a in kept if a.type is ActionType.MIGRATE]
    assert len(migrations) <= concurrent
    for target in ("t1", "t2", "t3"):
        assert sum(a.target_instance_id == target for a in migrations) <= per_target
    changed = {a.instance_id for a in kept if a.type not in (ActionType.NOTIFY, ActionType.NONE)}
    assert len(changed) <= fleet * percent / 100 + 1e-9


def test_a_migration_is_dropped_with_the_cordon_it_depends_on() -> None:
    actions = [_act("a"), _act("a", ActionType.MIGRATE, "t"), _act("b"), _act("b", ActionType.MIGRATE, "t")]
    plan, _ = _run(_plan(*actions), _policy(max_actions_per_type={"cordon": 1}))
    assert [(a.instance_id, a.type) for a in plan.actions] == [("a", ActionType.CORDON), ("a", ActionType.MIGRATE)]
    assert "max-actions-per-type.cordon (1): dropped cordon on b" in plan.notes[0]
    assert (
        "dependency: goes with cordon on b, dropped by max-actions-per-type.cordon (1): dropped migrate on b"
        in (plan.notes[1])
    )


def test_a_cordon_whose_migration_is_over_budget_is_dropped_with_it() -> None:
    pair = [_act("a"), _act("a", ActionType.MIGRATE, "t")]
    plan, _ = _run(_plan(*pair, _act("b")), _policy(max_actions_per_cycle=1))  # room for the cordon alone
    assert [(a.instance_id, a.type) for a in plan.actions] == [("b", ActionType.CORDON)], plan.notes
    assert plan.notes[:2] == [
        "guardrail dependency: goes with migrate on a, dropped by max-actions-per-cycle (1): dropped cordon on a",
        "guardrail max-actions-per-cycle (1): dropped migrate on a",
    ]
    plan, _ = _run(_plan(*pair), _policy(max_fleet_percent_per_cycle=10), fleet=10)  # a, not its target t too
    assert plan.actions == [] and "max-fleet-percent-per-cycle (10% of 10): dropped migrate on a" in plan.notes[1]


def test_a_scale_back_goes_with_the_migrations_that_make_its_room() -> None:
    actions = [_act("a", ActionType.SCALE_BACK), _act("a", ActionType.MIGRATE, "t"), _act("a", ActionType.MIGRATE, "u")]
    plan, _ = _run(_plan(*actions), _policy(max_migrations_per_target=1, max_concurrent_migrations=1))
    assert plan.actions == []
    assert "guardrail max-concurrent-migrations (1): dropped migrate on a" in plan.notes


def test_a_cordon_in_its_cooldown_still_lets_the_migration_through() -> None:
    policy = _policy(cooldown_minutes=30)
    first, state = _run(_plan(_act("a")), policy)
    state = _succeeded(state, first)  # a is cordoned already
    plan, _ = _run(_plan(_act("a"), _act("a", ActionType.MIGRATE, "t")), policy, state, now=T0 + timedelta(minutes=5))
    assert [a.type for a in plan.actions] == [ActionType.MIGRATE]


def test_a_buffer_reserved_for_scale_backs_is_dropped_with_them() -> None:
    back, move = _act("a", ActionType.SCALE_BACK), _act("a", ActionType.MIGRATE, "t")
    buffer = _act("h", ActionType.RESERVE_BUFFER)
    back.reason.rule = buffer.reason.rule = "shrink-risky"  # the planner reserves it under the scale-back's rule
    plain = _act("k", ActionType.RESERVE_BUFFER)  # a reserve-buffer rule of its own: not a dependant
    plan, _ = _run(_plan(back, move, buffer, plain), _policy(max_actions_per_type={"scale-back": 0}))
    assert [a.instance_id for a in plan.actions] == ["k"]
    assert plan.notes[-1] == "guardrail dependency: reserved for scale-back on a, dropped: dropped reserve-buffer on h"
