"""Line grammars of the supported log formats, and the severity and category rules.

Each parser turns one line into a :class:`Parsed` or raises :class:`Unparsed` with the reason.
Category rules are keyword rules tried in the order of :data:`CATEGORIES`; the first that matches wins, and
a line no rule matches falls back on its component (``KERNEL`` -> kernel) or ``other``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from zoneinfo import ZoneInfo

CATEGORIES = ("disk", "memory", "network", "kernel", "application", "other")
SEVERITIES = ("debug", "info", "warning", "error", "critical")

_RULES = {
    "disk": r"\bdisks?\b|\bsd[a-z]\d*\b|scsi|\bata\d*\b|i/o error|\bext[234]\b|\bxfs\b|file ?system|\bmount|lustre"
    r"|\braid|\bsmart\b|\bblocks?\b|nvme|storage|hard drive|\bhdd\b|\bssd\b|\bbad sector",
    "memory": r"memory|\becc\b|dimm|\boom\b|page alloc|\bddr|parity|\btlb\b|\bswap",
    "network": r"network|\beth\d*\b|\blink\b|\btcp\b|\budp\b|socket|connect|unreachable|packet|\bnic\b|\bdns\b"
    r"|torus|ethernet|infiniband|\bib\d*\b|myrinet|\bnet\.|\bniff\b",
    "kernel": r"kernel|panic|\boops\b|segfault|call trace|\bbug:|watchdog|\bcpu\b|machine check|\bmce\b|interrupt"
    r"|\brts\b|lockup",
    "application": r"exception|traceback|\bhttps?\b|status:|request|\bapp\b|application|service|\bjava\b|python"
    r"|\bnova\b|hadoop|\bjob\b|\btask\b|\breq-",
}
_RULE_PATTERNS = [(name, re.compile(pattern, re.IGNORECASE)) for name, pattern in _RULES.items()]
_HINTS = {"kernel": "kernel", "app": "application", "linkcard": "network", "hardware": "other", "unix.hw": "other"}

_LEVELS = {
    "debug": "debug",
    "info": "info",
    "notice": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "err": "error",
    "severe": "error",
    "fatal": "critical",
    "failure": "critical",
    "critical": "critical",
    "crit": "critical",
    "alert": "critical",
    "emerg": "critical",
}
_PRI_SEVERITY = ("critical", "critical", "critical", "error", "warning", "info", "info", "debug")
_KEYWORD_SEVERITY = [
    ("critical", re.compile(r"panic|fatal|critical|emerg|terminated|machine check", re.IGNORECASE)),
    ("error", re.compile(r"error|fail|exception|unable|cannot|refused|timed? ?out|unavailable|abort", re.IGNORECASE)),
    ("warning", re.compile(r"warn|retry|degraded|deprecated", re.IGNORECASE)),
]


MARKER = "journal marker line"
"""The reason given for a ``-- Logs begin ...`` line: not an event, and not a fault of the file either."""


class Unparsed(Exception):
    """The line does not fit the format; the message is the reason."""


@dataclass(frozen=True)
class Parsed:
    instance_id: str
    timestamp: datetime
    severity: str
    message: str
    hint: str = ""


def categorise(message: str, hint: str = "") -> str:
    """The category of a message by keyword rules, else by its component ``hint``, else ``other``."""
    for name, pattern in _RULE_PATTERNS:
        if pattern.search(message):
            return name
    return _HINTS.get(hint.lower(), "other")


def severity_of(level: str | None, message: str) -> str:
    """Severity from a level field when it has one, else from keywords in the message."""
    if level:
        known = _LEVELS.get(level.lower())
        if known:
            return known
    for name, pattern in _KEYWORD_SEVERITY:
        if pattern.search(message):
            return name
    return "info"


def _strptime(text: str, fmt: str, zone: timezone | ZoneInfo) -> datetime:
    try:
        return datetime.strptime(text, fmt).replace(tzinfo=zone).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Unparsed(f"bad timestamp '{text}'") from None


def _epoch(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(text), UTC)
    except (ValueError, OverflowError, OSError):
        raise Unparsed(f"bad timestamp '{text}'") from None


def _match(pattern: re.Pattern[str], line: str, name: str) -> re.Match[str]:
    found = pattern.match(line)
    if found is None:
        raise Unparsed(f"not a {name} line")
    return found


_RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) \S+ \S+ (?:-|(?:\[.*?\])+) ?(?P<msg>.*)$"
)
_RFC3164 = re.compile(
    r"^(?:<(?P<pri>\d{1,3})>)?(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<host>\S+) "
    r"(?P<tag>[^:\[\s]+)(?:\[\d+\])?: ?(?P<msg>.*)$"
)
_JOURNALD = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)) (?P<host>\S+) "
    r"(?P<tag>[^:\[\s]+)(?:\[\d+\])?: ?(?P<msg>.*)$"
)
_BGL = re.compile(
    r"^(?P<label>\S+) (?P<epoch>\d{9,11}) \d{4}\.\d\d\.\d\d (?P<node>\S+) \d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d\.\d+ \S+ "
    r"(?P<type>\S+) (?P<component>\S+) (?P<level>[A-Z]+) ?(?P<msg>.*)$"
)
_BGL_SHORT = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d\.\d+) (?P<node>\S+) (?P<type>\S+) (?P<component>\S+) "
    r"(?P<level>[A-Z]+) ?(?P<msg>.*)$"
)
_HDFS = re.compile(r"^(?P<date>\d{6}) (?P<time>\d{6}) \d+ (?P<level>[A-Z]+) (?P<component>[^:\s]+): (?P<msg>.*)$")
_OPENSTACK = re.compile(
    r"^(?P<record>\S+) (?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \d+ (?P<level>[A-Z]+) (?P<component>\S+) "
    r"(?:\[[^\]]*\] )?(?P<msg>.*)$"
)
_OS_INSTANCE = re.compile(r"\[instance: ([0-9a-f-]{36})\]")
_HPC = re.compile(r"^\d+ (?P<node>\S+) (?P<component>\S+) (?P<state>\S+) (?P<epoch>\d{9,11}) -?\d+ (?P<msg>.*)$")
_THUNDERBIRD = re.compile(
    r"^(?P<label>\S+) (?P<epoch>\d{9,11}) \d{4}\.\d\d\.\d\d (?P<node>\S+) [A-Z][a-z]{2} +\d+ \d\d:\d\d:\d\d \S+ "
    r"(?P<msg>.*)$"
)


@dataclass(frozen=True)
class Context:
    """What a line does not say: the year (RFC 3164), the zone of naive times, the instance to use."""

    year: int
    zone: timezone | ZoneInfo
    default_instance: str


def syslog(line: str, ctx: Context) -> Parsed:
    found = _RFC5424.match(line)
    if found is not None:
        if found["ts"] == "-":
            raise Unparsed("RFC 5424 line without a timestamp")
        try:
            stamp = datetime.fromisoformat(found["ts"].replace("Z", "+00:00")).astimezone(UTC)
        except (ValueError, OverflowError):
            raise Unparsed(f"bad timestamp '{found['ts']}'") from None
        severity = _PRI_SEVERITY[int(found["pri"]) % 8]
        return Parsed(found["host"], stamp, severity, found["msg"], found["app"])
    found = _match(_RFC3164, line, "syslog (RFC 3164 or 5424)")
    stamp = _strptime(f"{ctx.year} {found['ts']}", "%Y %b %d %H:%M:%S", ctx.zone)
    pri = found["pri"]
    severity = _PRI_SEVERITY[int(pri) % 8] if pri else severity_of(None, found["msg"])
    return Parsed(found["host"], stamp, severity, found["msg"], found["tag"])


def journald(line: str, ctx: Context) -> Parsed:
    if line.startswith("-- "):
        raise Unparsed(MARKER)
    found = _match(_JOURNALD, line, "journalctl -o short-iso")
    text = found["ts"].replace(",", ".")
    if re.search(r"[+-]\d{4}$", text):
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Unparsed(f"bad timestamp '{found['ts']}'") from None
    return Parsed(found["host"], stamp, severity_of(None, found["msg"]), found["msg"], found["tag"])


_PACIFIC = ZoneInfo("America/Los_Angeles")


def bgl(line: str, ctx: Context) -> Parsed:
    """Loghub BGL lines (UTC epoch), or the label-less CFDR lines whose local time is LLNL's (Pacific)."""
    found = _BGL.match(line)
    if found is not None:
        stamp = _epoch(found["epoch"])
    else:
        found = _match(_BGL_SHORT, line, "BGL")
        stamp = _strptime(found["time"], "%Y-%m-%d-%H.%M.%S.%f", _PACIFIC)
    return Parsed(found["node"], stamp, severity_of(found["level"], found["msg"]), found["msg"], found["component"])


