"""Telemetry in the dataset format written as node_exporter series in OpenMetrics text, for backfilling.

``promtool tsdb create-blocks-from openmetrics FILE DIR`` turns the text into Prometheus blocks; the
default queries of :mod:`forewarn.telemetry.prometheus` then read the same values back at each step of
the frame. Each metric becomes the series node_exporter (or blackbox_exporter) would expose:

=============== ================================================= ====================================
metric          series                                            how
=============== ================================================= ====================================
cpu             ``node_cpu_seconds_total{cpu="0",mode="idle"}``   counter rising at ``1 - cpu`` per s
memory          ``node_memory_MemAvailable_bytes`` / ``MemTotal`` gauge ``(1 - memory) * total``
disk_read       ``node_disk_read_bytes_total{device="vda"}``      counter rising at ``disk_read * 1e6``
disk_write      ``node_disk_written_bytes_total{device="vda"}``   counter rising at ``disk_write * 1e6``
error_count     ``node_network_receive_errs_total`` (and transmit) counter rising at ``error_count / 60``
net_latency_ms  ``probe_icmp_duration_seconds{phase="rtt"}``      gauge ``net_latency_ms / 1000``
=============== ================================================= ====================================

Samples are written every ``sample_seconds`` (default 60) from one step before an instance's first row;
the value written in ``(t - step, t]`` is the frame's value at ``t``, so a ``rate(...[step])`` evaluated
at ``t`` gives it back exactly. No samples are written inside an instance's gaps. Each metric's samples
stay together (all series of one name, then the next name), timestamps are in seconds, and the text
ends with ``# EOF``, as promtool requires.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

MEMORY_TOTAL = 8e9
"""Bytes of memory every backfilled instance reports."""

_Convert = Callable[[np.ndarray], np.ndarray]
# name, extra labels, metric, counter (True) or gauge, value (a rate for counters) from the metric
SERIES: tuple[tuple[str, str, str, bool, _Convert], ...] = (
    ("node_cpu_seconds_total", 'cpu="0",mode="idle"', "cpu", True, lambda v: 1.0 - v),
    ("node_memory_MemTotal_bytes", "", "memory", False, lambda v: np.full_like(v, MEMORY_TOTAL)),
    ("node_memory_MemAvailable_bytes", "", "memory", False, lambda v: (1.0 - v) * MEMORY_TOTAL),
    ("node_disk_read_bytes_total", 'device="vda"', "disk_read", True, lambda v: v * 1e6),
    ("node_disk_written_bytes_total", 'device="vda"', "disk_write", True, lambda v: v * 1e6),
    ("node_network_receive_errs_total", 'device="eth0"', "error_count", True, lambda v: v / 60.0),
    ("node_network_transmit_errs_total", 'device="eth0"', "error_count", True, lambda v: v * 0.0),
    ("probe_icmp_duration_seconds", 'phase="rtt"', "net_latency_ms", False, lambda v: v / 1000.0),
)


def _samples(times: np.ndarray, values: np.ndarray, step: int, every: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample times and, for each, the index of the frame row whose step ``(t - step, t]`` holds it."""
    grid = np.arange(times[0] - step, times[-1] + 1, every, dtype=np.int64)
    row = np.minimum(np.searchsorted(times, grid, side="left"), len(times) - 1)
    keep = (times[row] - grid < step) | (grid == times[0] - step)
    return grid[keep], row[keep]


def _series_lines(name: str, labels: str, stamps: np.ndarray, values: np.ndarray) -> Iterator[str]:
    for stamp, value in zip(stamps.tolist(), values.tolist(), strict=True):
        yield f"{name}{{{labels}}} {value!r} {stamp}"


def to_openmetrics(frame: pd.DataFrame, *, step_minutes: int, sample_seconds: int = 60, job: str = "node") -> str:
    """The OpenMetrics text of ``frame`` (dataset format, one row per instance and step; NaN cells as 0).

    Metrics without a series above are left out. Instance ids become the ``instance`` label.
    """
    step = step_minutes * 60
    frame = frame.sort_values(["instance_id", "timestamp"], kind="stable")
    seconds = frame["timestamp"].astype("int64").to_numpy() // 1_000_000_000
    ids = frame["instance_id"].astype(str).to_numpy()
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    families: list[str] = []
    for name, extra, metric, counter, convert in SERIES:
        if metric not in frame.columns:
            continue
        data = np.nan_to_num(frame[metric].to_numpy(dtype=float))
        for lo, hi in itertools.pairwise(bounds):
            stamps, row = _samples(seconds[lo:hi], data[lo:hi], step, sample_seconds)
            level = convert(data[lo:hi][row])
            if counter:
                level = np.r_[0.0, np.cumsum(level[1:] * np.diff(stamps))] + 1000.0
            labels = f'instance="{ids[lo]}",job="{job}"' + (f",{extra}" if extra else "")
            families.extend(_series_lines(name, labels, stamps, level))
    return "\n".join([*families, "# EOF", ""])
