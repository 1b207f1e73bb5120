"""The fleet from ``instances.csv``: each row an :class:`~forewarn.schemas.Instance`.

Columns named like Instance fields (``cpu_capacity``, ``memory_capacity``, ``group``, ``zone``, ``state``,
``boot_time``) fill those fields; any other column becomes a tag. A bad value is a DatasetError naming
the file, line and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from forewarn.dataset import read_instances
from forewarn.errors import DatasetError
from forewarn.schemas import Instance

_FIELDS = set(Instance.model_fields) - {"instance_id", "tags"}


def _instance(record: dict[str, Any]) -> Instance:
    values: dict[str, Any] = {"instance_id": record["instance_id"], "tags": {}}
    for key, value in record.items():
        if key == "instance_id" or value is None or (not isinstance(value, str) and pd.isna(value)):
            continue
        if key in _FIELDS:
            values[key] = value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
        else:
            values["tags"][str(key)] = str(value)
    return Instance.model_validate(values)


def read_fleet(path: Path) -> list[Instance]:
    """The instances of ``instances.csv`` (or parquet)."""
    frame = read_instances(path)
    fleet = []
    for position, record in enumerate(frame.to_dict("records")):
        try:
            fleet.append(_instance(record))
        except ValidationError as exc:
            error = exc.errors()[0]
            column = str(error["loc"][0]) if error["loc"] else None
            raise DatasetError(error["msg"], file=path, row=position + 2, field=column) from None
    return fleet
