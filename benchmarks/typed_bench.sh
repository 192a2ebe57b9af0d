#!/usr/bin/env bash
# The typed-path benchmark: raw echo vs typed (validated) echo vs chat broadcast, on loopback.
# Server on CPU 0, the Node load generator on CPU 1. Needs `npm install` in benchmarks/ once.
#   benchmarks/typed_bench.sh [PYTHON]
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
    taskset -c 1 node benchmarks/typed_load.js "$@" --url "ws://127.0.0.1:$PORT/" || true
    kill "$pid"; wait "$pid" 2>/dev/null || true
}
for round in 1 2 3; do
    run_server examples.echo:app echo --mode raw --conns 100 --window 16 --duration 3
    run_server benchmarks.typed_echo_app:app echo --mode typed --conns 100 --window 16 --duration 3
    run_server examples.echo:app echo --mode raw --conns 1 --window 1 --duration 3
    run_server benchmarks.typed_echo_app:app echo --mode typed --conns 1 --window 1 --duration 3
    run_server benchmarks.chat_unlimited:app broadcast --conns 1000 --messages 200 --window 8
done
