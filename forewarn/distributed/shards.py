"""Shards keyed by instance: a stable hash of the id picks the shard, the same in every run and process."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable


def shard_of(instance_id: str, count: int) -> int:
    """The shard (0..count-1) of an instance; independent of Python's per-process hash seed."""
    if count <= 0:
        raise ValueError(f"shard count must be positive, got {count}")
    digest = hashlib.blake2b(str(instance_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def shard_count(instances: int, shard_size: int) -> int:
    """How many shards ``instances`` need at about ``shard_size`` each (at least one)."""
    return max(1, math.ceil(instances / max(1, shard_size)))


def shards(instance_ids: Iterable[str], *, shard_size: int) -> list[list[str]]:
    """The instances grouped by shard, each group sorted, empty shards left out."""
    ids = sorted({str(i) for i in instance_ids})
    count = shard_count(len(ids), shard_size)
    groups: list[list[str]] = [[] for _ in range(count)]
    for instance_id in ids:
        groups[shard_of(instance_id, count)].append(instance_id)
    return [g for g in groups if g]
