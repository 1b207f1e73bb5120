"""Screenshots of a running `make serve` in headless Chromium: the flow runs page and the risk table.

    python scripts/screenshot_serve.py                      # the serve on FOREWARN_PREFECT_PORT (4200)
    python scripts/screenshot_serve.py --out out/ui --docs  # also docs/img/serve-ui.png, for the README

Writes ``runs.png`` (the flow runs page: ingest, materialize, score-and-allocate and train runs) and
``risk-table.png`` (the latest completed score-and-allocate run's risk-table artifact) under ``--out``, and
prints their paths. Needs Debian's ``chromium`` (or ``--chromium PATH``) and a serve with at least one completed
score-and-allocate run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS_PNG = ROOT / "docs" / "img" / "serve-ui.png"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=60000",
    "--window-size=1400,1200",
]


def api(url: str, path: str, body: object | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}/api{path}", data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def latest_risk_table(url: str) -> str:
    """The id of the risk-table artifact of the latest completed score-and-allocate flow run."""
    body = {
        "flows": {"name": {"any_": ["score-and-allocate"]}},
        "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
        "sort": "START_TIME_DESC",
        "limit": 5,
    }
    for run in api(url, "/flow_runs/filter", body):  # type: ignore[attr-defined]
        found = api(
            url,
            "/artifacts/filter",
            {"artifacts": {"flow_run_id": {"any_": [run["id"]]}, "key": {"any_": ["risk-table"]}}},
        )
        if found:
            return str(found[0]["id"])  # type: ignore[index]
    raise SystemExit(f"no completed score-and-allocate run with a risk table on {url} yet; wait a minute")


def screenshot(chromium: str, page: str, png: Path, profile: Path) -> Path:
    argv = [chromium, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}", page]
    subprocess.run(argv, capture_output=True, timeout=180, check=True)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    port = os.environ.get("FOREWARN_PREFECT_PORT", "4200")
    parser.add_argument("--url", default=f"http://127.0.0.1:{port}", help="the Prefect server of the serve")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "serve-ui")
    parser.add_argument("--docs", action="store_true", help=f"also copy the runs page to {DOCS_PNG}")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    artifact = latest_risk_table(args.url)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        runs = screenshot(args.chromium, f"{args.url}/runs", args.out / "runs.png", Path(profile) / "a")
        table = f"{args.url}/artifacts/artifact/{artifact}"
        risk = screenshot(args.chromium, table, args.out / "risk-table.png", Path(profile) / "b")
    print(runs)
    print(risk)
    if args.docs:
        DOCS_PNG.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(runs, DOCS_PNG)
        print(DOCS_PNG)
    return 0


if __name__ == "__main__":
    sys.exit(main())
