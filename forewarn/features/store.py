"""The Feast feature store of Forewarn, kept entirely under one working directory.

Layout of ``workdir`` (``FOREWARN_HOME/features`` by default): ``registry.db``, ``online.db`` (SQLite
online store) and ``data/window_features.parquet`` (the offline store, read by DuckDB). At scale, settings
move the registry into PostgreSQL (``FOREWARN_FEAST_REGISTRY_URL``, Feast's SQL registry) and the online
store to Redis (``FOREWARN_FEAST_REDIS_URL``); the parquet stays under ``workdir`` (shared storage). The definitions
come from ``feature_repo/`` (see :mod:`forewarn.features.repo` for how they are relocated); nothing is
written into the source tree.

Feature services: the repository's ``failure_model_v1`` lists every view (what a new model trains on);
:meth:`FeatureStoreGlue.register_service` applies ``failure_model_<version>`` listing exactly the features
of one trained model, and reads name the service to go through.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from forewarn.errors import InputError
from forewarn.features import offline
from forewarn.features.repo import (
    DEFAULT_REPO,
    Definitions,
    load_definitions,
    recorded_metrics,
    repo_config,
    with_metrics,
)
from forewarn.features.windows import KEYS, METRICS, safe_name
from forewarn.settings import Settings, get_settings

from forewarn.features.online import read_online  # isort: skip  (after forewarn.features.repo)

from feast import FeatureService, FeatureStore  # isort: skip  (after forewarn.features.repo, which configures Feast)
from feast.data_source import PushMode  # isort: skip
from feast.online_response import TIMESTAMP_POSTFIX  # isort: skip
from feast.errors import FeatureServiceNotFoundException  # isort: skip

SERVICE = "failure_model_v1"
"""The feature service the current model is trained and served against."""

ROW = "__forewarn_row"


def service_name(version: str) -> str:
    """The feature service of model ``version``: ``failure_model_<version>`` with ``-`` and ``.`` as ``_``."""
    if not str(version).strip():
        raise InputError("a model version is needed to name its feature service", field="version")
    return f"failure_model_{safe_name(str(version).strip())}"


def _service_features(service: FeatureService) -> list[str]:
    """The service's features in the model's order (its ``features`` tag) or else in projection order."""
    names = [f.name for projection in service.feature_view_projections for f in projection.features]
    ordered = (service.tags or {}).get("features", "").split(",")
    return ordered if sorted(ordered) == sorted(names) else names


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InputError("must be time-zone aware (UTC)", field=name)
    return value


class FeatureStoreGlue:
    """Write window features, apply the definitions, materialise, and read training and online frames.

    Args:
        workdir: directory for the registry, the online store (SQLite) and the offline parquet.
        online: ``sqlite`` or ``redis``; default ``redis`` when ``FOREWARN_FEAST_REDIS_URL`` is set, else ``sqlite``.
        redis_url: ``redis://host:port`` or Feast's ``host:port[,password=...]``, when ``online="redis"``;
            default ``FOREWARN_FEAST_REDIS_URL``.
        registry_url: a SQLAlchemy URL for Feast's SQL registry (``postgresql+psycopg://...``); default
            ``FOREWARN_FEAST_REGISTRY_URL``; empty: ``registry.db`` in ``workdir``.
        settings: where those defaults come from; default: the environment now.
        repo_dir: the Feast definitions; default ``feature_repo/`` of the project.
        service: the feature service to read through.
        metrics: telemetry metrics the window features were computed from; the window-feature view is
            re-typed to match and records them. Default: those the registry's view records (the last
            materialize's), else :data:`~forewarn.features.windows.METRICS`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        online: Literal["sqlite", "redis"] | None = None,
        redis_url: str | None = None,
        registry_url: str | None = None,
        repo_dir: Path | None = None,
        service: str = SERVICE,
        metrics: Sequence[str] | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.repo_dir = Path(repo_dir or DEFAULT_REPO)
        s = settings or get_settings()
        redis_url = redis_url or s.feast_redis_url or None
        online = online or ("redis" if redis_url else "sqlite")
        registry_url = s.feast_registry_url if registry_url is None else registry_url
        self.config = repo_config(
            self.repo_dir, self.workdir, online=online, redis_url=redis_url, registry_url=registry_url or None
        )
        self.store = FeatureStore(config=self.config)
        self.definitions: Definitions = load_definitions(self.repo_dir, self.workdir)
        chosen = list(metrics) if metrics is not None else self.registered_metrics()
        self.metrics: list[str] = chosen or list(METRICS)
        """The telemetry metrics of the window features: given, else as recorded in the registry."""
        if self.metrics != list(METRICS):
            self.definitions = with_metrics(self.definitions, self.metrics)
        self.service_name = service
        services = {s.name: s for s in self.definitions.services}
        if service not in services:
            raise InputError(f"no feature service '{service}'", file=self.repo_dir, field="service", allowed=services)
        self.feature_names: list[str] = _service_features(services[service])
        """The features of ``service``: what a model trained through this glue learns from."""
        stored = [f.name for view in self.definitions.views for f in view.features]
        self.stored_names: list[str] = [*self.feature_names, *(n for n in stored if n not in self.feature_names)]
        """Every feature column of every view: what the offline parquet holds."""

    def registered_metrics(self) -> list[str] | None:
        """The metrics the registry's window-feature view records (the last materialize's), or None."""
        try:
            views = self.store.list_feature_views(allow_cache=True)
        except Exception:  # a registry not created yet has no views
            return None
        for view in views:
            found = recorded_metrics(view)
            if found is not None:
                return found
        return None

    @property
    def offline_path(self) -> Path:
        """The directory of parquet parts the offline store reads (:mod:`forewarn.features.offline`)."""
        return Path(self.definitions.file_source().path).parent

    def _check(self, features: pd.DataFrame, what: str) -> pd.DataFrame:
        """Keys and feature columns in order; keys typed, features float. Raises InputError on a gap."""
        missing = [c for c in (*KEYS, *self.stored_names) if c not in features.columns]
        if missing:
            raise InputError(f"{what} lacks {len(missing)} column(s) of the feature views", field=missing[0])
        out = features[[*KEYS, *self.stored_names]].copy()
        out["instance_id"] = out["instance_id"].astype(str)
        out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
        out[self.stored_names] = out[self.stored_names].astype(float)
        return out.drop_duplicates(subset=list(KEYS), keep="last").reset_index(drop=True)

    def write_offline(self, features: pd.DataFrame) -> Path:
        """Replace the offline table with ``features`` (from ``compute_window_features``); returns its path."""
        return offline.replace_parts(self.offline_path, self._check(features, "features"))

    def append_offline(self, features: pd.DataFrame) -> Path:
        """Add feature rows to the offline table as one new part; nothing already there is read."""
        return offline.append_part(self.offline_path, self._check(features, "features"))

    def push_online(self, features: pd.DataFrame) -> int:
        """Push each instance's latest feature row to the online store of every view; returns how many."""
        out = self._check(features, "pushed features")
        latest = out.sort_values("event_timestamp", kind="stable").groupby("instance_id", sort=False).tail(1)
        if len(latest):
            self.store.push(self.definitions.push_source().name, latest.reset_index(drop=True), to=PushMode.ONLINE)
        return len(latest)

    def apply(self) -> None:
        """Register the entity, sources, views and services (``feast apply``) in the working directory."""
        self.store.apply(self.definitions.objects())

    def materialize(self, end: datetime, start: datetime | None = None) -> None:
        """Load the offline rows in ``(start, end]`` into the online store.

        With ``start`` None each view continues from the end of its last run; a view never materialised
        starts at ``end`` minus its TTL (Feast's own default, now minus TTL, misses replayed history).
        """
        end = _utc(end, "end")
        if start is not None:
            self.store.materialize(start_date=_utc(start, "start"), end_date=end)
            return
        for view in self.definitions.views:
            registered = self.store.get_feature_view(view.name)
            if registered.most_recent_end_time is not None:
                self.store.materialize_incremental(end_date=end, feature_views=[view.name])
            else:
                first = end - (registered.ttl or timedelta(days=1))
                self.store.materialize(start_date=first, end_date=end, feature_views=[view.name])

    def register_service(self, version: str, features: Sequence[str]) -> str:
        """Apply ``failure_model_<version>`` listing exactly ``features`` (a model's); returns its name.

        Each feature must belong to a view; the views are applied too, so this works on a fresh registry.
        Registering the same version again replaces its service.
        """
        wanted = list(dict.fromkeys(str(f) for f in features))
        if not wanted:
            raise InputError(f"model {version} names no features", field="features")
        owner = {f.name: view for view in self.definitions.views for f in view.features}
        unknown = [name for name in wanted if name not in owner]
        if unknown:
            known = ", ".join(v.name for v in self.definitions.views)
            raise InputError(
                f"feature '{unknown[0]}' of model {version} is in no feature view ({known})", field="features"
            )
        used = list({id(owner[name]): owner[name] for name in wanted}.values())  # in order of first use
        projections: list[Any] = [view[[name for name in wanted if owner[name] is view]] for view in used]
        name = service_name(version)
        tags = {"model_version": str(version), "features": ",".join(wanted)}  # the model's order, kept on reads
        service = FeatureService(
            name=name, features=projections, description=f"The features of model {version}.", tags=tags
        )
        self.store.apply([*self.definitions.objects(), service])
        return name

    def ensure_service(self, version: str, features: Sequence[str]) -> str:
        """The service of model ``version``, registered first when the registry lacks it (a model trained
        before services existed, or a rebuilt feature store); cheap when it is there (cached registry)."""
        name = service_name(version)
        try:
            found = self.store.get_feature_service(name, allow_cache=True)
        except FeatureServiceNotFoundException:
            return self.register_service(version, features)
        if sorted(_service_features(found)) != sorted(dict.fromkeys(map(str, features))):
            return self.register_service(version, features)
        return name

    def _service(self, service: str | None, *, cache: bool) -> tuple[FeatureService, list[str]]:
        """The registered service (default: this glue's) and its feature names, in the service's order."""
        name = service or self.service_name
        try:
            found = self.store.get_feature_service(name, allow_cache=cache)
        except FeatureServiceNotFoundException:
            known = [s.name for s in self.store.list_feature_services()]
            raise InputError(f"no feature service '{name}' in the registry", field="service", allowed=known) from None
        return found, _service_features(found)

    def training_frame(self, entity_df: pd.DataFrame, service: str | None = None) -> pd.DataFrame:
        """Point-in-time features for each (instance_id, event_timestamp) row; other columns are kept.

        Each row gets the latest feature row of its instance at or before its timestamp (and not older than
        the view's TTL); rows come back in the order given, features NaN where none qualifies. ``service``
        (default: this glue's) chooses the features.
        """
        missing = [c for c in KEYS if c not in entity_df.columns]
        if missing:
            raise InputError("entity frame lacks a key column", field=missing[0], allowed=list(KEYS))
        entities = entity_df.copy()
        entities["instance_id"] = entities["instance_id"].astype(str)
        entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"], utc=True)
        entities[ROW] = range(len(entities))
        found, names = self._service(service, cache=False)
        joined = self.store.get_historical_features(entity_df=entities, features=found).to_df()
        joined = joined.sort_values(ROW).set_index(ROW).reindex(range(len(entities)))
        joined.index = entity_df.index
        columns = [*entity_df.columns, *[n for n in names if n not in entity_df.columns]]
        return joined[columns]

    def online_features(
        self, instance_ids: Sequence[str], service: str | None = None, *, bulk: bool = True
    ) -> pd.DataFrame:
        """The latest online features of each instance, in the order given (NaN for unknown instances), with
        ``event_timestamp``: when the newest of them was computed (NaT where none is known), so a cycle can
        tell features too old to trust.

        ``service`` (e.g. the champion's, :func:`service_name`) chooses the features; default: this glue's.
        ``bulk`` reads the store in one round trip per batch (:mod:`forewarn.features.online`); False goes
        through ``FeatureStore.get_online_features`` (the same values, several times slower).
        """
        ids = [str(i) for i in instance_ids]
        found, names = self._service(service, cache=True)
        columns = ["instance_id", *names]
        if not ids:
            empty = pd.DataFrame({c: pd.Series(dtype=object if c == "instance_id" else float) for c in columns})
            empty["event_timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
            return empty
        if bulk:
            rows = read_online(self.store, found, names, ids)
            out = pd.DataFrame(rows.values, columns=names)
            out.insert(0, "instance_id", ids)
            stamps = rows.seconds
        else:
            response = self.store.get_online_features(features=found, entity_rows={"instance_id": ids})
            frame = response.to_df(include_event_timestamps=True)
            frame[names] = frame[names].astype(float)
            stamps = frame[[f"{n}{TIMESTAMP_POSTFIX}" for n in names]].to_numpy(dtype=float)
            out = frame[columns].reset_index(drop=True)
        newest = np.where(np.isnan(stamps) | (stamps <= 0), -np.inf, stamps).max(axis=1) if names else np.array([])
        seconds = pd.Series(np.where(np.isfinite(newest), newest, np.nan))
        out["event_timestamp"] = pd.to_datetime(seconds, unit="s", utc=True)
        return out

    def push(self, features: pd.DataFrame) -> None:
        """Push fresh feature rows to the online store of every view and append them to the offline parquet."""
        out = self._check(features, "pushed features")
        self.store.push(self.definitions.push_source().name, out, to=PushMode.ONLINE)
        # Once, not per view: Feast's push would append the rows once for every view over the source.
        offline.append_part(self.offline_path, out)
