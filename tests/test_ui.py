"""The Prefect UI in headless Chromium (Debian ``chromium``): the flow run page shows the completed
score-and-allocate run, and its risk-table artifact page shows the table. Screenshots go under tmp and,
with FOREWARN_UPDATE_DOCS_IMG=1, into docs/img/ for docs/operations.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from forewarn.settings import PROJECT_ROOT
from tests.servers import require_binary
from tests.test_deploy import Served, served

pytestmark = pytest.mark.serve  # runs in its own pytest process beside the rest (scripts/run-tests.sh)

__all__ = ["served"]

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--virtual-time-budget=20000",
    "--window-size=1400,1000",
]


def chromium(binary: str, url: str, tmp: Path, *action: str) -> str:
    argv = [binary, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *action, url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=True).stdout


def screenshot(binary: str, url: str, tmp: Path, name: str) -> tuple[Path, str]:
    """A PNG of the page after its scripts ran, and the rendered DOM."""
    png = tmp / name
    chromium(binary, url, tmp, f"--screenshot={png}")
    return png, chromium(binary, url, tmp, "--dump-dom")


def looks_like_a_page(png: Path) -> None:
    import matplotlib.image

    assert png.stat().st_size > 20_000
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (1000, 1400)
    assert pixels.std() > 0.05  # not a blank page


def risk_table_id(served: Served) -> str:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    flt = ArtifactFilter(
        flow_run_id=ArtifactFilterFlowRunId(any_=[served.flow_run_id]), key=ArtifactFilterKey(any_=["risk-table"])
    )
    with SyncPrefectClient(served.api) as client:
        (artifact,) = client.read_artifacts(artifact_filter=flt)
    return str(artifact.id)


@pytest.mark.slow
@pytest.mark.integration
def test_the_ui_shows_the_completed_run_and_its_risk_table(served: Served, tmp_path: Path) -> None:
    binary = require_binary("chromium")
    run_png, run_dom = screenshot(binary, f"{served.url}/runs/flow-run/{served.flow_run_id}", tmp_path, "run.png")
    looks_like_a_page(run_png)
    assert "Completed" in run_dom and "score-and-allocate" in run_dom

    table_png, table_dom = screenshot(
        binary, f"{served.url}/artifacts/artifact/{risk_table_id(served)}", tmp_path, "risk-table.png"
    )
    looks_like_a_page(table_png)
    assert "Instances by failure probability" in table_dom and "i-0001" in table_dom and "band" in table_dom

    if os.environ.get("FOREWARN_UPDATE_DOCS_IMG") == "1":
        (PROJECT_ROOT / "docs" / "img").mkdir(exist_ok=True)
        shutil.copy(run_png, PROJECT_ROOT / "docs" / "img" / "prefect-flow-run.png")
        shutil.copy(table_png, PROJECT_ROOT / "docs" / "img" / "prefect-risk-table.png")
