"""Invariants of allocation under random sequences of placements, migrations, splits, instance failures and
whole plans: no task lost or duplicated (each original task's demand is conserved across its chunks), no
instance filled beyond its capacity, no velocity limit exceeded."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from forewarn.allocation import Fleet, plan_fleet
from forewarn.allocation.placement import Demand, apply, select
from forewarn.schemas import ActionType, Band, Decision, Instance, Task, VelocityLimits

EPS = 1e-6


def root(task_id: str) -> str:
    return task_id.split("#", 1)[0]


def demand_by_root(fleet: Fleet) -> dict[str, tuple[float, float, float]]:
    total: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for name, cpu, memory, fraction in zip(
        fleet.task_ids, fleet.task_cpu, fleet.task_memory, fleet.task_fraction, strict=True
    ):
        entry = total[root(str(name))]
        entry[0] += cpu
        entry[1] += memory
        entry[2] += fraction
    return {key: (a, b, c) for key, (a, b, c) in total.items()}


def check_conserved(fleet: Fleet, original: dict[str, tuple[float, float]]) -> None:
    assert len(set(fleet.task_ids.tolist())) == fleet.n_tasks, "a task id is duplicated"
    now = demand_by_root(fleet)
    assert set(now) == set(original), "a task was lost or invented"
    for key, (cpu, memory) in original.items():
        assert math.isclose(now[key][0], cpu, abs_tol=EPS) and math.isclose(now[key][1], memory, abs_tol=EPS)
        assert math.isclose(now[key][2], 1.0, abs_tol=EPS)


@st.composite
def fleets(draw: st.DrawFn, max_instances: int = 8, max_tasks: int = 30) -> Fleet:
    """A feasible fleet: every instance within capacity, some tasks unplaced."""
    n = draw(st.integers(2, max_instances))
    caps = [draw(st.sampled_from([1.0, 2.0, 3.0])) for _ in range(n)]
    risks = [draw(st.floats(0.0, 1.0)) for _ in range(n)]
    instances = [Instance(instance_id=f"i{k}", cpu_capacity=caps[k], memory_capacity=caps[k]) for k in range(n)]
    load = [0.0] * n
    tasks = []
    for j in range(draw(st.integers(0, max_tasks))):
        cpu = draw(st.sampled_from([0.1, 0.25, 0.5, 0.75, 1.0, 1.5]))
        k = draw(st.integers(-1, n - 1))
        where = None if k < 0 or load[k] + cpu > caps[k] else f"i{k}"
        if where is not None:
            load[k] += cpu
        tasks.append(
            Task(
                task_id=f"t{j}",
                instance_id=where,
                cpu=cpu,
                memory=cpu / 2,
                value=draw(st.floats(0.1, 5.0)),
                splittable=draw(st.booleans()),
                min_chunk=draw(st.sampled_from([0.1, 0.25, 0.5])),
            )
        )
    return Fleet.from_records(instances, tasks, {f"i{k}": risks[k] for k in range(n)})


limits_strategy = st.builds(
    VelocityLimits,
    max_actions_per_cycle=st.integers(0, 12),
    max_concurrent_migrations=st.integers(0, 5),
    max_migrations_per_target=st.integers(0, 3),
    max_fleet_fraction=st.sampled_from([0.1, 0.3, 0.5, 1.0]),
)


class FleetMachine(RuleBasedStateMachine):
    """Random placements, migrations, splits and failures; checks conservation and capacity after each."""

    @initialize(fleet=fleets(), limits=limits_strategy)
    def start(self, fleet: Fleet, limits: VelocityLimits) -> None:
        self.fleet, self.limits, self.migrations = fleet, limits, 0
        self.original = {key: (v[0], v[1]) for key, v in demand_by_root(fleet).items()}
        self.start_cpu, self.start_memory = fleet.cpu_used.copy(), fleet.memory_used.copy()

    def _place(self, row: int) -> None:
        fleet = self.fleet
        demand = Demand(
            float(fleet.task_cpu[row]),
            float(fleet.task_memory[row]),
            bool(fleet.task_splittable[row]),
            float(fleet.task_min_chunk[row]),
            int(fleet.task_instance[row]),
        )
        chosen, why = select(fleet, demand, self.limits, self.migrations)
        if chosen:
            moving = [target for target, _ in chosen if target != demand.source]
            assert len(moving) <= self.limits.max_concurrent_migrations - self.migrations
            assert all(f >= demand.min_chunk - EPS for _, f in chosen)
            assert math.isclose(sum(f for _, f in chosen), 1.0, abs_tol=EPS)
            apply(fleet, row, chosen)
            self.migrations += len(moving)
        else:
            assert why in {"velocity", "capacity", "fleet-fraction"}

    @rule(data=st.data())
    def place_or_migrate(self, data: st.DataObject) -> None:
        if self.fleet.n_tasks:
            self._place(data.draw(st.integers(0, self.fleet.n_tasks - 1)))

    @rule(data=st.data())
    def split_in_place(self, data: st.DataObject) -> None:
        if self.fleet.n_tasks:
            row = data.draw(st.integers(0, self.fleet.n_tasks - 1))
            cut = data.draw(st.floats(0.05, 0.95))
            self.fleet.split(row, [cut, 1.0 - cut])

    @rule(data=st.data())
    def fail_instance(self, data: st.DataObject) -> None:
        row = data.draw(st.integers(0, self.fleet.n_instances - 1))
        orphans = self.fleet.fail(row)
        assert (self.fleet.task_instance[orphans] == -1).all()
        self.start_cpu[row] = self.start_memory[row] = 0.0

    @invariant()
    def nothing_lost_or_duplicated(self) -> None:
        check_conserved(self.fleet, self.original)

    @invariant()
    def used_matches_tasks_and_capacity_holds(self) -> None:
        fleet = self.fleet
        placed = fleet.task_instance >= 0
        cpu = np.bincount(fleet.task_instance[placed], weights=fleet.task_cpu[placed], minlength=fleet.n_instances)
        assert np.allclose(cpu, fleet.cpu_used, atol=EPS)
        limit = np.maximum(fleet.cpu_capacity, self.start_cpu)
        assert (fleet.cpu_used <= limit + EPS).all(), "an instance was filled beyond its capacity"
        assert (fleet.memory_used <= np.maximum(fleet.memory_capacity, self.start_memory) + EPS).all()

    @invariant()
    def velocity_limits_hold(self) -> None:
        assert (self.fleet.incoming <= self.limits.max_migrations_per_target).all()
        assert self.migrations <= max(self.limits.max_concurrent_migrations, 0)
        assert self.fleet.touched.sum() <= math.floor(self.limits.max_fleet_fraction * self.fleet.n_instances + 1e-9)


TestFleetMachine = FleetMachine.TestCase
TestFleetMachine.settings = settings(
    max_examples=60, stateful_step_count=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

ACTIONS = [
    ActionType.MIGRATE,
    ActionType.MIGRATE,
    ActionType.MIGRATE,
    ActionType.SCALE_BACK,
    ActionType.AUTOSCALE,
    ActionType.CORDON,
    ActionType.NOTIFY,
    ActionType.RESTORE_SNAPSHOT,
    ActionType.NONE,
    ActionType.RESERVE_BUFFER,
]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet=fleets(), limits=limits_strategy, data=st.data())
def test_a_plan_keeps_every_invariant(fleet: Fleet, limits: VelocityLimits, data: st.DataObject) -> None:
    decisions = []
    for k in [*range(fleet.n_instances), *data.draw(st.lists(st.integers(0, fleet.n_instances - 1), max_size=3))]:
        action = data.draw(st.sampled_from(ACTIONS))
        params = {"factor": data.draw(st.sampled_from([0.3, 0.7]))} if action is ActionType.SCALE_BACK else {}
        if action is ActionType.CORDON:
            params = {"drain": data.draw(st.booleans())}
        decisions.append(Decision(instance_id=f"i{k}", band=Band.HIGH, action=action, rule="r", params=params))
    original = {key: (v[0], v[1]) for key, v in demand_by_root(fleet).items()}
    start_cpu, start_memory = fleet.cpu_used.copy(), fleet.memory_used.copy()
    result = plan_fleet(decisions, fleet, limits)

    check_conserved(fleet, original)
    assert set(result.placements) | set(fleet.task_ids[fleet.task_instance < 0].tolist()) == set(fleet.task_ids)
    gained = fleet.cpu_used > start_cpu + EPS
    assert (fleet.cpu_used[gained] <= fleet.cpu_capacity[gained] + EPS).all(), "an instance was overfilled"
    gained = fleet.memory_used > start_memory + EPS
    assert (fleet.memory_used[gained] <= fleet.memory_capacity[gained] + EPS).all()

    moves = [a for a in result.actions if a.type is ActionType.MIGRATE]
    assert len(result.actions) <= limits.max_actions_per_cycle
    assert len(moves) <= limits.max_concurrent_migrations
    per_target: dict[str, int] = defaultdict(int)
    for move in moves:
        assert move.target_instance_id is not None
        per_target[move.target_instance_id] += 1
        assert fleet.risk[fleet.index[move.target_instance_id]] < fleet.risk[fleet.index[move.instance_id]]
    assert max(per_target.values(), default=0) <= limits.max_migrations_per_target
    touched: set[str | None] = set()
    for act in result.actions:
        if act.type is not ActionType.NOTIFY:
            touched |= {act.instance_id, act.target_instance_id, *act.params.get("instances", [])}
    touched.discard(None)
    assert len(touched) <= math.floor(limits.max_fleet_fraction * fleet.n_instances + 1e-9)
    moved = {t for move in moves for t in move.task_ids}
    assert all(result.placements[t] == move.target_instance_id for move in moves for t in move.task_ids)
    assert len(moved) == len(moves), "a task was moved twice"
    assert not moved & set(result.unplaced)
    assert len(result.unplaced) == len(set(result.unplaced)), "a task was reported unplaced twice"
