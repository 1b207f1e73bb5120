"""One ingest step for one source: pull since its watermark (retried with backoff), screen, commit, and only
then move the watermark.

A crash anywhere before the commit loses nothing (the watermark has not moved, the next run pulls the same
span again); a crash between the commit and the move stores nothing twice (the stores drop what they
already hold). Two runs that overlap (a slow ingest still running when the schedule starts the next) would
both pull from the same watermark and both store the span, so the step holds the lease ``ingest:SOURCE``
(:mod:`forewarn.store.lease`) from reading the watermark to moving it; a run that finds it held skips the
source, which the holder is bringing in. ``hook`` is called at ``fetched``, ``committed`` and ``advanced``
for fault-injection tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pydantic import Field
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from forewarn.errors import AdapterError, ForewarnError
from forewarn.ingest import IngestSummary, ingest_pulled
from forewarn.redacted import Redacted
from forewarn.schemas import Model
from forewarn.store.lease import LeaseHeld, LeaseStore, process_owner
from forewarn.store.repository import Repository
from forewarn.store.watermarks import WatermarkStore
from forewarn.telemetry.sources import Acknowledging, Pulled, Source

Hook = Callable[[str], None]
LEASE_TTL = timedelta(minutes=10)
"""How long a source's ingest lease lasts (wall clock): a run killed on another host blocks that source at most
this long; on this host its lease is given back as soon as its process is seen gone."""


class SourceReport(Model):
    """What one source's step did: counts, the watermark before and after, and why it failed if it did."""

    source: Redacted
    kind: str = ""
    landed: bool = False
    attempts: int = 0
    watermark_before: datetime | None = None
    watermark: datetime | None = None
    summary: IngestSummary | None = None
    error: Redacted | None = Field(None, description="why the source did not land (the last attempt's error)")

    def row(self) -> dict[str, Any]:
        s = self.summary
        return {
            "source": self.source,
            "kind": self.kind,
            "landed": "yes" if self.landed else "NO",
            "rows stored": s.stored if s else 0,
            "already stored": s.already_stored if s else 0,
            "quarantined": s.quarantined if s else 0,
            "errors": s.errors if s else 0,
            "failures": s.failures if s else 0,
            "workloads": s.workloads if s else 0,
            "watermark": self.watermark.isoformat() if self.watermark else "-",
            "note": self.error or "; ".join(s.notes if s else []),
        }


def transient(error: BaseException) -> bool:
    """Worth pulling again: a retryable adapter error or an operating-system error (connection, disk)."""
    return (isinstance(error, AdapterError) and error.retryable) or isinstance(error, OSError)


def pull_with_retries(
    source: Source, since: datetime | None, until: datetime, *, retries: int, backoff: float
) -> tuple[Pulled, int]:
    """``source.pull`` with exponential backoff on transient errors; returns the pull and the attempts made."""
    attempts = 0
    for attempt in Retrying(
        retry=retry_if_exception(transient),
        stop=stop_after_attempt(retries + 1),
        wait=wait_exponential(multiplier=backoff, max=60),
        reraise=True,
    ):
        with attempt:
            attempts += 1
            pulled = source.pull(since, until)
    return pulled, attempts


def ingest_source(
    source: Source,
    *,
    repository: Repository,
    now: datetime,
    retries: int = 2,
    backoff: float = 1.0,
    hook: Hook | None = None,
) -> SourceReport:
    """Pull what is new from ``source`` since its watermark, store it, then advance the watermark.

    Raises:
        ForewarnError: the source could not be pulled or its batch failed validation; the report of the
            caller names it, and the watermark has not moved.
    """
    leases = LeaseStore(repository.engine)
    name, owner = f"ingest:{source.name}", process_owner()
    leases.drop_if_dead(name)
    try:
        with leases.held(name, owner, ttl=LEASE_TTL):
            return _ingest_source(source, repository, now, retries, backoff, hook)
    except LeaseHeld as held:
        mark = WatermarkStore(repository.engine).get(source.name)
        note = f"skipped: another run is ingesting this source ({held})"
        summary = IngestSummary(source=source.name, notes=[note])
        kind = str(getattr(source, "kind", ""))
        return SourceReport(
            source=source.name, kind=kind, landed=True, watermark_before=mark, watermark=mark, summary=summary
        )


def _ingest_source(
    source: Source, repository: Repository, now: datetime, retries: int, backoff: float, hook: Hook | None
) -> SourceReport:
    watermarks = WatermarkStore(repository.engine)
    since = watermarks.get(source.name)
    report = SourceReport(source=source.name, kind=str(getattr(source, "kind", "")), watermark_before=since)
    pulled, report.attempts = pull_with_retries(source, since, now, retries=retries, backoff=backoff)
    if hook:
        hook("fetched")
    report.summary = ingest_pulled(pulled, source=source.name, repository=repository, now=now)
    if hook:
        hook("committed")
    note = f"stored {report.summary.stored} rows, {report.summary.errors} errors, {report.summary.failures} failures"
    report.watermark = watermarks.advance(source.name, pulled.until, note=note)
    if hook:
        hook("advanced")
    if isinstance(source, Acknowledging):
        source.committed(pulled)
    report.landed = True
    return report


def failed_report(source: Source, repository: Repository, error: BaseException) -> SourceReport:
    """The report of a source that did not land: its error and its (unmoved) watermark."""
    mark = WatermarkStore(repository.engine).get(source.name)
    text = str(error) if isinstance(error, ForewarnError) else f"{type(error).__name__}: {error}"
    return SourceReport(
        source=source.name, kind=str(getattr(source, "kind", "")), watermark_before=mark, watermark=mark, error=text
    )
