"""The failure process fitted to the LANL HPC failure records (1996-2005, LA-UR-05-7318).

Terms:
    interval: hours between two consecutive failures of one node (``Prob Started`` grouped by
        ``System`` + ``nodenum``). Zero-length intervals (same minute) are dropped before fitting.
    root-cause mix: the share of records blamed on each category column (a record that names none counts
        as ``undetermined``).
    repair time: ``Down Time`` in minutes, kept as an empirical quantile table.

:func:`fit_lanl` re-fits from the data; :data:`LANL_FIT` holds the constants it gave, so the simulator runs
without the data. ``tests/test_sim.py`` checks that the two agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from forewarn.errors import DatasetError

LANL_FILE = "LA-UR-05-7318-failure-data-1996-2005.csv.xz"
CAUSE_COLUMNS = {
    "Facilities": "facilities",
    "Hardware": "hardware",
    "Human Error": "human_error",
    "Network": "network",
    "Undetermined": "undetermined",
    "Software": "software",
}
REQUIRED_COLUMNS = ("System", "nodenum", "Prob Started", "Down Time", *CAUSE_COLUMNS)
QUANTILE_LEVELS: tuple[float, ...] = (
    0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0,
)  # fmt: skip


class LanlFit(BaseModel):
    """A Weibull renewal process with repair times and a root-cause mix, as fitted to LANL.

    Attributes:
        weibull_shape: Weibull shape k of per-node inter-arrival times (k < 1: failures cluster).
        weibull_scale_hours: Weibull scale in hours (location fixed at 0).
        weibull_loglik: log-likelihood of the intervals under the fitted Weibull.
        exp_loglik: log-likelihood under the exponential fitted by maximum likelihood (scale = mean).
        n_intervals: number of positive intervals fitted.
        root_cause_mix: share of records per root cause; sums to 1.
        repair_minutes_quantiles: ``Down Time`` quantiles at :data:`QUANTILE_LEVELS`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    weibull_shape: float = Field(gt=0)
    weibull_scale_hours: float = Field(gt=0)
    weibull_loglik: float
    exp_loglik: float
    n_intervals: int = Field(gt=0)
    root_cause_mix: dict[str, float]
    repair_minutes_quantiles: list[float]

    @property
    def mean_interval_hours(self) -> float:
        """Mean of the fitted Weibull: scale * Gamma(1 + 1/k)."""
        return float(stats.weibull_min.mean(self.weibull_shape, scale=self.weibull_scale_hours))

    def scale_for_mean(self, mean: float) -> float:
        """The Weibull scale that keeps the fitted shape and gives ``mean`` (in any unit)."""
        return float(mean / stats.weibull_min.mean(self.weibull_shape))


LANL_FIT = LanlFit(
    weibull_shape=0.4894335,
    weibull_scale_hours=825.9128,
    weibull_loglik=-157226.33,
    exp_loglik=-169649.63,
    n_intervals=20006,
    root_cause_mix={
        "facilities": 0.015249,
        "hardware": 0.604111,
        "human_error": 0.006277,
        "network": 0.017735,
        "undetermined": 0.130797,
        "software": 0.225831,
    },
    repair_minutes_quantiles=[
        0.0, 1.0, 7.0, 12.0, 21.0, 30.0, 41.0, 59.0, 83.0, 120.0, 180.0, 329.0, 619.1, 3778.72, 319482.0,
    ],
)  # fmt: skip
"""The fit :func:`fit_lanl` gives on the published file (see docs/simulator.md)."""


def _resolve(path: str | Path) -> Path:
    source = Path(path)
    if source.is_dir():
        source = source / LANL_FILE
    if not source.exists():
        raise DatasetError(f"LANL failure records not found; expected {LANL_FILE}", file=source)
    return source


def _read(source: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(source, compression="infer", low_memory=False)
    except (OSError, ValueError, EOFError, pd.errors.ParserError) as exc:
        raise DatasetError(f"cannot be parsed: {str(exc).strip().splitlines()[0]}", file=source) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"missing column(s) {', '.join(missing)}", file=source, row=1, field=missing[0])
    return frame


def lanl_intervals_hours(frame: pd.DataFrame, source: Path | None = None) -> np.ndarray:
    """Positive per-node inter-arrival times in hours (``System`` + ``nodenum``, by ``Prob Started``)."""
    started = pd.to_datetime(frame["Prob Started"], format="%m/%d/%Y %H:%M", errors="coerce")
    bad = np.flatnonzero(started.isna().to_numpy() & frame["Prob Started"].notna().to_numpy())
    if len(bad):
        raise DatasetError(
            f"'{frame['Prob Started'].iloc[bad[0]]}' is not a time (mm/dd/yyyy hh:mm)",
            file=source, row=int(bad[0]) + 2, field="Prob Started",
        )  # fmt: skip
    nodes = pd.DataFrame({"system": frame["System"], "node": frame["nodenum"], "t": started}).dropna()
    nodes = nodes.sort_values(["system", "node", "t"], kind="stable")
    gaps = nodes.groupby(["system", "node"])["t"].diff().dt.total_seconds() / 3600.0
    values = gaps.dropna().to_numpy(dtype=float)
    return values[values > 0]


def fit_lanl(path: str | Path) -> LanlFit:
    """Fit the failure process to the LANL records.

    Args:
        path: the ``.csv.xz`` file, or the folder that holds it.

    Raises:
        DatasetError: the file is missing, unreadable, or lacks a column the fit needs.
    """
    source = _resolve(path)
    frame = _read(source)
    intervals = lanl_intervals_hours(frame, source)
    if len(intervals) < 10:
        raise DatasetError(f"only {len(intervals)} positive inter-arrival times; need 10 or more", file=source)
    shape, _, scale = stats.weibull_min.fit(intervals, floc=0)
    weibull_loglik = float(stats.weibull_min.logpdf(intervals, shape, 0, scale).sum())
    exp_loglik = float(stats.expon.logpdf(intervals, 0, intervals.mean()).sum())
    blamed = frame[list(CAUSE_COLUMNS)].notna()
    counts = {name: float(blamed[column].sum()) for column, name in CAUSE_COLUMNS.items()}
    counts["undetermined"] += float((~blamed.any(axis=1)).sum())
    total = sum(counts.values())
    down = pd.to_numeric(frame["Down Time"], errors="coerce").dropna().clip(lower=0).to_numpy(dtype=float)
    return LanlFit(
        weibull_shape=float(shape),
        weibull_scale_hours=float(scale),
        weibull_loglik=weibull_loglik,
        exp_loglik=exp_loglik,
        n_intervals=len(intervals),
        root_cause_mix={name: count / total for name, count in counts.items()},
        repair_minutes_quantiles=[float(q) for q in np.quantile(down, QUANTILE_LEVELS)],
    )


def sample_repair_minutes(fit: LanlFit, rng: np.random.Generator, size: int) -> np.ndarray:
    """Repair times drawn from the empirical quantile table (inverse CDF, linear between levels)."""
    return np.interp(rng.random(size), QUANTILE_LEVELS, fit.repair_minutes_quantiles)
