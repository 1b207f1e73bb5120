"""The bulk online read returns exactly what Feast's ``get_online_features`` returns, on SQLite and Redis.

The same entities are read both ways: instances with features, an instance the store never saw, a value
stored as null, an instance one of whose feature rows is gone (SQLite), and a model's feature service that
takes a subset of the views' features in its own order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forewarn.features.online import decode_values, entity_keys
from forewarn.features.store import FeatureStoreGlue
from forewarn.features.windows import all_feature_names
from tests.servers import free_port, require_binary, start, stop, wait_for_port

T0 = pd.Timestamp("2024-05-01T00:00:00Z")
IDS = [f"vm-{k:03d}" for k in range(40)]
ASKED = [*IDS[::-1], "vm-never-seen", IDS[3]]  # another order, an unknown instance, a repeat


def _features() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    names = all_feature_names()
    rows = []
    for minutes in (10, 0):  # two rows per instance; the online store keeps the latest
        frame = pd.DataFrame(rng.normal(size=(len(IDS), len(names))), columns=names)
        frame.insert(0, "event_timestamp", T0 - pd.Timedelta(minutes=minutes) + pd.Timedelta(milliseconds=250))
        frame.insert(0, "instance_id", IDS)
        rows.append(frame)
    out = pd.concat(rows, ignore_index=True)
    out.loc[out.index[-1], names[0]] = np.nan  # a null value
    out.loc[out.index[-2], names[:3]] = 0.0
    return out


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_binary("redis-server")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(folder)]
    process = start(argv, log=folder / "redis.log")
    try:
        wait_for_port(port, process=process)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop(process)


def _filled(glue: FeatureStoreGlue) -> FeatureStoreGlue:
    glue.apply()
    glue.push_online(_features())
    return glue


def _assert_same(glue: FeatureStoreGlue, service: str | None = None) -> None:
    bulk = glue.online_features(ASKED, service=service)
    sdk = glue.online_features(ASKED, service=service, bulk=False)
    pd.testing.assert_frame_equal(bulk, sdk, check_exact=True)
    assert bulk["event_timestamp"].notna().sum() == len(ASKED) - 1


@pytest.mark.parametrize("online", ["sqlite", "redis"])
def test_bulk_read_equals_get_online_features(online: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_url") if online == "redis" else None
    glue = _filled(FeatureStoreGlue(tmp_path / "fs", online=online, redis_url=url))  # type: ignore[arg-type]
    _assert_same(glue)
    names = all_feature_names()
    chosen = [names[5], "task_count", names[0], names[2]] if "task_count" in names else [names[5], names[0]]
    _assert_same(glue, glue.register_service("v7", chosen))


def test_bulk_read_of_an_instance_lacking_a_feature_row(tmp_path: Path) -> None:
    import sqlite3

    glue = _filled(FeatureStoreGlue(tmp_path / "fs"))
    view = glue.definitions.views[0]
    table = f"{glue.config.project}_{view.name}"
    with sqlite3.connect(glue.workdir / "online.db") as conn:
        key = entity_keys([IDS[7]])[0]
        gone = conn.execute(
            f'DELETE FROM "{table}" WHERE entity_key = ? AND feature_name = ?', (key, view.features[1].name)
        )
        assert gone.rowcount == 1
    _assert_same(glue)
    assert np.isnan(glue.online_features([IDS[7]])[view.features[1].name].iloc[0])


def test_keys_and_values_decode_as_feast_writes_them() -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    ids = ["a", "vm-ünïcode", "x" * 300]
    slow = [
        serialize_entity_key(EntityKey(join_keys=["instance_id"], entity_values=[Value(string_val=i)])) for i in ids
    ]
    assert entity_keys(ids) == slow
    blobs = [Value(double_val=1.5).SerializeToString(), None, b"", Value(float_val=2.5).SerializeToString()]
    blobs.append(Value(int64_val=7).SerializeToString())
    np.testing.assert_array_equal(decode_values(blobs), [1.5, np.nan, np.nan, 2.5, 7.0])
