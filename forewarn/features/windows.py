"""Window features over telemetry, one row per (instance, telemetry timestamp).

Terms:
    window: a time span ending at the row's ``event_timestamp`` t; it holds the samples with
        ``t - window < timestamp <= t`` of the same instance (it only looks backwards).
    slope: the least-squares slope of a metric against time within a window, in units per hour.

Feature names are stable and listed by :func:`feature_names`: ``<metric>_<stat>_<window>`` for stat in
mean, max, std (population, ddof 0), slope; then ``err_<category>_<1h|6h>``; then ``minutes_since_failure``
and ``minutes_since_boot``. A feature is NaN when it is undefined (no sample, a slope from one sample, no
failure or boot seen yet). A statistic that overflows (a telemetry value of 1e200 squared) or exceeds
:data:`FEATURE_LIMIT` is clipped to plus or minus that limit and counted (``frame.attrs["clipped"]``, and a
warning naming the instances), so a feature is never infinite and scoring can tell the row apart.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from forewarn.errors import InputError
from forewarn.features import baselines
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
FEATURE_LIMIT = 1e30
"""The largest magnitude of a window feature: larger ones (and overflows) are clipped to it. Finite in
float32 (the model's input), far above anything a bounded metric gives (see forewarn.telemetry_rules.upper_bound)."""
CLIPPED = "clipped"
"""``frame.attrs`` key of :func:`compute_window_features`: how many feature values were clipped."""
log = logging.getLogger("forewarn.features")


def _clip(values: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """``values`` with overflows (NaN or infinite where the statistic is ``defined``) and magnitudes above
    :data:`FEATURE_LIMIT` set to plus or minus that limit (an overflow to plus)."""
    with np.errstate(invalid="ignore"):
        bad = (defined & ~np.isfinite(values)) | (np.abs(values) > FEATURE_LIMIT)
    if bad.any():
        values = values.copy()
        values[bad] = np.where(values[bad] < 0, -FEATURE_LIMIT, FEATURE_LIMIT)
    return values


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
    if baselines.BASELINE_FEATURES:
        names += baselines.baseline_feature_names(safe)
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
    columns: dict[str, np.ndarray | pd.Series] = {
        "instance_id": telemetry["instance_id"].astype(str).to_numpy(),
        "timestamp": pd.to_datetime(telemetry["timestamp"], utc=True)
        .astype("datetime64[ns, UTC]")
        .reset_index(drop=True),
    }
    for i, metric in enumerate(metrics):  # built whole: a column at a time fragments a wide frame
        columns[f"m{i}"] = pd.to_numeric(telemetry[metric], errors="coerce").to_numpy(dtype=float)
    frame = pd.DataFrame(columns)
    if frame["timestamp"].isna().any():
        raise InputError("telemetry has an empty or invalid timestamp", field="timestamp")
    frame = frame.groupby(["instance_id", "timestamp"], sort=True, as_index=False).mean()
    return frame.reset_index(drop=True)


def _first_after(codes: np.ndarray, ns: np.ndarray, qcodes: np.ndarray, qns: np.ndarray) -> np.ndarray:
    """For each query (code, time), the first row of the sorted (code, time) rows after it."""
    low, high = int(min(ns.min(), qns.min())), int(max(ns.max(), qns.max()))
    stride = high - low + 1
    per = max(1, (2**62) // stride)  # instance codes per pass that fit a monotonic int64 key
    out = np.empty(len(qcodes), dtype=np.int64)
    for first in range(0, int(codes.max()) + 1, per):
        rows = (codes >= first) & (codes < first + per)
        asked = (qcodes >= first) & (qcodes < first + per)
        if not asked.any():
            continue
        offset = int(np.argmax(rows))
        key = (codes[rows] - first) * stride + (ns[rows] - low)
        qkey = (qcodes[asked] - first) * stride + (qns[asked] - low)
        out[asked] = offset + np.searchsorted(key, qkey, side="right")
    return out


def _grouped(values: pd.DataFrame, groups: np.ndarray, how: str) -> np.ndarray:
    """A cumulative sum or max within each run of equal ``groups``, in row order (sequential per group)."""
    grouped = values.groupby(groups, sort=False)
    return (grouped.cumsum() if how == "sum" else grouped.cummax()).to_numpy()


def _window_block(frame: pd.DataFrame, count: int, minutes: int, targets: np.ndarray) -> dict[str, np.ndarray]:
    """mean, max, std and slope of every metric ``m0..m{count-1}`` over one window, at the ``targets`` rows.

    Deterministic: a window ``(t - w, t]`` is split at the multiple of ``w`` (since the epoch) before ``t``
    into a suffix of the previous aligned block and a prefix of the row's own block; each part is a
    cumulative sum within its block, shifted by the block's first value and timed from the split point. So
    a row's features depend only on the samples of its two blocks up to ``t``, never on where the frame read
    starts: an incremental run over a look-back gives the very values of a full computation.
    """
    width = minutes * 60 * 1_000_000_000
    ns = frame["timestamp"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]").view("i8")
    codes = pd.factorize(frame["instance_id"], sort=False)[0].astype(np.int64)
    block = (ns - 1) // width
    starts = np.r_[True, (codes[1:] != codes[:-1]) | (block[1:] != block[:-1])]
    group = np.cumsum(starts) - 1
    first_row = np.flatnonzero(starts)[group]
    nxt = np.r_[np.flatnonzero(starts)[1:], len(ns)][group]  # first row of the next group
    has_next = nxt < len(ns)
    nxt_ok = np.where(has_next, nxt, 0)
    next_is_following = has_next & (codes[nxt_ok] == codes) & (block[nxt_ok] == block + 1)
    hours_prefix = (ns - block * width) / 3.6e12
    hours_suffix = (ns - (block + 1) * width) / 3.6e12
    suffix_row = _first_after(codes, ns, codes[targets], ns[targets] - width)
    suffix_ok = suffix_row < len(ns)
    suffix_safe = np.where(suffix_ok, suffix_row, 0)
    suffix_ok &= (codes[suffix_safe] == codes[targets]) & (block[suffix_safe] == block[targets] - 1)
    reverse = slice(None, None, -1)
    out: dict[str, np.ndarray] = {}
    with np.errstate(over="ignore", invalid="ignore"):  # an absurd value overflows; _clip bounds the results
        for i in range(count):
            y = frame[f"m{i}"].to_numpy(dtype=float)
            valid = ~np.isnan(y)
            ref_own = np.nan_to_num(y[first_row], nan=0.0)
            ref_next = np.where(next_is_following, np.nan_to_num(y[nxt_ok], nan=0.0), 0.0)
            parts = []
            for ref, hours, order in ((ref_own, hours_prefix, slice(None)), (ref_next, hours_suffix, reverse)):
                z = np.where(valid, y - ref, 0.0)
                t = np.where(valid, hours, 0.0)
                sums = pd.DataFrame({"n": valid.astype(float), "z": z, "zz": z * z, "t": t, "tt": t * t, "tz": t * z})
                summed = _grouped(sums.iloc[order], group[order], "sum")[order]
                peak = _grouped(pd.DataFrame({"y": np.where(valid, y, -np.inf)}).iloc[order], group[order], "max")
                parts.append((summed, peak[order][:, 0]))
            (pre, pre_max), (suf, suf_max) = parts
            total = pre[targets] + np.where(suffix_ok[:, None], suf[suffix_safe], 0.0)
            peak = np.maximum(pre_max[targets], np.where(suffix_ok, suf_max[suffix_safe], -np.inf))
            n, sz, szz, st, stt, stz = total.T
            ref = ref_own[targets]
            with np.errstate(divide="ignore"):
                mean = np.where(n > 0, ref + sz / n, np.nan)
                var = np.maximum(szz / n - (sz / n) ** 2, 0.0)
                denominator = n * stt - st * st
                defined = (n >= 2) & (denominator > 1e-12 * np.maximum(n * stt, 1e-12))
                slope = np.where(defined, (n * stz - st * sz) / denominator, np.nan)
            some = n > 0
            out[f"m{i}_mean"], out[f"m{i}_slope"] = _clip(mean, some), _clip(slope, defined)
            out[f"m{i}_max"] = _clip(np.where(some, peak, np.nan), some)
            out[f"m{i}_std"] = _clip(np.where(some, np.sqrt(var), np.nan), some)
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


def _window_input(
    frame: pd.DataFrame, targets: np.ndarray, since: pd.Timestamp | None, minutes: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows a window of ``minutes`` needs for rows after ``since``, and the targets' positions in them: those
    after ``since - minutes`` (each target's own block starts after it, and its previous block's suffix too),
    so a short window of an incremental run does not go over the whole look-back."""
    if since is None:
        return frame, targets
    needed = np.flatnonzero((frame["timestamp"] > pd.Timestamp(since) - pd.Timedelta(minutes=minutes)).to_numpy())
    if len(needed) == len(frame):
        return frame, targets
    return frame.iloc[needed].reset_index(drop=True), np.searchsorted(needed, targets)


def _window_blocks(frame: pd.DataFrame, targets: np.ndarray, count: int, minutes: int) -> dict[str, np.ndarray]:
    """:func:`_window_block` over :func:`instance_chunks` of ``frame``, joined: the same values, bounded memory.
    ``targets`` (sorted row positions) are split among the chunks and made local to each."""
    chunks = instance_chunks(frame["instance_id"].to_numpy())
    if len(chunks) == 1:
        return _window_block(frame, count, minutes, targets)
    parts = []
    for chunk in chunks:
        local = targets[(targets >= chunk.start) & (targets < chunk.stop)] - chunk.start
        parts.append(_window_block(frame.iloc[chunk], count, minutes, local))
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
    since: pd.Timestamp | None = None,
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
        since: emit rows only for timestamps after this (an incremental run: the earlier rows are the
            look-back, input to the windows but not output); the values are those of a full computation.

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
    stamps = frame["timestamp"]
    targets = np.flatnonzero((stamps > pd.Timestamp(since)).to_numpy()) if since is not None else np.arange(len(frame))
    columns: dict[str, np.ndarray] = {}
    for window, minutes in WINDOWS.items():
        block = _window_blocks(*_window_input(frame, targets, since, minutes), len(chosen), minutes)
        for i, metric in enumerate(chosen):
            for stat in WINDOW_STATS[window]:
                columns[f"{safe_name(metric)}_{stat}_{window}"] = block[f"m{i}_{stat}"]
    if baselines.BASELINE_FEATURES:
        _add_baselines(columns, frame, targets, since, chosen)
    stat_names = list(columns)
    keys = pd.DataFrame(
        {
            "instance_id": frame["instance_id"].iloc[targets].reset_index(drop=True),
            "event_timestamp": stamps.iloc[targets].reset_index(drop=True),
        }
    )
    del frame, stamps
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
    clipped = _count_clipped(values, stat_names, keys["instance_id"])
    out = pd.DataFrame({"instance_id": keys["instance_id"], "event_timestamp": keys["event_timestamp"], **values})
    del values
    out = _thin(out, every_minutes) if every_minutes else out
    out.attrs[CLIPPED] = clipped
    return out


def _add_baselines(
    columns: dict[str, np.ndarray],
    frame: pd.DataFrame,
    targets: np.ndarray,
    since: pd.Timestamp | None,
    chosen: list[str],
) -> None:
    """Add :mod:`forewarn.features.baselines` to ``columns`` (which hold the window statistics)."""
    for window, minutes in baselines.BASELINE_WINDOWS.items():
        block = _window_blocks(*_window_input(frame, targets, since, minutes), len(chosen), minutes)
        for i, metric in enumerate(chosen):
            columns[f"{safe_name(metric)}_mean_{window}"] = block[f"m{i}_mean"]  # a helper, not a feature
    for metric in map(safe_name, chosen):
        values = baselines.baseline_values(
            *(columns[f"{metric}_{stat}"] for stat in ("mean_5m", "mean_15m", "mean_1h", "mean_6h", "std_6h"))
        )
        for stat, value in values.items():
            columns[f"{metric}_{stat}"] = _clip(value, ~np.isnan(value))
    for window in baselines.BASELINE_WINDOWS:
        for metric in map(safe_name, chosen):
            del columns[f"{metric}_mean_{window}"]


def _count_clipped(values: dict[str, np.ndarray], window_names: list[str], instances: pd.Series) -> int:
    """How many window feature values were clipped; a warning names the first instances they belong to."""
    hit = np.zeros(len(instances), dtype=bool)
    count = 0
    for name in window_names:
        at_limit = np.abs(values[name]) >= FEATURE_LIMIT
        count += int(at_limit.sum())
        hit |= at_limit
    if count:
        who = sorted(set(instances.to_numpy()[hit].astype(str)))
        log.warning(
            "%d window feature value(s) overflowed or exceeded %g and were clipped to it, in %d row(s) of "
            "instance(s) %s: their telemetry holds absurd values", count, FEATURE_LIMIT, int(hit.sum()),
            ", ".join(who[:5]) + (" ..." if len(who) > 5 else ""),
        )  # fmt: skip
    return count
