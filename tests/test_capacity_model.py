"""One capacity model: the allocator's fleet, the simulated cloud's fleet state and the restore step count an
instance's room alike, a scale-back and a buffer included (forewarn.capacity)."""

from __future__ import annotations

import math

import pytest

from adapters.simulated import SimulatedAdapter
from forewarn import capacity
from forewarn.allocation.model import Fleet
from forewarn.errors import AdapterError
from forewarn.schemas import Instance, Task


def _cloud() -> SimulatedAdapter:
    instances = [Instance(instance_id=f"i{n}", cpu_capacity=4.0, memory_capacity=8.0) for n in range(3)]
    return SimulatedAdapter(instances, [Task(task_id="t", instance_id="i0", cpu=1.0, memory=2.0)])


@pytest.mark.parametrize(("factor", "reserved"), [(1.0, 0.0), (1.0, 0.25), (0.5, 0.0), (0.5, 0.2), (0.3, 0.5)])
def test_the_allocator_and_the_cloud_see_the_same_room(factor: float, reserved: float) -> None:
    cloud = _cloud()
    if factor < 1.0:
        cloud.scale("i0", factor=factor, key="shrink")
    if reserved:
        try:
            cloud.reserve("i0", reserved, key="buffer")
        except AdapterError:
            assert 4.0 * max(factor - reserved, 0.0) < 1.0, "refused although the task fits beside the buffer"
            return
    listed = {i.instance_id: i for i in cloud.list_instances()}
    fleet = Fleet.from_records(list(listed.values()), cloud.list_tasks(), {i: 0.1 for i in listed})
    row = fleet.index["i0"]
    expected = (4.0 * max(factor - reserved, 0.0) - 1.0, 8.0 * max(factor - reserved, 0.0) - 2.0)
    for seen in (
        cloud.free("i0"),
        capacity.free(listed["i0"], 1.0, 2.0),
        (fleet.free_cpu()[row], fleet.free_memory()[row]),
    ):
        assert all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(seen, expected, strict=True)), seen


def test_a_buffer_is_refused_where_the_tasks_would_sit_in_it_and_a_shrink_may_eat_into_one() -> None:
    cloud = _cloud()  # t uses 1 of 4 cpu on i0
    with pytest.raises(AdapterError, match="too full"):
        cloud.reserve("i0", 0.8, key="too-big")  # 0.2 x 4 = 0.8 cpu left for a task of 1
    cloud.reserve("i0", 0.5, key="buffer")
    cloud.scale("i0", factor=0.3, key="shrink")  # 1.2 cpu still holds the task; the buffer is what gives
    assert cloud.free("i0") == (-1.0, -2.0)  # no room for new work at all
    cloud.migrate(["t"], "i0", "i1", key="away")
    with pytest.raises(AdapterError, match="i0 is full"):
        cloud.migrate(["t"], "i1", "i0", key="back")  # its old place is all buffer now
