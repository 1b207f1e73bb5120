"""Load the Feast definitions of ``feature_repo/`` and relocate them under a working directory.

Why not ``feast apply`` in place: the Feast CLI writes the registry, the online store and the parquet
relative to the repository, i.e. into the source tree, and a module imported once stays cached, so two
stores in one process (tests, the CLI beside a flow) would share paths. Instead:

* :func:`repo_config` reads ``feature_store.yaml`` (project, provider, offline store, serialization
  version) and replaces every path: registry, SQLite online store (or Redis, by configuration) and
  ``repo_path`` all point into the working directory; by configuration the registry is Feast's SQL
  registry on PostgreSQL instead (:func:`sql_registry`).
* :func:`load_definitions` imports the repository's ``.py`` files (honouring ``.feastignore``) the way
  the CLI does, by module name with the repository on ``sys.path``, then removes them from
  ``sys.modules`` again, so each call builds fresh Feast objects. Relative ``FileSource`` paths are made
  absolute under the working directory: Feast resolves them against ``repo_path`` for writes but its
  DuckDB store reads them as given (relative to the current directory).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import yaml

from forewarn.errors import ConfigError
from forewarn.settings import PROJECT_ROOT

os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RepoConfig
from feast.data_source import DataSource
from feast.repo_operations import get_repo_files
from feast.types import Float64

from forewarn.features.windows import feature_names


def recorded_metrics(view: FeatureView) -> list[str] | None:
    """The metrics a window-feature view records in its tag, or None when it records none."""
    text = (view.tags or {}).get(METRICS_TAG)
    return [str(m) for m in json.loads(text)] if text else None


DEFAULT_REPO = PROJECT_ROOT / "feature_repo"
METRICS_TAG = "metrics"
"""The tag of the window-feature view that records, as a JSON list, the metrics its features come from."""


@dataclass
class Definitions:
    """The Feast objects of a repository, each once."""

    entities: list[Entity] = field(default_factory=list)
    sources: list[DataSource] = field(default_factory=list)
    views: list[FeatureView] = field(default_factory=list)
    services: list[FeatureService] = field(default_factory=list)

    def add(self, obj: Any) -> None:
        """Add a Feast object (and the sources it holds) unless this very object is already in."""
        bucket: list[Any] | None = None
        if isinstance(obj, Entity):
            bucket = self.entities
        elif isinstance(obj, DataSource):
            bucket = self.sources
            if isinstance(obj, PushSource) and obj.batch_source is not None:
                self.add(obj.batch_source)
        elif isinstance(obj, FeatureView):
            bucket = self.views
            for source in (obj.batch_source, obj.stream_source):
                if source is not None:
                    self.add(source)
        elif isinstance(obj, FeatureService):
            bucket = self.services
        if bucket is not None and not any(obj is other for other in bucket):
            bucket.append(obj)

    def objects(self) -> list[Any]:
        return [*self.entities, *self.sources, *self.views, *self.services]

    def push_source(self) -> PushSource:
        """The repository's push source (exactly one is expected)."""
        pushes = [s for s in self.sources if isinstance(s, PushSource)]
        if len(pushes) != 1:
            raise ConfigError(f"expected one PushSource, found {len(pushes)}", file="feature_repo/sources.py")
        return pushes[0]

    def file_source(self) -> FileSource:
        """The repository's parquet source (exactly one is expected)."""
        files = [s for s in self.sources if isinstance(s, FileSource)]
        if len(files) != 1:
            raise ConfigError(f"expected one FileSource, found {len(files)}", file="feature_repo/sources.py")
        return files[0]


def load_definitions(repo_dir: Path, workdir: Path) -> Definitions:
    """Import the definition files of ``repo_dir`` afresh; relative parquet paths resolve under ``workdir``."""
    files = get_repo_files(repo_dir.resolve())
    names = [".".join(f.relative_to(repo_dir.resolve()).with_suffix("").parts) for f in files]
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    sys.path.insert(0, str(repo_dir.resolve()))
    bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the source tree
    definitions = Definitions()
    try:
        for name in names:
            module = importlib.import_module(name)
            for attr in sorted(vars(module)):
                definitions.add(getattr(module, attr))
    finally:
        sys.dont_write_bytecode = bytecode
        sys.path.remove(str(repo_dir.resolve()))
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    for source in definitions.sources:
        if isinstance(source, FileSource) and "://" not in source.path and not Path(source.path).is_absolute():
            source.file_options.uri = str((workdir / source.path).resolve())
    return definitions


