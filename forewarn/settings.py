"""Settings from ``FOREWARN_*`` environment variables (or a ``.env`` file), with embedded defaults.

Moving from the embedded defaults to a cluster changes these settings, never code.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from forewarn.errors import ConfigError
from forewarn.redact import redact

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
    horizon_minutes: int = Field(default=60, gt=0, le=525_600)
    train_days: float = Field(
        default=30,
        gt=0,
        le=3_650,
        allow_inf_nan=False,
        description="Training reads this many days of history, ending at the cycle's time.",
    )
    step_minutes: int = Field(default=5, gt=0, le=1_440)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Every value as ``repr`` shows it, with passwords in URLs masked (see :mod:`forewarn.redact`)."""
        for name, value in super().__repr_args__():
            yield name, redact(value) if isinstance(value, str) else value

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


def settings_error(exc: ValidationError, prefix: str = "FOREWARN_") -> ConfigError:
    """A settings :class:`ValidationError` as one line naming the variable and what is allowed (no value that
    could be a secret is echoed unmasked)."""
    first = exc.errors()[0]
    name = prefix + "_".join(str(part) for part in first["loc"]).upper()
    expected = str(first.get("ctx", {}).get("expected", ""))
    allowed = re.findall(r"'([^']*)'", expected) or None
    value = first.get("input")
    got = f", got {redact(value)!r}" if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    message = f"{first['msg']}{got}" if allowed is None else f"not one of the allowed values{got}"
    return ConfigError(message, field=name, allowed=allowed)


def get_settings() -> Settings:
    """Settings read now from the environment.

    Raises:
        ConfigError: a FOREWARN_* variable holds a value it cannot take; one line naming it.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise settings_error(exc) from None
