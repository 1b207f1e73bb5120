"""The feature views of Forewarn and the feature service of the default model.

Every view reads the same parquet (through the push source, so pushed rows reach each view's online table);
each names its own columns. Services for trained model versions (``failure_model_<version>``) are applied
by ``FeatureStoreGlue.register_service`` when a model is registered, listing exactly its features.
"""

import json
from datetime import timedelta

from entities import instance
from feast import FeatureService, FeatureView, Field
from feast.types import Float64
from sources import window_features_push

from forewarn.features.velocity import VELOCITY_FEATURES
from forewarn.features.windows import METRICS, feature_names
from forewarn.features.workloads import WORKLOAD_FEATURES

TTL = timedelta(hours=6)
"""A feature row older than this (the longest window) is stale: the point-in-time join leaves it out."""

window_features = FeatureView(
    name="window_features",
    entities=[instance],
    ttl=TTL,
    schema=[Field(name=name, dtype=Float64) for name in feature_names()],
    source=window_features_push,
    online=True,
    description="Telemetry window statistics, error counts and time since failure and boot.",
    tags={"metrics": json.dumps(list(METRICS))},  # the metrics its features come from (re-typed per data set)
)

workload_features = FeatureView(
    name="workload_features",
    entities=[instance],
    ttl=TTL,
    schema=[Field(name=name, dtype=Float64) for name in WORKLOAD_FEATURES],
    source=window_features_push,
    online=True,
    description="Tasks running on the instance at t: count, demand, share of capacity, data, time left, kinds.",
)

velocity_features = FeatureView(
    name="velocity_features",
    entities=[instance],
    ttl=TTL,
    schema=[Field(name=name, dtype=Float64) for name in VELOCITY_FEATURES],
    source=window_features_push,
    online=True,
    description="The concurrency limits (VelocityLimits) in force for the instance at t.",
)

failure_model_v1 = FeatureService(
    name="failure_model_v1",
    features=[window_features, workload_features, velocity_features],
    description="The features a new failure model trains on: every view.",
)
