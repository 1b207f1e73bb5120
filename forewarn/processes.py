"""Background processes that can all be found again and stopped: what ``forewarn serve`` starts.

Every process is started in its own session (so its PID is also its process group id) with a *marker*
variable in its environment. Children inherit the marker, so the processes a process spawned in sessions
of their own (Prefect's flow-run processes, for one) are still found, by scanning ``/proc``, after their
parent is gone. Only processes of this user are visible there, and only those carrying the marker of this
state directory are ever signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MARKER = "FOREWARN_SERVE_ID"
"""Environment variable carrying the state directory of the serve that started a process."""


@dataclass(frozen=True)
class Recorded:
    """A process as the PID file records it: its role and PID (its process group id too)."""

    name: str
    pid: int


def launch(
    name: str, argv: Sequence[str], *, env: Mapping[str, str], log: Path, pidfile: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with its output in ``log``, and append its PID to ``pidfile``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    with pidfile.open("a", encoding="utf-8") as out:
        out.write(f"{name} {process.pid}\n")
    return process


def read_pidfile(pidfile: Path) -> list[Recorded]:
    """The processes recorded in ``pidfile``, in the order they were started (none when it is absent)."""
    if not pidfile.exists():
        return []
    found = []
    for line in pidfile.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            found.append(Recorded(parts[0], int(parts[1])))
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` in the process tree."""
    children: dict[int, list[int]] = {}
    for other in _all_pids():
        parent = _parent(other)
        if parent is not None:
            children.setdefault(parent, []).append(other)
    found, stack = [], list(children.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children.get(child, []))
    return found


def _ancestors() -> set[int]:
    """This process and its ancestors: never signalled, even when they carry the marker."""
    mine, pid = set(), os.getpid()
    while pid and pid not in mine:
        mine.add(pid)
        pid = _parent(pid) or 0
    return mine


def carries(pid: int, identity: str) -> bool:
    """True when ``pid`` runs with ``MARKER=identity`` in its environment (a reused PID does not)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER}={identity}".encode() in environ.split(b"\0") and alive(pid)


def marked(identity: str) -> list[int]:
    """Live processes whose environment carries ``MARKER=identity`` (this process and its ancestors left out)."""
    spare = _ancestors()
    return [pid for pid in _all_pids() if pid not in spare and carries(pid, identity)]


def mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (this process and its ancestors left out)."""
    spare = _ancestors()
    found = []
    for pid in _all_pids():
        if pid in spare:
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and alive(pid):
            found.append(pid)
    return found


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (started in its own session), else to ``pid`` alone.

    A process whose group it does not lead (a child that stayed in its parent's group) is signalled by PID, so
    a group this process belongs to is never hit.
    """
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        if group == pid and group != os.getpgid(0):
            os.killpg(group, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait up to ``timeout`` seconds for every PID to exit; the ones still running."""
    left = [pid for pid in pids if alive(pid)]
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [pid for pid in left if alive(pid)]
    return left


def terminate(pids: Sequence[int], *, sig: int = signal.SIGTERM, grace: float = 15.0) -> list[int]:
    """Send ``sig`` to each PID's group, wait ``grace`` seconds, then SIGKILL the groups still running.

    Returns the PIDs that were killed (empty when all stopped in time).
    """
    for pid in pids:
        if alive(pid):
            signal_group(pid, sig)
    left = wait_gone(pids, grace)
    for pid in left:
        signal_group(pid, signal.SIGKILL)
    wait_gone(left, 5.0)
    return left
