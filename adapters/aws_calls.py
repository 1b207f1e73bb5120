"""What every AWS call goes through: typed errors, idempotency tokens and the record of keys already used.

Error mapping (botocore to :mod:`forewarn.errors`):
    throttling codes, HTTP 5xx, connection errors and time-outs -> ``TransientAdapterError``;
    ``*.NotFound`` codes and the ``*.Malformed`` instance/image ids -> ``NotFoundError``;
    missing credentials, anything else -> ``AdapterError`` with the operation, code and AWS message.
Messages never carry credentials: botocore's own messages do not, and nothing here prints the session.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from forewarn.errors import AdapterError, NotFoundError, TransientAdapterError

T = TypeVar("T")

THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "Unavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)
NOT_FOUND_SUFFIXES = (".NotFound", "NotFound", "InvalidInstanceID.Malformed", "InvalidAMIID.Malformed")


def translate(error: Exception, operation: str) -> AdapterError:
    """The typed Forewarn error for an exception a boto3 call raised."""
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        code = str(info.get("Code", "Unknown"))
        message = f"{operation}: {code}: {info.get('Message', '')}".rstrip(": ")
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in THROTTLING or status >= 500:
            return TransientAdapterError(message)
        if code.endswith(NOT_FOUND_SUFFIXES):
            return NotFoundError(message)
        return AdapterError(message)
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return AdapterError(f"{operation}: no usable AWS credentials in the environment, profile or instance role")
    if isinstance(error, ConnectionError | ReadTimeoutError):
        return TransientAdapterError(f"{operation}: {type(error).__name__}: cannot reach the endpoint")
    return AdapterError(f"{operation}: {type(error).__name__}: {error}")


def call(client: Any, operation: str, **params: Any) -> dict[str, Any]:
    """``client.<operation>(**params)`` with its errors translated."""
    try:
        return dict(getattr(client, operation)(**params))
    except (ClientError, BotoCoreError) as error:
        raise translate(error, operation) from None


def pages(client: Any, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item under ``key`` of every page of a paginated operation, errors translated."""
    try:
        for page in client.get_paginator(operation).paginate(**params):
            yield from page.get(key, [])
    except (ClientError, BotoCoreError) as error:
        raise translate(error, operation) from None


def client_token(key: str, operation: str) -> str:
    """An EC2 ``ClientToken`` (at most 64 ASCII characters) derived from an idempotency key."""
    return "fw-" + hashlib.sha256(f"{operation}\0{key}".encode()).hexdigest()[:40]


class KeyLedger:
    """Keys already carried out, with their results; kept in memory and, with ``path``, in a JSON file.

    The file lets a restarted process honour keys it used before; AWS-side records (a ``ClientToken``, a
    tag) cover the calls where the API has one.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._done: dict[str, tuple[str, Any]] = {}
        if path is not None and path.exists():
            self._done = {k: (v[0], v[1]) for k, v in json.loads(path.read_text()).items()}

    def get(self, key: str, method: str) -> tuple[bool, Any]:
        """Whether ``key`` was done, and its result; a key used for another method is refused."""
        if key not in self._done:
            return False, None
        done, result = self._done[key]
        if done != method:
            raise AdapterError(f"key {key!r} was already used for {done}, not {method}")
        return True, result

    def act(self, method: str, key: str, what: str, effect: Callable[[], T], *, dry_run: bool) -> T | None:
        """Idempotency by key, then dry-run, then the effect; the key is recorded once the effect succeeded."""
        done, result = self.get(key, method)
        if done:
            return cast("T", result)
        if dry_run:
            logging.getLogger("adapters").info("dry-run: would %s (key %s)", what, key)
            return None
        outcome = effect()
        self.put(key, method, outcome)
        return outcome

    def put(self, key: str, method: str, result: Any) -> None:
        self._done[key] = (method, result)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({k: list(v) for k, v in self._done.items()}))
            tmp.replace(self.path)
