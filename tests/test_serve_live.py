"""`make serve` as a user runs it, soaked: a private serve on free ports (40 instances, 2 days of history, 2
failures per instance per day, the fleet at 8x, materialize every minute) runs its schedules through a real
Prefect server and process worker.

Then the fleet service and the worker are killed with SIGKILL in the middle of a score-and-allocate run,
`serve start` brings it back, a few more cycles run, the schedules are paused, and everything is checked from
the Prefect API, the journal over the serve's history database and the fleet's own API. Headless Chromium
screenshots the UI; `serve stop` must leave nothing. FOREWARN_SOAK_MINUTES (default 1.5; `make soak`: 30) is
how long the first part runs; with FOREWARN_UPDATE_DOCS_IMG=1 the runs page goes to docs/img/serve-ui.png.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from forewarn import processes, serve_api
from forewarn.fleet_service.wire import pulled_from_json
from forewarn.settings import PROJECT_ROOT
from tests.serve_live_support import (
    BIN,
    FINAL,
    SERVE,
    Api,
    cloud_file,
    first_pid,
    fleet,
    kill_left,
    run,
    serve_env,
    wait_for,
)
from tests.servers import require_binary

pytestmark = pytest.mark.serve  # runs in its own pytest process beside the rest (scripts/run-tests.sh)

SOAK_MINUTES = float(os.environ.get("FOREWARN_SOAK_MINUTES", "1.5"))
LONG = SOAK_MINUTES >= 15
"""A long soak (`make soak`) also asks for work moved on a prediction, not only restores after failures."""
SPEED = float(os.environ.get("FOREWARN_SOAK_SPEED", "8"))
MOVES = {"migrate", "cordon", "scale_back", "release", "reserve_buffer"}


def completed_cycles(api: Api, after: str = "") -> list[tuple[str, dict[str, float]]]:
    """(start time, risk table) of each completed score-and-allocate run that scored, oldest first."""
    runs = [r for r in api.runs("score-and-allocate", ["COMPLETED"], scheduled=True) if r["start_time"] > after]
    tables = [(r["start_time"], api.risk_table(r["id"])) for r in runs]
    return [(start, table) for start, table in tables if table]


def soak(api: Api, minutes: float) -> None:
    """Let the schedules run ``minutes``, and longer (up to 4 more) until two cycles scored and a plan acted."""
    time.sleep(minutes * 60)
    wait_for("two scored score-and-allocate cycles", lambda: len(completed_cycles(api)) >= 2, timeout=240)


def served_kind(home: Path) -> str:
    """The scorer the train flow's champion race put in service (``xgboost``, ``logistic`` or ``static``)."""
    from forewarn.model.registry import ModelRegistry

    model = ModelRegistry(home / "models").current()
    assert model is not None, "no model in service"
    return model.kind


def assert_runs_and_risk_tables(api: Api, home: Path) -> None:
    for flow in ("ingest", "materialize", "score-and-allocate"):
        assert api.runs(flow, ["COMPLETED"], scheduled=True), f"no completed scheduled {flow} run"
    assert api.runs("train", ["COMPLETED"]), "no completed train run (start-up trains the first model)"
    broken = api.runs("score-and-allocate", ["FAILED", "CRASHED"]) + api.runs("ingest", ["FAILED", "CRASHED"])
    assert not broken, [(r["name"], r["state"]["message"]) for r in broken]
    cycles = completed_cycles(api)
    assert len(cycles) >= 2
    assert all(len(set(table.values())) > 1 for _, table in cycles), "every instance at one probability"
    pairs = [(a, b) for (_, a), (_, b) in pairwise(cycles)]
    changed = [any(a[i] != b[i] for i in set(a) & set(b)) for a, b in pairs]
    # A baseline the race kept (static rules, or the logistic model after isotonic calibration) scores in a few
    # steps, which may hold over the soak's few cycles; XGBoost's scores follow the telemetry cycle by cycle.
    kind = served_kind(home)
    assert any(changed) or kind != "xgboost", f"the risk table never changed between cycles ({kind} served)"


def assert_journal(home: Path, cloud: dict[str, Any]) -> list[Any]:
    """Every plan final, every action with a reason, and the journal and the fleet agree on what ran."""
    from forewarn.execution.journal import Journal
    from forewarn.store.repository import Repository

    journal = Journal(Repository(f"sqlite:///{home / 'forewarn.db'}"))
    plans = journal.list()
    assert [p.plan_id for p in plans if p.state.value not in FINAL] == []
    assert journal.interrupted() == []
    actions = [a for p in plans for a in p.actions]
    assert len({a.action_id for a in actions}) == len(actions), "an action id in two places"
    moved = [a for a in actions if a.type.value in MOVES and a.state.value == "succeeded"]
    assert moved, f"no migration, cordon, scale-back or release ran in {len(plans)} plans"
    assert all(a.reason.rule and (a.reason.note or a.reason.probability is not None) for a in moved)
    predicted = [a for a in moved if a.reason.probability is not None]
    print(f"\n{len(plans)} plans, {len(moved)} moves ({len(predicted)} on a prediction)", file=sys.stderr)
    assert predicted or not LONG, "in a long soak, no work moved on a prediction"
    # The fleet ran each key once (its idempotency); every key is one the journal knows, and every action
    # the journal says ran is in the fleet: none repeated under a new key, none forgotten.
    known = {a.action_id for a in actions} | {p.plan_id for p in plans}
    keys = {key.split(":")[0] for key in cloud["results"]}
    assert keys <= known, f"the fleet ran keys the journal does not know: {sorted(keys - known)[:5]}"
    ran = {a.action_id for a in actions if a.state.value in {"succeeded", "reverted"} and a.type.value != "release"}
    assert ran <= keys, f"the journal says these ran, the fleet never saw them: {sorted(ran - keys)[:5]}"
    return plans


