"""docs/glossary.md gives each word one meaning; the code it points at exists and keeps to it."""

from __future__ import annotations

import re

from forewarn.schemas import ActionType
from forewarn.settings import PROJECT_ROOT

GLOSSARY = PROJECT_ROOT / "docs" / "glossary.md"


def test_every_place_the_glossary_names_exists() -> None:
    text = GLOSSARY.read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:forewarn|adapters|flows)/[\w/]+(?:\.py)?)`", text))
    assert {"forewarn/execution/restore.py", "forewarn/execution/undo.py", "forewarn/distributed"} <= paths
    missing = sorted(p for p in paths if not (PROJECT_ROOT / p).exists())
    assert not missing, f"docs/glossary.md names paths that do not exist: {missing}"


def test_rollback_is_a_plans_or_a_models_and_circuit_breaker_the_policys() -> None:
    assert "rollback" not in {t.value for t in ActionType}  # the snapshot action is restore-snapshot
    execution = PROJECT_ROOT / "forewarn" / "execution"
    for module in execution.glob("*.py"):
        code = module.read_text(encoding="utf-8").lower()
        assert "circuit" not in code, f"{module.name}: the applier's breaker is the adapter breaker"
    assert not (execution / "rollback.py").exists()  # the restore of a failed instance's work is restore.py
    assert not (PROJECT_ROOT / "forewarn" / "scale").exists()  # the Dask scale-out is forewarn/distributed


def test_no_flow_module_shadows_an_installed_package() -> None:
    """Prefect loads a deployment's entrypoint with flows/ on sys.path: a flows/distributed.py once hid Dask's
    ``distributed`` from prefect_dask, and every worker run crashed."""
    import importlib.util

    for module in sorted((PROJECT_ROOT / "flows").glob("*.py")):
        if module.stem != "__init__":
            assert importlib.util.find_spec(module.stem) is None, f"flows/{module.name} shadows a package"
