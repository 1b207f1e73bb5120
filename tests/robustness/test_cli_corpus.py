"""Damaged policies, settings and flags, each given to the real CLI (in process): every one ends in its exit
code (2 bad input, 1 failed run) and one line naming the file or field, with no traceback and no secret.

A case is a name, the arguments, the environment, the files it needs (written under a fresh folder, named
in the arguments as ``{tmp}``), the exit code and the texts the error line must hold.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from forewarn.cli import app
from tests.servers import free_port

SECRET = "s3cr3t-PLANTED-xyz"
DOWN = free_port()  # nothing listens on it
POSTGRES = f"postgresql://forewarn:{SECRET}@127.0.0.1:{DOWN}/forewarn"
GOOD = "name: good\nmode: shadow\n"
Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    code: int
    says: list[str]
    env: dict[str, str | None] = field(default_factory=dict)
    setup: Setup | None = None


def write(name: str, content: str | bytes) -> Setup:
    def setup(tmp: Path) -> None:
        path = tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return setup


def policy(name: str, body: str, says: list[str]) -> Case:
    """``policy check`` of a file holding ``name: NAME`` and ``body``: exit 2 naming the file and ``says``."""
    text = f"name: {name}\n{body}\n"
    return Case(
        f"policy-{name}", ["policy", "check", "{tmp}/p.yaml"], 2, ["p.yaml", *says], setup=write("p.yaml", text)
    )


def raw_policy(name: str, content: str | bytes, says: list[str]) -> Case:
    return Case(
        f"policy-{name}", ["policy", "check", "{tmp}/p.yaml"], 2, ["p.yaml", *says], setup=write("p.yaml", content)
    )


def _deep_block(tmp: Path) -> None:
    (tmp / "p.yaml").write_text("name: deep\nrules:\n" + "".join("  " * (k + 1) + "a:\n" for k in range(300)))


def _huge(tmp: Path) -> None:
    (tmp / "p.yaml").write_text("name: huge\ndescription: " + "x" * 1_100_000 + "\n")


def _folder_named_yaml(tmp: Path) -> None:
    (tmp / "p.yaml").mkdir()


def _symlink_out(tmp: Path) -> None:
    outside = tmp.parent / f"{tmp.name}-outside.txt"
    outside.write_text(f"root: {SECRET}\nprivate-key: {SECRET}\n")
    (tmp / "pol").mkdir()
    (tmp / "pol" / "good.yaml").write_text(GOOD)
    (tmp / "pol" / "p.yaml").symlink_to(outside)


def _broken_link(tmp: Path) -> None:
    (tmp / "p.yaml").symlink_to(tmp / "nowhere.yaml")


def _dataset(tmp: Path) -> None:
    (tmp / "ds").mkdir()
    (tmp / "ds" / "telemetry.csv").write_text("instance_id,timestamp,cpu\ni-1,2024-03-01T00:00:00Z,0.1\n")
    (tmp / "ds" / "failures.csv").write_text("instance_id,timestamp\n")


def _no_aws_region(tmp: Path) -> None:
    (tmp / "aws-config").write_text("[default]\n")


NO_REGION: dict[str, str | None] = {
    "FOREWARN_CLOUD": "aws",
    "FOREWARN_AWS_GROUPS": "web",
    "AWS_REGION": None,
    "AWS_DEFAULT_REGION": None,
    "AWS_PROFILE": None,
    "AWS_CONFIG_FILE": "{tmp}/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "{tmp}/aws-config",
}

CASES = [
    # policy numbers: NaN, infinity, absurd magnitudes, each refused with its range
    policy("dwell-inf", "bands: {min-dwell-minutes: .inf}", ["2:28", "bands.min-dwell-minutes", "from 0 to 525600"]),
    policy("dwell-neg-inf", "bands: {min-dwell-minutes: -.inf}", ["bands.min-dwell-minutes", "finite"]),
    policy("cooldown-1e15", "guardrails: {cooldown-minutes: 1e15}", ["2:32", "guardrails.cooldown-minutes", "525600"]),
    policy("model-age-1e300", "fallback: {max-model-age-hours: 1e300}", ["fallback.max-model-age-hours", "87600"]),
    policy("static-nan", "fallback: {static-thresholds: {x: .nan}}", ["fallback.static-thresholds.x", "finite"]),
    policy("static-huge", "fallback: {static-thresholds: {x: 1.0e13}}", ["fallback.static-thresholds.x", "1e+12"]),
    policy(
        "plan-age-zero", "guardrails: {max-plan-age-minutes: 0}", ["guardrails.max-plan-age-minutes", "more than 0"]
    ),
    policy("window-inf", "guardrails: {max-fleet-percent-per-window: {window-minutes: .inf}}", ["window-minutes"]),
    policy("feature-age-nan", "fallback: {max-feature-age-minutes: .nan}", ["fallback.max-feature-age-minutes"]),
    policy("horizon-huge", "horizon-minutes: 99999999999999999999999", ["horizon-minutes", "525600"]),
    policy("actions-huge", "guardrails: {max-actions-per-cycle: 100000000000000000000}", ["max-actions-per-cycle"]),
    policy("actions-1e400", "guardrails: {max-actions-per-cycle: 1.0e400}", ["max-actions-per-cycle", "100000"]),
    policy("baseline-zero", "guardrails: {circuit-breaker: {baseline-cycles: 0}}", ["baseline-cycles", "10000"]),
    policy("calm-1e9", "guardrails: {circuit-breaker: {calm-cycles: 1e9}}", ["calm-cycles", "10000"]),
    policy("jump-inf", "guardrails: {circuit-breaker: {max-high-risk-jump-percent: .inf}}", ["jump-percent", "100"]),
    policy("enter-nan", "bands: {high: {enter: .nan, exit: 0.4}}", ["bands.high.enter", "finite"]),
    policy("migrations-negative", "guardrails: {max-concurrent-migrations: -1}", ["max-concurrent-migrations"]),
    policy(
        "factor-nan",
        "rules: [{name: r, action: {type: scale-back, factor: .nan}}]",
        ["rules[0].action.factor", "more than 0 and at most 1"],
    ),
    policy(
        "buffer-one",
        "rules: [{name: r, action: {type: reserve-buffer, fraction: 1.0}}]",
        ["rules[0].action.fraction", "below 1"],
    ),
    policy(
        "autoscale-huge",
        "rules: [{name: r, action: {type: autoscale, min: 1, max: 10000000}}]",
        ["rules[0].action.max", "100000"],
    ),
    # policy bytes: whatever is in the file, one line
    raw_policy("nul", b"name: a\x00b\n", ["1:8", "U+0000"]),
    raw_policy("nul-first", b"\x00\x00\x00", ["1:1", "U+0000"]),
    raw_policy("not-utf8", b"name: caf\xe9\n", ["1:10", "not UTF-8"]),
    raw_policy("utf16", "name: x\n".encode("utf-16"), ["not UTF-8"]),
    raw_policy("binary", bytes(range(256)) * 4, ["p.yaml"]),
    raw_policy("nesting-flow", "name: deep\nrules: " + "[" * 3000 + "]" * 3000 + "\n", ["nested more than 64"]),
    Case(
        "policy-nesting-block",
        ["policy", "check", "{tmp}/p.yaml"],
        2,
        ["p.yaml", "nested more than"],
        setup=_deep_block,
    ),
    raw_policy("empty", b"", ["1:1", "empty"]),
    raw_policy("comment-only", b"# nothing here\n", ["empty"]),
    raw_policy("control-char", b"name: a\x07b\n", ["U+0007"]),
    Case("policy-huge", ["policy", "check", "{tmp}/p.yaml"], 2, ["p.yaml", "at most 1,048,576 bytes"], setup=_huge),
    Case("policy-directory", ["policy", "check", "{tmp}/p.yaml"], 2, ["p.yaml", "no *.yaml"], setup=_folder_named_yaml),
    Case(
        "policy-directory-in-folder", ["policy", "check", "{tmp}"], 2, ["p.yaml", "directory"], setup=_folder_named_yaml
    ),
    Case("policy-missing", ["policy", "check", "{tmp}/absent.yaml"], 2, ["absent.yaml", "not found"]),
    Case("policy-symlink-out", ["policy", "check", "{tmp}/pol"], 2, ["p.yaml", "outside"], setup=_symlink_out),
    Case("policy-broken-link", ["policy", "check", "{tmp}/p.yaml"], 2, ["p.yaml", "broken"], setup=_broken_link),
    Case(
        "policy-diff-missing",
        ["policy", "diff", "{tmp}/absent.yaml", "{tmp}/p.yaml"],
        2,
        ["absent.yaml", "not found"],
        setup=write("p.yaml", GOOD),
    ),
    Case(
        "policy-diff-new-inf",
        ["policy", "diff", "{tmp}/good.yaml", "{tmp}/p.yaml"],
        2,
        ["p.yaml:2:32", "guardrails.cooldown-minutes"],
        setup=lambda tmp: (
            write("good.yaml", GOOD)(tmp),
            write("p.yaml", "name: n\nguardrails: {cooldown-minutes: .inf}\n")(tmp),
        ),
    ),
    # settings
    Case(
        "cloud-gcp",
        ["plan", "list"],
        2,
        ["FOREWARN_CLOUD", "allowed: simulated, aws, openstack"],
        {"FOREWARN_CLOUD": "gcp"},
    ),
    Case("dry-run-maybe", ["plan", "list"], 2, ["FOREWARN_DRY_RUN"], {"FOREWARN_DRY_RUN": "maybe"}),
    Case("horizon-text", ["plan", "list"], 2, ["FOREWARN_HORIZON_MINUTES"], {"FOREWARN_HORIZON_MINUTES": "soon"}),
    Case("train-days-inf", ["plan", "list"], 2, ["FOREWARN_TRAIN_DAYS", "finite"], {"FOREWARN_TRAIN_DAYS": "inf"}),
    Case("step-zero", ["plan", "list"], 2, ["FOREWARN_STEP_MINUTES"], {"FOREWARN_STEP_MINUTES": "0"}),
    Case("serve-port-text", ["serve", "status"], 2, ["FOREWARN_PREFECT_PORT"], {"FOREWARN_PREFECT_PORT": "http"}),
    Case(
        "database-url-nonsense",
        ["plan", "list"],
        2,
        ["database URL"],
        {"FOREWARN_DATABASE_URL": f"nonsense://forewarn:{SECRET}@db/x"},
    ),
    Case("database-url-word", ["plan", "list"], 2, ["database URL"], {"FOREWARN_DATABASE_URL": "forewarn"}),
    Case(
        "postgres-down-plan-list", ["plan", "list"], 1, ["database did not answer"], {"FOREWARN_DATABASE_URL": POSTGRES}
    ),
    Case(
        "postgres-down-ingest-file",
        ["ingest", "file", "{tmp}/ds", "--database", POSTGRES],
        1,
        ["database did not answer", "FOREWARN_DATABASE_URL"],
        setup=_dataset,
    ),
    Case("aws-no-region", ["plan", "approve", "plan-x"], 2, ["AWS_REGION"], NO_REGION, _no_aws_region),
    Case("aws-no-groups", ["plan", "approve", "plan-x"], 2, ["FOREWARN_AWS_GROUPS"], {"FOREWARN_CLOUD": "aws"}),
    # flags: durations, times, paths
    Case(
        "prometheus-ftp",
        ["ingest", "prometheus", "--url", f"ftp://u:{SECRET}@h/"],
        2,
        ["not an http(s) URL", "http://"],
    ),
    Case("prometheus-no-scheme", ["ingest", "prometheus", "--url", "prometheus:9090"], 2, ["not an http(s) URL"]),
    Case("since-huge", ["ingest", "prometheus", "--url", "http://127.0.0.1:1", "--since", "999999999w"], 2, ["since"]),
    Case("since-word", ["ingest", "prometheus", "--url", "http://127.0.0.1:1", "--since", "yesterday"], 2, ["since"]),
    Case("since-zero", ["ingest", "prometheus", "--url", "http://127.0.0.1:1", "--since", "0m"], 2, ["since"]),
    Case("step-seconds", ["ingest", "prometheus", "--url", "http://127.0.0.1:1", "--step", "90s"], 2, ["step"]),
    Case("ingest-step-bad", ["ingest", "file", "{tmp}/ds", "--step", "5x"], 2, ["step"], setup=_dataset),
    Case("run-at-garbage", ["run", "materialize", "--at", "not-a-time"], 2, ["not-a-time"]),
    Case("run-at-year-99999", ["run", "materialize", "--at", "99999-01-01T00:00:00Z"], 2, ["99999"]),
    Case("run-bad-cloud", ["run", "train"], 2, ["FOREWARN_CLOUD", "allowed"], {"FOREWARN_CLOUD": "gcp"}),
    Case("simulate-days-huge", ["simulate", "--days", "1e308", "--out", "{tmp}/ds"], 2, ["days", "366"]),
    Case("run-at-year-1", ["run", "materialize", "--at", "0001-01-01T00:00:00Z"], 2, ["--at", "0001"]),
    Case("run-at-year-2250", ["run", "materialize", "--at", "2250-01-01T00:00:00Z"], 2, ["--at", "1900 to 2200"]),
    Case("run-unknown-flow", ["run", "everything"], 2, ["flow", "allowed: ingest"]),
    Case("dataset-missing", ["dataset", "check", "{tmp}/absent"], 2, ["absent"]),
    Case("dataset-is-file", ["dataset", "check", "{tmp}/p.yaml"], 2, ["p.yaml"], setup=write("p.yaml", GOOD)),
    Case("ingest-missing-dir", ["ingest", "file", "{tmp}/absent"], 2, ["absent", "not a directory"]),
    Case("plan-state-unknown", ["plan", "list", "--state", "sideways"], 2, ["--state", "allowed"]),
    Case(
        "simulate-out-under-file", ["simulate", "--out", "{tmp}/p.yaml/ds"], 2, ["p.yaml"], setup=write("p.yaml", GOOD)
    ),
]


@pytest.fixture(autouse=True)
def _fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREWARN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FOREWARN_DATASET", str(tmp_path / "no-dataset"))
    for name in ("FOREWARN_DATABASE_URL", "FOREWARN_CLOUD", "FOREWARN_POLICY", "FOREWARN_SOURCES", "FOREWARN_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def test_the_corpus_is_large_and_every_case_named_once() -> None:
    assert len(CASES) >= 45
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_damaged_input_is_one_line_and_its_exit_code(case: Case, tmp_path: Path) -> None:
    work = tmp_path / "case"
    work.mkdir()
    if case.setup:
        case.setup(work)
    args = [arg.replace("{tmp}", str(work)) for arg in case.args]
    env = {key: None if value is None else value.replace("{tmp}", str(work)) for key, value in case.env.items()}
    result = CliRunner().invoke(app, args, env=env)
    output = result.output
    assert result.exit_code == case.code, output
    assert "Traceback" not in output and SECRET not in output, output
    lines = [line for line in output.splitlines() if line.startswith(("error:", "failed:"))]
    assert len(lines) == 1, output
    for text in case.says:
        assert text in lines[0], lines[0]


def test_policy_check_reports_every_bad_file_and_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "a-good.yaml").write_text(GOOD)
    (folder / "b-nul.yaml").write_bytes(b"name: a\x00\n")
    (folder / "c-deep.yaml").write_text("name: d\nrules: " + "[" * 3000 + "]" * 3000 + "\n")
    (folder / "d-inf.yaml").write_text("name: e\nbands: {min-dwell-minutes: .inf}\n")
    (folder / "e-latin1.yaml").write_bytes(b"name: caf\xe9\n")
    (folder / "f-good.yaml").write_text("name: other\n")
    result = CliRunner().invoke(app, ["policy", "check", str(folder)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert [Path(line.split()[1].split(":")[0]).name for line in lines] == [
        "b-nul.yaml",
        "c-deep.yaml",
        "d-inf.yaml",
        "e-latin1.yaml",
    ]
    assert "Traceback" not in result.output


def test_an_unexpected_error_is_one_line_with_the_debug_hint_and_debug_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import forewarn.policy.review as review

    def boom(paths: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(review, "check_paths", boom)
    result = CliRunner().invoke(app, ["policy", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "failed: unexpected KeyError: 'surprise' (set FOREWARN_DEBUG=1 to see the traceback)"
    ]
    debug = CliRunner().invoke(app, ["policy", "check", str(tmp_path)], env={"FOREWARN_DEBUG": "1"})
    assert isinstance(debug.exception, KeyError)


def test_prefect_server_that_does_not_start_is_one_line_saying_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    import flows

    def slow_server(**_: object) -> None:
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")

    monkeypatch.setitem(flows.FLOWS, "train", slow_server)
    result = CliRunner().invoke(app, ["run", "train"], env={"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "20"})
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if line.startswith("failed:")]
    assert "did not start within 20 s" in line and "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in line
    assert "prefect server start" in line


@pytest.mark.slow
def test_forewarn_run_when_prefects_server_does_not_start_in_time(tmp_path: Path) -> None:
    """End to end, in a fresh process and Prefect home: the real start-up time-out of Prefect's temporary server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "FOREWARN_"))}
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "FOREWARN_HOME": str(tmp_path / "home"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    (tmp_path / "prefect").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "forewarn.cli", "run", "train"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("failed:")]
    assert "did not start within 0 s" in line and "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in line
