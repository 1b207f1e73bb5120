"""The ingest flow: a batch from files or Prometheus, screened, validated and stored (forewarn.ingest)."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from forewarn import ingest as service
from forewarn.errors import ConfigError
from forewarn.settings import get_settings

ingest_files = task(name="ingest-files", cache_policy=NO_CACHE)(service.ingest_files)
ingest_prometheus = task(name="ingest-prometheus", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)(
    service.ingest_prometheus
)


@flow(name="ingest", log_prints=True)
def ingest(source: str = "file", path: str | None = None, url: str | None = None, since: str = "6h") -> dict[str, Any]:
    """Ingest one batch into the historical repository (FOREWARN_DATABASE_URL) and return its summary.

    Args:
        source: ``file`` (a dataset directory at ``path``) or ``prometheus`` (the server at ``url``).
        path: the dataset directory; default FOREWARN_DATASET.
        url: the Prometheus base URL.
        since: how far back to read from Prometheus, such as 6h.
    """
    if source == "file":
        directory = path or str(get_settings().dataset)
        summary = ingest_files(directory)
    elif source == "prometheus":
        if not url:
            raise ConfigError("a Prometheus URL is required for source 'prometheus'", field="url")
        summary = ingest_prometheus(url, since=since)
    else:
        raise ConfigError(f"unknown source '{source}'", field="source", allowed=["file", "prometheus"])
    print(f"stored {summary.stored:,} rows, quarantined {summary.quarantined:,}: {summary.reasons or 'nothing'}")
    return summary.model_dump(mode="json")
