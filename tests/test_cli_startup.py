"""`forewarn --help`, `forewarn policy check` and `forewarn plan list` load only what they use.

An operator at a terminal and a pull-request check feel the CLI's start-up first; Feast, Great
Expectations, Prefect and XGBoost take seconds to import and none of these commands needs them. The
speed itself is measured in bench/cli_startup.py, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forewarn.settings import PROJECT_ROOT

HEAVY = ("feast", "great_expectations", "prefect", "xgboost", "dask", "matplotlib", "boto3", "openstack")
PROBE = """
import json, runpy, sys
sys.argv = ["forewarn", *json.loads(sys.argv[1])]
try:
    runpy.run_module("forewarn.cli", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({"code": code, "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _loaded(args: list[str], home: Path) -> tuple[int, set[str]]:
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT), "FOREWARN_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)], env=env, capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["code"], set(result["loaded"])


@pytest.mark.parametrize(
    ("args", "also_absent"),
    [
        (["--help"], ("pandas", "numpy", "sqlalchemy", "alembic")),
        (["policy", "check", str(PROJECT_ROOT / "policies" / "default.yaml")], ("pandas", "sqlalchemy")),
        (["plan", "list"], ("pandas", "numpy", "alembic")),
    ],
    ids=["help", "policy-check", "plan-list"],
)
def test_command_imports_no_heavy_library(args: list[str], also_absent: tuple[str, ...], tmp_path: Path) -> None:
    from forewarn.execution.journal import open_journal

    open_journal(f"sqlite:///{tmp_path / 'forewarn.db'}")  # a journal at the newest migration: no Alembic needed
    code, loaded = _loaded(args, tmp_path)
    assert code in (0, None)
    assert loaded.isdisjoint(HEAVY + also_absent), sorted(loaded & set(HEAVY + also_absent))


def test_plan_list_reads_a_journal_written_by_the_full_service(tmp_path: Path) -> None:
    """The light journal opened by `plan list` sees the plans the cycle's journal saved (same schema)."""
    from forewarn.execution.journal import Journal, open_journal
    from forewarn.schemas import Plan, PlanState, PolicyMode
    from forewarn.store import Repository

    url = f"sqlite:///{tmp_path / 'forewarn.db'}"
    repo = Repository(url)
    repo.create_all()
    saved = Journal(repo).save_plan(Plan(policy="default", mode=PolicyMode.SHADOW, state=PlanState.SHADOW))
    repo.dispose()
    assert [p.plan_id for p in open_journal(url).list()] == [saved.plan_id]
