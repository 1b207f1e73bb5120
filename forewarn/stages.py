"""Seconds spent in each stage of a cycle, for the benchmark and the flow's metrics.

``with stages("score"): ...`` adds the block's wall time to ``stages.seconds["score"]``; :data:`UNTIMED`
times nothing, so the cycle's code reads the same whether anyone measures it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stages:
    """Wall seconds per stage name, summed over every block of that name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began


class _Untimed(Stages):
    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        yield


UNTIMED: Stages = _Untimed()
