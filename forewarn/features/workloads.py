"""Workload characteristics of each instance at a time t, from ``workloads.csv``, using nothing after t.

Terms:
    running at t: a task of the instance with ``start <= t < end`` (``end`` empty: still running). Whether a
        task has ended by t is known at t; its ``end`` value is not, and is never used otherwise.
    expected remaining minutes: ``start + expected_duration - t`` of a running task, 0 once overdue; the
        mean is over running tasks whose ``expected_duration`` (minutes) is known, 0 when there is none.
    share: total demand over the instance's capacity (``instances.cpu_capacity``/``memory_capacity``,
        1.0 when unknown, as for :class:`forewarn.schemas.Instance`).

Every feature is a sum over running tasks, computed as C(start <= t) - C(end <= t) of per-instance
cumulative sums looked up with ``merge_asof``, so it stays vectorised for any number of tasks and rows.
Without workloads every feature is 0 (no task known to run).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forewarn.features.events import _asof

KINDS = ("batch", "service", "etl", "ml-training")
"""Task kinds counted by name; any other kind counts as ``other``."""

WORKLOAD_FEATURES = (
    "tasks_running",
    "task_cpu",
    "task_memory",
    "task_cpu_share",
    "task_memory_share",
    "task_data_size",
    "task_remaining_minutes",
    *(f"tasks_{kind.replace('-', '_')}" for kind in (*KINDS, "other")),
)
"""Feature names, in output order."""

_SUMS = ("n", "cpu", "memory", "data_size", "known")


def _kind_columns() -> list[str]:
    return [f"tasks_{kind.replace('-', '_')}" for kind in (*KINDS, "other")]


def _cumulative(events: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Events sorted by instance and time with ``columns`` summed cumulatively per instance."""
    events = events.sort_values(["instance_id", "_ts"], kind="stable").reset_index(drop=True)
    events[columns] = events.groupby("instance_id", sort=False)[columns].cumsum()
    return events


