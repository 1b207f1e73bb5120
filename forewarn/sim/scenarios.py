"""Named simulator scenarios for closed-loop evaluation: ``default``, ``bursty`` and ``sudden``.

Terms:
    burst: failures that follow each other within ``window_minutes`` (a chain: each within the window of the
        one before), as in the Alpine (OLCF) and Campaign (LANL) disk-failure records.
    rack: a block of :data:`RACK_SIZE` consecutive instances; a burst stays in one rack with the share of
        burst failures the records show in one enclosure, else it spreads over the fleet.

``bursty`` keeps the configured failure rate but moves :attr:`BurstFit.burst_share` of it into bursts whose
sizes and spans are drawn from the records (sizes capped at :data:`MAX_BURST_FLEET_SHARE` of the fleet).
``sudden`` makes 90 % of failures sudden (no precursor): prediction has little to act on and must not harm.
:func:`fit_bursts` re-fits :data:`BURST_FIT` from the data; docs/evaluation.md gives the figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from forewarn.dataset import Dataset, write_dataset
from forewarn.errors import ConfigError, DatasetError
from forewarn.sim.config import SimConfig
from forewarn.sim.core import simulate
from forewarn.sim.events import MIN_UPTIME_STEPS, Arrivals
from forewarn.sim.fit import LANL_FIT, QUANTILE_LEVELS, sample_repair_minutes

SCENARIOS = ("default", "bursty", "sudden")
BURST_FILES = ("alpine_formatted_data.csv", "camp_formatted_data.csv")
RACK_SIZE = 20
MAX_BURST_FLEET_SHARE = 0.1
SUDDEN_FRACTION = 0.9


class BurstFit(BaseModel):
    """Burst statistics of the Alpine and Campaign disk failures, pooled.

    Attributes:
        window_minutes: a failure within this long after the previous one joins its burst.
        burst_share: share of all failures that are in a burst of two or more.
        size_quantiles: quantiles (at QUANTILE_LEVELS) of the size of bursts of two or more.
        span_quantiles_minutes: quantiles of the time from a burst's first failure to its last.
        same_enclosure_share: share of a burst's failures in its most frequent enclosure.
        n_failures: failures fitted.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_minutes: float = Field(gt=0)
    burst_share: float = Field(ge=0, le=1)
    size_quantiles: list[float]
    span_quantiles_minutes: list[float]
    same_enclosure_share: float = Field(ge=0, le=1)
    n_failures: int = Field(gt=0)


BURST_FIT = BurstFit(
    window_minutes=60.0,
    burst_share=0.4976,
    size_quantiles=[2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 4.0, 5.0, 10.0, 21.78, 175.0],
    span_quantiles_minutes=[
        0.0, 0.0, 0.02, 0.03, 1.51, 24.02, 29.95, 30.68, 57.87, 59.9, 60.02, 92.78, 147.92, 300.0, 542.13,
    ],
    same_enclosure_share=0.4639,
    n_failures=5155,
)  # fmt: skip
"""What :func:`fit_bursts` gives on ../shared/data/hpc_disk_failures_alpine_campaign (tests check it)."""


def _quantiles(values: np.ndarray) -> list[float]:
    return [round(float(v), 2) for v in np.quantile(values, QUANTILE_LEVELS)]


def fit_bursts(folder: str | Path, window_minutes: float = 60.0) -> BurstFit:
    """Fit :class:`BurstFit` to the two record files in ``folder`` (pooled).

    Raises:
        DatasetError: a file is missing or lacks ``Timestamp`` / ``Unique enclosure``.
    """
    sizes, spans, same, total = [], [], [], 0
    for name in BURST_FILES:
        path = Path(folder) / name
        if not path.exists():
            raise DatasetError("disk-failure records not found", file=path)
        frame = pd.read_csv(path)
        for column in ("Timestamp", "Unique enclosure"):
            if column not in frame.columns:
                raise DatasetError(f"missing column {column}", file=path, row=1, field=column)
        frame["t"] = pd.to_datetime(frame["Timestamp"], utc=True, format="ISO8601")
        frame = frame.sort_values("t", kind="stable")
        gap = frame["t"].diff().dt.total_seconds().to_numpy() / 60.0
        groups = frame.groupby(np.cumsum(~(gap <= window_minutes)))
        size = groups.size().to_numpy()
        span = groups["t"].agg(lambda s: (s.max() - s.min()).total_seconds() / 60.0).to_numpy()
        top = groups["Unique enclosure"].agg(lambda s: s.value_counts().iloc[0]).to_numpy()
        multi = size >= 2
        sizes.append(size[multi])
        spans.append(span[multi])
        same.append((top[multi].sum(), size[multi].sum()))
        total += len(frame)
    size_all = np.concatenate(sizes)
    return BurstFit(
        window_minutes=window_minutes,
        burst_share=round(float(size_all.sum() / total), 4),
        size_quantiles=_quantiles(size_all),
        span_quantiles_minutes=_quantiles(np.concatenate(spans)),
        same_enclosure_share=round(sum(a for a, _ in same) / sum(b for _, b in same), 4),
        n_failures=total,
    )


