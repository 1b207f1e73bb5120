"""The online read in bulk: the values ``FeatureStore.get_online_features`` returns, in one round trip per
batch and decoded with array code instead of one protobuf message per value.

Feast stays the store and its registry the source of the definitions: the service's projections name the
views and features; the keys are Feast's own (``serialize_entity_key``, version 3, of ``instance_id``) and
so are the table names (SQLite: ``<project>_<view>``; Redis: one hash per entity, field
``mmh3("<view>:<feature>")`` per feature and ``_ts:<view>`` for the view's event time). A value is a
serialised ``feast.types.Value``; a ``double_val`` is 9 bytes (tag 0x29, then the little-endian float64),
decoded for all rows at once; anything else (an empty value is null) goes through protobuf, one by one.

As in Feast's response, an event time is whole seconds and belongs to an instance's row of a view.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import forewarn.features.repo  # noqa: F401  (first: it turns Feast's usage reporting off before Feast loads)

from feast import FeatureService, FeatureStore  # isort: skip
from feast.infra.key_encoding_utils import serialize_entity_key  # isort: skip
from feast.infra.online_stores.helpers import compute_table_id, compute_versioned_name  # isort: skip
from feast.protos.feast.types.EntityKey_pb2 import EntityKey  # isort: skip
from feast.protos.feast.types.Value_pb2 import Value  # isort: skip

BATCH = 20_000
"""Instances per round trip (SQLite allows 32,766 bound parameters per statement)."""

_DOUBLE = 0x29  # field 5 (double_val), wire type 1 (64-bit)


@dataclass
class OnlineRows:
    """What the online store holds for the instances asked: ``values[i, j]`` of instance ``i`` and feature
    ``j`` (NaN: none), and ``seconds[i, j]``: the event time of that feature's row (NaN: none)."""

    values: np.ndarray
    seconds: np.ndarray


def entity_keys(ids: Sequence[str], version: int = 3) -> list[bytes]:
    """Feast's serialised entity key of each ``instance_id``, built from one key's prefix."""
    if not ids:
        return []
    sample = serialize_entity_key(
        EntityKey(join_keys=["instance_id"], entity_values=[Value(string_val=ids[0])]),
        entity_key_serialization_version=version,
    )
    encoded = [i.encode("utf-8") for i in ids]
    tail = struct.pack("<I", len(encoded[0])) + encoded[0]
    if not sample.endswith(tail):  # a Feast whose key layout moved: go the slow, certain way
        return [
            serialize_entity_key(
                EntityKey(join_keys=["instance_id"], entity_values=[Value(string_val=i)]),
                entity_key_serialization_version=version,
            )
            for i in ids
        ]
    prefix = sample[: -len(tail)]
    pack = struct.Struct("<I").pack
    return [prefix + pack(len(b)) + b for b in encoded]


def decode_values(blobs: Sequence[bytes | None]) -> np.ndarray:
    """Serialised ``feast.types.Value`` messages as float64 (NaN for null or absent)."""
    out = np.full(len(blobs), np.nan)
    if not len(blobs):
        return out
    lengths = np.fromiter((len(b) if b else 0 for b in blobs), dtype=np.int64, count=len(blobs))
    nine = np.flatnonzero(lengths == 9)
    other = np.flatnonzero((lengths != 9) & (lengths != 0))
    if nine.size:
        raw = np.frombuffer(b"".join([blobs[i] for i in nine.tolist()]), dtype=np.uint8).reshape(-1, 9)  # type: ignore[misc]
        double = raw[:, 0] == _DOUBLE
        out[nine[double]] = raw[double, 1:].copy().view("<f8").ravel()
        other = np.concatenate([other, nine[~double]])
    for i in other.tolist():
        out[i] = _one_value(blobs[i])
    return out


def _one_value(blob: bytes | None) -> float:
    value = Value()
    value.ParseFromString(blob or b"")
    kind = value.WhichOneof("val")
    if kind in (None, "null_val"):
        return float("nan")
    number = getattr(value, kind)
    return float(number) if isinstance(number, int | float) else float("nan")


def _layout(
    store: FeatureStore, service: FeatureService, names: Sequence[str]
) -> list[tuple[Any, list[str], list[int]]]:
    """Each view of the service, the features the service takes from it and their columns in ``names``."""
    column = {name: j for j, name in enumerate(names)}
    out = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name, allow_registry_cache=True)
        features = [f.name for f in projection.features]
        out.append((view, features, [column[f] for f in features]))
    return out


def read_online(store: FeatureStore, service: FeatureService, names: Sequence[str], ids: Sequence[str]) -> OnlineRows:
    """The online values of ``names`` (the service's features) for ``ids``, from SQLite or Redis."""
    config = store.config
    unique, inverse = np.unique(np.asarray(ids, dtype=object), return_inverse=True)  # a repeated id read once
    values = np.full((len(unique), len(names)), np.nan)
    seconds = np.full((len(unique), len(names)), np.nan)
    keys = entity_keys([str(i) for i in unique], config.entity_key_serialization_version)
    layout = _layout(store, service, names)
    kind = config.online_store.type
    versioned = config.registry.enable_online_feature_view_versioning
    if kind == "sqlite":
        _read_sqlite(store, layout, keys, values, seconds, versioned)
    elif kind == "redis":
        _read_redis(store, layout, keys, values, seconds, versioned)
    else:
        raise NotImplementedError(f"bulk online read of a '{kind}' online store")
    if len(unique) == len(ids) and (inverse == np.arange(len(ids))).all():
        return OnlineRows(values, seconds)
    return OnlineRows(values[inverse], seconds[inverse])


