"""Window features over telemetry, one row per (instance, telemetry timestamp).

Terms:
    window: a time span ending at the row's ``event_timestamp`` t; it holds the samples with
        ``t - window < timestamp <= t`` of the same instance (it only looks backwards).
    slope: the least-squares slope of a metric against time within a window, in units per hour.

Feature names are stable and listed by :func:`feature_names`: ``<metric>_<stat>_<window>`` for stat in
mean, max, std (population, ddof 0), slope; then ``err_<category>_<1h|6h>``; then ``minutes_since_failure``
and ``minutes_since_boot``. A feature is NaN when it is undefined (no sample, a slope from one sample, no
failure or boot seen yet).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from forewarn.errors import InputError
from forewarn.features.events import EVENT_FEATURES, error_counts, error_feature_names, event_features
from forewarn.features.velocity import VELOCITY_FEATURES, velocity_features
from forewarn.features.workloads import WORKLOAD_FEATURES, workload_features
from forewarn.schemas import VelocityLimits

METRICS = ("cpu", "memory", "disk_read", "disk_write", "net_latency_ms", "error_count")
"""Default telemetry metric columns (those the simulator writes)."""

WINDOWS = {"5m": 5, "1h": 60, "6h": 360}
"""Window name -> length in minutes."""

LOOKBACK_MINUTES = max(WINDOWS.values())
"""How far back of a row the features look (the longest window): an incremental run reads this much before
its first new row."""

STATS = ("mean", "max", "std", "slope")
WINDOW_STATS: dict[str, tuple[str, ...]] = {"5m": ("mean", "max"), "1h": STATS, "6h": STATS}
"""Statistics per window. The 5-minute window holds one sample at the usual 5-minute step, so its
standard deviation (always 0) and slope (never defined) would be constant columns; it keeps mean and max."""
KEYS = ("instance_id", "event_timestamp")


def safe_name(metric: str) -> str:
    """A metric name usable in a feature name: anything but letters, digits and ``_`` becomes ``_``."""
    return re.sub(r"[^0-9A-Za-z_]", "_", str(metric))


def metrics_of(telemetry: pd.DataFrame) -> list[str]:
    """The metric columns of a wide telemetry frame (every column but the keys, with at least one value),
    whatever their names, in the frame's order."""
    return [str(c) for c in telemetry.columns if c not in ("instance_id", "timestamp") and telemetry[c].notna().any()]


def feature_names(metrics: Sequence[str] | None = None) -> list[str]:
    """Every feature column :func:`compute_window_features` writes, in order (keys excluded)."""
    chosen = METRICS if metrics is None else tuple(metrics)
    safe = [safe_name(m) for m in chosen]
    if len(set(safe)) != len(safe):
        raise InputError(
            f"metric names collide once made safe for feature names: {', '.join(map(str, chosen))}", field="metrics"
        )
    names = [f"{safe_name(m)}_{stat}_{window}" for m in chosen for window in WINDOWS for stat in WINDOW_STATS[window]]
    return [*names, *error_feature_names(), *EVENT_FEATURES]


def all_feature_names(metrics: Sequence[str] | None = None) -> list[str]:
    """Every feature column of :func:`compute_window_features`: window, then workload, then velocity."""
    return [*feature_names(metrics), *WORKLOAD_FEATURES, *VELOCITY_FEATURES]


