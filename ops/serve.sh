#!/usr/bin/env bash
# `make serve` / `make serve-stop`: a thin wrapper over `forewarn serve start|stop|status` (forewarn/serve.py)
# run with this checkout's code. FOREWARN_BIN names the directory of python and prefect (default .venv/bin);
# every other setting (ports, state directory, fleet size and speed) is a FOREWARN_* variable, listed in
# docs/operations.md.
#
#   ops/serve.sh          start; PIDs go to .forewarn/serve.pids, logs to .forewarn/logs/
#   ops/serve.sh stop     stop all of it, flow-run processes included
#   ops/serve.sh status   which of them still run
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FOREWARN_BIN="${FOREWARN_BIN:-$ROOT/.venv/bin}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
case "${1:-start}" in
  start | stop | status) cd "$ROOT" && exec "$FOREWARN_BIN/python" -m forewarn.cli serve "${1:-start}" ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
