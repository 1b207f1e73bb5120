"""Importers of HPC failure records: LANL 1996-2005 (CFDR) and Failure Trace Archive traces (Grid'5000).

Neither data set has performance telemetry, so each synthesises the minimum the dataset format needs and
says so in its notes: LANL gets one placeholder row per node (its processor count at the first record);
FTA gets an ``available`` metric (1 up, 0 down) at the start of every interval, which is real trace data.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import numpy as np
import pandas as pd

from forewarn.dataset import Dataset
from forewarn.errors import DatasetError, InputError

LANL_CAUSES = {
    "Facilities": "facilities",
    "Hardware": "hardware",
    "Human Error": "human",
    "Network": "network",
    "Undetermined": "undetermined",
    "Software": "software",
}
LANL_STATIC = {
    "machine type": "machine_type",
    "nodes": "system_nodes",
    "procsinnode": "processors",
    "mem": "memory",
    "purpose": "purpose",
    "node install": "installed",
    "node decom": "decommissioned",
}


def _one_file(path: Path, patterns: tuple[str, ...], what: str) -> Path:
    if path.is_file():
        return path
    for pattern in patterns:
        found = sorted(path.glob(pattern))
        if found:
            return found[0]
    raise InputError(f"no {what} here (looked for {', '.join(patterns)})", file=path)


def _lanl_times(text: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(text, format="%m/%d/%Y %H:%M", errors="coerce", utc=True)
    short = pd.to_datetime(text, format="%m/%d/%y %H:%M", errors="coerce", utc=True)
    return stamps.fillna(short)


def build_lanl(path: Path) -> tuple[Dataset, list[str]]:
    """LANL records: one failure per record, instance ``lanl-<system>-<node>``, cause from the blame column."""
    source = _one_file(path, ("*failure-data*.csv.xz", "*failure-data*.csv"), "LANL failure CSV")
    try:
        frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (ValueError, OSError, EOFError, lzma.LZMAError) as exc:
        raise DatasetError(f"cannot be read: {str(exc).strip().splitlines()[0][:200]}", file=source) from None
    for column in ("System", "nodenumz", "Prob Started", *LANL_CAUSES):
        if column not in frame.columns:
            raise DatasetError("not a LANL failure file: missing column", file=source, row=1, field=column)
    frame["instance_id"] = "lanl-" + frame["System"].str.strip() + "-" + frame["nodenumz"].str.strip()
    frame["timestamp"] = _lanl_times(frame["Prob Started"].str.strip())
    undated = int(frame["timestamp"].isna().sum())
    frame = frame[frame["timestamp"].notna()].copy()
    causes = frame[list(LANL_CAUSES)].apply(lambda column: column.str.strip())
    has = causes != ""
    blamed = has.idxmax(axis=1).where(has.any(axis=1))
    frame["root_cause"] = blamed.map(LANL_CAUSES).fillna("undetermined")
    frame["type"] = [
        row[c] if isinstance(c, str) else "unknown" for row, c in zip(causes.to_dict("records"), blamed, strict=True)
    ]
    fixed = _lanl_times(frame["Prob Fixed"].str.strip()) if "Prob Fixed" in frame else frame["timestamp"]
    down = pd.to_numeric(frame.get("Down Time", pd.Series(index=frame.index, dtype=str)), errors="coerce")
    computed = (fixed - frame["timestamp"]).dt.total_seconds() / 60
    recovery = down.fillna(computed)
    frame["recovery_minutes"] = recovery.where(recovery >= 0)
    failures = frame[["instance_id", "timestamp", "type", "root_cause", "recovery_minutes"]]
    static = {k: v for k, v in LANL_STATIC.items() if k in frame.columns}
    instances = frame.groupby("instance_id", sort=True)[list(static)].first().rename(columns=static).reset_index()
    instances["system"] = instances["instance_id"].str.split("-").str[1]
    start = frame["timestamp"].min()
    processors = pd.to_numeric(instances["processors"], errors="coerce") if "processors" in instances else np.nan
    telemetry = pd.DataFrame({"instance_id": instances["instance_id"], "timestamp": start, "processors": processors})
    notes = [
        f"{len(failures)} failure records of {len(instances)} nodes; times taken as UTC (the source has no zone)",
        f"{undated} record(s) without a parseable 'Prob Started' were skipped",
        "telemetry is synthesised: one placeholder row per node at the first record, metric 'processors' "
        "(processors in the node, from the record); LANL publishes no performance telemetry",
        "recovery_minutes is 'Down Time' (minutes), else Prob Fixed - Prob Started",
    ]
    dataset = Dataset(
        telemetry=telemetry, failures=failures.sort_values(["timestamp", "instance_id"]), instances=instances
    )
    return dataset, notes


def _first_line(path: Path) -> str:
    opener = lzma.open if path.suffix == ".xz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            return str(handle.readline()).strip()
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot be read as UTF-8 text: {str(exc)[:200]}", file=path) from None


def read_fta_table(path: Path) -> pd.DataFrame:
    """An FTA ``.tab`` (or ``.tab.xz``) table: header line ``# a b c``, then tab-separated padded fields."""
    first = _first_line(path)
    if not first.startswith("#"):
        raise DatasetError("not an FTA table: the first line must be '# column names'", file=path, row=1)
    names = first.lstrip("#").split()
    try:
        frame = pd.read_csv(path, sep="\t", header=None, skiprows=1, names=names, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, lzma.LZMAError) as exc:
        raise DatasetError(f"cannot be parsed: {(str(exc).splitlines() or [''])[0][:200]}", file=path) from None
    return frame.apply(lambda column: column.str.strip())


