"""Lenient reading of ``errors.csv`` and ``workloads.csv`` for ingestion: a bad row is quarantined, not the file.

The same rules as :func:`forewarn.dataset.read_errors` and :func:`forewarn.dataset.read_workloads`, row by
row (:mod:`forewarn.telemetry.rows` reads the lines): an empty key, a timestamp without a zone, a number
that is text, NaN, negative or infinite, a workload that ends before it starts. A cell the database needs
(every column but ``end``, ``data_size`` and ``expected_duration``) is never stored empty.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from forewarn.dataset import ERROR_COLUMNS, WORKLOAD_COLUMNS
from forewarn.store.repository import QuarantineRecord
from forewarn.telemetry.rows import RawTable, Reasons, parse_ids, parse_numbers, parse_times, read_raw
from forewarn.telemetry.screen import json_safe
from forewarn.telemetry_rules import ABSURD

LIMIT = ABSURD
"""The largest cpu, memory, data size or duration a workload may state: the bound of any telemetry level."""


def _amounts(frame: pd.DataFrame, column: str, reasons: Reasons, *, blank_ok: bool) -> pd.Series:
    values = parse_numbers(frame, column, reasons, blank_ok=blank_ok)
    reasons.add(np.isinf(values), f"{column} is infinite")
    reasons.add(values < 0, f"{column} is negative")
    reasons.add(np.isfinite(values) & (values > LIMIT), f"{column} beyond {LIMIT:g}")
    return values


def parse_errors(table: RawTable) -> tuple[pd.DataFrame, Reasons]:
    """Typed error events (the five columns of errors.csv) and the reasons per row."""
    frame = table.frame
    reasons = Reasons(frame.index)
    out = pd.DataFrame(
        {
            "instance_id": parse_ids(frame, "instance_id", reasons),
            "timestamp": parse_times(frame, "timestamp", reasons),
        }
    )
    for column in ("severity", "category", "message"):
        out[column] = frame[column].astype(str)
    return out, reasons


def parse_workloads(table: RawTable) -> tuple[pd.DataFrame, Reasons]:
    """Typed workloads (the columns of workloads.csv, optional ones filled) and the reasons per row."""
    frame = table.frame
    reasons = Reasons(frame.index)
    out = pd.DataFrame(
        {"task_id": parse_ids(frame, "task_id", reasons), "instance_id": parse_ids(frame, "instance_id", reasons)}
    )
    out["start"] = parse_times(frame, "start", reasons)
    out["end"] = parse_times(frame, "end", reasons, blank_ok=True)
    for column in ("cpu", "memory"):
        out[column] = _amounts(frame, column, reasons, blank_ok=False)
    out["kind"] = frame["kind"].astype(str).str.strip().replace("", "batch") if "kind" in frame else "batch"
    for column in ("data_size", "expected_duration"):
        out[column] = _amounts(frame, column, reasons, blank_ok=True) if column in frame else np.nan
    reasons.add((out["end"] < out["start"]).to_numpy(), "end is before start")
    return out, reasons


def set_aside(
    frame: pd.DataFrame, reasons: Reasons, table: RawTable, source_file: str
) -> tuple[pd.DataFrame, list[QuarantineRecord]]:
    """The good rows of ``frame``, and a quarantine record for each bad row and each refused line."""
    records = [
        QuarantineRecord(source_file=source_file, line=item.line, reason=item.reason, row=item.row)
        for item in table.refused
    ]
    bad = reasons.bad.to_numpy()
    for position in np.flatnonzero(bad).tolist():
        records.append(
            QuarantineRecord(
                source_file=source_file,
                line=int(table.lines[position]),
                reason=str(reasons.text.iloc[position]),
                row=json_safe(table.frame.iloc[position].to_dict()),
            )
        )
    return frame[~bad].reset_index(drop=True), records


def read_errors_lenient(path: Path) -> tuple[pd.DataFrame, list[QuarantineRecord]]:
    """``errors.csv``: the good events and the quarantine of the rest."""
    table = read_raw(path, ERROR_COLUMNS, allow_empty=True)
    frame, reasons = parse_errors(table)
    return set_aside(frame, reasons, table, str(path))


def read_workloads_lenient(path: Path) -> tuple[pd.DataFrame, list[QuarantineRecord]]:
    """``workloads.csv``: the good workloads and the quarantine of the rest."""
    table = read_raw(path, WORKLOAD_COLUMNS, allow_empty=True)
    frame, reasons = parse_workloads(table)
    return set_aside(frame, reasons, table, str(path))
