"""`forewarn replay`: a dataset replayed in simulated time with Forewarn acting, against alternatives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from forewarn.commands.common import console, friendly
from forewarn.errors import ConfigError


@friendly
def command(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    model: Annotated[Path | None, typer.Option(help="Model registry directory (default FOREWARN_HOME/models).")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy file (default policies/default.yaml).")] = None,
    compare: Annotated[
        str,
        typer.Option(
            help="Comma-separated runs to compare with: reactive (no prediction), static (the policy's fixed "
            "thresholds on current telemetry) and/or other policy files."
        ),
    ] = "reactive",
    start: Annotated[str | None, typer.Option(help="Replay from this time (RFC 3339); default the last day.")] = None,
    migration_minutes: Annotated[float, typer.Option(min=0.0, help="How long a migration takes.")] = 5.0,
    out: Annotated[Path | None, typer.Option(help="Directory for results.json and the report.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
) -> None:
    """Replay a dataset in simulated time with Forewarn acting, against the runs named by --compare.

    Each run is the production cycle (recover, restore, score, policy, allocation, guardrails, journal,
    applier, release) under a simulated clock over a simulated fleet whose state persists between cycles.
    Failures strike when the data says; tasks still on a failing instance (or still migrating off it) are
    interrupted. Prints interrupted task-hours, failures hitting work, migrations (and those not needed),
    scale actions, releases, restores and capacity overhead per policy, and writes a report with plots.

    With no model in FOREWARN_HOME it first trains one on the data before the replayed window. The plans of
    the policy's run are journalled in FOREWARN_HOME (`forewarn plan list` shows them); those of the
    comparison runs in FOREWARN_HOME/replay/NAME.
    """
    from forewarn.demo import run_replay
    from forewarn.replay import ReplayConfig

    if not dataset.is_dir():
        raise ConfigError("not a dataset directory", file=dataset, field="DATASET")
    results = run_replay(
        dataset=dataset,
        model_dir=model,
        policy=policy,
        start=start,
        console=console,
        out=out,
        compare=compare.split(","),
        config=ReplayConfig(migration_minutes=migration_minutes),
    )
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(results, indent=2, default=str))
        console.print(f"wrote {json_out}")
