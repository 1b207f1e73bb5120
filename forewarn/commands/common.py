"""What every command shares: the consoles and the error handling that turns Forewarn's errors into one line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from forewarn.errors import ForewarnError, InputError

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err = Console(stderr=True)


def friendly(func: F) -> F:
    """Print Forewarn's own errors as one line and exit 2 (bad input) or 1 (a failed run)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            err.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except ForewarnError as exc:
            err.print(f"[red]failed:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
