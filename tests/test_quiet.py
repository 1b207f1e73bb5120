"""A library's deprecation notice routed into logging (as Prefect does) is dropped; Forewarn's own is not."""

from __future__ import annotations

import logging
import warnings

import pytest

from forewarn.quiet import quiet_library_notices


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
