"""Simulator speed: seconds per run beside the floor the brief sets. Run: .venv/bin/python -m bench.bench_sim"""

from __future__ import annotations

import time

from forewarn.sim import SimConfig, simulate

CASES = ((SimConfig(instances=200, days=3.0), 5.0), (SimConfig(instances=1000, days=7.0), 10.0))


def main() -> None:
    for config, floor in CASES:
        began = time.perf_counter()
        data = simulate(config)
        took = time.perf_counter() - began
        verdict = "ok" if took <= floor else "SLOW"
        print(
            f"simulate {config.instances} instances x {config.days:g} days: {took:.2f} s (floor {floor:.0f} s)"
            f" {verdict}"
            f"; {len(data.telemetry):,} telemetry rows, {len(data.failures)} failures"
        )


if __name__ == "__main__":
    main()