def _lookup(keys: pd.DataFrame, events: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Cumulative ``columns`` at each key's time (events at exactly t count), 0 before the first event."""
    if events.empty:
        return pd.DataFrame(0.0, index=keys.index, columns=columns)
    found = _asof(keys, _cumulative(events, columns), "_ts", offset=pd.Timedelta(0), exact=True)
    return found[columns].fillna(0.0)


def _task_table(workloads: pd.DataFrame) -> pd.DataFrame:
    """One row per task: instance, start, end (NaT: open), demands, kind flags, and its deadline, also in
    minutes after the instance's first task start (instance-local, so a result never depends on others)."""
    start = pd.to_datetime(workloads["start"], utc=True).astype("datetime64[ns, UTC]").reset_index(drop=True)
    end = pd.to_datetime(workloads["end"], utc=True).astype("datetime64[ns, UTC]").reset_index(drop=True)
    tasks = pd.DataFrame({"instance_id": workloads["instance_id"].astype(str).to_numpy(), "start": start, "end": end})
    tasks["n"] = 1.0
    for column in ("cpu", "memory", "data_size"):
        raw = workloads[column] if column in workloads else pd.Series(np.nan, index=workloads.index)
        tasks[column] = pd.to_numeric(raw, errors="coerce").fillna(0.0).to_numpy(dtype=float)
    raw_kind = workloads["kind"] if "kind" in workloads else pd.Series("batch", index=workloads.index)
    kind = raw_kind.astype(str).str.strip().str.lower().to_numpy()
    for name, column in zip((*KINDS, "other"), _kind_columns(), strict=True):
        hit = kind == name if name != "other" else ~np.isin(kind, KINDS)
        tasks[column] = hit.astype(float)
    raw_expected = workloads.get("expected_duration", pd.Series(np.nan, index=workloads.index))
    expected = pd.to_numeric(raw_expected, errors="coerce").to_numpy(dtype=float)
    tasks["known"] = (~np.isnan(expected)).astype(float)
    tasks["due"] = start + pd.to_timedelta(np.nan_to_num(expected), unit="min")
    tasks = tasks.dropna(subset=["start"])
    origin = tasks.groupby("instance_id")["start"].transform("min")
    tasks["deadline"] = ((tasks["due"] - origin).dt.total_seconds() / 60.0).to_numpy(dtype=float)
    return tasks


def _events(tasks: pd.DataFrame, at: pd.Series, sign: float, columns: list[str]) -> pd.DataFrame:
    """Signed copies of ``columns`` at the times ``at`` (rows where ``at`` is NaT are left out)."""
    frame = pd.DataFrame({"instance_id": tasks["instance_id"].to_numpy(), "_ts": at.to_numpy()})
    for column in columns:
        frame[column] = sign * tasks[column].to_numpy(dtype=float)
    return frame.dropna(subset=["_ts"])


def _running_sums(keys: pd.DataFrame, tasks: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Sums of ``columns`` over the tasks running at each key's time."""
    events = pd.concat(
        [_events(tasks, tasks["start"], 1.0, columns), _events(tasks, tasks["end"], -1.0, columns)], ignore_index=True
    )
    return _lookup(keys, events, columns)


def _remaining(keys: pd.DataFrame, tasks: pd.DataFrame, known: np.ndarray) -> np.ndarray:
    """Mean expected remaining minutes over running tasks with a known expected duration (0 when none).

    A task contributes ``deadline - t`` while ``start <= t < min(end, deadline)``, so the sum is
    S_deadline - n * t over the tasks active in that narrower span.
    """
    timed = tasks[tasks["known"] > 0].copy()
    stop = timed["end"].where(timed["end"].notna() & (timed["end"] < timed["due"]), timed["due"])
    timed["one"] = 1.0
    events = pd.concat(
        [_events(timed, timed["start"], 1.0, ["one", "deadline"]), _events(timed, stop, -1.0, ["one", "deadline"])],
        ignore_index=True,
    )
    sums = _lookup(keys, events, ["one", "deadline"])
    origin = keys["instance_id"].astype(str).map(tasks.groupby("instance_id")["start"].min())
    now = ((keys["event_timestamp"] - origin).dt.total_seconds() / 60.0).to_numpy(dtype=float)
    total = sums["deadline"].to_numpy() - sums["one"].to_numpy() * now
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(known > 0.5, np.maximum(total, 0.0) / np.maximum(known, 1.0), 0.0)
    return np.round(mean, 9)


def workload_features(
    keys: pd.DataFrame, workloads: pd.DataFrame | None, instances: pd.DataFrame | None = None
) -> pd.DataFrame:
    """:data:`WORKLOAD_FEATURES` for each key row (``instance_id``, ``event_timestamp``), aligned with it.

    Args:
        keys: ``instance_id`` and ``event_timestamp`` (UTC) in any order.
        workloads: dataset-format workloads (``instance_id``, ``start``, ``end``, ``cpu``, ``memory``,
            optional ``kind``, ``data_size``, ``expected_duration`` in minutes), or None.
        instances: dataset-format instances; its optional capacity columns give the shares.
    """
    out = pd.DataFrame(0.0, index=keys.index, columns=list(WORKLOAD_FEATURES))
    if workloads is None or workloads.empty:
        return out
    tasks = _task_table(workloads)
    columns = [*_SUMS, *_kind_columns()]
    sums = _running_sums(keys, tasks, columns)
    out["tasks_running"] = np.round(sums["n"].to_numpy(), 9)
    for column in ("cpu", "memory", "data_size", *_kind_columns()):
        name = column if column.startswith("tasks_") else f"task_{column}"
        out[name] = np.round(sums[column].to_numpy(), 9)
    for resource in ("cpu", "memory"):
        capacity = pd.Series(1.0, index=keys.index)
        if instances is not None and f"{resource}_capacity" in instances:
            table = instances.assign(instance_id=instances["instance_id"].astype(str)).drop_duplicates("instance_id")
            known = pd.to_numeric(table[f"{resource}_capacity"], errors="coerce")
            lookup = pd.Series(known.to_numpy(), index=table["instance_id"])
            capacity = keys["instance_id"].astype(str).map(lookup).fillna(1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = out[f"task_{resource}"].to_numpy() / capacity.to_numpy(dtype=float)
        out[f"task_{resource}_share"] = np.where(np.isfinite(share), share, 0.0)
    out["task_remaining_minutes"] = _remaining(keys, tasks, sums["known"].to_numpy())
    return out
