"""Ingestion service, CLI and flow: a simulated dataset in, counts and quarantine out, nothing stored twice."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.errors import ConfigError
from forewarn.ingest import ingest_files, open_repository, parse_duration, step_minutes_of
from forewarn.sim import SimConfig, write
from forewarn.store import Repository


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(SimConfig(instances=6, days=0.5, seed=4), tmp_path_factory.mktemp("fleet") / "data")


def test_a_simulated_dataset_is_stored_whole_and_only_once(fleet: Path) -> None:
    from forewarn.dataset import read_dataset

    expected = read_dataset(fleet)
    repository = open_repository("sqlite://")
    summary = ingest_files(fleet, repository=repository)
    assert summary.quarantined == 0 and summary.validation is not None and summary.validation.success
    assert summary.stored == len(expected.telemetry) and summary.samples == len(expected.telemetry) * 6
    assert summary.failures == len(expected.failures) and summary.instances == 6
    stored = repository.load_telemetry()
    assert stored[expected.metrics].to_numpy() == pytest.approx(expected.telemetry[expected.metrics].to_numpy())
    assert repository.list_batches()["row_count"].tolist() == [len(expected.telemetry)]
    again = ingest_files(fleet, repository=repository)
    assert again.stored == 0 and again.failures == 0
    assert again.already_stored == len(expected.telemetry) + len(expected.failures)
    assert len(repository.load_telemetry()) == len(expected.telemetry)


def test_step_resamples_the_good_rows(fleet: Path) -> None:
    summary = ingest_files(fleet, repository=open_repository("sqlite://"), step_minutes=15)
    assert summary.normalisation is not None and summary.normalisation.input_rows > summary.stored > 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6h", timedelta(hours=6)),
        ("1h30m", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        (" 45S ", timedelta(seconds=45)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text, field="since") == expected


@pytest.mark.parametrize("text", ["", "6", "h", "6x", "0m", "1h 30m", "-5m"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(ConfigError, match="field 'since'"):
        parse_duration(text, field="since")


def test_step_must_be_whole_minutes() -> None:
    assert step_minutes_of("5m") == 5 and step_minutes_of("2h") == 120
    with pytest.raises(ConfigError, match="field 'step': '90s' is not a whole number of minutes"):
        step_minutes_of("90s")


def test_cli_prints_what_was_stored_and_quarantined(fleet: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("telemetry.csv", "failures.csv"):
        (data / name).write_text((fleet / name).read_text())
    with (data / "telemetry.csv").open("a") as handle:
        handle.write("i-0001,2024-03-01T00:00:00Z,-1,0.5,1,1,1,0\n")
    database = f"sqlite:///{tmp_path / 'h.db'}"
    result = CliRunner().invoke(app, ["ingest", "file", str(data), "--database", database])
    assert result.exit_code == 0, result.output
    assert "rows quarantined" in result.output and "cpu is negative" in result.output
    assert "duplicate (instance_id, timestamp)" in result.output
    as_json = CliRunner().invoke(app, ["ingest", "file", str(data), "--database", database, "--json"])
    summary = json.loads(as_json.output)
    assert summary["stored"] == 0 and summary["already_stored"] > 0 and summary["quarantined"] == 0
    assert len(Repository(database).load_quarantine()) == 1  # a re-run quarantines nothing twice


def test_cli_broken_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "telemetry.csv").write_text("instance_id,timestamp,cpu\n")
    (tmp_path / "failures.csv").write_text("instance_id,timestamp\n")
    result = CliRunner().invoke(app, ["ingest", "file", str(tmp_path), "--database", "sqlite://"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'telemetry.csv'}:2: has a header but no data rows"
    ]
    bad_url = CliRunner().invoke(app, ["ingest", "prometheus", "--url", "http://x", "--step", "30s"])
    assert bad_url.exit_code == 2 and "field 'step'" in bad_url.output


@pytest.mark.slow
def test_flow_ingests_a_dataset(
    prefect_harness: None, fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.ingest import ingest

    monkeypatch.setenv("FOREWARN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FOREWARN_DATABASE_URL", f"sqlite:///{tmp_path / 'flow.db'}")
    monkeypatch.setenv("FOREWARN_SOURCES", json.dumps([{"kind": "simulated", "dataset": str(fleet)}]))
    message = ingest(at="2024-03-02T00:00:00Z")
    assert message.startswith("1 source(s) landed")
    assert len(Repository(f"sqlite:///{tmp_path / 'flow.db'}").list_batches()) == 1
