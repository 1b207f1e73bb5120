"""Telemetry arrays of shape (instances, steps): a healthy baseline, then precursors, then downtime.

Row ``j`` of an instance is the sample at ``minutes[j]`` and summarises the step before it
``[minutes[j] - step, minutes[j])``. Precursors change the metrics in ``[max(end - lead, floor), end)`` with
progress ``p`` rising from 0 to 1, and add error-log rates (:class:`ErrorRates`) in the same steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from forewarn.sim.events import Episodes

METRICS = ("cpu", "memory", "disk_read", "disk_write", "net_latency_ms", "error_count")


@dataclass
class ErrorRates:
    """Extra error-log rates added by precursors: flat cell index, expected lines in the step, category."""

    cells: list[np.ndarray] = field(default_factory=list)
    rates: list[np.ndarray] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    def add(self, cells: np.ndarray, rates: np.ndarray, category: str) -> None:
        self.cells.append(cells)
        self.rates.append(rates)
        self.categories.append(category)


def baseline(rng: np.random.Generator, cpu: np.ndarray) -> dict[str, np.ndarray]:
    """Healthy metrics around the CPU load: memory follows load, disk IO and latency scale with it."""
    n, steps = cpu.shape
    memory = rng.uniform(0.2, 0.55, size=(n, 1)) + 0.2 * cpu + rng.normal(0.0, 0.015, size=(n, steps))
    read = rng.lognormal(np.log(4.0), 0.6, size=(n, 1)) * (0.3 + 1.5 * cpu)
    write = rng.lognormal(np.log(2.5), 0.6, size=(n, 1)) * (0.3 + 1.5 * cpu)
    latency = rng.uniform(0.4, 3.0, size=(n, 1)) * (1.0 + 0.6 * cpu) * rng.lognormal(0.0, 0.12, size=(n, steps))
    spikes = rng.random((n, steps)) < 0.002
    latency = np.where(spikes, latency * rng.uniform(2.0, 5.0, size=(n, steps)), latency)
    return {
        "cpu": cpu,
        "memory": memory,
        "disk_read": read * rng.lognormal(0.0, 0.35, size=(n, steps)),
        "disk_write": write * rng.lognormal(0.0, 0.35, size=(n, steps)),
        "net_latency_ms": latency,
    }


def _window(minutes: np.ndarray, end: float, lead: float, floor: float) -> tuple[slice, np.ndarray]:
    first = max(end - lead, floor)
    lo, hi = np.searchsorted(minutes, [first, end], side="left")
    progress = (minutes[lo:hi] - (end - lead)) / max(lead, 1.0)
    return slice(int(lo), int(hi)), np.clip(progress, 0.0, 1.0)


def apply_episodes(
    rng: np.random.Generator, values: dict[str, np.ndarray], minutes: np.ndarray, episodes: Episodes, rates: ErrorRates
) -> None:
    """Write every episode's precursor into ``values`` in place and its error rates into ``rates``."""
    steps = minutes.size
    for k in range(len(episodes)):
        mode = str(episodes.mode[k])
        if mode == "sudden":
            continue
        row, s = int(episodes.instance[k]), float(episodes.strength[k])
        span, p = _window(minutes, float(episodes.minute[k]), float(episodes.lead[k]), float(episodes.floor[k]))
        if p.size == 0:
            continue
        cells = row * steps + np.arange(span.start, span.stop)
        if mode == "memory_leak":
            memory = values["memory"][row, span]
            values["memory"][row, span] = memory + s * (0.98 - memory) * p**1.3
            values["cpu"][row, span] += s * 0.08 * p
            rates.add(cells, s * 0.5 * p**4, "memory")
        elif mode == "disk_errors":
            values["disk_read"][row, span] *= 1.0 + s * rng.uniform(1.0, 4.0) * p * rng.lognormal(0, 0.3, p.size)
            values["disk_write"][row, span] *= 1.0 - 0.7 * s * p
            rates.add(cells, s * (0.2 + rng.uniform(1.0, 4.0) * p**2), "disk")
        elif mode == "latency_degradation":
            values["net_latency_ms"][row, span] *= 1.0 + s * rng.uniform(2.0, 8.0) * p**1.5
            rates.add(cells, s * 0.3 * p, "network")
        elif mode == "error_burst":
            burst = s * rng.uniform(2.0, 10.0) * p * rng.gamma(0.5, 2.0, size=p.size)
            rates.add(cells, burst, "application" if rng.random() < 0.6 else "kernel")


def down_mask(minutes: np.ndarray, n: int, failures: Episodes) -> np.ndarray:
    """True where the instance is up: False in ``[failure, failure + recovery)``."""
    up = np.ones((n, minutes.size), dtype=bool)
    lo = np.searchsorted(minutes, failures.minute, side="left")
    hi = np.searchsorted(minutes, failures.minute + failures.recovery, side="left")
    for row, a, b in zip(failures.instance, lo, hi, strict=True):
        up[row, a:b] = False
    return up


def finish(values: dict[str, np.ndarray]) -> None:
    """Clip every metric to its physical range, in place."""
    np.clip(values["cpu"], 0.0, 1.0, out=values["cpu"])
    np.clip(values["memory"], 0.0, 1.0, out=values["memory"])
    for name in ("disk_read", "disk_write"):
        np.maximum(values[name], 0.0, out=values[name])
    np.maximum(values["net_latency_ms"], 0.05, out=values["net_latency_ms"])
