"""Allocation: placement by risk, migration, splitting, scale-up, scale-back, autoscale, pass-through, and the
optimality gap of the heuristic against the exact MILP on small fleets."""

from __future__ import annotations

import numpy as np
import pytest

from forewarn.allocation import Fleet, allocate_task, plan_actions
from forewarn.allocation.exact import optimality_gap, solve_exact
from forewarn.errors import InputError
from forewarn.schemas import (
    Action,
    ActionType,
    Band,
    Decision,
    FeatureContribution,
    Instance,
    InstanceState,
    Task,
    VelocityLimits,
)

OPEN = VelocityLimits(max_actions_per_cycle=100, max_concurrent_migrations=50, max_fleet_fraction=1.0)


def fleet_of(risks: dict[str, float], cpu: float = 2.0) -> list[Instance]:
    return [Instance(instance_id=name, cpu_capacity=cpu, memory_capacity=cpu) for name in risks]


def task(name: str, where: str | None, cpu: float = 0.5, **kw: object) -> Task:
    return Task.model_validate({"task_id": name, "instance_id": where, "cpu": cpu, "memory": 0.1, **kw})


def decide(name: str, action: ActionType = ActionType.MIGRATE, band: Band = Band.HIGH, **params: object) -> Decision:
    features = [FeatureContribution(feature="ecc_errors", value=12.0, contribution=1.3)]
    return Decision(
        instance_id=name, band=band, action=action, rule="r1", probability=0.9, top_features=features, params=params
    )


def of_type(actions: list[Action], kind: ActionType) -> list[Action]:
    return [a for a in actions if a.type is kind]


# ---- allocate_task -------------------------------------------------------------------------------------------

RISKS = {"a": 0.9, "b": 0.2, "c": 0.01, "d": 0.05}


def test_allocate_task_picks_the_lowest_risk_instance_that_fits() -> None:
    tasks = [task("busy", "c", cpu=1.8), task("t", "a", cpu=0.5)]
    fleet = Fleet.from_records(fleet_of(RISKS), tasks, RISKS)
    assert allocate_task(tasks[1], fleet, OPEN) == [("d", 1.0)]  # c is lower risk but full
    assert allocate_task(task("new", None, cpu=0.1), fleet, OPEN) == [("c", 1.0)]


def test_allocate_task_never_targets_the_source_or_riskier_or_unscored_instances() -> None:
    instances = [*fleet_of(RISKS), Instance(instance_id="e", cpu_capacity=8), Instance(instance_id="f")]
    instances[-1].state = InstanceState.CORDONED
    fleet = Fleet.from_records(instances, [], {**RISKS, "f": 0.0})
    assert allocate_task(task("t", "b", cpu=1.0), fleet, OPEN) == [("c", 1.0)]
    assert allocate_task(task("t", "c", cpu=1.0), fleet, OPEN) == []  # nothing below risk 0.01
    assert allocate_task(task("t", "b", cpu=3.0), fleet, OPEN) == []  # only unscored "e" is big enough


def test_allocate_task_respects_concurrency_left() -> None:
    fleet = Fleet.from_records(fleet_of(RISKS), [], RISKS)
    limits = VelocityLimits(max_concurrent_migrations=3, max_fleet_fraction=1.0)
    assert allocate_task(task("t", "a"), fleet, limits, in_flight=2) == [("c", 1.0)]
    assert allocate_task(task("t", "a"), fleet, limits, in_flight=3) == []
    fleet.incoming[fleet.index["c"]] = limits.max_migrations_per_target
    assert allocate_task(task("t", "a"), fleet, limits) == [("d", 1.0)]


def test_allocate_task_splits_only_within_chunk_and_concurrency_limits() -> None:
    big = task("big", "a", cpu=3.0, splittable=True, min_chunk=0.25)
    fleet = Fleet.from_records(fleet_of(RISKS), [big], RISKS)
    parts = allocate_task(big, fleet, OPEN)
    assert [name for name, _ in parts] == ["c", "d"]
    assert sum(f for _, f in parts) == pytest.approx(1.0)
    assert all(f >= 0.25 for _, f in parts)
    assert allocate_task(big, fleet, OPEN, in_flight=OPEN.max_concurrent_migrations - 1) == []
    assert allocate_task(big.model_copy(update={"splittable": False}), fleet, OPEN) == []
    assert allocate_task(big.model_copy(update={"min_chunk": 0.9}), fleet, OPEN) == []


