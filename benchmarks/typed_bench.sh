#!/usr/bin/env bash
# The typed-path benchmark: raw echo vs typed (validated) echo vs chat broadcast, on loopback.
# Server on CPU 0, the Node load generator on CPU 1. Needs `npm install` in benchmarks/ once.
#   benchmarks/typed_bench.sh [PYTHON]      (ROUNDS=5 for more rounds; default 3)
#   INLINE=1 benchmarks/typed_bench.sh      (both echo apps declared inline: Application.inline)
# Each run prints its JSON line; the last lines are the medians over rounds and typed/raw.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv/bin/python}"
PORT=18950
run_server() {  # app, then the load generator's arguments
    local app="$1"; shift
    taskset -c 0 "$PY" -m websock_actors run "$app" --port "$PORT" --no-patch --ping-interval 0 \
        --log-level WARNING --max-connections 20000 >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
    taskset -c 1 node benchmarks/typed_load.js "$@" --url "ws://127.0.0.1:$PORT/" | tee -a "$RESULTS" || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
}
RAW_APP=examples.echo:app TYPED_APP=benchmarks.typed_echo_app:app
if [ "${INLINE:-0}" = 1 ]; then
    RAW_APP=examples.echo:inline_app TYPED_APP=benchmarks.typed_echo_app:inline_app
fi
RESULTS=$(mktemp)
trap 'rm -f "$RESULTS"' EXIT
for _ in $(seq "${ROUNDS:-3}"); do
    run_server "$RAW_APP" echo --mode raw --conns 100 --window 16 --duration 3
    run_server "$TYPED_APP" echo --mode typed --conns 100 --window 16 --duration 3
    run_server "$RAW_APP" echo --mode raw --conns 1 --window 1 --duration 3
    run_server "$TYPED_APP" echo --mode typed --conns 1 --window 1 --duration 3
    run_server benchmarks.chat_unlimited:app broadcast --conns 1000 --messages 200 --window 8
done
"$PY" - "$RESULTS" <<'SUMMARY'
import json, statistics, sys

runs = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
def median(mode, conns, window):
    rates = [r["msgs_per_s"] for r in runs if r.get("mode") == mode and r["conns"] == conns and r["window"] == window]
    return statistics.median(rates) if rates else 0
for conns, window in ((100, 16), (1, 1)):
    raw, typed = median("raw", conns, window), median("typed", conns, window)
    ratio = typed / raw if raw else 0
    print(f"median echo C={conns} W={window}: raw {raw:,.0f} msg/s, typed {typed:,.0f} msg/s, typed/raw {ratio:.2f}")
deliveries = [r["deliveries_per_s"] for r in runs if r["scenario"] == "broadcast"]
if deliveries:
    print(f"median broadcast to 1,000: {statistics.median(deliveries):,.0f} deliveries/s")
SUMMARY
