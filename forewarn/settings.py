"""Settings from ``FOREWARN_*`` environment variables (or a ``.env`` file), with embedded defaults.

Moving from the embedded defaults to a cluster changes these settings, never code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """The public data sets beside the project (``../shared/data``), or ``FOREWARN_SHARED_DATA``."""
    return Path(os.environ.get("FOREWARN_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


class Settings(BaseSettings):
    """Where Forewarn keeps its state and which cloud it acts on."""

    model_config = SettingsConfigDict(env_prefix="FOREWARN_", env_file=".env", extra="ignore")

    home: Path = Field(default=Path(".forewarn"), description="Working directory for state and artifacts.")
    dataset: Path = Field(default=Path(".forewarn/dataset"), description="Dataset the flows read.")
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite under home.")
    feature_repo: Path = Field(default=PROJECT_ROOT / "feature_repo", description="Feast repository.")
    policy: Path = Field(default=PROJECT_ROOT / "policies" / "default.yaml")
    cloud: Literal["simulated", "aws", "openstack"] = "simulated"
    dry_run: bool = True
    aws_groups: str = Field(default="", description="Comma-separated Auto Scaling groups Forewarn manages.")
    aws_endpoint_url: str = Field(default="", description="EC2/Auto Scaling endpoint; empty for AWS itself.")
    openstack_cloud: str = Field(default="", description="Cloud name in clouds.yaml; empty for OS_* variables.")
    feast_registry_url: str = Field(
        default="", description="Feast SQL registry (postgresql+psycopg://...); empty: a file under home."
    )
    feast_redis_url: str = Field(
        default="", description="Feast online store on Redis (redis://host:port); empty: SQLite under home."
    )
    sources: str = Field(
        default="",
        description="The ingest flow's sources: a JSON list of source specs, or the path of a YAML file of them "
        "(see docs/operations.md, Sources); empty: none.",
    )
    fleet_url: str = Field(
        default="",
        description="A fleet service (`forewarn fleet serve`, e.g. http://127.0.0.1:9108): with FOREWARN_CLOUD="
        "simulated, the simulated cloud is that fleet's, acted on over its API.",
    )
    clock: Literal["wall", "fleet"] = Field(
        default="wall",
        description="Where a cycle without --at takes its time: the machine's clock, or the fleet service's "
        "(FOREWARN_FLEET_URL, default http://127.0.0.1:9108), needed when the fleet runs at a speed other than 1.",
    )
    horizon_minutes: int = Field(default=60, gt=0)
    train_days: float = Field(
        default=30, gt=0, description="Training reads this many days of history, ending at the cycle's time."
    )
    step_minutes: int = Field(default=5, gt=0)

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``home``."""
        return self.database_url or f"sqlite:///{(self.home / 'forewarn.db').resolve()}"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"


def get_settings() -> Settings:
    """Settings read now from the environment."""
    return Settings()
