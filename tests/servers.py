"""Helpers for tests that need a real server: find its binary, pick a port, wait for it, stop it by PID.

A missing server skips the test with the reason on a developer's machine; under ``CI=true`` it fails,
because a skipped integration test in CI hides a missing install step.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip the test (or fail it under CI=true) because a real server or tool is missing."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}; .ci/run must install it", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str, *extra_dirs: str) -> str:
    """The path of an executable, searching PATH and ``extra_dirs``; skips (fails in CI) when absent."""
    found = shutil.which(name) or next((str(Path(d) / name) for d in extra_dirs if (Path(d) / name).exists()), None)
    if found is None:
        unavailable(f"'{name}' is not installed")
    assert found is not None
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something listens on 127.0.0.1:port; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")


def start(argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a server process with its output in ``log``."""
    handle = log.open("wb")
    return subprocess.Popen(list(argv), stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def stop(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Stop a server by its PID, killing it if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def _psql(sql: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
        timeout=60,
    )


@contextlib.contextmanager
def throwaway_postgres(prefix: str = "forewarn_test") -> Iterator[str]:
    """A new role and database on the machine's PostgreSQL 15, over TCP on 127.0.0.1; dropped afterwards.

    Starts the cluster if it is down (as root). Skips, or fails under CI=true, when PostgreSQL is missing.
    """
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        unavailable("PostgreSQL 15 (pg_ctlcluster, run as root) is not available")
    status = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    if "15 main" not in status:
        unavailable("no PostgreSQL 15 cluster 'main' (apt-get install -y postgresql)")
    if "online" not in status:  # the other pytest process of `make test` may be starting it too
        started = subprocess.run(["pg_ctlcluster", "15", "main", "start"], capture_output=True, text=True, timeout=120)
        status = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
        assert "online" in status, f"PostgreSQL 15 did not start: {started.stderr.strip()}"
    name, password = f"{prefix}_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    _psql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    _psql(f"CREATE DATABASE {name} OWNER {name}")
    port = next((line.split()[2] for line in status.splitlines() if line.startswith("15 ")), "5432")
    try:
        yield f"postgresql+psycopg://{name}:{password}@127.0.0.1:{port}/{name}"
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        _psql(f"DROP ROLE IF EXISTS {name}")
