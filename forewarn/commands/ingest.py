"""`forewarn ingest file|prometheus|logs`: validated ingestion into the historical repository, with a summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from forewarn.commands.common import console, friendly

if TYPE_CHECKING:
    from forewarn.ingest import IngestSummary

app = typer.Typer(
    help="Bring telemetry into the historical repository: bad rows are quarantined with their reason.",
    no_args_is_help=True,
)

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", help="SQLAlchemy URL; default FOREWARN_DATABASE_URL, else SQLite under FOREWARN_HOME."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the summary as JSON only.")]


def show(summary: IngestSummary) -> None:
    """Print what was stored, what was quarantined and why, and what the suite said."""
    table = Table(title=f"ingested {summary.source}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("batch", summary.batch_id or "none (no data)")
    table.add_row("telemetry rows stored", f"{summary.stored:,}")
    table.add_row("samples stored", f"{summary.samples:,}")
    table.add_row("rows quarantined", f"[yellow]{summary.quarantined:,}[/]" if summary.quarantined else "0")
    table.add_row("already stored, skipped", f"{summary.already_stored:,}")
    for name in ("failures", "errors", "workloads", "instances"):
        table.add_row(f"{name} stored", f"{getattr(summary, name):,}")
    if summary.validation is not None:
        verdict = "passed" if summary.validation.success else "FAILED"
        table.add_row("validation", f"{verdict} ({summary.validation.statistics.get('evaluated', 0)} expectations)")
    if summary.missing_metrics:
        table.add_row("metrics with no series", ", ".join(summary.missing_metrics))
    console.print(table)
    if summary.reasons:
        reasons = Table(title="quarantined, by reason", title_justify="left")
        reasons.add_column("reason")
        reasons.add_column("rows", justify="right")
        for reason, count in sorted(summary.reasons.items(), key=lambda item: (-item[1], item[0])):
            reasons.add_row(reason, f"{count:,}")
        console.print(reasons)
    for note in summary.notes:
        console.print(f"note: {note}", highlight=False)


def _report(summary: IngestSummary, as_json: bool) -> None:
    if as_json:
        console.print_json(summary.model_dump_json())
    else:
        show(summary)


@app.command("file")
@friendly
def file(
    directory: Annotated[Path, typer.Argument(help="Dataset directory (telemetry.csv, failures.csv, ...).")],
    database: DatabaseOption = None,
    step: Annotated[
        str | None, typer.Option(help="Resample telemetry to this step, such as 5m; default: keep it as given.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest a dataset directory; bad rows go to the quarantine with file, line and reason."""
    from forewarn.ingest import ingest_files, open_repository, step_minutes_of

    step_minutes = step_minutes_of(step) if step else None
    repository = open_repository(database)
    try:
        _report(ingest_files(directory, repository=repository, step_minutes=step_minutes), as_json)
    finally:
        repository.dispose()


@app.command("prometheus")
@friendly
def prometheus(
    url: Annotated[str, typer.Option(help="Prometheus base URL, such as http://127.0.0.1:9090.")],
    since: Annotated[str, typer.Option(help="How far back to read, such as 6h, 90m or 2d.")] = "6h",
    step: Annotated[str, typer.Option(help="Evaluation step, whole minutes, such as 1m or 5m.")] = "1m",
    queries: Annotated[
        Path | None, typer.Option(help="YAML of metric name to PromQL, overriding the defaults; null drops one.")
    ] = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest node_exporter telemetry from Prometheus (query_range), screened and validated."""
    from forewarn.ingest import ingest_prometheus, open_repository

    repository = open_repository(database)
    try:
        _report(ingest_prometheus(url, since=since, step=step, queries=queries, repository=repository), as_json)
    finally:
        repository.dispose()


@app.command("logs")
@friendly
def logs(
    paths: Annotated[list[str], typer.Argument(help="Log files, directories (their files) or glob patterns.")],
    format: Annotated[
        str,
        typer.Option(
            help="syslog, journald, or a loghub format: bgl, hdfs, openstack, hpc, thunderbird; auto guesses."
        ),
    ] = "auto",
    year: Annotated[int | None, typer.Option(help="Year of syslog (RFC 3164) times, which carry none.")] = None,
    timezone: Annotated[str, typer.Option(help="Zone of times written without one.")] = "UTC",
    instance: Annotated[
        str | None, typer.Option(help="Instance of formats that name no host (HDFS); default the file's stem.")
    ] = None,
    min_severity: Annotated[
        str, typer.Option(help="Keep events at or above: debug, info, warning, error, critical.")
    ] = "warning",
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest error events from log files; lines that do not parse are quarantined with file, line and reason."""
    from forewarn.ingest import open_repository
    from forewarn.sources.logs import ingest_logs

    repository = open_repository(database)
    try:
        summary = ingest_logs(
            paths,
            format=format,
            year=year,
            timezone=timezone,
            instance=instance,
            min_severity=min_severity,
            repository=repository,
        )
        _report(summary, as_json)
    finally:
        repository.dispose()
