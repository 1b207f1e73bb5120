"""Every failure of every command as one line and an exit code: 2 for bad input, 1 for a failed run.

:class:`GuardedGroup` is the ``forewarn`` command group; whatever escapes a command ends in :func:`describe`:

* :class:`~forewarn.errors.InputError` (a bad file, flag or setting) -> ``error: ...``, exit 2;
* any other :class:`~forewarn.errors.ForewarnError`, an unreachable database, a refused connection, a
  time-out, Prefect's temporary server not starting -> ``failed: ...`` with what to do, exit 1;
* anything else -> ``failed: unexpected ...`` and the hint to set ``FOREWARN_DEBUG=1`` for the traceback.

Every line goes through :func:`forewarn.redact.redact`. With ``FOREWARN_DEBUG=1`` the exception propagates
with its traceback. Library classes are recognised by name, so this module imports none of them.
"""

from __future__ import annotations

import os
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup
from typer.exceptions import TyperException

from forewarn.errors import ForewarnError, InputError
from forewarn.redact import redact

BAD_INPUT, FAILED = 2, 1
MAX_LINE = 400
DEBUG_HINT = "set FOREWARN_DEBUG=1 to see the traceback"
err = Console(stderr=True)
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def one_line(text: object, limit: int = MAX_LINE) -> str:
    """``text`` redacted, on one line, at most ``limit`` characters."""
    flat = " ".join(redact(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _names(exc: BaseException) -> set[str]:
    return {f"{cls.__module__}.{cls.__name__}" for cls in type(exc).__mro__}


def _database(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    reason = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    return (
        f"the database did not answer: {reason}; check FOREWARN_DATABASE_URL (or --database) and that the server is up"
    )


def _prefect_start(exc: BaseException) -> str | None:
    if "ephemeral Prefect API server" not in str(exc):
        return None
    timeout = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
    return (
        f"Prefect's temporary server did not start within {timeout} s: set "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180 (make does), or start a server "
        "(`prefect server start`) and set PREFECT_API_URL"
    )


def _validation(exc: BaseException) -> str | None:
    """A pydantic ValidationError (settings, or a model built from flags) as one line naming the field."""
    if "pydantic_core._pydantic_core.ValidationError" not in _names(exc):
        return None
    from pydantic import ValidationError

    from forewarn.settings import settings_error

    assert isinstance(exc, ValidationError)
    if exc.title.endswith("Settings"):  # Settings, ScaleSettings, ServeSettings: all FOREWARN_*
        return str(settings_error(exc))
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    value = first.get("input")
    got = f", got {value!r}" if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    return f"{exc.title} field '{where}': {first['msg']}{got}"


def describe(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one line (``error: ...`` or ``failed: ...``) for ``exc``."""
    names = _names(exc)
    if isinstance(exc, InputError):
        return BAD_INPUT, f"error: {one_line(exc)}"
    if isinstance(exc, ForewarnError):
        return FAILED, f"failed: {one_line(exc)}"
    invalid = _validation(exc)
    if invalid is not None:
        return BAD_INPUT, f"error: {one_line(invalid)}"
    if "sqlalchemy.exc.DBAPIError" in names or "sqlalchemy.exc.OperationalError" in names:
        return FAILED, f"failed: {one_line(_database(exc))}"
    if "sqlalchemy.exc.ArgumentError" in names:
        return BAD_INPUT, f"error: not a database URL: {one_line(exc)}; check FOREWARN_DATABASE_URL"
    if "botocore.exceptions.NoRegionError" in names:
        return BAD_INPUT, "error: no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or region in the profile)"
    if "botocore.exceptions.ProfileNotFound" in names:
        return BAD_INPUT, f"error: {one_line(exc)}: check AWS_PROFILE and the AWS config file"
    if "botocore.exceptions.NoCredentialsError" in names:
        return BAD_INPUT, "error: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile"
    if names & {
        "requests.exceptions.InvalidSchema",
        "requests.exceptions.MissingSchema",
        "requests.exceptions.InvalidURL",
    }:
        return BAD_INPUT, f"error: not a usable URL: {one_line(exc)}; give http://host:port or https://host:port"
    prefect = _prefect_start(exc)
    if prefect is not None:
        return FAILED, f"failed: {prefect}"
    if isinstance(exc, _PATH_ERRORS):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return BAD_INPUT, f"error: {one_line(where + (exc.strerror or str(exc)))}"
    if isinstance(exc, TimeoutError) or names & {"requests.exceptions.Timeout", "httpx.TimeoutException"}:
        return FAILED, f"failed: timed out: {one_line(exc)}; check the server is up and reachable, then try again"
    if isinstance(exc, ConnectionError) or names & {"requests.exceptions.ConnectionError", "httpx.TransportError"}:
        return FAILED, f"failed: cannot connect: {one_line(exc)}; check the URL and that the server is up"
    if isinstance(exc, RecursionError):
        return BAD_INPUT, f"error: input nested too deeply to read ({DEBUG_HINT})"
    if isinstance(exc, MemoryError):
        return FAILED, f"failed: out of memory; try a smaller input ({DEBUG_HINT})"
    if isinstance(exc, OSError):
        return FAILED, f"failed: {one_line(exc)}"
    return FAILED, f"failed: unexpected {type(exc).__name__}: {one_line(exc, 300)} ({DEBUG_HINT})"


def report(exc: BaseException) -> typer.Exit:
    """Print ``exc`` as one line on stderr and return the :class:`typer.Exit` to raise."""
    code, line = describe(exc)
    head, _, rest = line.partition(": ")
    err.print(f"[red]{head}:[/] {escape(rest)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


class GuardedGroup(TyperGroup):
    """The command group whose every failure is one line (see :func:`describe`)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (TyperException, typer.Exit, typer.Abort):
            raise  # usage errors and exits: typer prints them and knows their codes
        except BrokenPipeError:
            raise  # the reader left (`forewarn ... | head`): click exits quietly, as it does outside commands
        except Exception as exc:
            if os.environ.get("FOREWARN_DEBUG", "") not in ("", "0"):
                raise
            raise report(exc) from None