def assert_history_matches_the_fleet(home: Path, fleet_url: str) -> None:
    """Telemetry rows in the history = what the fleet emitted up to the watermark, less the quarantined."""
    from forewarn.store.repository import Repository
    from forewarn.store.watermarks import WatermarkStore

    repo = Repository(f"sqlite:///{home / 'forewarn.db'}")
    marks = WatermarkStore(repo.engine).all()
    source = next(name for name in marks if name != "materialize")
    until = marks[source]
    emitted = pulled_from_json(fleet(fleet_url, f"/api/pull?until={quote(until.isoformat())}"))
    batches = repo.list_batches()
    quarantined = int(batches["quarantined_count"].sum())
    stored = repo.load_telemetry(end=until)
    assert emitted.telemetry is not None
    assert len(stored) == len(emitted.telemetry) - quarantined
    assert int(batches["row_count"].sum()) == len(stored), "a telemetry row stored twice"


def kill_mid_run(api: Api, state: Path) -> dict[str, Any]:
    """SIGKILL the fleet service and the worker while a score-and-allocate run is in progress."""
    wait_for(
        "a score-and-allocate run in progress",
        lambda: any(r["state_type"] == "RUNNING" for r in api.runs("score-and-allocate", ["RUNNING"])),
        timeout=150,
        every=1,
    )
    time.sleep(3)  # into its cycle
    for name in ("fleet", "worker"):
        os.kill(first_pid(state, name), 9)
    time.sleep(1)
    return cloud_file(state)


def screenshots(url: str, out: Path) -> list[Path]:
    require_binary("chromium")
    argv = [str(BIN / "python"), str(PROJECT_ROOT / "scripts" / "screenshot_serve.py"), "--url", url, "--out", str(out)]
    if os.environ.get("FOREWARN_UPDATE_DOCS_IMG") == "1":
        argv.append("--docs")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=True)
    return [Path(line) for line in done.stdout.split() if line.endswith(".png")]


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(max(900, int(SOAK_MINUTES * 60) + 900))
def test_serve_soaks_survives_kills_and_stops_clean(tmp_path: Path) -> None:
    state = (tmp_path / "state").resolve()
    env = serve_env(state, speed=SPEED)
    api, home, fleet_url = Api(f"http://127.0.0.1:{env['FOREWARN_PREFECT_PORT']}"), state / "home", ""
    identity, started, began = str(state), set[int](), time.monotonic()
    try:
        run([str(SERVE)], env)
        started |= {e.pid for e in processes.read_pidfile(state / "serve.pids")}
        fleet_url = f"http://127.0.0.1:{env['FOREWARN_FLEET_PORT']}"
        train = serve_api.deployment(api.url, "train/train")["schedules"]
        assert [s["schedule"].get("interval") for s in train] == [86_400 / SPEED], "not a fleet day"
        soak(api, SOAK_MINUTES)
        assert_runs_and_risk_tables(api, home)

        before = kill_mid_run(api, state)
        restarted = run([str(SERVE)], env)
        assert "partly running" in restarted, restarted
        started |= {e.pid for e in processes.read_pidfile(state / "serve.pids")}
        after = cloud_file(state)
        assert set(before["results"]) <= set(after["results"]), "the fleet forgot actions it had taken"
        status = fleet(fleet_url, "/api/status")
        since = quote(before["extra"]["cursor"])
        failed_since = pulled_from_json(fleet(fleet_url, f"/api/pull?since={since}")).failures
        repaired = set(status["failed"]) | (set(failed_since["instance_id"]) if failed_since is not None else set())
        lost = set(before["state"]["cordoned"]) - set(status["cordoned"]) - repaired
        assert not lost, f"cordons gone after the restart: {sorted(lost)}"
        restart_time = max((r["start_time"] for r in api.runs("score-and-allocate", ["COMPLETED"])), default="")
        wait_for(
            "two scored cycles after the restart",
            lambda: len(completed_cycles(api, after=restart_time)) >= 2,
            timeout=360,
        )
        api.pause_all()
        wait_for("the last flow runs to end", lambda: not api.live_runs(), timeout=240)

        plans = assert_journal(home, cloud_file(state))
        assert_history_matches_the_fleet(home, fleet_url)
        pictures = screenshots(api.url, tmp_path / "ui")
        assert {p.name for p in pictures} >= {"runs.png", "risk-table.png"}
        assert all(p.stat().st_size > 20_000 for p in pictures)

        stopped = run([str(SERVE), "stop"], env, timeout=300)
        assert processes.marked(identity) == [] and processes.mentioning(identity) == [], stopped
        assert not (state / "serve.pids").exists()
        print(f"\nserve soak: {len(plans)} plans, {time.monotonic() - began:.0f} s wall", file=sys.stderr)
    finally:
        kill_left(identity, started)
