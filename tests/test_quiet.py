"""A library's deprecation notice is ignored where it is raised, and dropped when routed into logging (as Prefect
does); Forewarn's own warnings, and a library's warning about how Forewarn calls it, still show."""

from __future__ import annotations

import logging
import warnings

import pytest

from forewarn.quiet import quiet_library_notices, quiet_library_warnings


@pytest.mark.parametrize(
    ("where", "kind", "shown"),
    [
        ("/venv/lib/python3.11/site-packages/ibis/backends/duckdb/__init__.py", DeprecationWarning, False),
        ("/venv/lib/python3.11/site-packages/great_expectations/x.py", FutureWarning, False),
        ("/venv/lib/python3.11/site-packages/some/lib.py", UserWarning, True),
        ("/work/forewarn/forewarn/features/windows.py", DeprecationWarning, True),
    ],
)
def test_library_deprecations_stay_out_of_the_logs(
    where: str, kind: type[Warning], shown: bool, caplog: pytest.LogCaptureFixture
) -> None:
    quiet_library_notices()
    logging.captureWarnings(True)
    try:
        with caplog.at_level(logging.WARNING, logger="py.warnings"), warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn_explicit("old call", kind, where, 7)
    finally:
        logging.captureWarnings(False)
    assert any("old call" in r.getMessage() for r in caplog.records) == shown


@pytest.mark.parametrize(
    ("module", "kind", "shown"),
    [
        ("ibis.backends.duckdb", DeprecationWarning, False),
        ("great_expectations.core", FutureWarning, False),
        ("feast.infra", PendingDeprecationWarning, False),
        ("sklearn.utils", UserWarning, True),
        ("forewarn.features.windows", FutureWarning, True),  # e.g. pandas about our call: ours to fix
        ("adapters.aws", DeprecationWarning, True),
        ("flows.train", FutureWarning, True),
        ("forewarnings", FutureWarning, False),  # a package of another name
    ],
)
def test_library_notices_are_ignored_where_raised(module: str, kind: type[Warning], shown: bool) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_library_warnings()
        warnings.warn_explicit("old call", kind, f"{module.replace('.', '/')}.py", 7, module=module)
    assert bool(caught) == shown
