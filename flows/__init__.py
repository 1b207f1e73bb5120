"""Thin Prefect flows over forewarn/: each task wraps a plain function tested without the engine.

``FLOWS`` maps the names the CLI and prefect.yaml use to the flow functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows.ingest import ingest
from flows.materialize import materialize
from flows.scaled import materialize_scaled, score_and_allocate_scaled
from flows.score_and_allocate import score_and_allocate
from flows.train import train
from forewarn.redact import install_log_redaction

install_log_redaction()  # Prefect set its handlers up on import: no log line it writes or ships carries a secret

FLOWS: dict[str, Callable[..., Any]] = {
    "ingest": ingest,
    "materialize": materialize,
    "train": train,
    "score-and-allocate": score_and_allocate,
    "materialize-scaled": materialize_scaled,
    "score-and-allocate-scaled": score_and_allocate_scaled,
}

__all__ = [
    "FLOWS",
    "ingest",
    "materialize",
    "materialize_scaled",
    "score_and_allocate",
    "score_and_allocate_scaled",
    "train",
]
