"""The feature view of window features and the feature service each model version is trained against."""

from datetime import timedelta

from entities import instance
from feast import FeatureService, FeatureView, Field
from feast.types import Float64
from sources import window_features_push

from forewarn.features.windows import feature_names

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
)

failure_model_v1 = FeatureService(
    name="failure_model_v1",
    features=[window_features],
    description="The features of failure model version 1.",
)
