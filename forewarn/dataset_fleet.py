"""The fleet a dataset describes: its instances and the tasks they run, as Forewarn's schemas.

A dataset (:mod:`forewarn.dataset`) holds rows; replay, the simulated clouds and the fleet service need
:class:`~forewarn.schemas.Instance` and :class:`~forewarn.schemas.Task` objects made from them.
"""

from __future__ import annotations

import pandas as pd

from forewarn.dataset import Dataset
from forewarn.schemas import Instance, Task


def instances_from(dataset: Dataset) -> list[Instance]:
    """The fleet's instances: from instances.csv where present, else every instance in the telemetry."""
    if dataset.instances is None:
        return [Instance(instance_id=i) for i in dataset.instance_ids]
    allowed = set(Instance.model_fields) - {"tags", "state"}
    rows = dataset.instances.to_dict("records")
    return [Instance(**{k: v for k, v in row.items() if k in allowed and not pd.isna(v)}) for row in rows]


def workload_tasks(rows: pd.DataFrame) -> list[Task]:
    """Tasks from rows of workloads.csv (batch and ETL work can be split; services cannot)."""
    return [
        Task(
            task_id=str(r.task_id),
            instance_id=str(r.instance_id),
            kind=str(r.kind),
            cpu=float(r.cpu),
            memory=float(r.memory),
            data_size=0.0 if pd.isna(r.data_size) else float(r.data_size),
            expected_duration_minutes=60.0 if pd.isna(r.expected_duration) else float(r.expected_duration),
            splittable=str(r.kind) in {"batch", "etl"},
            start=r.start.to_pydatetime(),
            end=None if pd.isna(r.end) else r.end.to_pydatetime(),
        )
        for r in rows.itertuples(index=False)
    ]


def tasks_at(dataset: Dataset, at: pd.Timestamp) -> list[Task]:
    """Tasks running at ``at`` per workloads.csv; without one, a unit task per instance."""
    if dataset.workloads is None:
        return [Task(task_id=f"task-{i}", instance_id=i) for i in dataset.instance_ids]
    w = dataset.workloads
    return workload_tasks(w[(w["start"] <= at) & (w["end"].isna() | (w["end"] > at))])
