"""The ingest flow: every configured source (FOREWARN_SOURCES) pulled since its watermark into the history
database, each as its own task; a source that is down is retried, reported, and does not stop the others.

The run is Completed when every source landed, Failed naming those that did not (the others still landed).
Its table artifact ``ingest-sources`` lists each source's counts and watermark.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from forewarn import compose, service
from forewarn.clock import clock_for
from forewarn.redact import install_log_redaction
from forewarn.sources.step import SourceReport, failed_report, ingest_source
from forewarn.store.repository import Repository
from forewarn.telemetry.sources import Source

ARTIFACT_KEY = "ingest-sources"


@task(name="ingest-source", cache_policy=NO_CACHE)
def ingest_one(source: Source, repository: Repository, now: datetime, retries: int, backoff: float) -> SourceReport:
    """One source's step (:func:`forewarn.sources.step.ingest_source`); retries with backoff are inside it."""
    return ingest_source(source, repository=repository, now=now, retries=retries, backoff=backoff)


def summarise(reports: list[SourceReport]) -> str | State[Any]:
    """What the run says: a line when every source landed, a Failed state naming those that did not."""
    landed = [r for r in reports if r.landed]
    stored = sum(r.summary.stored for r in landed if r.summary)
    down = [r for r in reports if not r.landed]
    if not reports:
        return "no sources configured (set FOREWARN_SOURCES)"
    if down:
        names = ", ".join(f"{r.source} ({r.error})" for r in down)
        return Failed(message=f"{len(down)} of {len(reports)} source(s) did not land: {names}")
    return f"{len(landed)} source(s) landed, {stored:,} telemetry rows stored"


@flow(name="ingest", log_prints=True)
def ingest(dataset: str | None = None, dry_run: bool = True, at: str | None = None) -> str | State[Any]:
    """Pull every configured source since its watermark into the history database (FOREWARN_DATABASE_URL).

    Args:
        dataset: unused (sources are set in FOREWARN_SOURCES); kept so every flow takes the same options.
        dry_run: unused; ingest changes no cloud.
        at: the cycle's time (RFC 3339), to run on recorded data; default: the wall clock.
    """
    install_log_redaction()  # a source's URL may carry a password; no log line of this run shows it
    ctx = service.context(dry_run=dry_run)
    now = clock_for(at).now()
    logger = get_run_logger()
    reports: list[SourceReport] = []
    for source, retries, backoff in compose.sources(ctx, at=now):
        state = ingest_one.with_options(task_run_name=f"ingest {source.name}")(
            source, ctx.repo, now, retries, backoff, return_state=True
        )
        if state.is_completed():
            report = state.result()
        else:
            error = state.result(raise_on_failure=False)
            report = failed_report(
                source, ctx.repo, error if isinstance(error, BaseException) else RuntimeError(state.message)
            )
            logger.warning("source %s did not land: %s", source.name, report.error)
        reports.append(report)
    rows = [r.row() for r in reports] or [{"source": "-", "note": "no sources configured (set FOREWARN_SOURCES)"}]
    create_table_artifact(rows, key=ARTIFACT_KEY, description=f"Ingest at {now.isoformat()}: per source")
    final = summarise(reports)
    print(final if isinstance(final, str) else final.message)
    return final
