"""Where the features live: the parquet Forewarn writes (every view's columns), and a push source for fresh rows.

The path is relative, as Feast allows: it resolves against the repository path, which FeatureStoreGlue
sets to its working directory (and makes absolute, since the DuckDB store reads paths as given).
"""

from feast import FileSource, PushSource

FEATURES_PARQUET = "data/window_features/*.parquet"
"""A directory of parquet parts (forewarn/features/offline.py), read by DuckDB as one table."""

window_features_source = FileSource(
    name="window_features_file",
    path=FEATURES_PARQUET,
    timestamp_field="event_timestamp",
    description="Every feature row (window, workload, velocity) written by FeatureStoreGlue (one part per run).",
)

window_features_push = PushSource(
    name="window_features_push",
    batch_source=window_features_source,
    description="Fresh window features pushed by the scoring loop.",
)