def build_fta(path: Path) -> tuple[Dataset, list[str]]:
    """FTA event_trace: ``event_type`` 1 (unavailable) intervals are failures, their length the recovery."""
    source = _one_file(path, ("event_trace.tab.xz", "event_trace.tab"), "FTA event_trace.tab[.xz]")
    trace = read_fta_table(source)
    for column in ("node_name", "event_type", "event_start_time", "event_stop_time"):
        if column not in trace.columns:
            raise DatasetError("not an FTA event trace: missing column", file=source, row=1, field=column)
    kind = pd.to_numeric(trace["event_type"], errors="coerce")
    begin = pd.to_numeric(trace["event_start_time"], errors="coerce")
    end = pd.to_numeric(trace["event_stop_time"], errors="coerce")
    bad = np.flatnonzero((kind.isna() | begin.isna() | ~kind.isin([0, 1])).to_numpy())
    if len(bad):
        raise DatasetError(
            "event_type must be 0 or 1 and event_start_time a Unix time",
            file=source,
            row=int(bad[0]) + 2,
            field="event_type",
        )
    stamps = pd.to_datetime(begin, unit="s", utc=True)
    down = kind == 1
    failures = pd.DataFrame(
        {
            "instance_id": trace["node_name"][down],
            "timestamp": stamps[down],
            "type": "unavailable",
            "root_cause": "undetermined",
            "recovery_minutes": ((end - begin) / 60)[down].where(end >= begin),
        }
    )
    telemetry = pd.DataFrame(
        {"instance_id": trace["node_name"], "timestamp": stamps, "available": (1 - kind).astype(float)}
    )
    telemetry = telemetry.sort_values(["instance_id", "timestamp"], kind="stable").reset_index(drop=True)
    instances = pd.DataFrame({"instance_id": sorted(trace["node_name"].unique())})
    node_path = source.with_name(source.name.replace("event_trace", "node"))
    if node_path.exists():
        nodes = read_fta_table(node_path).rename(columns={"node_name": "instance_id"})
        keep = [c for c in ("instance_id", "node_location", "timezone", "num_procs") if c in nodes.columns]
        nodes = nodes[keep].drop_duplicates("instance_id").replace("NULL", "")
        instances = instances.merge(nodes, on="instance_id", how="left")
    notes = [
        f"{int(down.sum())} unavailable intervals of {len(instances)} nodes are failures; "
        "recovery_minutes is the interval's length",
        "telemetry 'available' is 1 at the start of each up interval and 0 at each down interval (from the trace)",
        f"node attributes from {node_path.name}" if node_path.exists() else "no node table beside the trace",
    ]
    dataset = Dataset(
        telemetry=telemetry, failures=failures.sort_values(["timestamp", "instance_id"]), instances=instances
    )
    return dataset, notes
