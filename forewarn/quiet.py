"""Library notices stay out of an operator's terminal and Prefect's logs.

Libraries' DeprecationWarning and FutureWarning are for their developers. The CLI ignores both categories,
but Prefect routes warnings into logging (``py.warnings``) and its threads' ``catch_warnings`` blocks can
bring a warning through anyway (``warnings`` filters are not thread-safe), so the ``py.warnings`` logger also
drops those raised inside installed packages. Forewarn's own warnings, and every other kind, still show.
"""

from __future__ import annotations

import logging

KINDS = ("DeprecationWarning", "FutureWarning", "PendingDeprecationWarning")
PACKAGES = ("site-packages", "dist-packages")


class LibraryNotices(logging.Filter):
    """Drops a ``py.warnings`` record of a deprecation notice raised in an installed package."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        head = text.split("\n", 1)[0]
        return not (any(p in head for p in PACKAGES) and any(f": {k}:" in head for k in KINDS))


def quiet_library_notices() -> None:
    """Put :class:`LibraryNotices` on the ``py.warnings`` logger, once."""
    logger = logging.getLogger("py.warnings")
    if not any(isinstance(f, LibraryNotices) for f in logger.filters):
        logger.addFilter(LibraryNotices())
