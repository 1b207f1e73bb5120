"""A planted secret never leaves the process: passwords and tokens in the database URL, a Prometheus URL and
FOREWARN_SOURCES are nowhere in what the commands and the ingest flow wrote: their output, the log files, the
history database, Prefect's database (flow and task runs, their logs and artifacts) and the files under
FOREWARN_HOME and PREFECT_HOME."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from forewarn.redact import redact
from forewarn.sim import SimConfig, write
from tests.servers import free_port

SECRET = "s3cr3t-PLANTED-xyz"
TOKEN = "t0ken-PLANTED-abc"
PLANTED = [SECRET, TOKEN]
runner = CliRunner()


def _no_secret(text: str | bytes, where: str) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in PLANTED:
        assert secret.encode() not in data, f"{secret} found in {where}"


def _files(root: Path) -> Iterator[Path]:
    return (p for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write(SimConfig(instances=4, days=0.2, seed=2), tmp_path_factory.mktemp("secrets") / "data")


def test_redact_masks_passwords_tokens_and_known_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact(f"postgresql+psycopg://forewarn:{SECRET}@db:5432/forewarn") == (
        "postgresql+psycopg://forewarn:***@db:5432/forewarn"
    )
    assert (
        redact(f"http://u:{SECRET}@prom:9090/api?token={TOKEN}&step=60")
        == "http://u:***@prom:9090/api?token=***&step=60"
    )
    assert redact(f"redis://:{SECRET}@cache:6379") == "redis://:***@cache:6379"
    assert redact(f"cache:6379,password={SECRET}") == "cache:6379,password=***"
    assert redact(f'{{"url": "x", "api_key": "{TOKEN}"}}') == '{"url": "x", "api_key": "***"}'
    assert (
        redact("http://127.0.0.1:9090/api/v1/query_range?query=up")
        == "http://127.0.0.1:9090/api/v1/query_range?query=up"
    )
    monkeypatch.setenv("FOREWARN_DATABASE_URL", f"postgresql://u:{SECRET.replace('-', '%2D')}@db/x")
    assert redact(f"auth failed for password {SECRET}") == "auth failed for password ***"  # decoded, in plain text


def test_settings_repr_masks_the_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    from forewarn.settings import get_settings

    monkeypatch.setenv("FOREWARN_DATABASE_URL", f"postgresql://u:{SECRET}@db/x")
    monkeypatch.setenv("FOREWARN_FEAST_REDIS_URL", f"redis://:{SECRET}@cache:6379")
    settings = get_settings()
    _no_secret(repr(settings) + str(settings), "repr(settings)")
    assert settings.database_url.endswith(f"{SECRET}@db/x")  # the value itself is intact


@pytest.mark.slow
def test_no_command_or_flow_writes_a_planted_secret(
    prefect_harness: None,
    dataset: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import prefect.settings
    from prefect.logging.handlers import APILogWorker

    home = tmp_path / "home"
    down = free_port()  # nothing listens there
    prometheus = f"http://forewarn:{SECRET}@127.0.0.1:{down}/?token={TOKEN}"
    postgres = f"postgresql://forewarn:{SECRET}@127.0.0.1:{down}/forewarn"
    spec = {"kind": "prometheus", "url": prometheus, "retries": 0, "attempts": 1, "timeout": 2}
    monkeypatch.setenv("FOREWARN_HOME", str(home))
    monkeypatch.setenv("FOREWARN_SOURCES", json.dumps([spec]))
    monkeypatch.setenv("FOREWARN_FEAST_REDIS_URL", f"redis://:{SECRET}@127.0.0.1:{down}")
    monkeypatch.delenv("FOREWARN_DATABASE_URL", raising=False)
    outputs: dict[str, str] = {}

    stored = runner.invoke(app, ["ingest", "file", str(dataset)])  # into SQLite under home, sources set
    assert stored.exit_code == 0, stored.output
    outputs["ingest file"] = stored.output
    for name, args, env in [
        ("ingest file, Postgres down", ["ingest", "file", str(dataset), "--database", postgres], {}),
        ("ingest prometheus, server down", ["ingest", "prometheus", "--url", prometheus, "--since", "1h"], {}),
        ("plan list, Postgres down", ["plan", "list"], {"FOREWARN_DATABASE_URL": postgres}),
    ]:
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 1, f"{name}: {result.output}"
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
        outputs[name] = result.output
    assert "***" in outputs["ingest prometheus, server down"]  # the URL is named, masked

    flow = runner.invoke(app, ["run", "ingest"])  # the Prometheus source is down: the run fails, one line
    outputs["run ingest"] = flow.output
    assert flow.exit_code == 1, flow.output
    assert "did not land" in flow.output and "***" in flow.output, flow.output
    APILogWorker.drain_all(timeout=10)
    time.sleep(1.0)  # the server writes the logs it was sent

    for name, text in outputs.items():
        _no_secret(text, f"the output of {name}")
    captured = capfd.readouterr()
    _no_secret(captured.out + captured.err, "stdout/stderr (Prefect's console logs included)")
    history = home / "forewarn.db"
    assert b"telemetry.csv" in history.read_bytes()  # the batch of `ingest file` is stored there
    for path in [*_files(home), *_files(Path(prefect.settings.PREFECT_HOME.value()))]:
        _no_secret(path.read_bytes(), str(path))
    prefect_db = Path(prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1])
    files = list(_files(prefect_db.parent))
    assert any(b"did not land" in p.read_bytes() for p in files), "the flow run is in Prefect's database"
    for path in files:
        _no_secret(path.read_bytes(), f"Prefect's database {path.name}")
