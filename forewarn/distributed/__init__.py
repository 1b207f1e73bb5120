"""Scale-out: the same scoring, feature computation and training on a Dask cluster, with the same answers.

(Not the ``scale-back`` and ``autoscale`` actions on instances: those are in :mod:`forewarn.execution`.)

Terms:
    shard: a group of instances handled by one Dask task. An instance's shard depends only on its id
        (a stable hash), so every run puts it in the same shard, and each shard reads its own features.
    cluster: a Dask scheduler and its workers. With ``FOREWARN_DASK_ADDRESS`` empty Forewarn starts a
        ``LocalCluster`` in process; set it to ``tcp://scheduler:8786`` to use a running cluster. Only
        settings change between the two (see :mod:`forewarn.distributed.config` and docs/scale-out.md).

Modules: ``config`` (settings, clients), ``shards`` (assignment by instance), ``compute`` (per-shard
feature and scoring functions, plain and picklable), ``train`` (``xgboost.dask`` training to a
:class:`~forewarn.model.scoring.TrainedModel`). No module here imports Prefect; ``flows/scaled.py`` does.
"""

from forewarn.distributed.config import ScaleSettings, dask_client
from forewarn.distributed.shards import shard_of, shards

__all__ = ["ScaleSettings", "dask_client", "shard_of", "shards"]