def _prepare(telemetry: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Keys and metrics only, sorted, one row per (instance, timestamp) (duplicates averaged)."""
    missing = [c for c in ("instance_id", "timestamp", *metrics) if c not in telemetry.columns]
    if missing:
        found = [str(c) for c in telemetry.columns if c not in ("instance_id", "timestamp")]
        raise InputError("telemetry lacks a column needed for features", field=missing[0], allowed=found)
    frame = pd.DataFrame(
        {
            "instance_id": telemetry["instance_id"].astype(str).to_numpy(),
            "timestamp": pd.to_datetime(telemetry["timestamp"], utc=True)
            .astype("datetime64[ns, UTC]")
            .reset_index(drop=True),
        }
    )
    for i, metric in enumerate(metrics):
        frame[f"m{i}"] = pd.to_numeric(telemetry[metric], errors="coerce").to_numpy(dtype=float)
    if frame["timestamp"].isna().any():
        raise InputError("telemetry has an empty or invalid timestamp", field="timestamp")
    frame = frame.groupby(["instance_id", "timestamp"], sort=True, as_index=False).mean()
    return frame.reset_index(drop=True)


def _rolling(frame: pd.DataFrame, columns: list[str], minutes: int, how: str) -> pd.DataFrame:
    """A time-based rolling aggregate per instance over ``(t - minutes, t]``, aligned with ``frame``.

    ``frame`` must be sorted by instance then time: the grouped result comes back in that order.
    """
    roll = frame.groupby("instance_id", sort=True).rolling(f"{minutes}min", on="timestamp", closed="right")
    agg = roll[columns]
    result = agg.std(ddof=0) if how == "std" else getattr(agg, how)()
    if not np.array_equal(result.index.get_level_values(0).to_numpy(), frame["instance_id"].to_numpy()):
        raise RuntimeError("rolling result is not aligned with the sorted telemetry")
    return result.reset_index(drop=True).set_axis(frame.index)[columns]


def _window_block(frame: pd.DataFrame, count: int, minutes: int) -> dict[str, np.ndarray]:
    """mean, max, std and slope of every metric ``m0..m{count-1}`` over one window, keyed ``m{i}_{stat}``."""
    start = frame.groupby("instance_id", sort=False)["timestamp"].transform("min")
    hours = ((frame["timestamp"] - start).dt.total_seconds() / 3600.0).to_numpy()
    helpers = pd.DataFrame({"instance_id": frame["instance_id"], "timestamp": frame["timestamp"]})
    for i in range(count):
        y = frame[f"m{i}"].to_numpy()
        t = np.where(np.isnan(y), np.nan, hours)
        helpers[f"y{i}"], helpers[f"t{i}"], helpers[f"ty{i}"] = y, t, t * y
        helpers[f"tt{i}"], helpers[f"n{i}"] = t * t, (~np.isnan(y)).astype(float)
    sums = _rolling(helpers, [c for c in helpers.columns if c not in ("instance_id", "timestamp")], minutes, "sum")
    metric_cols = [f"m{i}" for i in range(count)]
    maxima = _rolling(frame, metric_cols, minutes, "max")
    stds = _rolling(frame, metric_cols, minutes, "std")
    out: dict[str, np.ndarray] = {}
    for i in range(count):
        n = sums[f"n{i}"].to_numpy()
        sy, st, sty, stt = (sums[f"{k}{i}"].to_numpy() for k in ("y", "t", "ty", "tt"))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, sy / n, np.nan)
            denominator = n * stt - st * st
            defined = (n >= 2) & (denominator > 1e-12 * np.maximum(n * stt, 1e-12))
            slope = np.where(defined, (n * sty - st * sy) / denominator, np.nan)
        out[f"m{i}_mean"], out[f"m{i}_slope"] = mean, slope
        out[f"m{i}_max"] = np.where(n > 0, maxima[f"m{i}"].to_numpy(), np.nan)
        out[f"m{i}_std"] = np.where(n > 0, stds[f"m{i}"].to_numpy(), np.nan)
    return out


CHUNK_ROWS = 50_000
"""Window statistics are computed on runs of whole instances of about this many rows, so their helpers
(five columns per metric, and the rolling copies of them) stay bounded whatever the fleet's size."""


def instance_chunks(instance_ids: np.ndarray, rows: int = CHUNK_ROWS) -> list[slice]:
    """Contiguous slices of whole instances (rows sorted by instance), each of at most ``rows`` rows unless
    one instance alone has more."""
    if len(instance_ids) == 0:
        return [slice(0, 0)]
    starts = np.r_[0, np.flatnonzero(instance_ids[1:] != instance_ids[:-1]) + 1]
    ends = np.r_[starts[1:], len(instance_ids)]
    chunks, begin = [], 0
    for start, end in zip(starts, ends, strict=True):
        if end - begin > rows and start > begin:
            chunks.append(slice(begin, int(start)))
            begin = int(start)
    chunks.append(slice(begin, len(instance_ids)))
    return chunks


def _window_blocks(frame: pd.DataFrame, count: int, minutes: int) -> dict[str, np.ndarray]:
    """:func:`_window_block` over :func:`instance_chunks` of ``frame``, joined: the same values, bounded memory."""
    chunks = instance_chunks(frame["instance_id"].to_numpy())
    if len(chunks) == 1:
        return _window_block(frame, count, minutes)
    parts = [_window_block(frame.iloc[chunk], count, minutes) for chunk in chunks]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _thin(frame: pd.DataFrame, every_minutes: int) -> pd.DataFrame:
    """Keep each instance's last row in every ``every_minutes`` bucket (features are computed before)."""
    bucket = frame["event_timestamp"].dt.floor(f"{every_minutes}min")
    last = ~pd.DataFrame({"i": frame["instance_id"], "b": bucket}).duplicated(keep="last")
    return frame.loc[last.to_numpy()].reset_index(drop=True)


def compute_window_features(
    telemetry: pd.DataFrame,
    *,
    errors: pd.DataFrame | None = None,
    failures: pd.DataFrame | None = None,
    instances: pd.DataFrame | None = None,
    workloads: pd.DataFrame | None = None,
    velocity: VelocityLimits | None = None,
    metrics: Sequence[str] | None = None,
    every_minutes: int | None = None,
) -> pd.DataFrame:
    """Window features at every telemetry timestamp (optionally thinned), using no data after it.

    Args:
        telemetry: dataset-format telemetry: ``instance_id``, ``timestamp`` (UTC) and metric columns;
            irregular sampling, gaps and NaN values are allowed.
        errors: dataset-format errors (``instance_id``, ``timestamp``, ``category``), if any.
        failures: dataset-format failures (``instance_id``, ``timestamp``, optional ``recovery_minutes``).
        instances: dataset-format instances; its optional ``boot_time`` and capacity columns are used.
        workloads: dataset-format workloads, for :mod:`forewarn.features.workloads` (all 0 without).
        velocity: the concurrency limits in force (:mod:`forewarn.features.velocity`); default limits without.
        metrics: metric columns to use; default :data:`METRICS`.
        every_minutes: keep only each instance's last row per bucket of this many minutes.

    Returns:
        ``instance_id``, ``event_timestamp`` (datetime64[ns, UTC]) and the float columns of
        :func:`all_feature_names` (window features first), sorted by instance and time.

    Raises:
        InputError: a needed column is missing or ``every_minutes`` is not positive.
    """
    chosen = list(METRICS if metrics is None else metrics)
    if every_minutes is not None and every_minutes <= 0:
        raise InputError(f"must be a positive number of minutes, got {every_minutes}", field="every_minutes")
    frame = _prepare(telemetry, chosen)
    columns: dict[str, np.ndarray] = {}
    for window, minutes in WINDOWS.items():
        block = _window_blocks(frame, len(chosen), minutes)
        for i, metric in enumerate(chosen):
            for stat in WINDOW_STATS[window]:
                columns[f"{safe_name(metric)}_{stat}_{window}"] = block[f"m{i}_{stat}"]
    keys = pd.DataFrame({"instance_id": frame["instance_id"], "event_timestamp": frame["timestamp"]})
    del frame
    for part in (
        error_counts(keys, errors),
        event_features(keys, failures, instances),
        workload_features(keys, workloads, instances),
        velocity_features(keys, velocity),
    ):
        for name in part.columns:
            if name not in KEYS:
                columns[name] = part[name].reindex(keys.index).to_numpy(dtype=float)
    names = all_feature_names(chosen)
    values = {name: columns.pop(name) for name in names}  # one copy into the frame's block, helpers freed
    columns.clear()
    out = pd.DataFrame({"instance_id": keys["instance_id"], "event_timestamp": keys["event_timestamp"], **values})
    del values
    return _thin(out, every_minutes) if every_minutes else out
