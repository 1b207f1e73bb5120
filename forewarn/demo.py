"""The demo and the replay command: the whole loop on a simulated fleet, against a reactive run.

The demo simulates a fleet, runs the materialize, train and score-and-allocate flows in process (Prefect's
ephemeral API), then replays the last day in closed loop with Forewarn acting and again with recovery only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from forewarn.dataset import Dataset, read_dataset
from forewarn.errors import ConfigError, ModelUnavailable
from forewarn.model.registry import ModelRegistry
from forewarn.model.scoring import TrainedModel
from forewarn.policy.loader import load_policy
from forewarn.policy.schema import Policy
from forewarn.replay import Replay, ReplayConfig, RunResult, static_scorer
from forewarn.report import write_report
from forewarn.settings import PROJECT_ROOT, Settings


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _use_home(out: Path) -> Settings:
    """Point every FOREWARN_* setting at ``out`` so the flows (which read the environment) use it."""
    os.environ["FOREWARN_HOME"] = str((out / "state").resolve())
    os.environ["FOREWARN_DATASET"] = str((out / "dataset").resolve())
    os.environ.setdefault("PREFECT_HOME", str((out / "state" / "prefect").resolve()))
    # The first run in a fresh Prefect home migrates its database; on a busy 2-core machine that can take
    # longer than Prefect's default wait for its in-process API.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    return Settings()


def run_demo(*, out: Path, instances: int, days: float, seed: int, console: Console) -> dict[str, Any]:
    """Simulate, run the three flows once, replay the last day both ways; print and write the report."""
    from forewarn.sim import SimConfig, write

    settings = _use_home(out)
    with console.status(f"simulating {instances} instances over {days:g} days (seed {seed})"):
        write(SimConfig(instances=instances, days=days, seed=seed), settings.dataset)
    dataset = read_dataset(settings.dataset)
    replay_start = dataset.end - pd.Timedelta(days=1)
    console.print(
        f"dataset: {len(dataset.telemetry):,} samples, {len(dataset.failures)} failures, "
        f"{dataset.start:%Y-%m-%d} to {dataset.end:%Y-%m-%d %H:%M}"
    )

    from flows.materialize import materialize
    from flows.score_and_allocate import score_and_allocate
    from flows.train import train
    from forewarn.ingest import ingest_files, open_repository

    at = replay_start.isoformat()  # the flows run as of the start of the replayed day, on the simulated clock
    with console.status("ingest: the simulated dataset into the history database (screened, validated)"):
        ingested = ingest_files(settings.dataset, repository=open_repository(settings.resolved_database_url()))
        console.print(f"ingested {ingested.stored:,} telemetry rows and {ingested.failures} failures into history")
    with console.status("flow materialize: history -> window features -> Feast (first Prefect run takes ~10 s)"):
        console.print(materialize(at=at))
    with console.status("flow train: history + point-in-time frame, Great Expectations gate, XGBoost"):
        console.print(train(at=at))
    with console.status("flow score-and-allocate: online features, policy, plan (dry-run)"):
        console.print(score_and_allocate(dataset=str(settings.dataset), dry_run=True, at=at))

    results = run_replay(
        dataset=settings.dataset,
        model_dir=settings.models_dir,
        policy=None,
        start=replay_start.isoformat(),
        console=console,
        out=out,
    )
    return results


@dataclass
class Contender:
    """One policy of a comparison: ``model`` scores with the trained model, ``static`` with the policy's
    fallback static thresholds, ``reactive`` does not predict at all."""

    name: str
    kind: str
    policy: Policy | None = None


def contenders(policy: Policy, compare: Sequence[str]) -> list[Contender]:
    """``forewarn`` (the policy with the model) first, then each ``--compare`` entry in order.

    Raises:
        ConfigError: an entry is neither ``reactive``, ``static`` nor an existing policy file.
    """
    runs = [Contender("forewarn", "model", policy)]
    for entry in (e.strip() for e in compare if e.strip()):
        if entry == "reactive":
            runs.append(Contender("reactive", "reactive"))
        elif entry == "static":
            runs.append(Contender("static", "static", policy))
        elif Path(entry).is_file():
            other = load_policy(entry)
            taken = {r.name for r in runs}
            name = other.name if other.name not in taken else Path(entry).stem
            while name in taken:
                name += "-2"
            runs.append(Contender(name, "model", other))
        else:
            raise ConfigError(
                f"'{entry}' is neither reactive, static nor a policy file", field="--compare",
                allowed=["reactive", "static", "PATH/TO/POLICY.yaml"],
            )  # fmt: skip
    if len({r.name for r in runs}) != len(runs):
        raise ConfigError("the same policy is named twice", field="--compare")
    return runs


def run_replay(
    *,
    dataset: Path,
    model_dir: Path | None,
    policy: Path | None,
    start: str | None,
    console: Console,
    out: Path | None = None,
    compare: Sequence[str] = ("reactive",),
    config: ReplayConfig | None = None,
) -> dict[str, Any]:
    """Replay ``dataset`` from ``start`` (default: its last day) with the policy, then with each comparison."""
    from forewarn.pipeline import build_features

    settings = Settings()
    data = read_dataset(dataset)
    begin = pd.Timestamp(start) if start else data.end - pd.Timedelta(days=1)
    begin = begin.tz_localize("UTC") if begin.tzinfo is None else begin.tz_convert("UTC")
    chosen = load_policy(policy or PROJECT_ROOT / "policies" / "default.yaml")
    entrants = contenders(chosen, compare)
    registry = ModelRegistry(model_dir or settings.models_dir)
    with console.status("computing window features for the replay"):
        features = build_features(data, velocity=chosen.velocity_limits())
    model = registry.current()
    if model is None:
        model = _train_before(data, features, begin, registry, settings, chosen, console)
    workdir = settings.home / "replay"
    with _progress(console) as bar:
        jobs: dict[str, Any] = {}

        def tick(name: str, done: int, total: int) -> None:
            if name not in jobs:
                jobs[name] = bar.add_task(f"replay {name}", total=total)
            bar.update(jobs[name], completed=done)

        replay = Replay(data, features, start=begin, workdir=workdir, config=config, progress=tick)
        runs = [_run_one(replay, c, model, settings.home if n == 0 else None) for n, c in enumerate(entrants)]
    console.print(_table(runs, begin, data.end))
    results = {
        "window": {"start": begin.isoformat(), "end": data.end.isoformat()},
        "model_version": model.version,
        "policy": chosen.name,
        "replay_config": asdict(replay.config),
        "policies": {r.name: r.summary() for r in runs},
    }
    target = out or workdir
    target.mkdir(parents=True, exist_ok=True)
    (target / "results.json").write_text(json.dumps(results, indent=2))
    report = write_report(
        target, runs, results, features=features, model=model, failures=replay.failures, alert=chosen.bands.high.enter
    )
    console.print(f"report: [bold]{report}[/]")
    console.print(
        f"plans of the {runs[0].name} run are journalled in {runs[0].home}: `forewarn plan list` shows them"
        + (f" (with FOREWARN_HOME={runs[0].home})" if Path(runs[0].home).resolve() != Settings().home.resolve() else "")
    )
    return results


def _train_before(
    data: Dataset,
    features: pd.DataFrame,
    begin: pd.Timestamp,
    registry: ModelRegistry,
    settings: Settings,
    policy: Policy,
    console: Console,
) -> TrainedModel:
    """No model yet: train one on the data before the replayed window, as the demo does, and say so."""
    from forewarn.features.store import FeatureStoreGlue
    from forewarn.pipeline import materialize, train

    console.print(f"no model in {registry.root}: training one on the data before {begin:%Y-%m-%d %H:%M} UTC first")
    glue = FeatureStoreGlue(settings.features_dir, settings=settings)
    with console.status("materializing the features before the replayed window into Feast"):
        materialize(glue, features[features["event_timestamp"] < begin], end=begin.to_pydatetime())
    with console.status("training: point-in-time frame, Great Expectations gate, XGBoost, calibration"):
        outcome = train(data, glue, registry, horizon_minutes=policy.horizon_minutes, until=begin)
    model = registry.current()
    if model is None:
        failures = "; ".join(outcome.validation.failures) or "no model came out of training"
        raise ModelUnavailable(f"could not train a model on the data before {begin}: {failures}")
    console.print(f"trained model {model.version} on {outcome.rows:,} rows")
    return model


def _run_one(replay: Replay, contender: Contender, model: TrainedModel, home: Path | None) -> RunResult:
    if contender.kind == "reactive" or contender.policy is None:
        return replay.run(contender.name, home=home)
    if contender.kind == "static":
        fallback = contender.policy.fallback.static_thresholds
        scorer = static_scorer(dict(fallback), contender.policy.horizon_minutes)
        return replay.run(contender.name, policy=contender.policy, scorer=scorer, home=home)
    return replay.run(contender.name, model=model, policy=contender.policy, home=home)


def _table(runs: list[RunResult], start: pd.Timestamp, end: pd.Timestamp) -> Table:
    table = Table(title=f"Replay {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    table.add_column("")
    for run in runs:
        table.add_column(run.name, justify="right")
    rows = runs[0].summary().keys()
    for key in rows:
        table.add_row(key.replace("_", " "), *[f"{r.summary()[key]:,}" for r in runs])
    return table
