"""Retries with exponential backoff and jitter (tenacity), and a breaker per adapter (the adapter breaker).

Only :class:`~forewarn.errors.AdapterError` with ``retryable`` set (throttling, time-outs, 5xx) is retried.
The breaker opens after ``threshold`` failed calls in a row and refuses calls for ``reset_seconds``; then
one trial call goes through (half-open) and its result closes or reopens it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from forewarn.errors import AdapterError

T = TypeVar("T")


class AdapterBreakerOpen(AdapterError):
    """The adapter failed too often in a row; calls are refused until the breaker resets."""


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, AdapterError) and error.retryable


def default_retry(
    *,
    attempts: int = 4,
    initial: float = 0.5,
    maximum: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tenacity.Retrying:
    """Retry transient adapter errors ``attempts`` times in all, waiting ``initial * 2**n`` plus jitter."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential_jitter(initial=initial, max=maximum, jitter=initial),
        retry=tenacity.retry_if_exception(is_retryable),
        sleep=sleep,
        reraise=True,
    )


class AdapterBreaker:
    """The adapter breaker: stops calling an adapter that keeps failing (not the policy's; docs/glossary.md)."""

    def __init__(self, *, threshold: int = 5, reset_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.reset_seconds else "open"

    def call(self, name: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` unless the breaker is open; count its failure or reset on success."""
        with self._lock:
            if self.state == "open":
                raise AdapterBreakerOpen(
                    f"adapter breaker open for {name}: {self.failures} failures in a row; "
                    f"retry after {self.reset_seconds:g} s"
                )
        try:
            result = fn()
        except AdapterError as exc:
            if not isinstance(exc, AdapterBreakerOpen) and exc.retryable:
                self._failed()
            raise
        with self._lock:
            self.failures, self.opened_at = 0, None
        return result

    def _failed(self) -> None:
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold:
                self.opened_at = self.clock()