def _sqlite_path(store: FeatureStore) -> str:
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    return SqliteOnlineStore._get_db_path(store.config)


Layout = list[tuple[Any, list[str], list[int]]]


def _seconds_of(expr: str) -> str:
    """SQL of the event time ``expr`` in whole seconds, as Feast stores it (epoch seconds) or as SQLite's time
    text."""
    return (
        f"CASE typeof({expr}) WHEN 'integer' THEN {expr} WHEN 'real' THEN CAST({expr} AS INTEGER) "
        f"ELSE CAST(strftime('%s', {expr}) AS INTEGER) END"
    )


_SECONDS = _seconds_of("v.event_ts")
_PACKED = np.dtype([("row", ">u4"), ("column", ">u2"), ("seconds", ">i8"), ("tag", "u1"), ("value", "<f8")])
"""One value as the per-value query packs it (in hex): its row, its column, its event time and the 9 bytes of
a serialised double."""
_SEP = "\x1f"
"""Between feature names in the whole-row query's list of them (no feature name holds it)."""


def _read_sqlite(
    store: FeatureStore, layout: Layout, keys: list[bytes], values: np.ndarray, seconds: np.ndarray, versioned: bool
) -> None:
    """Per view and batch: the keys go into a temporary table with their row; the whole-row query reads each
    instance's row of the view at once (:func:`_whole_rows`); the instances it cannot decode so, the
    per-value query reads value by value (:func:`_by_value`)."""
    with sqlite3.connect(_sqlite_path(store)) as conn:
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS forewarn_keys (key BLOB PRIMARY KEY, row INTEGER)")
        for view, features, columns in layout:
            table = compute_table_id(store.config.project, view, versioned)
            stored = sorted(f.name for f in view.features)
            for first in range(0, len(keys), BATCH):
                rows = range(first, min(first + BATCH, len(keys)))
                _fill(conn, keys, rows)
                redo = _whole_rows(conn, table, stored, features, columns, values, seconds)
                if redo is None:
                    redo = np.asarray(rows)
                if redo.size:
                    _fill(conn, keys, redo.tolist())
                    _by_value(conn, table, features, columns, values, seconds)


def _fill(conn: sqlite3.Connection, keys: list[bytes], rows: Sequence[int]) -> None:
    conn.execute("DELETE FROM temp.forewarn_keys")
    conn.executemany("INSERT OR IGNORE INTO temp.forewarn_keys VALUES (?, ?)", ((keys[r], r) for r in rows))


def _whole_rows(
    conn: sqlite3.Connection,
    table: str,
    stored: list[str],
    features: list[str],
    columns: list[int],
    values: np.ndarray,
    seconds: np.ndarray,
) -> np.ndarray | None:
    """One query groups each instance's values of the view, walking Feast's primary key (entity key, then
    feature name), and hands back per instance its newest event time, whether its feature names are exactly
    the view's (in that order), and its values concatenated. Where they are, and every value is a 9-byte
    double, numpy decodes them all at once; no SQL function runs per value, which is what made the read cost
    several times a raw read of the same rows. Returns the rows left to read value by value (another set of
    features, a null, another type), or None when the table has no such primary key index."""
    quoted = table.replace('"', '""')
    index = f"sqlite_autoindex_{table}_1".replace('"', '""')
    asked = f"({', '.join('?' * len(features))})"
    newest = (
        "max(v.event_ts)"
        if set(features) == set(stored)
        else f"max(CASE WHEN v.feature_name IN {asked} THEN v.event_ts END)"
    )
    query = (
        f"SELECT row, {_seconds_of('ts')}, names = ?, blob FROM (SELECT k.row AS row, {newest} AS ts, "
        f"group_concat(v.feature_name, char(31)) AS names, CAST(group_concat(v.value, '') AS BLOB) AS blob "
        f'FROM temp.forewarn_keys AS k JOIN "{quoted}" AS v INDEXED BY "{index}" ON v.entity_key = k.key '
        "GROUP BY k.rowid)"
    )
    params = [_SEP.join(stored), *([] if set(features) == set(stored) else features)]
    try:
        found = conn.execute(query, params).fetchall()
    except sqlite3.OperationalError:  # no primary key index by SQLite's name: a table Feast did not create
        return None
    if not found:
        return np.array([], dtype=np.int64)
    row = np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))
    width = 9 * len(stored)
    whole = np.fromiter((bool(r[2]) and len(r[3] or b"") == width for r in found), dtype=bool, count=len(found))
    raw = np.frombuffer(b"".join([r[3] for r, w in zip(found, whole, strict=True) if w]), dtype=np.uint8)
    raw = raw.reshape(-1, len(stored), 9)
    double = (raw[:, :, 0] == _DOUBLE).all(axis=1)
    good = np.flatnonzero(whole)[double]
    take = np.asarray([stored.index(f) for f in features], dtype=np.int64)
    cells = np.ix_(row[good], np.asarray(columns, dtype=np.int64))
    values[cells] = raw[double][:, take, 1:].copy().view("<f8")[..., 0]
    stamps = np.array([np.nan if r[1] is None else float(r[1]) for r in found])
    seconds[cells] = stamps[good][:, None]
    redo = np.ones(len(found), dtype=bool)
    redo[good] = False
    return row[redo]


