"""Screen a telemetry or failure batch row by row before storage: each bad row gets its reasons.

A row is refused when it did not parse (:mod:`forewarn.telemetry.rows`), breaks a rule of the telemetry
suite (:func:`forewarn.telemetry_rules.quarantine`: NaN, infinite, negative, fraction above 1, timestamp in
the future, unknown instance, repeated (instance_id, timestamp) in the batch). A good row whose
(instance_id, timestamp) is already in the repository is not bad: it is skipped and counted
(``already_stored``), so ingesting the same file or an overlapping window twice stores nothing twice.
The first reason found for a row wins: a cell that is not a number is not also called NaN.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from forewarn.store.repository import QuarantineRecord
from forewarn.telemetry.rows import Reasons, Refused, cap
from forewarn.telemetry_rules import quarantine

KEYS = ["instance_id", "timestamp"]


@dataclass
class Screened:
    """The rows to store (``good``), the refused ones as records, and each reason with its count."""

    good: pd.DataFrame
    records: list[QuarantineRecord] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    already_stored: int = 0

    def add(self, record: QuarantineRecord) -> None:
        self.records.append(record)
        self.reasons.update(record.reason.split("; "))


def json_safe(row: dict[str, Any]) -> dict[str, Any]:
    """A row's values as JSON both SQLite and Postgres accept: times as RFC 3339, NaN and inf as text, long
    text cut (:func:`forewarn.telemetry.rows.cap`) and NUL bytes shown as ``\\0`` (Postgres refuses them)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, pd.Timestamp | datetime):
            out[str(key)] = "" if pd.isna(value) else value.isoformat()
        elif isinstance(value, float | np.floating):
            out[str(key)] = float(value) if math.isfinite(value) else str(value)
        elif isinstance(value, np.integer):
            out[str(key)] = int(value)
        elif isinstance(value, str):
            out[str(key)] = cap(value.replace("\x00", "\\0"))
        elif value is None or isinstance(value, int | bool):
            out[str(key)] = value
        else:
            out[str(key)] = cap(str(value))
    return out


def stored_mask(frame: pd.DataFrame, stored: pd.DataFrame) -> pd.Series:
    """True for rows of ``frame`` whose (instance_id, timestamp) is among ``stored``'s."""
    if stored.empty or frame.empty:
        return pd.Series(False, index=frame.index)
    keys = pd.MultiIndex.from_frame(stored[KEYS].astype({"timestamp": "datetime64[ns, UTC]"}))
    mine = pd.MultiIndex.from_frame(frame[KEYS].astype({"timestamp": "datetime64[ns, UTC]"}))
    return pd.Series(mine.isin(keys), index=frame.index)


def _combine(index: pd.Index, parsed: Reasons, rules: pd.Series) -> pd.Series:
    reasons = parsed.text.copy()
    fresh = reasons == ""
    reasons[fresh] = rules.reindex(index).fillna("")[fresh]
    return reasons


def screen(
    frame: pd.DataFrame,
    *,
    metrics: Sequence[str],
    source_file: str,
    parsed: Reasons | None = None,
    raw: pd.DataFrame | None = None,
    lines: np.ndarray | None = None,
    refused: Sequence[Refused] = (),
    known_instances: Collection[str] | None = None,
    stored: pd.DataFrame | None = None,
    now: datetime | None = None,
    gaps_ok: bool = False,
) -> Screened:
    """Split a typed telemetry frame into rows to store and quarantine records.

    Args:
        frame: ``instance_id``, ``timestamp`` (UTC), float metric columns.
        metrics: the metric columns.
        source_file: the file (or source) named in each record.
        parsed: parse reasons per row of ``frame``; those rows skip the value rules.
        raw: the rows as read (text cells), stored with each record; default ``frame``'s values.
        lines: the file line of each row of ``frame``.
        refused: lines refused before parsing (wrong number of fields).
        known_instances: instance ids allowed; ``None`` allows any.
        stored: (instance_id, timestamp) pairs already in the repository.
        now: rows after this are "in the future"; default now.
        gaps_ok: NaN cells are absent samples (Prometheus), not bad values: they pass and are not stored.
    """
    parsed = parsed or Reasons(frame.index)
    candidates = frame[~parsed.bad]
    checked = candidates.fillna({m: 0.0 for m in metrics}) if gaps_ok else candidates
    _, bad = quarantine(checked, metrics=list(metrics), known_instances=known_instances, now=now)
    already = stored_mask(candidates, stored if stored is not None else pd.DataFrame(columns=KEYS))
    reasons = _combine(frame.index, parsed, bad["reason"])
    already = already.reindex(frame.index, fill_value=False) & (reasons == "")
    result = Screened(good=frame[(reasons == "") & ~already], already_stored=int(already.sum()))
    for item in refused:
        result.add(QuarantineRecord(source_file=source_file, line=item.line, reason=item.reason, row=item.row))
    bad_rows = (raw if raw is not None else frame)[reasons != ""]
    positions = np.flatnonzero((reasons != "").to_numpy())
    for position, row in zip(positions.tolist(), bad_rows.to_dict("records"), strict=True):
        line = int(lines[position]) if lines is not None else None
        text = str(reasons.iloc[position])
        result.add(QuarantineRecord(source_file=source_file, line=line, reason=text, row=json_safe(row)))
    return result


def screen_failures(
    frame: pd.DataFrame,
    *,
    parsed: Reasons,
    raw: pd.DataFrame,
    lines: np.ndarray | None,
    refused: Sequence[Refused],
    source_file: str,
    stored: pd.DataFrame,
    now: pd.Timestamp,
) -> Screened:
    """Failures: parse reasons, a timestamp in the future, a repeated (instance_id, timestamp), or stored.

    ``lines`` are the file lines of the rows; None for failures that came from a live source.
    """
    parsed.add(parsed.text.eq("") & (frame["timestamp"] > now), "timestamp in the future")
    ok = parsed.text.eq("")
    parsed.add(ok & frame[KEYS].duplicated(keep="first"), "duplicate (instance_id, timestamp)")
    already = parsed.text.eq("") & stored_mask(frame, stored)
    result = Screened(good=frame[~parsed.bad & ~already], already_stored=int(already.sum()))
    for item in refused:
        result.add(QuarantineRecord(source_file=source_file, line=item.line, reason=item.reason, row=item.row))
    positions = np.flatnonzero(parsed.bad.to_numpy())
    for position, row in zip(positions.tolist(), raw[parsed.bad].to_dict("records"), strict=True):
        reason = str(parsed.text.iloc[position])
        line = int(lines[position]) if lines is not None else None
        result.add(QuarantineRecord(source_file=source_file, line=line, reason=reason, row=json_safe(row)))
    return result
