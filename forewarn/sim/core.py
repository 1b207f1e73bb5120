"""Assemble a simulated fleet into a :class:`forewarn.dataset.Dataset`.

One ``numpy`` generator (PCG64 seeded by ``config.seed``) drives every draw in a fixed order, so the same
config gives the same dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forewarn.dataset import Dataset, write_dataset
from forewarn.sim import events, fleet, loads, logs, metrics
from forewarn.sim.config import SimConfig
from forewarn.sim.fit import LANL_FIT, LanlFit


def _telemetry(ids: np.ndarray, config: SimConfig, values: dict[str, np.ndarray], up: np.ndarray) -> pd.DataFrame:
    steps = up.shape[1]
    flat = np.flatnonzero(up.ravel())
    row, col = np.divmod(flat, steps)
    stamps = pd.date_range(config.start, periods=steps, freq=pd.Timedelta(minutes=config.step_minutes))
    frame = pd.DataFrame({"instance_id": ids[row], "timestamp": stamps[col]})
    for name in metrics.METRICS:
        frame[name] = values[name].ravel()[flat]
    return frame


def _failures(ids: np.ndarray, config: SimConfig, failed: events.Episodes) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "instance_id": ids[failed.instance],
            "timestamp": pd.Timestamp(config.start) + pd.to_timedelta(failed.minute, unit="min"),
            "type": failed.mode.astype(str),
            "root_cause": failed.root_cause.astype(str),
            "recovery_minutes": failed.recovery.astype(float),
        }
    )
    return frame.sort_values(["timestamp", "instance_id"], kind="stable").reset_index(drop=True)


def simulate(config: SimConfig, fit: LanlFit = LANL_FIT, *, arrivals: events.Arrivals | None = None) -> Dataset:
    """Simulate a fleet: telemetry, failures, error lines, instances and workloads.

    Args:
        config: fleet size, span, seed and failure knobs.
        fit: the failure process; the embedded LANL fit by default.
        arrivals: an optional hook that reshapes the failure instants (correlated bursts, see scenarios).
    """
    rng = np.random.Generator(np.random.PCG64(config.seed))
    ids = fleet.instance_ids(config.instances)
    minutes = np.arange(config.steps, dtype=float) * config.step_minutes
    shapes = loads.daily_shapes(rng, config.instances, config.step_minutes)
    values = metrics.baseline(rng, loads.cpu_series(rng, shapes, minutes))
    failed = events.failures(rng, config, fit, arrivals)
    noisy = events.noise(rng, config, np.unique(failed.instance))
    rates = metrics.ErrorRates()
    metrics.apply_episodes(rng, values, minutes, failed, rates)
    metrics.apply_episodes(rng, values, minutes, noisy, rates)
    metrics.finish(values)
    up = metrics.down_mask(minutes, config.instances, failed)
    loggable = up & np.c_[np.zeros((config.instances, 1), dtype=bool), up[:, :-1]]
    errors, values["error_count"] = logs.generate(rng, ids, minutes, config.step_minutes, config.start, loggable, rates)
    machines = fleet.instances(rng, config, ids)
    return Dataset(
        telemetry=_telemetry(ids, config, values, up),
        failures=_failures(ids, config, failed),
        errors=errors,
        instances=machines,
        workloads=fleet.workloads(rng, config, machines),
    )


def write(config: SimConfig, out: Path) -> Path:
    """Simulate with ``config`` and write the dataset directory ``out`` (CSV files); returns ``out``."""
    return write_dataset(simulate(config), out)