def redis_connection_string(url: str) -> str:
    """Feast's Redis ``host:port[,password=...]`` from ``redis://[:password@]host:port`` or ``host:port``."""
    if "://" not in url:
        return url
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ConfigError(f"'{url}' is not a Redis URL", field="redis_url", allowed=["redis://host:port", "host:port"])
    text = f"{parsed.hostname}:{parsed.port or 6379}"
    if parsed.password:
        text += f",password={parsed.password}"
    if parsed.scheme == "rediss":
        text += ",ssl=true"
    return text


def sql_registry(url: str) -> dict[str, Any]:
    """Feast's SQL registry block for a SQLAlchemy URL (PostgreSQL through psycopg 3, or SQLite).

    A bare ``postgresql://`` gets the psycopg 3 driver (Feast would do so with a warning); the libpq
    parameters of the URL (``?sslmode=disable`` against a local server without TLS) pass through as given.
    """
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "postgresql":
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    elif scheme not in ("postgresql+psycopg", "postgresql+psycopg2", "sqlite"):
        allowed = ["postgresql+psycopg://user:password@host:port/db", "sqlite:///path"]
        raise ConfigError(f"'{url}' is not a registry database URL", field="feast_registry_url", allowed=allowed)
    return {
        "registry_type": "sql",
        "path": url,
        "cache_ttl_seconds": 60,
        "sqlalchemy_config_kwargs": {"echo": False, "pool_pre_ping": True},
    }


def repo_config(
    repo_dir: Path,
    workdir: Path,
    *,
    online: Literal["sqlite", "redis"] = "sqlite",
    redis_url: str | None = None,
    registry_url: str | None = None,
) -> RepoConfig:
    """The repository's ``feature_store.yaml`` with every path moved into ``workdir``.

    ``registry_url`` (a SQLAlchemy URL) puts the registry in that database (Feast's SQL registry, shared by
    every machine) instead of ``workdir/registry.db``.
    """
    path = repo_dir / "feature_store.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read: {str(exc).splitlines()[0]}", file=path) from None
    raw["registry"] = sql_registry(registry_url) if registry_url else str(workdir / "registry.db")
    raw["repo_path"] = workdir
    if online == "sqlite":
        raw["online_store"] = {"type": "sqlite", "path": str(workdir / "online.db")}
    elif online == "redis":
        if not redis_url:
            raise ConfigError("the Redis online store needs a URL", field="redis_url")
        raw["online_store"] = {"type": "redis", "connection_string": redis_connection_string(redis_url)}
    else:
        raise ConfigError(f"unknown online store '{online}'", field="online", allowed=["sqlite", "redis"])
    return RepoConfig(**raw)


def with_metrics(definitions: Definitions, metrics: list[str]) -> Definitions:
    """The definitions with every window-feature view re-typed for ``metrics`` (datasets name their own),
    and the metrics recorded in its :data:`METRICS_TAG` tag (so a registry read tells them).

    A view counts as a window-feature view when its features are exactly ``feature_names()`` of the default
    metrics; services over such a view are rebuilt over the new one. Other objects are kept as they are.
    """
    default = set(feature_names())
    entities = {e.name: e for e in definitions.entities}
    out = Definitions(entities=list(definitions.entities), sources=list(definitions.sources))
    renamed: dict[str, FeatureView] = {}
    for view in definitions.views:
        if {f.name for f in view.features} != default:
            out.add(view)
            continue
        rebuilt = FeatureView(
            name=view.name,
            entities=[entities[name] for name in view.entities],
            ttl=view.ttl,
            schema=[Field(name=name, dtype=Float64) for name in feature_names(metrics)],
            source=view.stream_source or view.batch_source,
            online=view.online,
            description=view.description,
            tags={**(view.tags or {}), METRICS_TAG: json.dumps(list(metrics))},
            owner=view.owner,
        )
        renamed[view.name] = rebuilt
        out.add(rebuilt)
    for service in definitions.services:
        names = [p.name for p in service.feature_view_projections]
        if not any(name in renamed for name in names):
            out.add(service)
            continue
        views = {v.name: v for v in out.views}
        out.add(
            FeatureService(
                name=service.name,
                features=[views[n] for n in names],
                description=service.description,
                tags=service.tags,
                owner=service.owner,
            )
        )
    return out
