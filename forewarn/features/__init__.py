"""Window features and the Feast feature store glue.

Terms:
    window feature: a statistic of one instance's telemetry (or events) over a window ending at a time t,
        using nothing after t; see :mod:`forewarn.features.windows`.
    offline store: the parquet of every feature row, read by Feast through DuckDB for point-in-time joins.
    online store: the latest feature row per instance (SQLite, or Redis by configuration), for scoring.
    feature service: the named list of features a model version is trained and served against.

Importing this package does not import Feast; :mod:`forewarn.features.store` does.
"""
