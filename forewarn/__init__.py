"""Forewarn: predict which virtual machines will fail and act before they do.

Importing Forewarn turns off the usage analytics of the libraries it drives (Prefect, Great Expectations,
Feast) unless the environment already says otherwise, so nothing it starts reaches an outside host, and
keeps those libraries' deprecation notices out of an operator's terminal and logs (:mod:`forewarn.quiet`):
first, before any of them is imported, so that a flow run's imports print none either.
"""

import os

from forewarn.quiet import quiet_library_warnings

__version__ = "0.1.0"

NO_ANALYTICS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "FEAST_USAGE": "False",
}
for _name, _value in NO_ANALYTICS.items():
    os.environ.setdefault(_name, _value)
quiet_library_warnings()