def _by_value(
    conn: sqlite3.Connection,
    table: str,
    features: list[str],
    columns: list[int],
    values: np.ndarray,
    seconds: np.ndarray,
) -> None:
    """The keys' values one by one: one query joins the keys with the view's table and packs every double of
    the service's features (row, column, event time, value) into one hex string, which numpy decodes at once.
    Only when some value has another shape (null, another type) does a second query return those as rows,
    through protobuf. The event time of an instance's row of a view is the newest of its requested
    features' (Feast writes one time for the whole row)."""
    quoted = table.replace('"', '""')
    case = " ".join("WHEN ? THEN ?" for _ in features)
    mapping = [*(x for pair in zip(features, columns, strict=True) for x in pair), *features]
    joined = (
        f"SELECT k.row AS row, CASE v.feature_name {case} ELSE -1 END AS col, v.value AS value, "
        f'{_SECONDS} AS ts FROM temp.forewarn_keys AS k JOIN "{quoted}" AS v ON v.entity_key = k.key '
        f"WHERE v.feature_name IN ({', '.join('?' * len(features))})"
    )
    double = "length(value) = 9 AND substr(value, 1, 1) = x'29'"
    packed = (
        f"SELECT group_concat(CASE WHEN {double} THEN printf('%08x%04x%016x', row, col, ts) "
        f"|| hex(value) END, ''), count(*), sum({double}) FROM ({joined})"
    )
    others = f"SELECT row, col, value, ts FROM ({joined}) WHERE NOT ({double})"
    text, count, doubles = conn.execute(packed, mapping).fetchone()
    raw = np.frombuffer(bytes.fromhex(text or ""), dtype=_PACKED)
    row, column = raw["row"].astype(np.int64), raw["column"].astype(np.int64)
    values[row, column] = raw["value"]
    stamp = raw["seconds"].astype(float)
    rest = conn.execute(others, mapping).fetchall() if count != (doubles or 0) else []
    for r, c, blob, ts in rest:  # nulls and other types: few, and only then a second query
        row, column = np.append(row, r), np.append(column, c)
        stamp = np.append(stamp, float(ts))
        values[r, c] = _one_value(blob)
    # an instance's event time of a view is that of its row, for every feature the view gives
    newest = np.full(len(values), -np.inf)
    np.maximum.at(newest, row, stamp)
    present = np.flatnonzero(np.isfinite(newest))
    seconds[np.ix_(present, np.asarray(columns, dtype=np.int64))] = newest[present][:, None]


def _read_redis(
    store: FeatureStore, layout: Layout, keys: list[bytes], values: np.ndarray, seconds: np.ndarray, versioned: bool
) -> None:
    from feast.infra.online_stores.redis import RedisOnlineStore, _mmh3
    from google.protobuf.timestamp_pb2 import Timestamp

    fields: list[bytes | str] = []
    targets: list[int] = []
    stamp_fields: list[tuple[int, list[int]]] = []  # position of the view's event time in a reply, its columns
    for view, features, columns in layout:
        name = compute_versioned_name(view, versioned)
        stamp_fields.append((len(fields), columns))
        fields.append(f"_ts:{name}")
        fields += [_mmh3(f"{name}:{feature}") for feature in features]
        targets += columns
    value_at = [p for p in range(len(fields)) if p not in {s for s, _ in stamp_fields}]
    client = RedisOnlineStore()._get_client(store.config.online_store)
    project = store.config.project.encode("utf-8")
    for first in range(0, len(keys), BATCH):
        chunk = keys[first : first + BATCH]
        with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.hmget(key + project, fields)
            replies = pipe.execute()
        rows = slice(first, first + len(chunk))
        flat = [reply[p] for reply in replies for p in value_at]
        values[rows, targets] = decode_values(flat).reshape(len(chunk), len(value_at))
        for position, columns in stamp_fields:
            stamps = [reply[position] for reply in replies]
            decoded: dict[bytes, float] = {}
            for blob in set(stamps) - {None, b""}:
                ts = Timestamp()
                ts.ParseFromString(blob)
                decoded[blob] = float(ts.seconds)
            # as in Feast: a missing event time is 0 (the epoch), which readers treat as none
            seconds[rows, columns] = np.array([decoded.get(s, 0.0) if s else 0.0 for s in stamps])[:, None]
