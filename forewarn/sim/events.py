"""When instances fail, why, for how long, and which spikes announce nothing.

Terms:
    failure: an instance stops at ``minute`` (since the start) and is down for ``recovery`` minutes.
    episode: a precursor pattern (mode, strength, lead) that ends at ``minute``. Failure episodes end in a
        failure; noise episodes on healthy instances end in nothing.
    strength: 0..1, how far a precursor departs from the instance's normal; weak ones are hard to see.
    lead: minutes from the precursor's first sign to its end.

Failures follow a Weibull renewal process per instance (shape from LANL, scale set by the configured rate),
started long before the window so the window sees the process in its steady state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from forewarn.sim.config import FAILURE_MODES, SimConfig
from forewarn.sim.fit import LanlFit, sample_repair_minutes

PRECURSOR_MODES = FAILURE_MODES[:-1]
LEAD_MINUTES = {  # lead time range per mode, minutes
    "memory_leak": (120.0, 600.0),
    "disk_errors": (20.0, 240.0),
    "latency_degradation": (30.0, 120.0),
    "error_burst": (30.0, 60.0),
    "sudden": (0.0, 0.0),
}
MODE_BY_CAUSE = {  # weights over PRECURSOR_MODES for a failure that is not sudden
    "hardware": (0.10, 0.50, 0.20, 0.20),
    "software": (0.50, 0.05, 0.10, 0.35),
    "network": (0.00, 0.00, 0.80, 0.20),
    "facilities": (0.00, 0.30, 0.30, 0.40),
    "human_error": (0.00, 0.00, 0.40, 0.60),
    "undetermined": (0.25, 0.25, 0.25, 0.25),
}
Instants = tuple[np.ndarray, np.ndarray, np.ndarray]
Arrivals = Callable[[np.random.Generator, np.ndarray, np.ndarray, np.ndarray], Instants]
"""A hook that reshapes the failure instants: (rng, instance, minute, recovery) -> the same, sorted by instance
then minute with no failure starting before the previous one of its instance ended (see forewarn.sim.scenarios)."""
BURN_IN_MEANS = 10.0
MIN_UPTIME_STEPS = 2
NOISE_EPISODES_PER_DAY = 0.8


@dataclass
class Episodes:
    """Parallel arrays, one entry per episode (sorted by instance, then minute)."""

    instance: np.ndarray
    minute: np.ndarray
    mode: np.ndarray
    strength: np.ndarray
    lead: np.ndarray
    floor: np.ndarray  # precursors start no earlier than this minute (the previous recovery)
    root_cause: np.ndarray
    recovery: np.ndarray

    def __len__(self) -> int:
        return int(self.instance.size)


def _renewal(rng: np.random.Generator, config: SimConfig, fit: LanlFit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Failure instants (minutes) and repair times of every instance within the window."""
    horizon = config.steps * config.step_minutes
    empty = np.empty(0)
    if config.failure_rate_per_day <= 0:
        return empty.astype(int), empty, empty
    mean = 1440.0 / config.failure_rate_per_day
    scale = fit.scale_for_mean(mean)
    min_gap = MIN_UPTIME_STEPS * config.step_minutes
    clock = np.full(config.instances, -BURN_IN_MEANS * mean)
    active = np.arange(config.instances)
    width = int(2 * (BURN_IN_MEANS * mean + horizon) / mean) + 4
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    while active.size:
        gaps = np.maximum(scale * rng.weibull(fit.weibull_shape, size=(active.size, width)), min_gap)
        repair = sample_repair_minutes(fit, rng, active.size * width).reshape(active.size, width)
        repair = np.round(np.clip(repair, config.step_minutes, config.max_recovery_minutes))
        ends = clock[active, None] + np.cumsum(gaps + repair, axis=1)
        starts = np.round(ends - repair)
        keep = (starts >= 0) & (starts < horizon)
        rows, cols = np.nonzero(keep)
        found.append((active[rows], starts[rows, cols], repair[rows, cols]))
        clock[active] = ends[:, -1]
        active = active[clock[active] < horizon]
    instance, minute, recovery = (np.concatenate(parts) for parts in zip(*found, strict=True))
    order = np.lexsort((minute, instance))
    return instance[order].astype(int), minute[order], recovery[order]


def _leads(rng: np.random.Generator, modes: np.ndarray) -> np.ndarray:
    low = np.array([LEAD_MINUTES[m][0] for m in modes], dtype=float)
    high = np.array([LEAD_MINUTES[m][1] for m in modes], dtype=float)
    return rng.uniform(low, high) if modes.size else np.empty(0)


def _strengths(rng: np.random.Generator, size: int) -> np.ndarray:
    return np.clip(rng.beta(1.6, 1.2, size=size), 0.05, 1.0)


def failures(rng: np.random.Generator, config: SimConfig, fit: LanlFit, arrivals: Arrivals | None = None) -> Episodes:
    """Failure episodes: when, root cause (LANL mix), mode, precursor strength and lead, repair time."""
    instance, minute, recovery = _renewal(rng, config, fit)
    if arrivals is not None:
        instance, minute, recovery = arrivals(rng, instance, minute, recovery)
    causes = list(fit.root_cause_mix)
    weights = np.array([fit.root_cause_mix[c] for c in causes])
    root = np.array(causes, dtype=object)[rng.choice(len(causes), size=instance.size, p=weights / weights.sum())]
    sudden = rng.random(instance.size) < config.sudden_fraction
    modes = np.empty(instance.size, dtype=object)
    pick = rng.random(instance.size)
    for cause in causes:
        mix = np.cumsum(MODE_BY_CAUSE.get(cause, MODE_BY_CAUSE["undetermined"]))
        here = root == cause
        index = np.minimum(np.searchsorted(mix / mix[-1], pick[here], side="right"), len(PRECURSOR_MODES) - 1)
        modes[here] = np.array(PRECURSOR_MODES, dtype=object)[index]
    modes[sudden] = "sudden"
    same = np.r_[False, instance[1:] == instance[:-1]]
    floor = np.where(same, np.r_[0.0, (minute + recovery)[:-1]], -np.inf)
    return Episodes(
        instance=instance,
        minute=minute,
        mode=modes,
        strength=np.where(sudden, 0.0, _strengths(rng, instance.size)),
        lead=_leads(rng, modes),
        floor=floor,
        root_cause=root,
        recovery=recovery,
    )


def noise(rng: np.random.Generator, config: SimConfig, failed: np.ndarray) -> Episodes:
    """Precursor-like episodes on a share of the instances that never fail; they end in nothing."""
    horizon = config.steps * config.step_minutes
    healthy = np.setdiff1d(np.arange(config.instances), failed)
    noisy = healthy[rng.random(healthy.size) < config.noisy_fraction]
    counts = 1 + rng.poisson(NOISE_EPISODES_PER_DAY * config.days, size=noisy.size)
    instance = np.repeat(noisy, counts)
    modes = np.array(PRECURSOR_MODES, dtype=object)[rng.integers(0, len(PRECURSOR_MODES), size=instance.size)]
    lead = _leads(rng, modes)
    minute = np.round(rng.uniform(0.0, 1.0, size=instance.size) * horizon)
    order = np.lexsort((minute, instance))
    size = instance.size
    return Episodes(
        instance=instance[order],
        minute=minute[order],
        mode=modes[order],
        strength=_strengths(rng, size),
        lead=lead[order],
        floor=np.full(size, -np.inf),
        root_cause=np.full(size, "", dtype=object),
        recovery=np.zeros(size),
    )
