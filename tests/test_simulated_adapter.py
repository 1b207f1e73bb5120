"""The simulated cloud: the CloudAdapter contract, capacity, splits, scaling, snapshots, fault injection."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.faults import ALWAYS
from adapters.simulated import SimulatedAdapter
from forewarn.cloud import CloudAdapter
from forewarn.errors import AdapterError, NotFoundError, TransientAdapterError
from forewarn.schemas import InstanceState
from tests.execution_support import demand_by_root, fleet, layout


def test_is_a_cloud_adapter() -> None:
    assert isinstance(fleet(), CloudAdapter)


def test_migrate_onto_a_full_target_is_refused_and_changes_nothing() -> None:
    adapter = fleet()
    adapter.migrate(["t3"], "i2", "i3", key="k1")
    before = layout(adapter)
    adapter.state.tasks["t1"].cpu = 0.6  # 0.5 already on i3
    with pytest.raises(AdapterError, match="i3 is full"):
        adapter.migrate(["t1"], "i1", "i3", key="k2")
    adapter.state.tasks["t1"].cpu = 0.3
    assert layout(adapter) == before
    adapter.reserve("i3", 0.3, key="k3")  # 0.5 used + 0.3 reserved leaves 0.2 < 0.3
    with pytest.raises(AdapterError, match="full"):
        adapter.migrate(["t1"], "i1", "i3", key="k4")


def test_cordoned_and_failed_targets_refuse_new_work() -> None:
    adapter = fleet()
    adapter.cordon("i3", key="c")
    with pytest.raises(AdapterError, match="cordoned"):
        adapter.migrate(["t1"], "i1", "i3", key="m1")
    adapter.fail_instance("i4")
    with pytest.raises(AdapterError, match="failed"):
        adapter.migrate(["t1"], "i1", "i4", key="m2")
    assert not adapter.health("i4") and {i.instance_id: i.state for i in adapter.list_instances()}["i4"] == "failed"
    adapter.recover_instance("i4")
    assert adapter.health("i4")
    with pytest.raises(NotFoundError):
        adapter.health("nope")
    with pytest.raises(NotFoundError):
        adapter.migrate(["nope"], "i1", "i2", key="m3")


def test_split_creates_chunks_and_they_rejoin_on_return() -> None:
    adapter = fleet()
    demand = demand_by_root(adapter)
    adapter.migrate(["t2"], "i1", "i4", key="s", fractions=[0.25, 0.5])
    assert adapter.placement()["t2#1"] == "i4" and adapter.placement()["t2"] == "i1"
    assert adapter.state.tasks["t2"].cpu == pytest.approx(0.1)
    assert demand_by_root(adapter) == demand
    assert adapter.placement()["t2#2"] == "i4"
    adapter.migrate(["t2#1", "t2#2"], "i4", "i1", key="back")
    assert adapter.placement() == {"t1": "i1", "t2": "i1", "t3": "i2"}
    assert adapter.state.tasks["t2"].cpu == pytest.approx(0.4)
    with pytest.raises(AdapterError, match="not splittable"):
        adapter.migrate(["t1"], "i1", "i4", key="x", fractions=[0.5])
    with pytest.raises(AdapterError, match=r"at least 0\.25"):
        adapter.migrate(["t2"], "i1", "i4", key="y", fractions=[0.1])
    with pytest.raises(AdapterError, match="at most 1"):
        adapter.migrate(["t2"], "i1", "i4", key="z", fractions=[0.6, 0.6])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["t1", "t2", "t3"]),
            st.sampled_from(["i1", "i2", "i3", "i4"]),
            st.sampled_from([None, [0.5], [0.25, 0.75], [0.3]]),
        ),
        max_size=12,
    )
)
def test_capacity_and_demand_invariants_hold_under_any_moves(moves: list[tuple[str, str, list[float] | None]]) -> None:
    adapter = fleet()
    demand = demand_by_root(adapter)
    for n, (root, target, fractions) in enumerate(moves):
        tasks = [t for t in adapter.list_tasks() if t.task_id.split("#")[0] == root]
        task = tasks[n % len(tasks)]
        with contextlib.suppress(AdapterError):
            adapter.migrate([task.task_id], str(task.instance_id), target, key=f"k{n}", fractions=fractions)
        for inst in adapter.list_instances():
            cpu, memory = adapter.used(inst.instance_id)
            assert cpu <= inst.cpu_capacity + 1e-9 and memory <= inst.memory_capacity + 1e-9
        assert demand_by_root(adapter) == demand
        assert all(t.instance_id in adapter.state.instances for t in adapter.list_tasks())


def test_repeated_key_is_a_no_op_returning_the_same_result() -> None:
    adapter = fleet()
    snap = adapter.snapshot(key="s")
    assert adapter.snapshot(key="s") == snap
    adapter.migrate(["t1"], "i1", "i3", key="m")
    adapter.migrate(["t1"], "i1", "i3", key="m")  # t1 is no longer on i1: only a no-op can succeed
    assert adapter.effects == [("snapshot", "s"), ("migrate", "m")]
    with pytest.raises(AdapterError, match="already used for migrate"):
        adapter.cordon("i1", key="m")


def test_dry_run_adapter_changes_nothing() -> None:
    adapter = fleet(dry_run=True)
    before = layout(adapter)
    adapter.cordon("i1", key="a")
    adapter.migrate(["t1"], "i1", "i3", key="b")
    adapter.scale("default", delta=2, key="c")
    adapter.reserve("i2", 0.3, key="d")
    assert adapter.snapshot(key="e") == "snapshot-dry-run"
    assert layout(adapter) == before and adapter.effects == []


def test_scale_up_adds_and_scale_down_removes_only_empty_instances() -> None:
    adapter = fleet()
    adapter.scale("default", delta=2, key="up")
    assert {"i-auto-0001", "i-auto-0002"} <= set(adapter.state.instances)
    adapter.scale("default", delta=-1, key="down")
    assert "i-auto-0002" not in adapter.state.instances and "i-auto-0001" in adapter.state.instances
    with pytest.raises(AdapterError, match="only 3 are empty"):
        adapter.scale("default", delta=-4, key="too-many")
    adapter.scale("i3", factor=0.5, key="shrink")  # i3 is empty: a shrink below its tasks is refused
    assert adapter.state.instances["i3"].cpu_capacity == 0.5
    with pytest.raises(NotFoundError):
        adapter.scale("nope", delta=1, key="nope")


def test_snapshot_restores_placement_but_never_onto_a_failed_instance() -> None:
    adapter = fleet()
    before = layout(adapter)
    snap = adapter.snapshot(key="s")
    adapter.cordon("i1", key="c")
    adapter.migrate(["t1"], "i1", "i3", key="m")
    adapter.restore(snap, key="r")
    assert layout(adapter) == before
    adapter.migrate(["t1"], "i1", "i3", key="m2")
    adapter.fail_instance("i1")
    with pytest.raises(AdapterError, match="failed i1"):
        adapter.restore(snap, key="r2")
    with pytest.raises(NotFoundError):
        adapter.restore("snap-9999", key="r3")


def test_fault_injection_counts_calls() -> None:
    adapter = fleet()
    adapter.inject("cordon", times=2, after=1)
    adapter.cordon("i1", key="a")
    for key in ("b", "c"):
        with pytest.raises(TransientAdapterError, match="injected"):
            adapter.cordon("i2", key=key)
    adapter.cordon("i2", key="d")
    assert adapter.state.cordoned == {"i1", "i2"}
    adapter.inject("uncordon", when="after", times=ALWAYS, error=AdapterError)
    with pytest.raises(AdapterError):
        adapter.uncordon("i1", key="u")
    assert "i1" not in adapter.state.cordoned  # it acted before failing
    adapter.uncordon("i1", key="u")  # the same key again: a no-op that succeeds
    assert [i.state for i in adapter.list_instances()][:2] == [InstanceState.RUNNING, InstanceState.CORDONED]


def test_read_telemetry_may_be_empty() -> None:
    frame = fleet().read_telemetry(["i1"], datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
    assert frame.empty and list(frame.columns) == ["instance_id", "timestamp"]
    assert isinstance(SimulatedAdapter([], []).list_instances(), list)
