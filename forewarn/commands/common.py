"""What every command shares: the consoles and the error handling that turns Forewarn's errors into one line."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from rich.console import Console

from forewarn.commands.guard import report
from forewarn.errors import ForewarnError

F = TypeVar("F", bound=Callable[..., Any])

console = Console()
err = Console(stderr=True)


def friendly(func: F) -> F:
    """Print Forewarn's own errors as one line, redacted, and exit 2 (bad input) or 1 (a failed run).

    Anything else a command raises ends in :class:`forewarn.commands.guard.GuardedGroup`, one line too.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ForewarnError as exc:
            raise report(exc) from None

    return wrapper  # type: ignore[return-value]
