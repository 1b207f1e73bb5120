"""The real-Nova tier: only collected in the Nova environment (scripts/nova-env.sh), as its own pytest run.

Nova's functional-test harness (eventlet, its own SQLAlchemy pin) cannot share a process with the rest of the
suite, so the main run skips this folder and ``make test`` runs it separately (the paste config is set here):
``.venv-nova/bin/python -m pytest tests/nova -p no:cacheprovider``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

if importlib.util.find_spec("nova") is None:
    collect_ignore_glob = ["test_*.py"]  # the main environment: this tier runs in .venv-nova
else:
    paste = Path(sys.prefix) / "etc" / "nova" / "api-paste.ini"
    os.environ.setdefault("OS_WSGI__API_PASTE_CONFIG", str(paste))
