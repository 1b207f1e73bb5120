#!/usr/bin/env bash
# `make serve`: a Prefect server on 127.0.0.1, the forewarn-process work pool, every deployment of
# prefect.yaml, a process worker and (with FOREWARN_METRICS_PORT) the metrics exporter.
#
#   ops/serve.sh          start them; PIDs go to .forewarn/serve.pids, logs to .forewarn/logs/
#   ops/serve.sh stop     stop them (the worker on SIGINT: it ignores SIGTERM while it has runs)
#   ops/serve.sh status   which of them still run
#
# Settings: FOREWARN_PREFECT_PORT (4200), PREFECT_HOME (.forewarn/prefect), PREFECT_API_DATABASE_CONNECTION_URL
# (SQLite under PREFECT_HOME when unset; postgresql+asyncpg://... for Postgres), FOREWARN_METRICS_PORT (off),
# FOREWARN_SERVE_WORKER (1; 0 deploys without starting a worker). Usage analytics are off.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${FOREWARN_BIN:-$ROOT/.venv/bin}"
STATE="${FOREWARN_SERVE_STATE:-$ROOT/.forewarn}"
PIDS="$STATE/serve.pids"
LOGS="$STATE/logs"
PORT="${FOREWARN_PREFECT_PORT:-4200}"
POOL=forewarn-process

export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=false FEAST_USAGE=False
export PREFECT_HOME="${PREFECT_HOME:-$ROOT/.forewarn/prefect}"
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"
export PREFECT_UI_API_URL="$PREFECT_API_URL"
export FOREWARN_PROJECT_DIR="$ROOT"
export MPLBACKEND=Agg

stop() {
  [[ -f "$PIDS" ]] || { echo "nothing to stop ($PIDS not found)"; return 0; }
  # Reverse order: worker and exporter before the server they talk to.
  tac "$PIDS" | while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then
      if [[ "$name" == worker ]]; then kill -INT "$pid"; else kill -TERM "$pid"; fi
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then echo "$name ($pid) did not stop in 20 s; killing it"; kill -KILL "$pid"; fi
      echo "stopped $name ($pid)"
    fi
  done
  rm -f "$PIDS"
}

status() {
  [[ -f "$PIDS" ]] || { echo "not serving"; return 1; }
  while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then echo "$name $pid running"; else echo "$name $pid stopped"; fi
  done <"$PIDS"
}

wait_healthy() {
  "$BIN/python" - "$PREFECT_API_URL/health" <<'EOF'
import sys, time, urllib.request
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        time.sleep(0.5)
sys.exit(f"the Prefect server did not answer {sys.argv[1]} within 120 s")
EOF
}

launch() {  # name, then the command: started in the background, its PID recorded
  local name="$1"; shift
  nohup "$@" >"$LOGS/$name.log" 2>&1 &
  echo "$name $!" >>"$PIDS"
}

start() {
  if [[ -f "$PIDS" ]] && status >/dev/null; then
    echo "already serving (see $PIDS); run '$0 stop' first"; exit 1
  fi
  mkdir -p "$LOGS" "$PREFECT_HOME"; rm -f "$PIDS"
  echo "database: ${PREFECT_API_DATABASE_CONNECTION_URL:+Postgres/URL from PREFECT_API_DATABASE_CONNECTION_URL}${PREFECT_API_DATABASE_CONNECTION_URL:-SQLite under $PREFECT_HOME}"
  launch server "$BIN/prefect" server start --host 127.0.0.1 --port "$PORT"
  wait_healthy || { stop; echo "server log: $LOGS/server.log"; exit 1; }
  cd "$ROOT"
  "$BIN/prefect" --no-prompt work-pool create "$POOL" --type process --overwrite >"$LOGS/deploy.log" 2>&1
  "$BIN/prefect" --no-prompt deploy --all --prefect-file "$ROOT/prefect.yaml" >>"$LOGS/deploy.log" 2>&1 \
    || { echo "prefect deploy failed; see $LOGS/deploy.log"; stop; exit 1; }
  if [[ "${FOREWARN_SERVE_WORKER:-1}" != 0 ]]; then
    launch worker "$BIN/prefect" worker start --pool "$POOL" --type process
  fi
  if [[ -n "${FOREWARN_METRICS_PORT:-}" ]]; then
    launch metrics "$BIN/python" -m forewarn.metrics
    echo "metrics:  http://127.0.0.1:$FOREWARN_METRICS_PORT/metrics (ops/prometheus.yml scrapes it)"
  fi
  echo "Prefect UI: http://127.0.0.1:$PORT  (deployments: materialize, train, score-and-allocate, backtest)"
  echo "PIDs in $PIDS, logs in $LOGS; stop with: $0 stop   (or make serve-stop)"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 [start|stop|status]"; exit 2 ;;
esac
