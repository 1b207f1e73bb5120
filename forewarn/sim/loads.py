"""Daily CPU load shapes: real PlanetLab VM traces (2011-03-03), or a built-in diurnal curve without them.

A trace is 288 five-minute CPU percentages of one VM over one day. Each instance gets one trace, resampled
to the simulator's step and repeated every day with a per-day level factor, a small time shift and noise.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from forewarn.settings import shared_data_dir

PLANETLAB_DIR = Path("planetlab_vm_cpu_20110303") / "20110303"
DAY_MINUTES = 1440.0
_warned = False


def planetlab_dir() -> Path:
    """Where the PlanetLab traces are expected (under :func:`forewarn.settings.shared_data_dir`)."""
    return shared_data_dir() / PLANETLAB_DIR


@lru_cache(maxsize=4)
def _trace_files(directory: str) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in Path(directory).iterdir() if p.is_file()))


@lru_cache(maxsize=4096)
def _read_trace(path: str) -> np.ndarray | None:
    try:
        values = np.loadtxt(path, dtype=float, ndmin=1)
    except (OSError, ValueError):
        return None
    if values.size < 2 or not np.all(np.isfinite(values)):
        return None
    return np.clip(values / 100.0, 0.0, 1.0)


def _resample(trace: np.ndarray, minutes_of_day: np.ndarray) -> np.ndarray:
    """Values of a one-day trace (evenly spaced from midnight) at the given minutes of the day."""
    grid = np.arange(trace.size) * (DAY_MINUTES / trace.size)
    return np.interp(minutes_of_day, grid, trace, period=DAY_MINUTES)


def _diurnal(rng: np.random.Generator, n: int, minutes_of_day: np.ndarray) -> np.ndarray:
    level = rng.uniform(0.1, 0.5, size=(n, 1))
    amplitude = rng.uniform(0.05, 0.25, size=(n, 1))
    peak = rng.normal(14 * 60, 120, size=(n, 1))
    phase = 2 * np.pi * (minutes_of_day[None, :] - peak) / DAY_MINUTES
    return np.clip(level + amplitude * np.cos(phase), 0.0, 1.0)


def daily_shapes(rng: np.random.Generator, n: int, step_minutes: int, directory: Path | None = None) -> np.ndarray:
    """One day of CPU load (0..1) per instance at the step: shape ``(n, steps_per_day)``.

    Traces are drawn from the PlanetLab folder (without replacement while they last). Without the folder,
    a built-in diurnal curve is used and a warning says so once per process.
    """
    global _warned
    folder = directory if directory is not None else planetlab_dir()
    minutes = np.arange(0.0, DAY_MINUTES, step_minutes)
    names = _trace_files(str(folder)) if folder.is_dir() else ()
    if not names:
        if not _warned:
            warnings.warn(f"PlanetLab traces not found in {folder}; using a built-in diurnal CPU shape", stacklevel=2)
            _warned = True
        return _diurnal(rng, n, minutes)
    picks = rng.choice(len(names), size=n, replace=n > len(names))
    shapes = np.empty((n, minutes.size))
    fallback = _diurnal(rng, n, minutes)
    for row, index in enumerate(picks):
        trace = _read_trace(str(folder / names[index]))
        shapes[row] = fallback[row] if trace is None else _resample(trace, minutes)
    return shapes


def cpu_series(rng: np.random.Generator, shapes: np.ndarray, minutes: np.ndarray) -> np.ndarray:
    """Repeat daily shapes over ``minutes`` (since start) with per-day level, shift and step noise."""
    n, per_day = shapes.shape
    step = DAY_MINUTES / per_day
    days = int(np.ceil((minutes[-1] + 1) / DAY_MINUTES)) if minutes.size else 1
    day_of = (minutes // DAY_MINUTES).astype(int)
    level = rng.lognormal(0.0, 0.15, size=(n, days))[:, day_of]
    shift = np.round(rng.normal(0.0, 15.0, size=(n, days)) / step).astype(int)[:, day_of]
    slot = ((minutes % DAY_MINUTES) // step).astype(int)[None, :] + shift
    base = np.take_along_axis(shapes, slot % per_day, axis=1)
    noise = rng.normal(0.0, 1.0, size=base.shape) * (0.01 + 0.08 * base)
    return np.clip(base * level + noise, 0.0, 1.0)