def _draw(rng: np.random.Generator, quantiles: list[float], size: int) -> np.ndarray:
    """Draws from the empirical distribution given by its quantile table (linear between levels)."""
    return np.interp(rng.random(size), QUANTILE_LEVELS, quantiles)


def burst_arrivals(config: SimConfig, fit: BurstFit = BURST_FIT) -> Arrivals:
    """A hook for :func:`forewarn.sim.simulate` that adds correlated bursts to the renewal failures."""

    def add(
        rng: np.random.Generator, instance: np.ndarray, minute: np.ndarray, recovery: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        horizon = config.steps * config.step_minutes
        wanted = fit.burst_share * config.failure_rate_per_day * config.instances * config.days
        cap = max(2, int(MAX_BURST_FLEET_SHARE * config.instances))
        mean_size = float(np.mean(np.minimum(_draw(rng, fit.size_quantiles, 1000).round(), cap)))
        count = rng.poisson(wanted / mean_size)
        parts = [(instance, minute, recovery)]
        for _ in range(count):
            size = int(min(round(_draw(rng, fit.size_quantiles, 1)[0]), cap, config.instances))
            start = rng.uniform(0.0, horizon)
            offsets = np.sort(rng.uniform(0.0, _draw(rng, fit.span_quantiles_minutes, 1)[0], size=size))
            pool = np.arange(config.instances)
            if rng.random() < fit.same_enclosure_share:
                rack = rng.integers(0, max(1, config.instances // RACK_SIZE))
                pool = pool[rack * RACK_SIZE : (rack + 1) * RACK_SIZE]
            members = rng.choice(pool, size=min(size, pool.size), replace=False)
            repair = np.clip(sample_repair_minutes(LANL_FIT, rng, members.size), config.step_minutes,
                             config.max_recovery_minutes)  # fmt: skip
            when = np.round((start + offsets[: members.size]) / config.step_minutes) * config.step_minutes
            parts.append((members, when, np.round(repair)))
        merged = [np.concatenate(p) for p in zip(*parts, strict=True)]
        return _non_overlapping(*merged, gap=MIN_UPTIME_STEPS * config.step_minutes, horizon=horizon)

    return add


def _non_overlapping(
    instance: np.ndarray, minute: np.ndarray, recovery: np.ndarray, *, gap: float, horizon: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted by instance then minute, dropping any failure that starts before its instance is back up."""
    order = np.lexsort((minute, instance))
    instance, minute, recovery = instance[order].astype(int), minute[order], recovery[order]
    keep = np.zeros(instance.size, dtype=bool)
    free_at: dict[int, float] = {}
    for k in range(instance.size):
        inst = int(instance[k])
        if minute[k] < horizon and minute[k] >= free_at.get(inst, -np.inf):
            keep[k] = True
            free_at[inst] = minute[k] + recovery[k] + gap
    return instance[keep], minute[keep], recovery[keep]


def scenario_config(name: str, config: SimConfig) -> SimConfig:
    """``config`` adjusted for the scenario: bursts take part of the rate, or failures turn sudden."""
    if name not in SCENARIOS:
        raise ConfigError(f"unknown scenario '{name}'", field="scenario", allowed=SCENARIOS)
    if name == "bursty":
        return config.model_copy(
            update={"failure_rate_per_day": config.failure_rate_per_day * (1 - BURST_FIT.burst_share)}
        )
    if name == "sudden":
        return config.model_copy(update={"sudden_fraction": SUDDEN_FRACTION})
    return config


def simulate_scenario(name: str, config: SimConfig) -> Dataset:
    """Simulate ``config`` under scenario ``name`` (``default`` is exactly :func:`simulate`)."""
    adjusted = scenario_config(name, config)
    if name == "bursty":
        return simulate(adjusted, arrivals=burst_arrivals(config))
    return simulate(adjusted)


def write_scenario(name: str, config: SimConfig, out: Path) -> Path:
    """Simulate under scenario ``name`` and write the dataset directory ``out``; returns ``out``."""
    return write_dataset(simulate_scenario(name, config), out)