# ---- plan_actions: migrate -----------------------------------------------------------------------------------


def test_migrate_cordons_then_moves_tasks_to_low_risk_highest_value_first() -> None:
    tasks = [task("cheap", "a", value=1.0), task("dear", "a", value=5.0), task("stay", "b")]
    limits = VelocityLimits(max_actions_per_cycle=2, max_fleet_fraction=1.0)
    result = plan_actions([decide("a")], fleet_of(RISKS), tasks, RISKS, limits)
    assert [a.type for a in result.actions] == [ActionType.CORDON, ActionType.MIGRATE]
    move = result.actions[1]
    assert (move.instance_id, move.target_instance_id, move.task_ids) == ("a", "c", ["dear"])
    assert move.reason.rule == "r1" and move.reason.band is Band.HIGH and move.reason.probability == 0.9
    assert move.reason.top_features[0].feature == "ecc_errors"
    assert "dear" in move.reason.note and "-> c" in move.reason.note and "risk 0.010" in move.reason.note
    assert result.placements == {"cheap": "a", "dear": "c", "stay": "b"}
    assert result.unplaced == ["cheap"]
    assert result.objective == pytest.approx(0.9 * 1 + 0.01 * 5 + 0.2 * 1 + 0.05 * 5)


def test_split_chunks_get_ids_fractions_and_conserve_demand() -> None:
    big = task("big", "a", cpu=3.0, memory=1.0, splittable=True, value=4.0)
    result = plan_actions([decide("a")], fleet_of(RISKS), [big], RISKS, OPEN)
    moves = of_type(result.actions, ActionType.MIGRATE)
    assert [m.task_ids for m in moves] == [["big#1"], ["big#2"]]
    fractions = [m.params["fractions"][m.task_ids[0]] for m in moves]
    assert sum(fractions) == pytest.approx(1.0)
    assert all(m.params["split_of"] == "big" for m in moves)
    assert result.placements == {"big#1": "c", "big#2": "d"}


def test_policy_can_forbid_splitting() -> None:
    big = task("big", "a", cpu=3.0, splittable=True)
    decision = decide("a", split={"enabled": False, "min_chunk": 0.25})
    result = plan_actions([decision], fleet_of(RISKS), [big], RISKS, OPEN)
    assert of_type(result.actions, ActionType.MIGRATE) == []
    assert result.unplaced == ["big"]


def test_room_is_made_by_moving_a_cheap_task_between_healthy_instances() -> None:
    tasks = [
        task("x", "a", cpu=1.0, value=5.0),
        task("small", "c", cpu=0.6, value=0.5),
        task("fill-c", "c", cpu=0.9, value=9.0),
        task("fill-d", "d", cpu=1.1),
    ]
    risks = {"a": 0.9, "c": 0.01, "d": 0.05}
    result = plan_actions([decide("a")], fleet_of(risks), tasks, risks, OPEN)
    moves = [(m.task_ids[0], m.instance_id, m.target_instance_id) for m in of_type(result.actions, ActionType.MIGRATE)]
    assert moves == [("small", "c", "d"), ("x", "a", "c")]
    assert "makes room for x" in of_type(result.actions, ActionType.MIGRATE)[0].reason.note
    cheap = [tasks[0].model_copy(update={"value": 0.01}), *tasks[1:]]
    result = plan_actions([decide("a")], fleet_of(risks), cheap, risks, OPEN)
    assert of_type(result.actions, ActionType.MIGRATE) == [] and result.unplaced == ["x"]


