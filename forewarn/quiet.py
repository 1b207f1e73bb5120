"""Library notices stay out of an operator's terminal and Prefect's logs; Forewarn's own warnings do not.

Libraries' DeprecationWarning, PendingDeprecationWarning and FutureWarning are for their developers: the CLI
and the flows ignore them where they are raised, that is when the warning is attributed to a module outside
Forewarn's packages (:data:`OURS`). A library warning about how Forewarn calls it is attributed to our
module (its ``stacklevel`` points there) and still shows: that one is ours to fix, and the tests fail on it
(``filterwarnings`` in pyproject.toml). Prefect routes warnings into logging (``py.warnings``) and its
threads' ``catch_warnings`` blocks can bring a warning through anyway (``warnings`` filters are not
thread-safe), so the ``py.warnings`` logger also drops those raised inside installed packages.
"""

from __future__ import annotations

import logging
import warnings

KINDS = ("DeprecationWarning", "FutureWarning", "PendingDeprecationWarning")
PACKAGES = ("site-packages", "dist-packages")
OURS = ("forewarn", "adapters", "flows")
LIBRARY = rf"(?!(?:{'|'.join(OURS)})(?:\.|$))"
"""A module name outside Forewarn's packages (the ``module`` regex of :func:`warnings.filterwarnings`)."""
_CATEGORIES: tuple[type[Warning], ...] = (DeprecationWarning, FutureWarning, PendingDeprecationWarning)


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


def quiet_library_warnings() -> None:
    """Ignore libraries' deprecation notices where they are raised, and drop those logging lets through."""
    for category in _CATEGORIES:
        warnings.filterwarnings("ignore", category=category, module=LIBRARY)
    quiet_library_notices()
