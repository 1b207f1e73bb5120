"""Scale-out settings (``FOREWARN_DASK_*``, ``FOREWARN_SHARD_SIZE``, ``FOREWARN_CLAIM_TTL_SECONDS``) and clients.

Moving from one machine to a cluster changes these settings, never code: an empty ``dask_address`` starts a
``LocalCluster`` of ``dask_workers`` processes; ``tcp://host:8786`` connects to a running scheduler.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from forewarn.errors import ConfigError


class ScaleSettings(BaseSettings):
    """Where the Dask cluster is, how big a local one is, how instances are sharded, how long claims last."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_", env_file=".env", extra="ignore")

    dask_address: str = Field(default="", description="Scheduler address (tcp://host:8786); empty: LocalCluster.")
    dask_workers: int = Field(default=2, gt=0, description="Worker processes of a LocalCluster.")
    dask_threads_per_worker: int = Field(default=1, gt=0)
    dask_processes: bool = Field(default=True, description="LocalCluster workers as processes (not threads).")
    dask_memory_limit: str = Field(default="auto", description="Per-worker memory limit of a LocalCluster.")
    shard_size: int = Field(default=2000, gt=0, description="Instances per scoring/feature shard, on average.")
    claim_ttl_seconds: int = Field(default=900, gt=0, description="How long an instance acted on stays claimed.")

    @property
    def claim_ttl(self) -> timedelta:
        return timedelta(seconds=self.claim_ttl_seconds)

    def local_cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``distributed.LocalCluster`` (bound to 127.0.0.1, no dashboard)."""
        return {
            "n_workers": self.dask_workers,
            "threads_per_worker": self.dask_threads_per_worker,
            "processes": self.dask_processes,
            "memory_limit": self.dask_memory_limit,
            "host": "127.0.0.1",
            "dashboard_address": None,
        }

    def task_runner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``prefect_dask.DaskTaskRunner`` for these settings."""
        if self.dask_address:
            _check_address(self.dask_address)
            return {"address": self.dask_address}
        return {"cluster_class": "distributed.LocalCluster", "cluster_kwargs": self.local_cluster_kwargs()}


def _check_address(address: str) -> None:
    if "://" not in address:
        raise ConfigError(
            f"not a Dask scheduler address: {address!r} (such as tcp://10.0.0.5:8786)",
            field="FOREWARN_DASK_ADDRESS",
        )


@contextmanager
def dask_client(settings: ScaleSettings | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` on the settings' cluster for the ``with`` block; a LocalCluster it starts is
    closed on the way out, a remote cluster is left running.

    Yields ``distributed.Client`` (typed ``Any``: distributed ships no complete stubs).
    """
    import distributed

    chosen = settings or ScaleSettings()
    if chosen.dask_address:
        _check_address(chosen.dask_address)
        with distributed.Client(chosen.dask_address) as client:
            yield client
        return
    with distributed.LocalCluster(**chosen.local_cluster_kwargs()) as cluster, distributed.Client(cluster) as client:
        yield client
