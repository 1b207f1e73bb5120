"""One redaction for everything Forewarn prints, logs, stores or hands to Prefect: no secret leaves the process.

:func:`redact` masks, in any text (a URL, an error message, a source name):

* the password of a URL's user info: ``postgresql://user:pw@host`` -> ``postgresql://user:***@host``;
* the value of a secret-looking parameter: ``?password=``, ``&token=``, ``api_key=``, ``,password=`` (Feast's
  Redis form), ``"secret": "..."`` (a JSON or dict repr);
* any literal occurrence of a secret held in a known setting (the password of FOREWARN_DATABASE_URL, of each
  URL in FOREWARN_SOURCES, AWS_SECRET_ACCESS_KEY, ...), also when a library decoded or re-quoted the URL.

Masking too much is harmless; masking too little is a leak, so the patterns are wide.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from urllib.parse import quote, unquote

MASK = "***"

SECRET_SETTINGS = (
    "FOREWARN_DATABASE_URL",
    "FOREWARN_FEAST_REGISTRY_URL",
    "FOREWARN_FEAST_REDIS_URL",
    "FOREWARN_SOURCES",
    "FOREWARN_FLEET_URL",
    "FOREWARN_AWS_ENDPOINT_URL",
    "PREFECT_API_URL",
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "OS_PASSWORD",
    "OS_APPLICATION_CREDENTIAL_SECRET",
)
"""Environment variables that are secrets, or URLs that may carry one."""

_WHOLE_SECRETS = frozenset(
    {"PREFECT_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "OS_PASSWORD", "OS_APPLICATION_CREDENTIAL_SECRET"}
)
"""Of :data:`SECRET_SETTINGS`, those whose whole value is the secret."""

_KEYS = (
    r"(?:password|passwd|pwd|secret|token|access_token|auth_token|session_token|client_secret|api[_-]?key|apikey"
    r"|access[_-]?key|secret[_-]?key|private[_-]?key|sig|signature|x-amz-signature|x-amz-credential|credential)"
)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*:)(?P<secret>[^@\s]*)@")
_PARAM = re.compile(
    r"(?P<head>(?:^|[?&,;\s{(])[\"']?" + _KEYS + r"[\"']?\s*[=:]\s*[\"']?)(?P<secret>[^&,;\s\"'}]+)", re.IGNORECASE
)
_MIN_LITERAL = 4
"""Shorter planted values are not masked as literals (they would mask ordinary words); URLs still are."""


def _url_secrets(text: str) -> set[str]:
    found = {m.group("secret") for m in _USERINFO.finditer(text)} | {m.group("secret") for m in _PARAM.finditer(text)}
    return {s for s in found if s and s != MASK}


def known_secrets() -> frozenset[str]:
    """The secrets held in the settings of :data:`SECRET_SETTINGS` now, as written, decoded and re-quoted."""
    return _secrets_of(tuple(os.environ.get(name, "") for name in SECRET_SETTINGS))


@functools.lru_cache(maxsize=8)
def _secrets_of(values: tuple[str, ...]) -> frozenset[str]:
    secrets: set[str] = set()
    for name, value in zip(SECRET_SETTINGS, values, strict=True):
        if not value:
            continue
        found = {value} if name in _WHOLE_SECRETS else _url_secrets(value)
        for secret in found:
            secrets |= {secret, unquote(secret), quote(unquote(secret), safe="")}
    return frozenset(s for s in secrets if len(s) >= _MIN_LITERAL)


@functools.lru_cache(maxsize=8)
def _longest_first(secrets: frozenset[str]) -> list[str]:
    return sorted(secrets, key=len, reverse=True)


def redact(text: object) -> str:
    """``text`` (any object, as ``str``) with every password, token and known secret replaced by ``***``."""
    out = str(text)
    if not out:
        return out
    out = _USERINFO.sub(lambda m: f"{m.group('head')}{MASK}@", out)
    out = _PARAM.sub(lambda m: f"{m.group('head')}{MASK}", out)
    for secret in _longest_first(known_secrets()):
        out = out.replace(secret, MASK)
    return out


class RedactingFilter(logging.Filter):
    """Redacts a log record before any handler writes or ships it: message, arguments and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction() -> None:
    """Put a :class:`RedactingFilter` on every logging handler now configured (Prefect's console and API
    handlers included), once; call it after logging is set up."""
    loggers = [
        logging.getLogger(),
        *(v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
