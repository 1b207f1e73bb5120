"""Live sources behind watermarks: what the ingest flow pulls into the history database every minute.

Terms:
    source spec: one entry of ``FOREWARN_SOURCES`` (a JSON list, or a YAML file holding one), a pydantic model
        discriminated by ``kind``: prometheus, cloudwatch, logs, drop, simulated, cloud (:mod:`.specs`).
    source: an object with a ``name`` and ``pull(since, until) -> Pulled``
        (:class:`forewarn.telemetry.sources.Source`), built from a spec by :func:`forewarn.compose.sources`.
    watermark: how far a source is committed (:mod:`forewarn.store.watermarks`); it moves only after the rows
        of a pull are stored (:mod:`.step`).
    overlap: how far before its watermark a source reads again, so that late samples land; the stores drop
        what they already hold, by (instance, time) for telemetry and failures, by content for errors and
        workloads (:mod:`.dedupe`).
    max window: the longest span one pull reads; a source far behind catches up over several runs, so
        memory is bounded by the batch, not by the history.

This package's ``__init__`` imports nothing, so that :mod:`forewarn.ingest` may use its modules.
"""
