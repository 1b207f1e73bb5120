"""``forewarn serve start|stop|status`` (``make serve``): Forewarn running live on one machine.

``start`` brings up, each in its own session with its PID in ``STATE/serve.pids`` and its log under
``STATE/logs``: the simulated fleet service (``forewarn fleet serve``), optionally Prometheus scraping it,
the Prefect server on 127.0.0.1, the ``forewarn-process`` pool with every deployment of ``prefect.yaml``,
a first model when there is none (ingest, materialize and train run at once), and a process worker whose
flow runs see the fleet through ``FOREWARN_*`` variables. ``stop`` stops the worker on SIGINT, then the
flow-run processes it spawned, then the rest, and escalates to SIGKILL by process group; it then checks that
no process carrying this state directory's marker is left. Everything lives under the state directory, so
``start`` after ``stop`` picks up where it left off; ``start`` while only some parts of an earlier start run
(one was killed or crashed) stops those and starts all of it, and the scheduled runs missed while no worker
ran are skipped rather than started at once.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from forewarn import processes, serve_api
from forewarn.serve_api import ServeError
from forewarn.settings import PROJECT_ROOT

POOL = "forewarn-process"
DAY_SECONDS = 86_400.0
DEFAULT_SPEED = 4.0
"""Fleet minutes per wall minute: materialize every 5 wall minutes then keeps features within the policy's
30-minute freshness (20 fleet minutes apart, plus ingest's), while a day passes in six hours."""
FIRST_MODEL = ("ingest", "materialize", "train")


class ServeSettings(BaseSettings):
    """What ``make serve`` starts and where: every port and the state directory, from ``FOREWARN_*``."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_", extra="ignore")

    serve_state: Path = Field(default=PROJECT_ROOT / ".forewarn", description="Everything serve keeps.")
    bin: Path = Field(default=Path(sys.executable).parent, description="Directory of python and prefect.")
    prefect_port: int = 4200
    fleet_port: int = 9108
    prometheus_port: int = 9090
    metrics_port: int | None = Field(default=None, description="Start the metrics exporter on this port.")
    serve_fleet: bool = Field(default=True, description="Start the simulated fleet service and read from it.")
    serve_worker: bool = Field(default=True, description="Start a process worker.")
    serve_prometheus: bool = Field(default=False, description="Scrape the fleet with Prometheus; read from it.")
    serve_train: bool = Field(default=True, description="Train a first model at start when there is none.")
    serve_act: bool = Field(default=True, description="score-and-allocate acts on the simulated fleet (not dry run).")
    serve_timeout: float = Field(default=300, gt=0, description="Seconds to wait for each part to be ready.")
    serve_stop_grace: float = Field(default=20, gt=0, description="Seconds a part gets to stop before SIGKILL.")
    fleet_instances: int = 40
    fleet_seed: int = 0
    fleet_speed: float | None = Field(default=None, gt=0, description="Default 4, or 1 with Prometheus.")
    fleet_history_days: float = 7
    fleet_failure_rate_per_day: float = 2.0
    scrape_interval: str = "5s"
    serve_intervals: dict[str, float] = Field(
        default_factory=dict,
        description='Seconds between scheduled runs by deployment, over prefect.yaml (JSON: {"materialize": 60}).',
    )

    @property
    def state(self) -> Path:
        return self.serve_state.resolve()

    @property
    def pidfile(self) -> Path:
        return self.state / "serve.pids"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def prometheus(self) -> bool:
        return self.serve_fleet and self.serve_prometheus and shutil.which("prometheus") is not None

    @property
    def speed(self) -> float:
        return self.fleet_speed if self.fleet_speed is not None else (1.0 if self.prometheus else DEFAULT_SPEED)

    @property
    def prefect_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def fleet_url(self) -> str:
        return f"http://127.0.0.1:{self.fleet_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"


def environment(cfg: ServeSettings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every process serve starts: Prefect's, the fleet's and the marker."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "GX_ANALYTICS_ENABLED": "false",
            "FEAST_USAGE": "False",
            "MPLBACKEND": "Agg",
            "PREFECT_API_URL": f"{cfg.prefect_url}/api",
            "PREFECT_UI_API_URL": f"{cfg.prefect_url}/api",
            "FOREWARN_PROJECT_DIR": str(PROJECT_ROOT),
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p),
            processes.MARKER: str(cfg.state),
            # The server's database lives here: one serve's state never mixes with another's.
            "PREFECT_HOME": str(cfg.state / "prefect"),
        }
    )
    # A busy machine: generous waits, each still overridable.
    for name, value in {
        "FOREWARN_HOME": str(cfg.state / "home"),
        "PREFECT_API_REQUEST_TIMEOUT": "120",
        "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
        "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }.items():
        env.setdefault(name, value)
    if cfg.serve_fleet:
        env["FOREWARN_FLEET_URL"] = cfg.fleet_url
        sources: list[dict[str, str]] = (
            [{"kind": "prometheus", "url": cfg.prometheus_url, "step": "1m"}, {"kind": "cloud"}]
            if cfg.prometheus
            # One pull may take the whole pre-filled history, so the first model trains on all of it.
            else [{"kind": "fleet", "url": cfg.fleet_url, "max_window": f"{math.ceil(cfg.fleet_history_days) + 1}d"}]
        )
        env["FOREWARN_SOURCES"] = json.dumps(sources)
        if cfg.speed != 1:
            env["FOREWARN_CLOCK"] = "fleet"
    return env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_ready(name: str, url: str, process: subprocess.Popen[bytes], cfg: ServeSettings) -> None:
    """Wait until ``url`` answers 200; a :class:`ServeError` naming the log when it exits or times out."""
    log = cfg.logs / f"{name}.log"
    deadline = time.monotonic() + cfg.serve_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(f"{name} exited with code {process.returncode} before it was ready; read {log}")
        if _answers(url):
            return
        time.sleep(0.5)
    raise ServeError(f"{name} did not answer {url} within {cfg.serve_timeout:g} s; read {log}")


def _step(cfg: ServeSettings, env: Mapping[str, str], name: str, argv: list[str]) -> None:
    """Run one start-up command to completion in its own session; its output goes to ``logs/NAME.log``."""
    log = cfg.logs / f"{name}.log"
    process = processes.launch(name, argv, env=env, log=log, pidfile=cfg.state / "steps.pids", cwd=PROJECT_ROOT)
    try:
        code = process.wait(timeout=cfg.serve_timeout * 4)
    except subprocess.TimeoutExpired:
        processes.terminate([process.pid])
        raise ServeError(f"{name} did not finish within {cfg.serve_timeout * 4:g} s; read {log}") from None
    if code != 0:
        raise ServeError(f"{name} exited with code {code}; read {log}")


def prometheus_config(cfg: ServeSettings) -> Path:
    """Write ``STATE/prometheus.yml``: the fleet's ``/metrics`` every ``scrape_interval``, keeping its labels."""
    path = cfg.state / "prometheus.yml"
    path.write_text(
        "# Written by `forewarn serve`; rewritten at each start.\n"
        f"global:\n  scrape_interval: {cfg.scrape_interval}\n  evaluation_interval: {cfg.scrape_interval}\n"
        "scrape_configs:\n  - job_name: fleet\n"
        "    honor_labels: true  # the fleet's instance label names the VM, not the scrape target\n"
        "    static_configs:\n"
        f'      - targets: ["127.0.0.1:{cfg.fleet_port}"]\n',
        encoding="utf-8",
    )
    return path


def has_model(env: Mapping[str, str]) -> bool:
    """True when the model registry under ``FOREWARN_HOME`` has a current model."""
    return (Path(env["FOREWARN_HOME"]) / "models" / "CURRENT").exists()


def running(cfg: ServeSettings) -> list[processes.Recorded]:
    """The recorded processes still running."""
    return [entry for entry in processes.read_pidfile(cfg.pidfile) if processes.carries(entry.pid, str(cfg.state))]


def start(cfg: ServeSettings, say: Callable[[str], None] = print) -> None:
    """Start everything; on any failure stop what was started and raise one :class:`ServeError`.

    Refused while every recorded part still runs; when only some do (or only their flow runs), those are
    stopped first and everything is started again from the state directory.
    """
    recorded, up = processes.read_pidfile(cfg.pidfile), running(cfg)
    if up and len(up) == len(recorded):
        raise ServeError(f"already serving from {cfg.state} (see {cfg.pidfile}); run `make serve-stop` first")
    if processes.marked(str(cfg.state)):
        # A part died (killed, crashed, the machine ran out of memory): stop the rest and start all of it again.
        gone = sorted({entry.name for entry in recorded} - {entry.name for entry in up})
        say(f"an earlier serve of {cfg.state} is partly running ({', '.join(gone) or 'no part'} gone); stopping it")
        left = stop(cfg, say)
        if left:
            raise ServeError(f"processes of an earlier serve of {cfg.state} still run ({left}); stop them first")
    cfg.logs.mkdir(parents=True, exist_ok=True)
    cfg.pidfile.unlink(missing_ok=True)
    (cfg.state / "steps.pids").unlink(missing_ok=True)
    env = environment(cfg)
    for directory in (env["PREFECT_HOME"], env["FOREWARN_HOME"]):
        Path(directory).mkdir(parents=True, exist_ok=True)
    try:
        _start(cfg, env, say)
    except BaseException:
        stop(cfg, say=lambda _: None)
        raise


def _start(cfg: ServeSettings, env: dict[str, str], say: Callable[[str], None]) -> None:
    def launch(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = cfg.logs / f"{name}.log"
        return processes.launch(name, argv, env=env, log=log, pidfile=cfg.pidfile, cwd=PROJECT_ROOT)

    if cfg.serve_fleet:
        _start_fleet(cfg, launch, say)
    elif cfg.serve_prometheus:
        say("prometheus: off, since the fleet is (FOREWARN_SERVE_FLEET=0)")
    _start_prefect(cfg, env, launch, say)
    if cfg.serve_train:
        _first_model(cfg, env, say)
    if cfg.serve_worker:
        missed = serve_api.skip_missed_runs(cfg.prefect_url)
        if missed:
            say(f"  {missed} scheduled run(s) missed while serve was down or training: skipped, not run at once")
        launch("worker", [str(cfg.bin / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"])
        say(f"worker: pool {POOL}; flow runs read {env.get('FOREWARN_SOURCES') or 'no FOREWARN_SOURCES'}")
    if cfg.metrics_port:
        launch("metrics", [str(cfg.bin / "python"), "-m", "forewarn.metrics"])
        say(f"metrics: http://127.0.0.1:{cfg.metrics_port}/metrics")
    say(f"Prefect UI: {cfg.prefect_url}   PIDs: {cfg.pidfile}   logs: {cfg.logs}")
    say("stop with: make serve-stop")


Launcher = Callable[[str, list[str]], "subprocess.Popen[bytes]"]


def _start_fleet(cfg: ServeSettings, launch: Launcher, say: Callable[[str], None]) -> None:
    say(f"fleet: {cfg.fleet_instances} instances at {cfg.speed:g}x, {cfg.fleet_url}, state in {cfg.state / 'fleet'}")
    argv = [str(cfg.bin / "python"), "-m", "forewarn.cli", "fleet", "serve", "--state-dir", str(cfg.state / "fleet")]
    argv += ["--port", str(cfg.fleet_port), "--size", str(cfg.fleet_instances), "--seed", str(cfg.fleet_seed)]
    argv += ["--speed", f"{cfg.speed:g}", "--history-days", f"{cfg.fleet_history_days:g}"]
    argv += ["--failure-rate", f"{cfg.fleet_failure_rate_per_day:g}"]
    wait_ready("fleet", f"{cfg.fleet_url}/health", launch("fleet", argv), cfg)
    if cfg.prometheus:
        config = prometheus_config(cfg)
        say(f"prometheus: {cfg.prometheus_url}, scraping the fleet every {cfg.scrape_interval}")
        argv = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={cfg.state / 'prometheus'}"]
        argv += [f"--web.listen-address=127.0.0.1:{cfg.prometheus_port}"]
        wait_ready("prometheus", f"{cfg.prometheus_url}/-/ready", launch("prometheus", argv), cfg)
    elif cfg.serve_prometheus:
        say("prometheus: not on PATH; reading the fleet directly")


def _start_prefect(cfg: ServeSettings, env: dict[str, str], launch: Launcher, say: Callable[[str], None]) -> None:
    prefect = str(cfg.bin / "prefect")
    database = env.get("PREFECT_API_DATABASE_CONNECTION_URL") and "from PREFECT_API_DATABASE_CONNECTION_URL"
    say(f"prefect server: {cfg.prefect_url}, database {database or 'SQLite under ' + env['PREFECT_HOME']}")
    server = launch("server", [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(cfg.prefect_port)])
    wait_ready("server", f"{cfg.prefect_url}/api/health", server, cfg)
    say("deploying prefect.yaml")
    _step(cfg, env, "pool", [prefect, "--no-prompt", "work-pool", "create", POOL, "--type", "process", "--overwrite"])
    _step(cfg, env, "deploy", [prefect, "--no-prompt", "deploy", "--all", "--prefect-file", "prefect.yaml"])
    say(f"  pool {POOL} and every deployment of prefect.yaml are on the server")
    if cfg.serve_fleet and cfg.serve_act:
        serve_api.set_parameters(cfg.prefect_url, "score-and-allocate/score-and-allocate", {"dry_run": False})
        say("  score-and-allocate acts on the simulated fleet (dry_run false; FOREWARN_SERVE_ACT=0 keeps it dry)")
    for flow, seconds in sorted(cfg.serve_intervals.items()):
        serve_api.set_interval(cfg.prefect_url, f"{flow}/{flow}", seconds)
        say(f"  {flow} every {seconds:g} s (FOREWARN_SERVE_INTERVALS)")
    if cfg.serve_fleet and cfg.speed != 1 and "train" not in cfg.serve_intervals:
        # prefect.yaml trains daily by the wall clock; on a fleet at 4x that is every four fleet days, and the
        # model outlives the policy's max-model-age-hours. Train once a fleet day instead.
        seconds = DAY_SECONDS / cfg.speed
        serve_api.set_interval(cfg.prefect_url, "train/train", seconds, replace_cron=True)
        say(f"  train every {seconds:g} s: once a day of the fleet at {cfg.speed:g}x")


def _first_model(cfg: ServeSettings, env: dict[str, str], say: Callable[[str], None]) -> None:
    if has_model(env):
        say(f"model: the current one in {env['FOREWARN_HOME']}/models")
    elif not env.get("FOREWARN_SOURCES"):
        say("model: none, and no FOREWARN_SOURCES to train from; the train deployment will make one")
    else:
        say("model: none yet; training a first one now (ingest, materialize, train; a few minutes)")
        for flow in FIRST_MODEL:
            began = time.monotonic()
            _step(cfg, env, flow, [str(cfg.bin / "python"), "-m", "forewarn.cli", "run", flow])
            say(f"  {flow} done ({time.monotonic() - began:.0f} s)")
        if not has_model(env):
            say(f"model: train made none (read {cfg.logs / 'train.log'}); run the train deployment once data is there")


def stop(cfg: ServeSettings, say: Callable[[str], None] = print) -> list[int]:
    """Stop the worker, its flow runs, then the rest; the PIDs of this serve still running after (none)."""
    identity = str(cfg.state)
    recorded = processes.read_pidfile(cfg.pidfile) + processes.read_pidfile(cfg.state / "steps.pids")
    # A PID without this serve's marker is not one it started (the PID was reused since): never signalled.
    recorded = [entry for entry in recorded if processes.carries(entry.pid, identity)]
    workers = [entry.pid for entry in recorded if entry.name == "worker"]
    flow_runs = {pid for worker in workers for pid in processes.descendants(worker)}
    for pid in workers:
        killed = processes.terminate([pid], sig=signal.SIGINT, grace=cfg.serve_stop_grace)
        say(f"stopped worker ({pid})" + (" with SIGKILL" if killed else ""))
    # Every other marked process that is not a recorded one or a child of one (the server's) is a flow run.
    others = {entry.pid for entry in recorded if entry.name != "worker"}
    others |= {pid for owner in list(others) for pid in processes.descendants(owner)}
    flow_runs |= {pid for pid in processes.marked(identity) if pid not in others}
    if flow_runs:
        killed = processes.terminate(sorted(flow_runs), grace=cfg.serve_stop_grace)
        say(f"stopped {len(flow_runs)} flow-run process(es)" + (f", {len(killed)} with SIGKILL" if killed else ""))
    if any(entry.name == "server" and processes.alive(entry.pid) for entry in recorded):
        serve_api.cancel_live_runs(cfg.prefect_url)
    for entry in reversed(recorded):
        if entry.name != "worker" and processes.alive(entry.pid):
            killed = processes.terminate([entry.pid], grace=cfg.serve_stop_grace)
            say(f"stopped {entry.name} ({entry.pid})" + (" with SIGKILL" if killed else ""))
    stray = processes.marked(identity)
    if stray:
        processes.terminate(stray, sig=signal.SIGKILL, grace=5)
    left = processes.marked(identity)
    if not left:
        cfg.pidfile.unlink(missing_ok=True)
        (cfg.state / "steps.pids").unlink(missing_ok=True)
    return left


def status(cfg: ServeSettings) -> tuple[list[str], bool]:
    """One line per recorded process and one for the others carrying the marker; True when any runs."""
    lines, any_running = [], False
    recorded = processes.read_pidfile(cfg.pidfile)
    for entry in recorded:
        up = processes.carries(entry.pid, str(cfg.state))
        any_running |= up
        lines.append(f"{entry.name:<10} {entry.pid:>7} {'running' if up else 'stopped'}")
    extra = [pid for pid in processes.marked(str(cfg.state)) if pid not in {e.pid for e in recorded}]
    if extra:
        any_running = True
        lines.append(f"{'others':<10} {len(extra):>7} running (flow runs and children: {extra})")
    return (lines or [f"not serving ({cfg.pidfile} not found)"]), any_running
