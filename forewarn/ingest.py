"""Ingestion: one batch in, screened row by row, gated by Great Expectations, stored with its quarantine.

A batch comes from a dataset directory (:func:`ingest_files`), a Prometheus server
(:func:`ingest_prometheus`) or one pull of any live source (:func:`ingest_pulled`, the ingest flow's step);
all of them end in the same :func:`commit`. Each bad row is set aside in the repository's quarantine with its file, line
and reasons (:mod:`forewarn.telemetry.screen`), never dropped in silence; the good rows must then pass the
telemetry suite (:func:`forewarn.validation.validate_telemetry`) before anything is stored. A file that
cannot be read at all raises :class:`DatasetError`, one line naming file, line and column, and nothing of
the directory is stored.

Rows are screened before they are normalised: normalising averages repeated samples and loses file lines,
so a duplicate or a NaN would vanish into a mean instead of being reported. Prometheus rows have no
lines; they are normalised first (instance ids mapped, so the known-instance rule sees fleet ids).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from pydantic import Field
from sqlalchemy import select

from forewarn.dataset import TELEMETRY_KEYS
from forewarn.errors import ConfigError, DatasetError, ValidationFailed
from forewarn.redacted import Redacted
from forewarn.schemas import Instance, Model, new_id, utcnow
from forewarn.sources.dedupe import new_errors, new_workloads
from forewarn.sources.prometheus import PrometheusPull
from forewarn.store.models import FailureEventRow, TelemetrySampleRow
from forewarn.store.repository import QuarantineRecord, Repository
from forewarn.telemetry.instances import read_fleet
from forewarn.telemetry.normalise import NormalisationReport, normalise
from forewarn.telemetry.prometheus import load_queries
from forewarn.telemetry.rows import Reasons, parse_failures, parse_telemetry, read_raw
from forewarn.telemetry.screen import Screened, screen, screen_failures
from forewarn.telemetry.sources import Pulled
from forewarn.telemetry.tables import read_errors_lenient, read_workloads_lenient
from forewarn.telemetry_rules import FRACTION_METRICS
from forewarn.validation import ValidationReport, validate_telemetry

ROUND_OFF = 1e-9
"""Prometheus values this close below 0 (or above 1 for fractions) are round-off, not bad values."""
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
LONGEST = timedelta(days=366)
"""The longest duration (of ``--since`` or a step): a year of history per run is plenty, and a longer span
would be thousands of queries."""


def _shown(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


class IngestSummary(Model):
    """What one ingestion stored, what it quarantined and why, and what the suite said."""

    source: Redacted
    batch_id: str | None = None
    stored: int = Field(0, description="telemetry rows stored")
    samples: int = Field(0, description="metric values stored (rows x metrics, absent samples not counted)")
    quarantined: int = Field(0, description="rows set aside, telemetry and failures")
    already_stored: int = Field(0, description="good rows skipped because the repository has them")
    reasons: dict[str, int] = Field(default_factory=dict, description="each reason and how many rows had it")
    validation: ValidationReport | None = None
    normalisation: NormalisationReport | None = None
    failures: int = 0
    errors: int = 0
    workloads: int = 0
    instances: int = 0
    recoveries: int = Field(0, description="stored failures whose recovery time was learned")
    missing_metrics: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="what the source said about this batch")


def parse_duration(text: str, *, field: str) -> timedelta:
    """``"6h"``, ``"90m"``, ``"1h30m"``, ``"2d"``, ``"45s"`` as a timedelta."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ConfigError(f"'{_shown(text)}' is not a duration such as 6h, 90m, 1h30m or 2d", field=field)
    try:
        total = sum((timedelta(**{_UNITS[unit]: int(number)}) for number, unit in parts), timedelta())
    except OverflowError:
        total = timedelta.max
    if total > LONGEST:
        raise ConfigError(f"'{_shown(text)}' is longer than {LONGEST.days} days", field=field)
    if total <= timedelta(0):
        raise ConfigError(f"'{text}' must be longer than zero", field=field)
    return total


def step_minutes_of(text: str) -> int:
    """A step such as ``"1m"`` or ``"5m"`` in whole minutes."""
    step = parse_duration(text, field="step")
    if step % timedelta(minutes=1):
        raise ConfigError(f"'{text}' is not a whole number of minutes", field="step")
    return int(step / timedelta(minutes=1))


