"""The command line as a user meets it: help that teaches, one-line errors, and the simulate command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from forewarn.cli import app

runner = CliRunner()


def test_help_lists_every_command_with_what_it_does() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "run", "demo", "replay", "plan", "policy", "dataset", "import", "bench"):
        assert command in result.output


@pytest.mark.parametrize(
    "command",
    [["simulate"], ["run"], ["demo"], ["replay"], ["plan", "approve"], ["policy", "validate"], ["dataset", "check"]],
)
def test_each_subcommand_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert len(result.output.splitlines()) > 5


def test_simulate_then_check(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = runner.invoke(app, ["simulate", "--instances", "12", "--days", "1", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "telemetry.csv").exists()
    check = runner.invoke(app, ["dataset", "check", str(out)])
    assert check.exit_code == 0, check.output
    assert "12 instances" in check.output


def test_broken_dataset_is_one_line_naming_file_row_and_column(tmp_path: Path) -> None:
    (tmp_path / "telemetry.csv").write_text("instance_id,timestamp,cpu\ni-1,2024-03-01T00:00:00Z,0.1\ni-1,oops,0.2\n")
    (tmp_path / "failures.csv").write_text("instance_id,timestamp\n")
    result = runner.invoke(app, ["dataset", "check", str(tmp_path)])
    assert result.exit_code == 2
    assert "telemetry.csv:3, field 'timestamp'" in result.output
    assert "Traceback" not in result.output


def test_unknown_flow_lists_the_allowed_ones() -> None:
    result = runner.invoke(app, ["run", "everything"])
    assert result.exit_code == 2
    assert (
        "allowed: ingest, materialize, materialize-scaled, score-and-allocate, score-and-allocate-scaled, train"
        in result.output
    )


def test_a_reader_that_leaves_early_gets_no_error_line() -> None:
    import typer

    from forewarn.commands.guard import GuardedGroup

    piped = typer.Typer(cls=GuardedGroup)

    @piped.command()
    def talk() -> None:
        raise BrokenPipeError(32, "Broken pipe")  # what `forewarn policy --help | head -1` met at times

    @piped.command()
    def other() -> None: ...

    result = runner.invoke(piped, ["talk"])
    assert result.exit_code == 1 and "cannot connect" not in result.output
