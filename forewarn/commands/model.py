"""`forewarn model`: the registry's versions, the champion in service, and the operator's overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from forewarn.commands.common import console, friendly

app = typer.Typer(help="List model versions, promote one, or roll back to the previous champion.", no_args_is_help=True)

RegistryOption = Annotated[
    Path | None, typer.Option("--registry", help="Model registry directory (default FOREWARN_HOME/models).")
]


def _registry(path: Path | None) -> Any:
    from forewarn.model.registry import ModelRegistry
    from forewarn.settings import get_settings

    return ModelRegistry(path or get_settings().models_dir)


def _figure(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


@app.command("list")
@friendly
def model_list(registry: RegistryOption = None) -> None:
    """Every registered version, oldest first, with its scorer, status, data window, test figures and the
    champion race that decided it (which scorer won, and why, in words)."""
    from rich.table import Table

    models = _registry(registry)
    table = Table("version", "scorer", "status", "horizon", "data window", "pr_auc", "brier", "why")
    for card in models.list():
        start, end = card.data_window
        verdict = card.challenge["reason"] if card.challenge else "-"
        status = f"[bold green]{card.status}[/]" if card.status == "current" else card.status
        table.add_row(
            card.version,
            card.kind,
            status,
            f"{card.horizon_minutes} min",
            f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}",
            _figure(card.metrics.get("pr_auc")),
            _figure(card.metrics.get("brier")),
            verdict,
        )
    console.print(table)
    current = models.current_version()
    if current is None:
        console.print("no model in service yet (forewarn run train)")
        return
    card = models.card(current)
    console.print(f"in service: {current} ({card.kind})")
    if card.challenge:
        console.print(f"why: {card.challenge['reason']}")


@app.command("promote")
@friendly
def model_promote(
    version: Annotated[str, typer.Argument(help="The version to put in service.")], registry: RegistryOption = None
) -> None:
    """Put VERSION in service now, whatever its figures; the previous champion can be brought back by rollback."""
    card = _registry(registry).promote(version)
    console.print(f"{card.version} is in service")


@app.command("rollback")
@friendly
def model_rollback(registry: RegistryOption = None) -> None:
    """Bring back the champion that served before the current one."""
    card = _registry(registry).rollback()
    console.print(f"rolled back: {card.version} is in service")
