"""The capacity model: how much work an instance may carry. The one definition; the allocator (vectorised, in
:class:`forewarn.allocation.model.Fleet`), the clouds' fleet state (:class:`adapters.fleet.FleetState`) and the
restore of a failed instance's work (:mod:`forewarn.execution.restore`) all use it.

Terms (per resource, cpu or memory):
    nominal: the instance's full size.
    factor: the share of its nominal size it runs at (a scale-back lowers it); the cloud reports
        ``capacity = nominal x factor`` (:class:`forewarn.schemas.Instance` ``cpu_capacity``).
    reserved: a buffer, a share of the nominal size kept free for work fleeing riskier instances.
    usable: ``nominal x max(factor - reserved, 0)``: what new work may fill, the buffer left free.
    free: usable less what the instance's tasks use; a demand fits when it is at most free (within ``EPS``).

Which capacity a check takes: placing new work (a migration, a restore) and reserving a buffer take
``usable``; shrinking an instance takes ``capacity`` (its tasks must still fit, a buffer may be eaten into).

The functions take floats or numpy arrays alike; numpy is imported on first use (``forewarn policy check``
reads this module and needs no numpy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from forewarn.schemas import Instance

if TYPE_CHECKING:
    import numpy as np

__all__ = ["EPS", "NOMINAL", "fits", "free", "nominal", "scaled_back", "usable"]

EPS = 1e-9
"""Tolerance of every capacity comparison."""
NOMINAL = 1.0 - EPS
"""A capacity factor at or above this is the nominal capacity (1.0, give or take rounding)."""

Amount = TypeVar("Amount", float, "np.ndarray")


def nominal(capacity: Amount, factor: Amount) -> Amount:
    """The nominal size of an instance the cloud reports at ``capacity`` under scale-back ``factor``."""
    return capacity / factor


def usable(size: Amount, factor: Amount, reserved: Amount) -> Amount:
    """What new work may fill: the nominal ``size`` x (``factor`` less the buffer ``reserved``), never below 0."""
    import numpy as np

    return size * np.maximum(factor - reserved, 0.0)


def free(instance: Instance, cpu_used: float, memory_used: float) -> tuple[float, float]:
    """CPU and memory that new work may still take on ``instance`` (as the cloud reports it), given its use."""
    factor, reserved = instance.capacity_factor, instance.reserved
    cpu = usable(nominal(instance.cpu_capacity, factor), factor, reserved)
    memory = usable(nominal(instance.memory_capacity, factor), factor, reserved)
    return float(cpu) - cpu_used, float(memory) - memory_used


def fits(need: float, room: float) -> bool:
    """Whether a demand of ``need`` fits in ``room`` (free, or a capacity), give or take ``EPS``."""
    return need <= room + EPS


def scaled_back(factor: float) -> bool:
    """Whether an instance runs below its nominal capacity."""
    return factor < NOMINAL
