"""Fault injection for tests: make any adapter call fail at any step, before or after it takes effect.

A fault fails the calls numbered ``after + 1`` to ``after + times`` of one method (counting every call of
that method, failed ones included). ``when="after"`` lets the call take effect first and then raises, as a
time-out whose request the cloud did carry out; a retry with the same key must then be a no-op.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from forewarn.errors import AdapterError, TransientAdapterError

ALWAYS = 2**31
"""``times`` value for a fault that never stops."""

When = Literal["before", "after"]


@dataclass
class Fault:
    method: str
    times: int
    error: type[AdapterError]
    after: int
    when: When

    def fires(self, call_number: int) -> bool:
        return self.after < call_number <= self.after + self.times


@dataclass
class FaultPlan:
    """The faults to inject, and how many calls of each method were made."""

    faults: list[Fault] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    def inject(
        self,
        method: str,
        *,
        times: int = 1,
        error: type[AdapterError] = TransientAdapterError,
        after: int = 0,
        when: When = "before",
    ) -> Fault:
        """Fail ``times`` calls of ``method`` once ``after`` calls have gone through."""
        if times < 1 or after < 0:
            raise ValueError("times must be >= 1 and after >= 0")
        fault = Fault(method, times, error, after, when)
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def begin(self, method: str) -> Fault | None:
        """Count a call of ``method``; raise a fault armed before it, or return one armed after it."""
        self.calls[method] += 1
        number = self.calls[method]
        for fault in self.faults:
            if fault.method == method and fault.fires(number):
                if fault.when == "before":
                    raise fault.error(f"injected fault: {method} call {number} failed")
                return fault
        return None

    def end(self, method: str, fault: Fault | None) -> None:
        """Raise the fault armed after a call that has now taken effect, if any."""
        if fault is not None:
            raise fault.error(f"injected fault: {method} call {self.calls[method]} failed after it acted")
