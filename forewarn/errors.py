"""One exception hierarchy. A user's mistake is one readable line naming the file, row and field.

The CLI catches :class:`ForewarnError` and prints ``str(error)``; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class ForewarnError(Exception):
    """Base of every error Forewarn raises on purpose."""


class InputError(ForewarnError):
    """Bad input from a user: a file, a row, a field. The message says where and what is allowed.

    Args:
        message: what is wrong and what to do.
        file: the file it is in, if any.
        row: the 1-based line number in that file (the header is line 1), if known.
        field: the column or key, if known.
        allowed: the values that would be accepted, if they are few.
        column: the 1-based column on that line, if known (rendered as ``file:line:column``).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
        allowed: Iterable[str] | None = None,
        column: int | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.field = field
        self.allowed = list(allowed) if allowed is not None else None
        self.reason = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        line = None if self.row is None else f"{self.row}" if self.column is None else f"{self.row}:{self.column}"
        if self.file:
            where.append(self.file if line is None else f"{self.file}:{line}")
        elif line is not None:
            where.append(f"line {line}")
        if self.field:
            where.append(f"field '{self.field}'")
        text = f"{', '.join(where)}: {self.reason}" if where else self.reason
        if self.allowed:
            text += f" (allowed: {', '.join(self.allowed)})"
        return text


class DatasetError(InputError):
    """A dataset file is missing, malformed, or breaks the dataset format."""


class PolicyError(InputError):
    """A policy file is malformed or asks for something the engine cannot do."""


class ConfigError(InputError):
    """A setting or command-line option is invalid."""


class ValidationFailed(ForewarnError):
    """A Great Expectations suite failed; the message lists the expectations that failed."""


class ModelUnavailable(ForewarnError):
    """No usable model: none trained yet, stale, or rejected by validation."""


class AdapterError(ForewarnError):
    """A cloud adapter call failed. ``retryable`` tells whether trying again may help."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class TransientAdapterError(AdapterError):
    """Throttling, a time-out or a 5xx: worth retrying with backoff."""

    retryable = True


class NotFoundError(AdapterError):
    """The instance or task named does not exist (any more)."""


class PlanError(ForewarnError):
    """A plan cannot move to the state asked for (for example approving a finished plan)."""
