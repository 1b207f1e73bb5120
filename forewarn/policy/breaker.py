"""The latched circuit breaker: once tripped, plans stay shadow plans until calm cycles or an operator's reset.

Each cycle the high-risk share of the fleet (percent of instances in the high band) is compared with

* the previous cycle's share: a rise of more than ``max-high-risk-jump-percent`` points is a *spike*;
* the trailing *baseline* (the mean share of the last ``baseline-cycles`` cycles while the breaker was closed):
  more than ``max-high-risk-rise-percent`` points above it is a *ramp*, which a slow climb reaches even when no
  single cycle jumps.

A spike or a ramp trips the breaker. While it is open the baseline does not move (the cycles it watches are
not taken as normal), and a cycle is *calm* when the share neither spiked nor rose above its peak since the
trip (it stopped climbing). After ``calm-cycles`` calm cycles in a row the next calm cycle closes it, and the
level that held steady becomes the new baseline. An operator's reset (:meth:`BreakerState.reset`) closes it
at once and starts the baseline afresh from the next cycle.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from forewarn.policy.actions import PolicyModel
from forewarn.policy.schema import CircuitBreaker
from forewarn.schemas import UtcDatetime


class BreakerState(PolicyModel):
    """What the breaker remembers between cycles."""

    open: bool = False
    reason: str | None = None
    opened_at: UtcDatetime | None = None
    calm: int = Field(default=0, description="calm cycles in a row while open")
    baseline: list[float] = Field(default_factory=list, description="high-risk shares of recent closed cycles")
    last_share: float | None = None
    peak: float | None = Field(default=None, description="the highest share since the trip")
    resets: int = Field(default=0, description="operator resets so far (a reset wins over a concurrent cycle)")

    def reset(self, note: str = "reset by an operator") -> None:
        """Close the breaker now; the baseline restarts from the next cycle's share."""
        self.open, self.calm, self.opened_at, self.peak = False, 0, None, None
        self.reason = note
        self.baseline = []
        self.resets += 1

    def describe(self) -> str:
        """One line: open or closed, and why."""
        if self.open:
            since = f" since {self.opened_at.isoformat()}" if self.opened_at else ""
            return f"circuit breaker OPEN{since} ({self.calm} calm cycle(s) so far): {self.reason}"
        base = f"{sum(self.baseline) / len(self.baseline):.1f}%" if self.baseline else "none yet"
        last = "" if self.reason is None else f"; last change: {self.reason}"
        return f"circuit breaker closed (baseline high-risk share {base}){last}"


def step(config: CircuitBreaker, state: BreakerState, share: float, now: datetime) -> str | None:
    """Move ``state`` on by one cycle whose high-risk share is ``share`` (percent); return a note for the plan
    when the breaker is open or changed this cycle, else None. ``state.open`` says whether the plan may run."""
    prev, base = state.last_share, (sum(state.baseline) / len(state.baseline) if state.baseline else None)
    state.last_share = share
    why = None
    if prev is not None and share - prev > config.max_high_risk_jump_percent:
        why = (
            f"high-risk share jumped from {prev:.1f}% to {share:.1f}% of the fleet in one cycle "
            f"(> {config.max_high_risk_jump_percent:g} points)"
        )
    elif base is not None and share - base > config.max_high_risk_rise_percent:
        why = (
            f"high-risk share {share:.1f}% is more than {config.max_high_risk_rise_percent:g} points above "
            f"its baseline {base:.1f}% (mean of {len(state.baseline)} cycle(s))"
        )
    if not state.open:
        if why is None:
            state.baseline = [*state.baseline, share][-config.baseline_cycles :]
            return None
        state.open, state.calm, state.reason, state.opened_at, state.peak = True, 0, why, now, share
        return f"circuit-breaker tripped: {why}; plan switched to shadow, nothing will run"
    peak = share if state.peak is None else state.peak
    if why is not None and (why.startswith("high-risk share jumped") or share > peak):
        state.calm, state.peak = 0, max(peak, share)
        return f"circuit-breaker open, not calm: {why}; plan switched to shadow"
    if state.calm >= config.calm_cycles:
        state.open, state.opened_at, state.peak = False, None, None
        state.reason = f"closed after {state.calm} calm cycle(s)"
        state.baseline = [share]
        return f"circuit-breaker closed after {state.calm} calm cycle(s); baseline now {share:.1f}%"
    state.calm += 1
    return (
        f"circuit-breaker open ({state.reason}); calm cycle {state.calm} of {config.calm_cycles}: "
        "plan switched to shadow"
    )
