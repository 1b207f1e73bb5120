"""Bounded numbers for policy files: every number has a finite range, and NaN and infinity are refused.

:func:`within` checks one range; a value outside it (or NaN, infinity, an integer too
large for a float) is refused at check time with the range in the message, so no cycle ever meets a
duration that overflows a ``timedelta`` or a threshold that never compares true.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError

YEAR_MINUTES = 525_600
"""The longest duration in minutes a policy may give (a year): longer is a typo, and overflows nothing."""
TEN_YEARS_HOURS = 87_600
"""The oldest a model may be allowed to get, in hours."""
MAX_COUNT = 100_000
"""The largest count a policy may give (actions, migrations, instances)."""
MAX_CYCLES = 10_000
"""The most cycles a policy may count over."""
METRIC_LIMIT = 1e12
"""A static threshold is within plus or minus this."""


def _range_text(lo: float, hi: float, lo_open: bool, hi_open: bool, unit: str) -> str:
    if lo_open or hi_open:
        low = f"more than {lo:g}" if lo_open else f"at least {lo:g}"
        high = f"below {hi:g}" if hi_open else f"at most {hi:g}"
        return f"must be a finite number {low} and {high}{unit}"
    return f"must be a finite number from {lo:g} to {hi:g}{unit}"


def _checker(lo: float, hi: float, lo_open: bool, hi_open: bool, unit: str) -> Any:
    message = _range_text(lo, hi, lo_open, hi_open, unit)

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            return value  # the schema says it is not a number
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return value  # the schema says it is not a number
        elif isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
        else:
            return value
        below = number <= lo if lo_open else number < lo
        above = number >= hi if hi_open else number > hi
        if not math.isfinite(number) or below or above:
            raise PydanticCustomError("out_of_range", message)
        return value

    return check


def within(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False, unit: str = "") -> BeforeValidator:
    """The check of one range, put beside the ``Field`` of the same range (which the JSON Schema shows):
    ``Annotated[float, Field(gt=0, le=60), within(0, 60, lo_open=True)]``."""
    return BeforeValidator(_checker(lo, hi, lo_open, hi_open, unit))


_YEAR = " minutes (a year)"
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False), within(0.0, 1.0)]
Fraction = Probability
Percent = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False), within(0.0, 100.0, unit=" percent")]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT), within(0, MAX_COUNT)]
Minutes = Annotated[float, Field(ge=0.0, le=YEAR_MINUTES, allow_inf_nan=False), within(0.0, YEAR_MINUTES, unit=_YEAR)]
PositiveMinutes = Annotated[
    float, Field(gt=0.0, le=YEAR_MINUTES, allow_inf_nan=False), within(0.0, YEAR_MINUTES, lo_open=True, unit=_YEAR)
]
Cycles = Annotated[int, Field(ge=0, le=MAX_CYCLES), within(0, MAX_CYCLES, unit=" cycles")]
MetricValue = Annotated[
    float, Field(ge=-METRIC_LIMIT, le=METRIC_LIMIT, allow_inf_nan=False), within(-METRIC_LIMIT, METRIC_LIMIT)
]
