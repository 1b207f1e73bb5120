#!/usr/bin/env bash
# The pytest tier of `make test` in two processes at once: the tests that start a whole serve (marker `serve`:
# a Prefect server, a worker and the fleet, mostly waiting on schedules) beside all the others (mostly CPU).
# On two cores this takes about the longer of the two instead of their sum. The serve process writes to its
# own log, printed when both are done; the run fails if either fails. Ctrl-C (or CI's timeout) interrupts
# both with SIGINT, so their fixtures still stop every server they started.
# Usage: scripts/run-tests.sh [pytest args for both]
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${BIN:-.venv/bin}"
mkdir -p .forewarn/prefect-serve
log=.forewarn/test-serve.log
PREFECT_HOME="$PWD/.forewarn/prefect-serve" "$bin/pytest" -q -p no:cacheprovider -m serve --durations=8 "$@" \
    >"$log" 2>&1 &
serve_pid=$!
trap 'kill -INT "$serve_pid" 2>/dev/null; wait "$serve_pid" 2>/dev/null' INT TERM
"$bin/pytest" -q -m "not serve" --durations=15 "$@"
rest=$?
wait "$serve_pid"
serve=$?
trap - INT TERM
echo "--- the serve tests (in their own pytest process; log $log) ---"
cat "$log"
if [ "$rest" -ne 0 ] || [ "$serve" -ne 0 ]; then
    echo "run-tests: failed (others: exit $rest, serve tests: exit $serve)" >&2
    exit 1
fi
