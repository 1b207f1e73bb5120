"""Telemetry from Prometheus (node_exporter) through the HTTP API ``/api/v1/query_range``.

Each Forewarn metric is one PromQL query (``queries.yaml`` beside this module holds the defaults) that
returns one series per ``instance`` label; that label becomes ``instance_id`` (map ``host:9100`` to fleet
ids with :func:`forewarn.telemetry.normalise.normalise`). Rows are the evaluation instants
``start, start + step, ...`` before ``end``, with ``start`` rounded up to the step grid (epoch-aligned).
Connection errors, time-outs and 5xx answers are retried with backoff; a query Prometheus rejects is an
:class:`InputError` naming the metric.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import pandas as pd
import requests
import yaml
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from forewarn.errors import InputError, TransientAdapterError
from forewarn.redact import redact
from forewarn.telemetry.base import check_step, utc

DEFAULT_QUERIES_PATH = Path(__file__).with_name("queries.yaml")
MAX_POINTS = 10_000
"""Points per series per request; Prometheus refuses more than 11,000."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Retryable(Exception):
    """A connection error, time-out or 5xx: worth another attempt."""


def _mapping_lines(text: str, path: Path) -> dict[str, int]:
    """The 1-based line of each top-level key, for error messages."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"not valid YAML: {reason}", file=path, row=line) from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise InputError("must be a mapping of metric name to PromQL query", file=path, row=node.start_mark.line + 1)
    return {str(key.value): key.start_mark.line + 1 for key, _ in node.value}


def load_queries(path: str | Path) -> dict[str, str | None]:
    """Read a YAML mapping of metric name to PromQL; ``null`` disables a default metric.

    Raises:
        InputError: naming the file, line and key of the first problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot be read: {exc.strerror}", file=path) from None
    lines = _mapping_lines(text, path)
    data = yaml.safe_load(text) or {}
    queries: dict[str, str | None] = {}
    for key, value in data.items():
        name, line = str(key), lines.get(str(key))
        if not _NAME.match(name):
            raise InputError("metric names are letters, digits and _", file=path, row=line, field=name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise InputError("must be a PromQL query string or null", file=path, row=line, field=name)
        queries[name] = value.strip() if isinstance(value, str) else None
    return queries


def default_queries() -> dict[str, str]:
    """The shipped PromQL for node_exporter metrics (``queries.yaml``)."""
    return {k: v for k, v in load_queries(DEFAULT_QUERIES_PATH).items() if v}


class PrometheusSource:
    """Reads Forewarn metrics from a Prometheus server.

    Args:
        url: the server's base URL, such as ``http://127.0.0.1:9090``; ``user:password@`` in it is taken out
            of ``self.url`` and sent as basic auth, so no message or stored name ever carries it.
        queries: per-metric PromQL overriding the defaults; a ``None`` value drops that metric.
        timeout: seconds per HTTP request.
        attempts: tries per request on connection errors and 5xx answers.
    """

    def __init__(
        self,
        url: str,
        *,
        queries: Mapping[str, str | None] | None = None,
        timeout: float = 10,
        attempts: int = 3,
    ) -> None:
        parts = urlsplit(url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = f"{parts.scheme}://{parts.hostname or ''}" if parts.scheme else _short(url.split("@")[-1], 80)
            raise InputError(f"'{shown}' is not an http(s) URL such as http://127.0.0.1:9090", field="url")
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        self.url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        merged: dict[str, str | None] = {**default_queries(), **dict(queries or {})}
        self.queries = {name: query for name, query in merged.items() if query}
        self.timeout = timeout
        self.attempts = attempts
        self.missing_metrics: list[str] = []
        self._session = requests.Session()
        if parts.username is not None:
            self._session.auth = (unquote(parts.username), unquote(parts.password or ""))

    def _get(self, params: dict[str, str]) -> requests.Response:
        @retry(
            retry=retry_if_exception_type(_Retryable),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.2, max=2),
            reraise=True,
        )
        def attempt() -> requests.Response:
            try:
                response = self._session.get(f"{self.url}/api/v1/query_range", params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise _Retryable(redact(f"{type(exc).__name__}: {exc}")) from exc
            if response.status_code >= 500:
                raise _Retryable(f"HTTP {response.status_code}: {response.text[:200]}")
            return response

        try:
            return attempt()
        except _Retryable as exc:
            raise TransientAdapterError(
                redact(f"Prometheus at {self.url} failed {self.attempts} times: {exc}")
            ) from None

    def query_range(self, metric: str, query: str, start: float, end: float, step_seconds: int) -> list[dict[str, Any]]:
        """The raw ``matrix`` result of one query between two Unix times (both inclusive).

        Raises:
            InputError: one line when the answer is not a Prometheus range-query answer.
        """
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_seconds}s"}
        response = self._get(params)
        try:
            body = response.json()
        except ValueError:
            raise InputError(f"Prometheus answered HTTP {response.status_code} without JSON", field=metric) from None
        if not isinstance(body, dict):
            raise InputError(f"Prometheus answered a JSON {type(body).__name__}, not an object", field=metric)
        if response.status_code != 200 or body.get("status") != "success":
            reason = _short(body.get("error", f"HTTP {response.status_code}"))
            raise InputError(f"Prometheus rejected the query {query!r}: {reason}", field=metric)
        data = body.get("data")
        if not isinstance(data, dict):
            raise InputError(f"Prometheus answered 'data: {_short(data)}', not an object", field=metric)
        if data.get("resultType") != "matrix":
            raise InputError(f"expected a range vector result, got {_short(data.get('resultType'))}", field=metric)
        result = data.get("result", [])
        if not isinstance(result, list) or not all(isinstance(item, dict) for item in result):
            raise InputError("Prometheus answered a 'result' that is not a list of series", field=metric)
        for item in result:
            labels = item.get("metric", {})
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise InputError(f"a series' labels are {_short(labels, 60)}, not names to text", field=metric)
            _points(item.get("values", []), metric)
        return result

    def _series(self, metric: str, result: list[dict[str, Any]]) -> pd.Series:
        seen: set[str] = set()
        pieces = []
        for series in result:
            labels = series.get("metric", {})
            instance = labels.get("instance") if isinstance(labels, dict) else None
            if instance is None:
                raise InputError(
                    "query returns a series without an 'instance' label; use 'by (instance)'", field=metric
                )
            if instance in seen:
                raise InputError(
                    f"query returns several series for instance {instance}; aggregate by (instance)", field=metric
                )
            seen.add(str(instance))
            values = _points(series.get("values", []), metric)
            index = pd.MultiIndex.from_arrays(
                [[str(instance)] * len(values), pd.to_datetime([t for t, _ in values], unit="s", utc=True)],
                names=["instance_id", "timestamp"],
            )
            pieces.append(pd.Series([v if math.isfinite(v) else math.nan for _, v in values], index=index))
        return pd.concat(pieces).rename(metric) if pieces else pd.Series(dtype=float, name=metric)

    def read(
        self,
        start: datetime,
        end: datetime,
        *,
        step_minutes: int,
        instance_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Telemetry in ``[start, end)`` evaluated every ``step_minutes`` (see TelemetrySource).

        Metrics whose query returns no series are left out and listed in ``self.missing_metrics``.
        """
        check_step(step_minutes)
        step = step_minutes * 60
        first = math.ceil(utc(start, name="start").timestamp() / step) * step
        stop = utc(end, name="end").timestamp() - 1e-3
        columns: list[pd.Series] = []
        self.missing_metrics = []
        for metric, query in self.queries.items():
            result: list[dict[str, Any]] = []
            chunk_start = float(first)
            while chunk_start <= stop:
                chunk_end = min(stop, chunk_start + step * (MAX_POINTS - 1))
                result += self.query_range(metric, query, chunk_start, chunk_end, step)
                chunk_start = chunk_start + step * MAX_POINTS
            series = self._series(metric, _merge_chunks(result))
            if series.empty:
                self.missing_metrics.append(metric)
            else:
                columns.append(series)
        if not columns:
            return pd.DataFrame(
                {"instance_id": pd.Series(dtype=str), "timestamp": pd.Series(dtype="datetime64[ns, UTC]")}
            )
        frame = pd.concat(columns, axis=1).reset_index()
        if instance_ids is not None:
            frame = frame[frame["instance_id"].isin(list(instance_ids))]
        frame["timestamp"] = frame["timestamp"].astype("datetime64[ns, UTC]")
        return frame.sort_values(["instance_id", "timestamp"], kind="stable").reset_index(drop=True)


LATEST = 9.2e9
"""The latest Unix time a sample may carry (pandas' last nanosecond timestamp is in 2262)."""


def _short(value: object, limit: int = 200) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."


def _points(values: object, metric: str) -> list[tuple[float, float]]:
    """``[[unix time, "value"], ...]`` as floats; a point that is not such a pair is one InputError line (the
    message says "(time, value)": square brackets would read as markup where the CLI prints it)."""
    if not isinstance(values, list):
        kind = type(values).__name__
        raise InputError(f"a series' values are {kind}, not a list of (time, value) pairs", field=metric)
    out = []
    for point in values:
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise InputError(f"a sample is {_short(point, 60)}, not a (time, value) pair", field=metric)
        try:
            when, value = float(point[0]), float(point[1])
        except (TypeError, ValueError):
            raise InputError(f"a sample is {_short(point, 60)}: time and value must be numbers", field=metric) from None
        if not 0 <= when < LATEST:
            raise InputError(f"a sample's time {when:g} is not a Unix time before the year 2262", field=metric)
        out.append((when, value))
    return out


def _merge_chunks(result: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join the values of one series split over several requests (same label set)."""
    merged: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for series in result:
        key = tuple(sorted(series.get("metric", {}).items()))
        if key in merged:
            merged[key]["values"] = merged[key]["values"] + series.get("values", [])
        else:
            merged[key] = {"metric": dict(key), "values": list(series.get("values", []))}
    return list(merged.values())
