"""Typed errors for openstacksdk calls, and the server fields Forewarn reads.

Error mapping: 404 -> ``NotFoundError``; 409 (the server is busy: a task in progress, a migration running),
429, 5xx, time-outs and connection errors -> ``TransientAdapterError``; other 4xx (a bad target host, a
forbidden call) -> ``AdapterError`` with Nova's own message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from keystoneauth1 import exceptions as ksa
from openstack import exceptions as sdk

from forewarn.errors import AdapterError, NotFoundError, TransientAdapterError

T = TypeVar("T")


def translate(error: Exception, what: str) -> AdapterError:
    if isinstance(error, sdk.NotFoundException):
        return NotFoundError(f"{what}: {_detail(error)}")
    if isinstance(error, sdk.HttpException):
        status = int(error.status_code or 0)
        if status in (409, 429) or status >= 500:
            return TransientAdapterError(f"{what}: HTTP {status}: {_detail(error)}")
        return AdapterError(f"{what}: HTTP {status}: {_detail(error)}")
    if isinstance(error, sdk.ResourceTimeout | ksa.ConnectFailure | ksa.ConnectTimeout | ksa.RequestTimeout):
        return TransientAdapterError(f"{what}: {type(error).__name__}: cannot reach or wait for the cloud")
    return AdapterError(f"{what}: {type(error).__name__}: {error}")


def _detail(error: sdk.HttpException) -> str:
    return str(error.details or error.message or "").strip()


def guarded(what: str, fn: Callable[[], T]) -> T:
    """``fn()`` with openstacksdk and keystoneauth errors translated."""
    try:
        return fn()
    except (sdk.SDKException, ksa.ClientException) as error:
        raise translate(error, what) from None


def host_of(server: Any) -> str | None:
    return getattr(server, "compute_host", None) or getattr(server, "hypervisor_hostname", None)


def capacity_of(server: Any) -> tuple[float, float]:
    """vCPUs and memory (GiB) from the flavor embedded in the server (microversion 2.47 and later)."""
    flavor = server.flavor
    vcpus = getattr(flavor, "vcpus", None) or 1
    ram = getattr(flavor, "ram", None) or 1024
    return float(vcpus), float(ram) / 1024.0
