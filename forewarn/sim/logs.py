"""Syslog-like error lines: a low background on every instance, more during precursors.

Lines of telemetry row ``j`` fall in ``[minutes[j] - step, minutes[j])``; ``error_count`` of that row counts
its ``error`` and ``critical`` lines. Nothing is logged while an instance is down, nor in the first step
after it comes back (that step overlaps the downtime).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from forewarn.sim.metrics import ErrorRates

SEVERITIES = ("info", "warning", "error", "critical")
BACKGROUND_SEVERITY = (0.45, 0.35, 0.15, 0.05)
PRECURSOR_SEVERITY = (0.0, 0.35, 0.5, 0.15)
BACKGROUND_PER_5_MIN = 0.04
TEMPLATES: dict[str, tuple[str, ...]] = {
    "disk": (
        "kernel: blk_update_request: I/O error, dev sda, sector {n}",
        "kernel: ata1.00: failed command: READ FPDMA QUEUED tag {k}",
        "kernel: EXT4-fs warning (device sda1): ext4_end_bio: I/O error writing to inode {n}",
        "smartd[{pid}]: Device: /dev/sda, {k} Currently unreadable (pending) sectors",
    ),
    "memory": (
        "kernel: Out of memory: Killed process {pid} (java)",
        "kernel: java invoked oom-killer: gfp_mask=0x100cca, order=0",
        "app[{pid}]: heap usage {k}% above threshold",
        "kernel: EDAC MC0: 1 CE memory read error on DIMM_A{k}",
    ),
    "network": (
        "kernel: nfs: server storage-{k} not responding, still trying",
        "app[{pid}]: upstream request timed out after {n} ms",
        "kernel: eth0: NETDEV WATCHDOG: transmit queue {k} timed out",
        "chronyd[{pid}]: No suitable source for synchronisation",
    ),
    "kernel": (
        "kernel: watchdog: BUG: soft lockup - CPU#{k} stuck for 22s",
        "kernel: INFO: task kworker/{k}:1 blocked for more than 120 seconds",
        "kernel: perf: interrupt took too long ({n} > 2500), lowering kernel.perf_event_max_sample_rate",
        "systemd[1]: Started Session {n} of user ops.",
    ),
    "application": (
        "app[{pid}]: request failed with status 500",
        "app[{pid}]: worker {k} exited unexpectedly",
        "app[{pid}]: retrying job {n} (attempt {k})",
        "app[{pid}]: GC pause {n} ms",
    ),
}
CATEGORIES = tuple(TEMPLATES)
COLUMNS = ("instance_id", "timestamp", "severity", "category", "message")


def _lines(
    rng: np.random.Generator, cells: np.ndarray, counts: np.ndarray, categories: np.ndarray, severity: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = counts > 0
    cells = np.repeat(cells[keep], counts[keep])
    cats = np.repeat(categories[keep], counts[keep])
    sev = rng.choice(len(SEVERITIES), size=cells.size, p=severity)
    return cells, cats, sev


def generate(
    rng: np.random.Generator,
    ids: np.ndarray,
    minutes: np.ndarray,
    step: int,
    start: datetime,
    loggable: np.ndarray,
    extra: ErrorRates,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Error lines and the per-cell count of ``error``/``critical`` lines (shape of ``loggable``).

    Args:
        ids: instance ids by row.
        minutes: sample minutes since ``start``.
        loggable: (instances, steps) True where the step's interval is entirely up.
        extra: precursor rates from :func:`forewarn.sim.metrics.apply_episodes`.
    """
    n, steps = loggable.shape
    flat = loggable.ravel()
    background = rng.poisson(BACKGROUND_PER_5_MIN * step / 5.0, size=flat.size) * flat
    bg_cells = np.flatnonzero(background)
    bg_cats = rng.integers(0, len(CATEGORIES), size=bg_cells.size)
    parts = [_lines(rng, bg_cells, background[bg_cells], bg_cats, BACKGROUND_SEVERITY)]
    if extra.cells:
        cells = np.concatenate(extra.cells)
        rates = np.concatenate(extra.rates) * flat[cells]
        cats = np.concatenate(
            [np.full(c.size, CATEGORIES.index(name)) for c, name in zip(extra.cells, extra.categories, strict=True)]
        )
        parts.append(_lines(rng, cells, rng.poisson(rates), cats, PRECURSOR_SEVERITY))
    cell = np.concatenate([p[0] for p in parts])
    category = np.concatenate([p[1] for p in parts]).astype(int)
    severity = np.concatenate([p[2] for p in parts]).astype(int)
    error_count = np.bincount(cell[severity >= 2], minlength=n * steps).reshape(n, steps).astype(float)
    row, col = np.divmod(cell, steps)
    offset = minutes[col] - step + rng.random(cell.size) * step
    stamps = pd.Timestamp(start) + pd.to_timedelta(np.floor(offset * 60.0), unit="s")
    frame = pd.DataFrame(
        {
            "instance_id": ids[row],
            "timestamp": stamps,
            "severity": np.array(SEVERITIES, dtype=object)[severity],
            "category": np.array(CATEGORIES, dtype=object)[category],
            "message": _messages(rng, ids[row], category),
        }
    )
    frame = frame.sort_values(["timestamp", "instance_id"], kind="stable").reset_index(drop=True)
    return frame, error_count


def _messages(rng: np.random.Generator, hosts: np.ndarray, category: np.ndarray) -> list[str]:
    size = category.size
    pick = rng.integers(0, 4, size=size)
    n, k, pid = rng.integers(1000, 9_999_999, size=size), rng.integers(0, 16, size=size), rng.integers(300, 32768, size)
    return [
        f"{host} " + TEMPLATES[CATEGORIES[c]][t].format(n=a, k=b, pid=d)
        for host, c, t, a, b, d in zip(hosts, category, pick, n, k, pid, strict=True)
    ]
