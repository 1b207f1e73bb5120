"""Allocation: where a risk score turns into moved work.

Terms:
    fleet: the instances and tasks as numpy arrays (:class:`Fleet`), plus the state of one planning cycle.
    placement: the target instance(s) of one task, lowest risk first (:func:`allocate_task`).
    chunk: a piece of a splittable task, ``<task>#<n>``, at least ``min_chunk`` of the task's demand.
    buffer: a share of an instance's nominal capacity kept free for work fleeing riskier instances (the
        capacity model is :mod:`forewarn.capacity`'s).
    velocity limits: caps on actions per cycle, concurrent migrations, migrations per target and the
        fraction of the fleet one plan may touch.
    objective: expected interruption cost (risk x value of the work on each instance) + migration cost.

The planner (:func:`plan_actions`) runs every cycle; :mod:`forewarn.allocation.exact` solves small
instances exactly to measure how far the heuristic is from optimal.
"""

from forewarn.allocation.model import Fleet
from forewarn.allocation.placement import allocate_task
from forewarn.allocation.planner import AllocationResult, plan_actions, plan_fleet

__all__ = ["AllocationResult", "Fleet", "allocate_task", "plan_actions", "plan_fleet"]