def hdfs(line: str, ctx: Context) -> Parsed:
    """HDFS lines name no host: every event goes to ``ctx.default_instance``."""
    found = _match(_HDFS, line, "HDFS")
    stamp = _strptime(f"{found['date']} {found['time']}", "%y%m%d %H%M%S", ctx.zone)
    severity = severity_of(found["level"], found["msg"])
    return Parsed(ctx.default_instance, stamp, severity, found["msg"], found["component"])


def openstack(line: str, ctx: Context) -> Parsed:
    """The Nova instance UUID (``[instance: ...]``) when the line names one, else the service (``nova-api``)."""
    found = _match(_OPENSTACK, line, "OpenStack")
    stamp = _strptime(found["ts"], "%Y-%m-%d %H:%M:%S.%f", ctx.zone)
    instance = _OS_INSTANCE.search(found["msg"])
    owner = instance.group(1) if instance else found["record"].split(".log")[0]
    return Parsed(owner, stamp, severity_of(found["level"], found["msg"]), found["msg"], found["component"])


def hpc(line: str, ctx: Context) -> Parsed:
    found = _match(_HPC, line, "HPC")
    text = f"{found['state']} {found['msg']}"
    return Parsed(found["node"], _epoch(found["epoch"]), severity_of(None, text), found["msg"], found["component"])


def thunderbird(line: str, ctx: Context) -> Parsed:
    found = _match(_THUNDERBIRD, line, "Thunderbird")
    return Parsed(found["node"], _epoch(found["epoch"]), severity_of(None, found["msg"]), found["msg"])


PARSERS: dict[str, Callable[[str, Context], Parsed]] = {
    "syslog": syslog,
    "journald": journald,
    "bgl": bgl,
    "hdfs": hdfs,
    "openstack": openstack,
    "hpc": hpc,
    "thunderbird": thunderbird,
}
"""Format name to line parser; ``auto`` tries them in this order."""
