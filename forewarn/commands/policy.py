"""`forewarn policy`: check policy files before they are merged, and review changes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from forewarn.commands.common import console, err, friendly

app = typer.Typer(help="Check policy files before they are merged.", no_args_is_help=True)


@app.command("validate")
@friendly
def policy_validate(paths: Annotated[list[Path], typer.Argument(help="Policy files to check.")]) -> None:
    """Check policy files: YAML, structure, schema and meaning. Exit 2 naming file, line and field."""
    from forewarn.policy.review import validate_paths

    problems = validate_paths(paths)
    for problem in problems:
        err.print(f"[red]error:[/] {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(2)
    console.print(f"{len(paths)} policy file(s) valid")


@app.command("diff")
@friendly
def policy_diff(old: Path, new: Path) -> None:
    """Say what a policy change changes, field by field, for a pull-request review."""
    from forewarn.policy.loader import load_policy
    from forewarn.policy.review import diff_policies

    console.print(diff_policies(load_policy(old), load_policy(new), scores_frame=None))
