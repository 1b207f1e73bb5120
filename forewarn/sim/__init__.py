"""The fleet simulator: writes the dataset format with failures that are hard, but not impossible, to see.

Terms:
    failure mode: how an instance fails (``memory_leak``, ``disk_errors``, ``latency_degradation``,
        ``error_burst``, ``sudden``); every mode but ``sudden`` has a precursor in the telemetry and logs.
    noisy instance: a healthy instance whose precursor-like spikes lead to nothing.

See docs/simulator.md for the model and the LANL fit behind it.
"""

from forewarn.sim.config import FAILURE_MODES, SimConfig
from forewarn.sim.core import simulate, write
from forewarn.sim.fit import LANL_FIT, LanlFit, fit_lanl

__all__ = ["FAILURE_MODES", "LANL_FIT", "LanlFit", "SimConfig", "fit_lanl", "simulate", "write"]
