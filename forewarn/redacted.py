"""``Redacted``: a pydantic string field redacted as it is set (source names, error notes, quarantine files).

Apart from :mod:`forewarn.redact` so that the command line's error handling imports no pydantic.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from forewarn.redact import redact

Redacted = Annotated[str, AfterValidator(redact)]
