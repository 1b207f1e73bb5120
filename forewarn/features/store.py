"""The Feast feature store of Forewarn, kept entirely under one working directory.

Layout of ``workdir`` (``FOREWARN_HOME/features`` by default): ``registry.db``, ``online.db`` (SQLite
online store) and ``data/window_features.parquet`` (the offline store, read by DuckDB). The definitions
come from ``feature_repo/`` (see :mod:`forewarn.features.repo` for how they are relocated); nothing is
written into the source tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import pandas as pd

from forewarn.errors import InputError
from forewarn.features.repo import DEFAULT_REPO, Definitions, load_definitions, repo_config, with_metrics
from forewarn.features.windows import KEYS, METRICS

from feast import FeatureStore  # isort: skip  (after forewarn.features.repo, which configures Feast)
from feast.data_source import PushMode  # isort: skip

SERVICE = "failure_model_v1"
"""The feature service the current model is trained and served against."""

ROW = "__forewarn_row"


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise InputError("must be time-zone aware (UTC)", field=name)
    return value


class FeatureStoreGlue:
    """Write window features, apply the definitions, materialise, and read training and online frames.

    Args:
        workdir: directory for the registry, the online store (SQLite) and the offline parquet.
        online: ``sqlite`` (default) or ``redis``.
        redis_url: ``redis://host:port`` or Feast's ``host:port[,password=...]``, when ``online="redis"``.
        repo_dir: the Feast definitions; default ``feature_repo/`` of the project.
        service: the feature service to read through.
        metrics: telemetry metrics the window features were computed from, when not the default
            :data:`~forewarn.features.windows.METRICS`; the window-feature view is re-typed to match.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        online: Literal["sqlite", "redis"] = "sqlite",
        redis_url: str | None = None,
        repo_dir: Path | None = None,
        service: str = SERVICE,
        metrics: Sequence[str] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.repo_dir = Path(repo_dir or DEFAULT_REPO)
        self.config = repo_config(self.repo_dir, self.workdir, online=online, redis_url=redis_url)
        self.definitions: Definitions = load_definitions(self.repo_dir, self.workdir)
        if metrics is not None and list(metrics) != list(METRICS):
            self.definitions = with_metrics(self.definitions, list(metrics))
        self.service_name = service
        services = {s.name: s for s in self.definitions.services}
        if service not in services:
            raise InputError(f"no feature service '{service}'", file=self.repo_dir, field="service", allowed=services)
        self.feature_names: list[str] = [
            f.name for projection in services[service].feature_view_projections for f in projection.features
        ]
        self.store = FeatureStore(config=self.config)

    @property
    def offline_path(self) -> Path:
        """The parquet file the offline store reads."""
        return Path(self.definitions.file_source().path)

    def _check(self, features: pd.DataFrame, what: str) -> pd.DataFrame:
        """Keys and feature columns in order; keys typed, features float. Raises InputError on a gap."""
        missing = [c for c in (*KEYS, *self.feature_names) if c not in features.columns]
        if missing:
            raise InputError(
                f"{what} lacks {len(missing)} column(s) of feature service '{self.service_name}'",
                field=missing[0],
            )
        out = features[[*KEYS, *self.feature_names]].copy()
        out["instance_id"] = out["instance_id"].astype(str)
        out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True).astype("datetime64[ns, UTC]")
        out[self.feature_names] = out[self.feature_names].astype(float)
        return out.drop_duplicates(subset=list(KEYS), keep="last").reset_index(drop=True)

    def write_offline(self, features: pd.DataFrame) -> Path:
        """Replace the offline table with ``features`` (from ``compute_window_features``); returns its path."""
        out = self._check(features, "features")
        path = self.offline_path
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".parquet.tmp")
        out.to_parquet(temporary, index=False)
        temporary.replace(path)
        return path

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

    def training_frame(self, entity_df: pd.DataFrame) -> pd.DataFrame:
        """Point-in-time features for each (instance_id, event_timestamp) row; other columns are kept.

        Each row gets the latest feature row of its instance at or before its timestamp (and not older than
        the view's TTL); rows come back in the order given, features NaN where none qualifies.
        """
        missing = [c for c in KEYS if c not in entity_df.columns]
        if missing:
            raise InputError("entity frame lacks a key column", field=missing[0], allowed=list(KEYS))
        entities = entity_df.copy()
        entities["instance_id"] = entities["instance_id"].astype(str)
        entities["event_timestamp"] = pd.to_datetime(entities["event_timestamp"], utc=True)
        entities[ROW] = range(len(entities))
        service = self.store.get_feature_service(self.service_name)
        joined = self.store.get_historical_features(entity_df=entities, features=service).to_df()
        joined = joined.sort_values(ROW).set_index(ROW).reindex(range(len(entities)))
        joined.index = entity_df.index
        columns = [*entity_df.columns, *[n for n in self.feature_names if n not in entity_df.columns]]
        return joined[columns]

    def online_features(self, instance_ids: Sequence[str]) -> pd.DataFrame:
        """The latest online features of each instance, in the order given (NaN for unknown instances)."""
        ids = [str(i) for i in instance_ids]
        columns = ["instance_id", *self.feature_names]
        if not ids:
            return pd.DataFrame({c: pd.Series(dtype=object if c == "instance_id" else float) for c in columns})
        service = self.store.get_feature_service(self.service_name, allow_cache=True)
        response = self.store.get_online_features(features=service, entity_rows={"instance_id": ids})
        frame = response.to_df()
        frame[self.feature_names] = frame[self.feature_names].astype(float)
        return frame[columns].reset_index(drop=True)

    def push(self, features: pd.DataFrame) -> None:
        """Push fresh feature rows to the online store and append them to the offline parquet."""
        out = self._check(features, "pushed features")
        to = PushMode.ONLINE_AND_OFFLINE if self.offline_path.exists() else PushMode.ONLINE
        if to is PushMode.ONLINE:
            self.write_offline(out)
        self.store.push(self.definitions.push_source().name, out, to=to)
