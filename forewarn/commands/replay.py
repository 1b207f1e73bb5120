"""`forewarn replay`: a dataset replayed in simulated time with Forewarn acting, against alternatives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from forewarn.commands.common import console, friendly


@friendly
def command(
    dataset: Annotated[Path, typer.Argument(help="Dataset directory.")],
    model: Annotated[Path | None, typer.Option(help="Model registry directory (default FOREWARN_HOME/models).")] = None,
    policy: Annotated[Path | None, typer.Option(help="Policy file (default policies/default.yaml).")] = None,
    start: Annotated[str | None, typer.Option(help="Replay from this time (RFC 3339); default the last day.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON here.")] = None,
) -> None:
    """Replay a dataset in simulated time with Forewarn acting, against a reactive run (no prediction)."""
    from forewarn.demo import run_replay

    results = run_replay(dataset=dataset, model_dir=model, policy=policy, start=start, console=console)
    if json_out:
        json_out.write_text(json.dumps(results, indent=2, default=str))
        console.print(f"wrote {json_out}")