def test_a_task_moved_this_cycle_is_never_moved_again_to_make_room() -> None:
    tasks = [
        task("y", "a", cpu=0.6, value=3.0),
        task("x", "a", cpu=1.0, value=2.0),
        task("fill-c", "c", cpu=0.9, value=10.0),
        task("fill-d", "d", cpu=1.1),
    ]
    risks = {"a": 0.9, "c": 0.01, "d": 0.05}
    result = plan_actions([decide("a")], fleet_of(risks), tasks, risks, OPEN)
    moved = [m.task_ids[0] for m in of_type(result.actions, ActionType.MIGRATE)]
    assert sorted(moved) == ["fill-c", "x", "y"]
    assert result.placements == {"y": "c", "x": "c", "fill-c": "d", "fill-d": "d"}


def test_scale_up_is_requested_when_no_instance_has_room() -> None:
    fill = [task(f"fill-{name}", name, cpu=2.0) for name in "bcd"]
    tasks = [task("x", "a", cpu=1.9), task("y", "a", cpu=1.9), *fill]
    result = plan_actions([decide("a")], fleet_of(RISKS), tasks, RISKS, OPEN)
    assert sorted(result.unplaced) == ["x", "y"]
    scale = of_type(result.actions, ActionType.AUTOSCALE)
    assert len(scale) == 1 and scale[0].params["delta"] == 2 and sorted(scale[0].params["tasks"]) == ["x", "y"]
    assert result.scale_up_requests == 2
    assert any("stays on a" in line for line in result.explanations)


def test_scale_up_request_keeps_its_slot_when_actions_run_out() -> None:
    tasks = [task("huge", "a", cpu=5.0), *[task(f"t{k}", "a", cpu=0.1) for k in range(5)]]
    limits = VelocityLimits(max_actions_per_cycle=4, max_concurrent_migrations=10, max_fleet_fraction=1.0)
    result = plan_actions([decide("a")], fleet_of(RISKS), tasks, RISKS, limits)
    assert len(result.actions) == 4
    assert result.actions[-1].type is ActionType.AUTOSCALE


def test_velocity_limits_cap_actions_migrations_targets_and_fleet_fraction() -> None:
    risks = {f"i{k}": (0.9 if k < 2 else 0.01 * k) for k in range(20)}
    tasks = [task(f"t{k}", f"i{k % 2}", cpu=0.2) for k in range(16)]
    limits = VelocityLimits(
        max_actions_per_cycle=30, max_concurrent_migrations=6, max_migrations_per_target=2, max_fleet_fraction=0.25
    )
    result = plan_actions([decide("i0"), decide("i1")], fleet_of(risks), tasks, risks, limits)
    moves = of_type(result.actions, ActionType.MIGRATE)
    assert len(moves) == 6
    targets = [m.target_instance_id for m in moves]
    assert max(targets.count(t) for t in targets) <= 2
    touched = {a.instance_id for a in result.actions} | set(targets)
    assert len(touched) <= 5
    assert len(result.unplaced) == 16 - 6


def test_fleet_fraction_too_small_to_touch_anything() -> None:
    result = plan_actions([decide("a")], fleet_of(RISKS), [task("t", "a")], RISKS, VelocityLimits())
    assert result.actions == []
    assert result.placements == {"t": "a"}
    assert any("max_fleet_fraction" in line for line in result.explanations)


# ---- scale-back, buffers, autoscale, pass-through ------------------------------------------------------------


def test_scale_back_moves_excess_and_reserves_buffers_on_healthiest() -> None:
    tasks = [task("t1", "b", cpu=0.8, value=1.0), task("t2", "b", cpu=0.8, value=3.0)]
    decision = decide("b", ActionType.SCALE_BACK, Band.MODERATE, factor=0.5, reserve_buffer=0.2)
    result = plan_actions([decision], fleet_of(RISKS), tasks, RISKS, OPEN)
    back = of_type(result.actions, ActionType.SCALE_BACK)
    assert back[0].params == {"factor": 0.5}
    moves = of_type(result.actions, ActionType.MIGRATE)
    assert [(m.task_ids, m.target_instance_id) for m in moves] == [(["t2"], "c")]
    buffers = of_type(result.actions, ActionType.RESERVE_BUFFER)
    assert [(b.instance_id, b.params) for b in buffers] == [("c", {"fraction": 0.2})]