def open_repository(database_url: str | None = None) -> Repository:
    """The repository at ``database_url`` (default FOREWARN_DATABASE_URL, else SQLite under home), migrated."""
    repository = Repository(database_url or None)
    repository.create_all()
    return repository


def _stored_keys(repository: Repository, table: type, frame: pd.DataFrame) -> pd.DataFrame:
    """(instance_id, timestamp) pairs already stored between the batch's first and last timestamp."""
    stamps = frame["timestamp"].dropna()
    if stamps.empty:
        return pd.DataFrame(columns=list(TELEMETRY_KEYS))
    lo, hi = stamps.min().to_pydatetime(), stamps.max().to_pydatetime()
    column = table.timestamp  # type: ignore[attr-defined]
    query = select(table.instance_id, column).where(column >= lo, column <= hi).distinct()  # type: ignore[attr-defined]
    with repository.engine.connect() as conn:
        rows = conn.execute(query).all()
    stored = pd.DataFrame([tuple(r) for r in rows], columns=list(TELEMETRY_KEYS))
    stored["timestamp"] = pd.to_datetime(stored["timestamp"], utc=True)
    return stored


def _round_off(frame: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """PromQL arithmetic leaves values such as -1e-17 for an idle CPU: set them to the bound they missed."""
    values = frame[metrics]
    values = values.mask((values < 0) & (values > -ROUND_OFF), 0.0)
    fractions = [m for m in metrics if m in FRACTION_METRICS]
    values[fractions] = values[fractions].mask((values[fractions] > 1) & (values[fractions] < 1 + ROUND_OFF), 1.0)
    return frame.assign(**{m: values[m] for m in metrics})


def _gate(good: pd.DataFrame, metrics: list[str], now: datetime, gaps_ok: bool) -> ValidationReport | None:
    """The telemetry suite on the rows about to be stored; a failure here stores nothing."""
    if good.empty:
        return None
    checked = good.fillna({m: 0.0 for m in metrics}) if gaps_ok else good
    report = validate_telemetry(checked, metrics=metrics, now=now)
    if not report.success:
        raise ValidationFailed("rows that passed screening failed the telemetry suite: " + "; ".join(report.failures))
    return report


@dataclass
class Batch:
    """One batch screened and ready to store: what :func:`commit` takes from every way in."""

    source: str
    metrics: list[str]
    telemetry: Screened | None = None
    failures: Screened | None = None
    errors: pd.DataFrame | None = None
    workloads: pd.DataFrame | None = None
    recoveries: pd.DataFrame | None = None
    instances: list[Instance] = field(default_factory=list)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    gaps_ok: bool = False


def commit(repository: Repository, batch: Batch, summary: IngestSummary, now: datetime) -> IngestSummary:
    """Gate the good telemetry with the suite, then store everything not stored yet, with the quarantine, in
    one transaction: a batch is stored whole or not at all.

    Telemetry and failures were screened against the stored (instance, time) keys; errors and workloads are
    checked here (:mod:`forewarn.sources.dedupe`), and so are quarantine records (by file, line and reason),
    so the same batch committed twice stores nothing twice.
    """
    telemetry = batch.telemetry or Screened(good=pd.DataFrame(columns=list(TELEMETRY_KEYS)))
    summary.validation = _gate(telemetry.good, batch.metrics, now, gaps_ok=batch.gaps_ok)
    errors = new_errors(repository.engine, batch.errors) if batch.errors is not None and len(batch.errors) else None
    workloads = (
        new_workloads(repository.engine, batch.workloads)
        if batch.workloads is not None and len(batch.workloads)
        else None
    )
    quarantined = _new_records(repository, [*batch.quarantined, *telemetry.records])
    failure_records = _new_records(repository, batch.failures.records) if batch.failures is not None else []
    telemetry.records = quarantined
    if batch.failures is not None:
        batch.failures.records = failure_records
    with repository.transaction():
        summary.instances = repository.save_instances(batch.instances) if batch.instances else 0
        if not telemetry.good.empty or quarantined:
            _store(repository, telemetry, summary, batch.metrics)
        if batch.failures is not None:
            summary.failures = repository.save_failures(batch.failures.good) if not batch.failures.good.empty else 0
            repository.save_quarantine(failure_records)
        summary.errors = repository.save_errors(errors) if errors is not None and len(errors) else 0
        summary.workloads = repository.save_workloads(workloads) if workloads is not None and len(workloads) else 0
        if batch.recoveries is not None and not batch.recoveries.empty:
            summary.recoveries = repository.record_recoveries(batch.recoveries)
    summary.already_stored += telemetry.already_stored + (batch.failures.already_stored if batch.failures else 0)
    for record in [*quarantined, *failure_records]:
        summary.quarantined += 1
        for reason in record.reason.split("; "):
            summary.reasons[reason] = summary.reasons.get(reason, 0) + 1
    return summary


def _new_records(repository: Repository, records: list[QuarantineRecord]) -> list[QuarantineRecord]:
    """The records of lines not quarantined yet from the same file for the same reason (lines of files only:
    a live source's records have no line and are kept)."""
    files = {r.source_file for r in records if r.line is not None}
    if not files:
        return records
    seen = {(name, *key) for name in files for key in repository.quarantined_keys(name)}
    return [r for r in records if r.line is None or (r.source_file, r.line, r.reason) not in seen]


def _store(repository: Repository, screened: Screened, summary: IngestSummary, metrics: list[str]) -> None:
    batch_id = new_id("batch")
    good = screened.good
    repository.save_telemetry(good, source=summary.source, batch_id=batch_id, quarantined=len(screened.records))
    for record in screened.records:
        record.batch_id = batch_id
    repository.save_quarantine(screened.records)
    summary.batch_id = batch_id
    summary.stored = len(good)
    summary.samples = int(good[metrics].notna().to_numpy().sum()) if metrics else 0


def _find(root: Path, stem: str, *, required: bool) -> Path | None:
    for suffix in (".parquet", ".csv"):
        if (root / f"{stem}{suffix}").exists():
            return root / f"{stem}{suffix}"
    if required:
        raise DatasetError(f"missing {stem}.csv (or {stem}.parquet); the dataset format requires it", file=root)
    return None


def ingest_files(
    directory: str | Path,
    *,
    repository: Repository | None = None,
    step_minutes: int | None = None,
    now: datetime | None = None,
) -> IngestSummary:
    """Ingest a dataset directory: telemetry, failures, errors and workloads screened row by row (an empty
    metric cell is a missing value: the row's other values are stored); instances checked whole. Every file
    is read before anything is stored, and everything is stored in one transaction.

    Args:
        directory: a directory in the dataset format.
        repository: where to store; default :func:`open_repository`.
        step_minutes: resample the good telemetry rows to this step (see normalise); default: as given.
        now: the time after which a timestamp is in the future; default now.
    """
    root, now = Path(directory), now or utcnow()
    if not root.is_dir():
        raise DatasetError("not a directory; a dataset is a directory of telemetry.csv, failures.csv, ...", file=root)
    telemetry_path = _find(root, "telemetry", required=True)
    failures_path = _find(root, "failures", required=True)
    assert telemetry_path is not None and failures_path is not None
    optional = {stem: _find(root, stem, required=False) for stem in ("instances", "errors", "workloads")}
    repository = repository or open_repository()
    fleet = read_fleet(optional["instances"]) if optional["instances"] else []
    known = {i.instance_id for i in fleet} | {i.instance_id for i in repository.load_instances()}
    table = read_raw(telemetry_path, TELEMETRY_KEYS)
    frame, parsed, metrics = parse_telemetry(table)
    parsed.add(parsed.text.eq("") & frame[metrics].isna().all(axis=1), "every metric is empty")
    screened = screen(
        frame,
        metrics=metrics,
        source_file=str(telemetry_path),
        parsed=parsed,
        raw=table.frame,
        lines=table.lines,
        refused=table.refused,
        known_instances=known or None,
        now=now,
        gaps_ok=True,
        stored=_stored_keys(repository, TelemetrySampleRow, frame),
    )
    ftable = read_raw(failures_path, TELEMETRY_KEYS, allow_empty=True)
    fframe, fparsed = parse_failures(ftable)
    failures = screen_failures(
        fframe,
        parsed=fparsed,
        raw=ftable.frame,
        lines=ftable.lines,
        refused=ftable.refused,
        source_file=str(failures_path),
        stored=_stored_keys(repository, FailureEventRow, fframe),
        now=pd.Timestamp(now),
    )
    errors, error_records = read_errors_lenient(optional["errors"]) if optional["errors"] else (None, [])
    workloads, workload_records = read_workloads_lenient(optional["workloads"]) if optional["workloads"] else (None, [])
    summary = IngestSummary(source=str(telemetry_path))
    if step_minutes is not None and not screened.good.empty:
        normalised = normalise(screened.good, step_minutes=step_minutes)
        screened.good = normalised.frame.dropna(how="all", subset=metrics)
        summary.normalisation = normalised.report
    batch = Batch(
        source=summary.source,
        metrics=metrics,
        telemetry=screened,
        failures=failures,
        errors=errors,
        workloads=workloads,
        instances=fleet,
        quarantined=[*error_records, *workload_records],
        gaps_ok=True,
    )
    return commit(repository, batch, summary, now)


def screen_pulled(pulled: Pulled, *, source: str, repository: Repository, now: datetime) -> Batch:
    """Screen what a live source pulled (:class:`forewarn.telemetry.sources.Pulled`) into a :class:`Batch`.

    NaN cells are absent samples, not bad values; rows of instances the repository does not know are
    quarantined once it knows some (map ids in the source); rows already stored are skipped.
    """
    known = {i.instance_id for i in pulled.instances} | {i.instance_id for i in repository.load_instances()}
    batch = Batch(
        source=source,
        metrics=[],
        errors=pulled.errors,
        workloads=pulled.workloads,
        recoveries=pulled.recoveries,
        instances=list(pulled.instances),
        quarantined=list(pulled.quarantined),
        gaps_ok=True,
    )
    frame = pulled.telemetry
    if frame is not None and not frame.empty:
        metrics = [str(c) for c in frame.columns if c not in TELEMETRY_KEYS]
        frame = frame.dropna(how="all", subset=metrics).reset_index(drop=True)
        frame = _round_off(frame.assign(**{m: frame[m].astype(float) for m in metrics}), metrics)
        batch.metrics = metrics
        batch.telemetry = screen(
            frame,
            metrics=metrics,
            source_file=source,
            known_instances=known or None,
            now=now,
            gaps_ok=True,
            stored=_stored_keys(repository, TelemetrySampleRow, frame),
        )
    failures = pulled.failures
    if failures is not None and not failures.empty:
        failures = failures.reset_index(drop=True)
        failures["timestamp"] = pd.to_datetime(failures["timestamp"], utc=True).astype("datetime64[ns, UTC]")
        batch.failures = screen_failures(
            failures,
            parsed=Reasons(failures.index),
            raw=failures,
            lines=None,
            refused=(),
            source_file=source,
            stored=_stored_keys(repository, FailureEventRow, failures),
            now=pd.Timestamp(now),
        )
    return batch


def ingest_pulled(
    pulled: Pulled, *, source: str, repository: Repository | None = None, now: datetime | None = None
) -> IngestSummary:
    """Screen, validate and store one pull of a live source; the caller then moves its watermark."""
    now, repository = now or utcnow(), repository or open_repository()
    batch = screen_pulled(pulled, source=source, repository=repository, now=now)
    return commit(repository, batch, IngestSummary(source=source, notes=list(pulled.notes)), now)


def ingest_prometheus(
    url: str,
    *,
    since: str = "6h",
    step: str = "1m",
    queries: str | Path | None = None,
    until: datetime | None = None,
    id_map: Mapping[str, str] | None = None,
    repository: Repository | None = None,
    now: datetime | None = None,
) -> IngestSummary:
    """Ingest the last ``since`` (before ``until``, default now) of Prometheus telemetry at ``step``.

    ``queries`` is a YAML file of per-metric PromQL overriding the defaults; ``id_map`` maps Prometheus
    ``instance`` labels to fleet ids. Samples Prometheus has no value for are absent, not bad. The same
    source and screening as the ingest flow's ``prometheus`` source, over one window.
    """
    now = now or utcnow()
    window, step_minutes = parse_duration(since, field="since"), step_minutes_of(step)
    end = until or now
    source = PrometheusPull(
        url,
        queries=load_queries(queries) if queries else None,
        step_minutes=step_minutes,
        id_map=id_map,
        max_window=window,
        overlap=timedelta(0),
    )
    pulled = source.pull(end - window, end)
    summary = ingest_pulled(pulled, source=f"prometheus {source.reader.url}", repository=repository, now=now)
    summary.missing_metrics = list(source.reader.missing_metrics)
    summary.normalisation = source.normalisation
    return summary
