"""Forewarn's state on AWS resources, kept in EC2 tags: the task registry, cordons, buffers and soft capacity.

The task registry: each task is one tag on the instance that runs it, ``forewarn:task:<task_id>``, whose
value holds its demand and characteristics (``cpu=0.3;mem=0.2;...;from=i-123;seq=17``). The workload's own
scheduler reads these tags (or an agent on the instance does) to know what to run where; Forewarn moves a
task by writing its tag on the target, then deleting it from the source. ``seq`` orders writes, so a move
cut short between the two writes still reads as one task, on the newer instance. EC2 allows 50 tags per
resource, so an instance holds at most about 40 tasks (see docs/adapters.md).
"""

from __future__ import annotations

import time
from typing import Any

from adapters.fleet import FleetState
from forewarn.errors import AdapterError
from forewarn.schemas import Task

PREFIX = "forewarn:"
TASK = "forewarn:task:"
CORDONED = "forewarn:cordoned"
RESERVED = "forewarn:reserved"
FACTOR = "forewarn:capacity-factor"
KEY = "forewarn:key"
SNAPSHOT = "forewarn:snapshot"
MAX_TASK_TAGS = 40

_FIELDS: dict[str, tuple[str, type]] = {
    "cpu": ("cpu", float),
    "mem": ("memory", float),
    "data": ("data_size", float),
    "dur": ("expected_duration_minutes", float),
    "val": ("value", float),
    "split": ("splittable", int),
    "chunk": ("min_chunk", float),
    "kind": ("kind", str),
}


def tags_of(resource: dict[str, Any]) -> dict[str, str]:
    """The ``Tags`` list of an EC2 description as a dict."""
    return {str(t["Key"]): str(t.get("Value", "")) for t in resource.get("Tags", [])}


def encode_task(task: Task, *, came_from: str | None) -> tuple[str, str]:
    """The tag (key, value) that records ``task`` on its instance."""
    parts = [f"{short}={_fmt(getattr(task, name))}" for short, (name, _) in _FIELDS.items()]
    parts += [f"from={came_from or ''}", f"seq={time.time_ns()}"]
    value = ";".join(parts)
    if len(value) > 256 or len(TASK + task.task_id) > 128 or ";" in task.kind or "=" in task.kind:
        raise AdapterError(f"task {task.task_id!r} cannot be recorded in an EC2 tag (id or kind too long or odd)")
    return TASK + task.task_id, value


def _fmt(value: object) -> str:
    return str(int(value)) if isinstance(value, bool) else f"{value:.6g}" if isinstance(value, float) else str(value)


def decode_task(key: str, value: str, instance_id: str) -> tuple[Task, str | None, int]:
    """The task a tag records, the instance it last came from, and its write sequence number."""
    fields = dict(part.split("=", 1) for part in value.split(";") if "=" in part)
    data: dict[str, Any] = {"task_id": key[len(TASK) :], "instance_id": instance_id}
    for short, (name, kind) in _FIELDS.items():
        if short in fields and fields[short] != "":
            data[name] = bool(int(fields[short])) if name == "splittable" else kind(fields[short])
    try:
        task = Task(**data)
    except ValueError as error:
        raise AdapterError(f"tag {key} on {instance_id} is not a valid task record: {error}") from None
    return task, fields.get("from") or None, int(fields.get("seq") or 0)


def tasks_from(instances: dict[str, dict[str, str]]) -> tuple[dict[str, Task], dict[str, str]]:
    """Every task recorded on ``instances`` (id -> tags), and where each root task last came from.

    A task recorded twice (a move cut short) counts once, on the instance with the newer record.
    """
    best: dict[str, tuple[int, Task, str | None]] = {}
    for instance_id, tags in instances.items():
        for key, value in tags.items():
            if key.startswith(TASK):
                task, came_from, seq = decode_task(key, value, instance_id)
                if task.task_id not in best or seq > best[task.task_id][0]:
                    best[task.task_id] = (seq, task, came_from)
    tasks = {task_id: task for task_id, (_, task, _) in best.items()}
    left = {task_id.split("#", 1)[0]: src for task_id, (_, _, src) in best.items() if src}
    return tasks, left


def unit_float(tags: dict[str, str], key: str, default: float) -> float:
    """A numeric tag, or ``default`` when absent or unreadable."""
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return default


def record_changes(
    before: dict[str, Task], fleet: FleetState
) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """The task records to write (instance -> tag -> value) and to delete (instance -> tags) after a move.

    Write the new records first and delete after, so that a move cut short never loses a task.
    """
    put: dict[str, dict[str, str]] = {}
    drop: dict[str, list[str]] = {}
    for task_id, task in fleet.tasks.items():
        old = before.get(task_id)
        if old is not None and old.model_dump() == task.model_dump():
            continue
        tag, value = encode_task(task, came_from=fleet.left.get(task_id.split("#", 1)[0]))
        put.setdefault(str(task.instance_id), {})[tag] = value
        if old is not None and old.instance_id != task.instance_id:
            drop.setdefault(str(old.instance_id), []).append(tag)
    for task_id in before.keys() - fleet.tasks.keys():
        drop.setdefault(str(before[task_id].instance_id), []).append(TASK + task_id)
    return put, drop