def test_a_scale_back_or_buffer_already_in_force_is_not_asked_for_again() -> None:
    instances = fleet_of(RISKS)
    for inst in instances:  # as the cloud reports them after the previous cycle's plan ran
        if inst.instance_id == "b":
            inst.cpu_capacity, inst.memory_capacity, inst.capacity_factor = 1.0, 1.0, 0.5
        if inst.instance_id == "c":
            inst.reserved = 0.2
    tasks = [task("t1", "b", cpu=0.4)]
    decision = decide("b", ActionType.SCALE_BACK, Band.MODERATE, factor=0.5, reserve_buffer=0.2)
    result = plan_actions([decision], instances, tasks, RISKS, OPEN)
    assert result.actions == []
    assert any("already runs at 50%" in line for line in result.explanations)


def test_scale_back_reports_the_factor_it_could_reach() -> None:
    tasks = [task("t1", "b", cpu=1.6), task("full-c", "c", cpu=2.0), task("full-d", "d", cpu=2.0)]
    decision = decide("b", ActionType.SCALE_BACK, Band.MODERATE, factor=0.5)
    result = plan_actions([decision], fleet_of(RISKS), tasks, RISKS, OPEN)
    assert of_type(result.actions, ActionType.SCALE_BACK)[0].params == {"factor": 0.8, "requested_factor": 0.5}


def test_autoscale_scales_an_underused_group_down_and_an_overused_one_up() -> None:
    risks = {f"i{k}": 0.01 for k in range(10)}
    low = [decide(name, ActionType.AUTOSCALE, Band.LOW, min=2, max=20) for name in risks]
    result = plan_actions(low, fleet_of(risks), [task("t", "i0", cpu=1.0)], risks, OPEN)
    (down,) = result.actions
    assert down.params["delta"] < 0 and "i0" not in down.params["instances"]
    assert result.scale_up_requests == 0
    busy = [task(f"t{k}", f"i{k}", cpu=1.9) for k in range(10)]
    result = plan_actions(low, fleet_of(risks), busy, risks, OPEN)
    (up,) = result.actions
    assert up.params["delta"] > 0 and result.scale_up_requests == up.params["delta"]


def test_pass_through_actions_and_none() -> None:
    decisions = [
        decide("a", ActionType.CORDON),
        decide("b", ActionType.NOTIFY, channel="log"),
        decide("d", ActionType.RESTORE_SNAPSHOT, snapshot="latest"),
        decide("c", ActionType.NONE),
        decide("ghost", ActionType.CORDON),
    ]
    result = plan_actions(decisions, fleet_of(RISKS), [task("t", "a")], RISKS, OPEN)
    assert sorted((a.type.value, a.instance_id) for a in result.actions) == [
        ("cordon", "a"),
        ("notify", "b"),
        ("restore-snapshot", "d"),
    ]
    assert of_type(result.actions, ActionType.NOTIFY)[0].params == {"channel": "log"}
    assert result.placements == {"t": "a"}
    assert any("unknown instance ghost" in line for line in result.explanations)


def test_cordon_with_drain_moves_work_like_migrate() -> None:
    result = plan_actions([decide("a", ActionType.CORDON, drain=True)], fleet_of(RISKS), [task("t", "a")], RISKS, OPEN)
    assert [a.type for a in result.actions] == [ActionType.CORDON, ActionType.MIGRATE]
    both = [decide("a"), decide("a", ActionType.CORDON, drain=True), decide("a", ActionType.SCALE_BACK)]
    result = plan_actions(
        both, fleet_of(RISKS), [task("t", "a")], RISKS, VelocityLimits(max_fleet_fraction=1.0, max_actions_per_cycle=0)
    )
    assert result.actions == [] and result.unplaced == ["t"]


def test_bad_input_is_one_readable_error() -> None:
    with pytest.raises(InputError, match="task 't' is on unknown instance 'zz'"):
        plan_actions([], fleet_of(RISKS), [task("t", "zz")], RISKS, OPEN)
    with pytest.raises(InputError, match="instance_id 'a' appears twice"):
        plan_actions([], [*fleet_of(RISKS), Instance(instance_id="a")], [], RISKS, OPEN)
    with pytest.raises(InputError, match=r"risk of 'a' is 1\.5"):
        plan_actions([], fleet_of(RISKS), [], {**RISKS, "a": 1.5}, OPEN)


