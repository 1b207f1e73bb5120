"""Benchmark: how long ``forewarn --help``, ``forewarn policy check FILE`` and ``forewarn plan list`` take to
start and finish, beside ``python -c "import typer"`` (the floor: no Typer CLI starts faster).

Each command runs in a fresh interpreter (``python -m forewarn.cli``) several times; the figure is the
median wall time. The byte-code cache is on (as on any installed system; the runs write it under a private
``PYTHONPYCACHEPREFIX``) and one warm-up run of each command fills it first. ``plan list`` reads the journal
of an empty FOREWARN_HOME under a temporary directory.

Run: ``python -m bench.cli_startup [--runs 7]`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COMMANDS: dict[str, list[str]] = {
    "help": ["--help"],
    "policy check": ["policy", "check", str(ROOT / "policies" / "default.yaml")],
    "plan list": ["plan", "list"],
}


def _wall(argv: list[str], env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


def run(runs: int = 7) -> dict[str, Any]:
    """Median seconds of each command and of the floor over ``runs`` runs each, after one warm-up run."""
    with tempfile.TemporaryDirectory(prefix="forewarn-cli-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {
            "PYTHONPYCACHEPREFIX": env.get("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "forewarn-pyc")),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "FOREWARN_HOME": tmp,
            "DO_NOT_TRACK": "1",
        }
        argvs = {"floor": [sys.executable, "-c", "import typer"]}
        argvs |= {name: [sys.executable, "-m", "forewarn.cli", *args] for name, args in COMMANDS.items()}
        for argv in argvs.values():
            _wall(argv, env)
        medians = {name: statistics.median(_wall(argv, env) for _ in range(runs)) for name, argv in argvs.items()}
    floor = medians.pop("floor")
    return {
        "benchmark": "cli start-up",
        "runs": runs,
        "floor_seconds": round(floor, 3),
        "commands": {
            name: {"seconds": round(s, 3), "floor_seconds": round(floor, 3), "ratio": round(s / floor, 2)}
            for name, s in medians.items()
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=7)
    print(json.dumps(run(parser.parse_args().runs), indent=2))
