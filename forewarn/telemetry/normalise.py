"""Make raw telemetry uniform: units, clocks, identities, and a fixed step.

The order is fixed and each stage is counted in the :class:`NormalisationReport`:

1. identity: ``id_map`` renames agent ids (``"10.0.0.5:9100"``) to fleet ids (``"i-0001"``); unmapped ids
   are kept as they are.
2. clock: ``clock_offsets`` says how far a clock runs *ahead* of true time; the offset is subtracted.
   A key names a value of the optional ``source`` column, else a raw (unmapped) instance id.
3. units: ``units`` multiplies a metric by a factor (:data:`BYTES_TO_MB`, :data:`PERCENT_TO_FRACTION`).
4. arrival order (counted before sorting, per instance, in the order rows were given):
   *out of order* is a sample older than one already seen; *late* is an out-of-order sample whose step
   is before the latest step already seen (it would have missed that step's cut-off).
5. duplicates: rows of one instance with the same timestamp (after the clock fix); they are averaged.
6. resampling: each sample falls in the step that starts at or before it (steps aligned to the epoch);
   samples in one step are averaged. Between an instance's first and last step, a run of at most
   ``max_gap_steps`` missing steps is kept as rows of NaN; a longer run is a *gap* and gets no rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from forewarn.dataset import TELEMETRY_KEYS
from forewarn.errors import InputError
from forewarn.telemetry.base import check_step

BYTES_TO_MB = 1e-6
"""Bytes to megabytes (10^6 bytes), the unit of the disk metrics."""
PERCENT_TO_FRACTION = 0.01
"""Percent (0-100) to a fraction (0-1), the unit of cpu and memory."""


class NormalisationReport(BaseModel):
    """What :func:`normalise` found and did, in samples (input rows) or steps (output rows)."""

    model_config = ConfigDict(extra="forbid")

    input_rows: int
    output_rows: int
    instances: int
    renamed_rows: int = 0
    clock_adjusted_rows: int = 0
    converted_metrics: list[str] = []
    out_of_order: int = 0
    late: int = 0
    duplicates: int = 0
    missing_steps: int = 0
    filled_steps: int = 0
    gaps: int = 0
    gap_steps: int = 0


@dataclass
class NormalisedBatch:
    """Telemetry on a fixed step (``frame``) and the counts of what was fixed (``report``)."""

    frame: pd.DataFrame
    report: NormalisationReport


def _check(frame: pd.DataFrame, units: Mapping[str, float]) -> list[str]:
    missing = [c for c in TELEMETRY_KEYS if c not in frame.columns]
    if missing:
        raise InputError(f"telemetry frame lacks column(s) {', '.join(missing)}", field=missing[0])
    metrics = [c for c in frame.columns if c not in (*TELEMETRY_KEYS, "source")]
    unknown = [name for name in units if name not in metrics]
    if unknown:
        raise InputError("unit factor for a metric the frame does not have", field=unknown[0], allowed=metrics)
    return metrics


def _timestamps(frame: pd.DataFrame) -> pd.Series:
    stamps = frame["timestamp"]
    if not pd.api.types.is_datetime64_any_dtype(stamps):
        stamps = pd.to_datetime(stamps, utc=True, format="ISO8601")
    elif stamps.dt.tz is None:
        raise InputError("timestamps must be UTC-aware (datetime64[ns, UTC])", field="timestamp")
    return stamps.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _clock_shift(frame: pd.DataFrame, clock_offsets: Mapping[str, timedelta]) -> pd.Series:
    keys = frame["source"].astype(str) if "source" in frame.columns else frame["instance_id"].astype(str)
    seconds = keys.map({k: v.total_seconds() for k, v in clock_offsets.items()}).fillna(0.0)
    return pd.to_timedelta(seconds, unit="s")


def _arrival_counts(ids: pd.Series, stamps: pd.Series, step: pd.Series) -> tuple[int, int]:
    """Out-of-order and late samples, per instance in the order given."""
    order = pd.DataFrame({"id": ids.to_numpy(), "t": stamps.to_numpy(), "s": step.to_numpy()})
    groups = order.groupby("id", sort=False)
    previous_max = groups["t"].cummax().groupby(order["id"]).shift(1)
    previous_step = groups["s"].cummax().groupby(order["id"]).shift(1)
    out_of_order = (order["t"] < previous_max).fillna(False)
    late = out_of_order & (order["s"] < previous_step).fillna(False)
    return int(out_of_order.sum()), int(late.sum())


def _regrid(frame: pd.DataFrame, step: pd.Timedelta, max_gap_steps: int) -> tuple[pd.DataFrame, dict[str, int]]:
    """Insert NaN rows for short runs of missing steps; count missing steps and long gaps."""
    counts = {"missing_steps": 0, "filled_steps": 0, "gaps": 0, "gap_steps": 0}
    pieces = []
    for instance_id, rows in frame.groupby("instance_id", sort=True):
        stamps = rows["timestamp"]
        holes = (stamps.diff() / step).fillna(1).astype(int).to_numpy() - 1
        counts["missing_steps"] += int(holes.sum())
        counts["gaps"] += int((holes > max_gap_steps).sum())
        counts["gap_steps"] += int(holes[holes > max_gap_steps].sum())
        short = holes[(holes > 0) & (holes <= max_gap_steps)]
        counts["filled_steps"] += int(short.sum())
        fill = [
            stamps.iloc[i - 1] + step * k
            for i in np.flatnonzero((holes > 0) & (holes <= max_gap_steps))
            for k in range(1, int(holes[i]) + 1)
        ]
        pieces.append(rows)
        if fill:
            pieces.append(pd.DataFrame({"instance_id": instance_id, "timestamp": pd.DatetimeIndex(fill)}))
    out = pd.concat(pieces, ignore_index=True) if pieces else frame
    out = out.sort_values(["instance_id", "timestamp"], kind="stable").reset_index(drop=True)
    return out, counts


def normalise(
    frame: pd.DataFrame,
    *,
    step_minutes: int,
    units: Mapping[str, float] | None = None,
    id_map: Mapping[str, str] | None = None,
    max_gap_steps: int = 3,
    clock_offsets: Mapping[str, timedelta] | None = None,
) -> NormalisedBatch:
    """Normalise raw telemetry (see the module docstring for each stage and what the report counts).

    Args:
        frame: ``instance_id``, ``timestamp``, metric columns, and optionally ``source``.
        step_minutes: the output step.
        units: metric name to multiplication factor.
        id_map: raw instance id to fleet instance id.
        max_gap_steps: the longest run of missing steps kept as NaN rows.
        clock_offsets: source name (or raw instance id) to how far its clock runs ahead.

    Returns:
        The frame in the dataset telemetry format, one row per instance and step, and the report.
    """
    check_step(step_minutes)
    if max_gap_steps < 0:
        raise InputError(f"{max_gap_steps} is negative", field="max_gap_steps")
    units, id_map, clock_offsets = dict(units or {}), dict(id_map or {}), dict(clock_offsets or {})
    metrics = _check(frame, units)
    stamps = _timestamps(frame)
    shift = _clock_shift(frame, clock_offsets)
    stamps = stamps - shift.to_numpy()
    raw_ids = frame["instance_id"].astype(str)
    ids = raw_ids.map(lambda value: id_map.get(value, value))
    values = frame[metrics].apply(pd.to_numeric, errors="coerce").astype(float)
    for name, factor in units.items():
        values[name] = values[name] * float(factor)
    step = pd.Timedelta(minutes=step_minutes)
    bucket = stamps.dt.floor(step)
    out_of_order, late = _arrival_counts(ids, stamps, bucket)
    keyed = values.assign(instance_id=ids.to_numpy(), _t=stamps.to_numpy(), timestamp=bucket.to_numpy())
    duplicates = int(keyed.duplicated(["instance_id", "_t"]).sum())
    resampled = keyed.groupby(["instance_id", "timestamp"], sort=True)[metrics].mean().reset_index()
    resampled, gaps = _regrid(resampled, step, max_gap_steps)
    resampled = resampled[["instance_id", "timestamp", *metrics]]
    report = NormalisationReport(
        input_rows=len(frame),
        output_rows=len(resampled),
        instances=int(resampled["instance_id"].nunique()),
        renamed_rows=int((ids != raw_ids).sum()),
        clock_adjusted_rows=int((shift != pd.Timedelta(0)).sum()),
        converted_metrics=sorted(units),
        out_of_order=out_of_order,
        late=late,
        duplicates=duplicates,
        **gaps,
    )
    return NormalisedBatch(frame=resampled, report=report)