def test_to_tasks_reports_chunks_with_their_demand() -> None:
    big = task("big", "a", cpu=3.0, splittable=True, data_size=10.0)
    fleet = Fleet.from_records(fleet_of(RISKS), [big], RISKS)
    rows = fleet.split(0, [0.75, 0.25])
    fleet.move(rows[1], fleet.index["c"])
    out = {t.task_id: t for t in fleet.to_tasks()}
    assert (out["big#1"].instance_id, out["big#1"].cpu, out["big#1"].data_size) == ("a", 2.25, 7.5)
    assert (out["big#2"].instance_id, out["big#2"].cpu, out["big#2"].min_chunk) == ("c", 0.75, 1.0)


# ---- the heuristic against the exact optimum -----------------------------------------------------------------


def random_case(seed: int) -> tuple[list[Instance], list[Task], dict[str, float], list[Decision], VelocityLimits]:
    rng = np.random.default_rng(seed)
    n, count = int(rng.integers(3, 7)), int(rng.integers(4, 14))
    high = max(1, n // 3)
    instances = [
        Instance(instance_id=f"i{k}", cpu_capacity=float(rng.choice([2, 4])), memory_capacity=4.0) for k in range(n)
    ]
    risks = {f"i{k}": float(rng.uniform(0.6, 0.95) if k < high else rng.uniform(0, 0.1)) for k in range(n)}
    load, tasks = np.zeros(n), []
    for j in range(count):
        cpu, k = float(rng.choice([0.25, 0.5, 1.0, 1.5])), int(rng.integers(0, n))
        if load[k] + cpu <= instances[k].cpu_capacity:
            load[k] += cpu
            tasks.append(
                Task(
                    task_id=f"t{j}",
                    instance_id=f"i{k}",
                    cpu=cpu,
                    memory=0.5,
                    value=float(rng.uniform(0.5, 3)),
                    splittable=bool(rng.random() < 0.4),
                )
            )
    limits = VelocityLimits(
        max_actions_per_cycle=100,
        max_concurrent_migrations=int(rng.integers(2, 8)),
        max_migrations_per_target=int(rng.integers(1, 4)),
        max_fleet_fraction=1.0,
    )
    return instances, tasks, risks, [decide(f"i{k}") for k in range(high)], limits


def test_exact_solver_matches_a_hand_solved_case() -> None:
    tasks = [task("x", "a", cpu=1.0, value=2.0), task("y", "a", cpu=1.0, value=1.0)]
    limits = VelocityLimits(max_concurrent_migrations=1, max_fleet_fraction=1.0)
    exact = solve_exact(fleet_of(RISKS), tasks, RISKS, limits, migration_cost=0.05, closed=["a"])
    assert exact.status == "optimal" and exact.migrations == 1
    assert exact.fractions["x"] == {"c": pytest.approx(1.0)}
    assert exact.objective == pytest.approx(2 * 0.01 + 0.05 * 2 + 0.9 * 1)


def test_heuristic_gap_to_the_milp_on_small_random_fleets() -> None:
    gaps = []
    for seed in range(40):
        instances, tasks, risks, decisions, limits = random_case(seed)
        heuristic = plan_actions(decisions, instances, tasks, risks, limits)
        exact = solve_exact(instances, tasks, risks, limits, closed=[d.instance_id for d in decisions])
        assert exact.status == "optimal"
        gaps.append(optimality_gap(heuristic, exact))
    print(f"optimality gap over 40 fleets: mean {np.mean(gaps):.3f}, median {np.median(gaps):.3f}, max {max(gaps):.3f}")
    assert min(gaps) >= 0.0
    assert np.mean(gaps) < 0.10
    assert np.median(gaps) < 0.05


def test_bench_reports_its_figure_beside_its_floor() -> None:
    from bench.allocate import run

    figures = run(50, 500)
    assert set(figures) == {"instances", "tasks", "seconds", "floor_seconds", "ratio", "peak_mb"}
    assert (figures["instances"], figures["tasks"]) == (50, 500)
    assert figures["seconds"] > 0 and figures["floor_seconds"] > 0 and figures["peak_mb"] > 0
