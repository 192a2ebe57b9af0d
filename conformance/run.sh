#!/usr/bin/env bash
# Run the Autobahn|Testsuite (wstest -m fuzzingclient) against the project's echo server.
#
# usage: conformance/run.sh [CASES] [EXCLUDE] [-- SERVER_OPTION...]
#   CASES          comma-separated case patterns (default "*", the full suite: 517 cases, ~7 min)
#   EXCLUDE        comma-separated case patterns to leave out (default: none)
#   SERVER_OPTION  extra `websock-actors run` options, e.g. -- --max-message-size 33554432
#                  The server always gets --compression first (permessage-deflate, which
#                  sections 12 and 13 test; cases 1-11 never offer it); -- --no-compression
#                  turns it off again, and then 12.* and 13.* end UNIMPLEMENTED at once.
#
# examples:
#   conformance/run.sh '1.*,2.*,3.*,4.*,5.*,6.*,7.*,8.*,9.*,10.*,11.*'   # what CI runs
#   conformance/run.sh '*' '12.*,13.*'                                    # same thing
#   conformance/run.sh                                                    # everything
#   conformance/run.sh '13.*' '' -- --compression-context-takeover        # tuned compression
#   PYTHON=.venv/bin/python conformance/run.sh 5.19                       # one case
#
# environment:
#   PYTHON                Python that runs the server and the summarizer (default python3);
#                         it must be able to import websock_actors and its dependencies
#   AUTOBAHN_CACHE        where setup.sh installs wstest (default /tmp/websock-actors-autobahn)
#   AUTOBAHN_REPORT_DIR   report directory (default $AUTOBAHN_CACHE/reports/<time>-<pid>;
#                         the 10 newest default directories are kept)
#   AUTOBAHN_TIMEOUT      wall-clock limit for wstest, seconds (default 1800)
#   AUTOBAHN_APP          application to serve (default examples.echo:app)
#   AUTOBAHN_SERVER_ARGS  extra server options, split on whitespace (added before SERVER_OPTIONs)
#   AUTOBAHN_TLS          1: serve wss:// with a test certificate (made with trustme, which
#                         PYTHON must import), and run the fuzzing client over TLS
#
# The server is started on a free 127.0.0.1 port and stopped by its PID afterwards.
# The last line on stdout is always "autobahn: N cases, M failed" (", K missing" is added
# when selected cases have no result).  Exit status: 0 when no case FAILED and none is
# missing; 1 otherwise (also on setup/server errors); 2 on usage errors and bad selections.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PYTHON="${PYTHON:-python3}"
# a relative path (e.g. .venv/bin/python) must survive the cd below; symlinks are kept
[[ "$PYTHON" != */* ]] || PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
CACHE="${AUTOBAHN_CACHE:-/tmp/websock-actors-autobahn}"
TIMEOUT_S="${AUTOBAHN_TIMEOUT:-1800}"
APP="${AUTOBAHN_APP:-examples.echo:app}"
KEEP_REPORTS=10
export AUTOBAHN_CACHE="$CACHE" PYTHON

usage() {  # usage [EXIT_CODE]
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    (("${1:-2}" == 0)) || echo "autobahn: 0 cases, 0 failed (usage error)"
    exit "${1:-2}"
}

POSITIONAL=()
SERVER_OPTS=()
read -r -a SERVER_OPTS <<<"${AUTOBAHN_SERVER_ARGS:-}"
SERVER_OPTS=(--compression "${SERVER_OPTS[@]}")
while (($#)); do
    case "$1" in
        -h|--help) usage 0 ;;
        --) shift; SERVER_OPTS+=("$@"); break ;;
        *) POSITIONAL+=("$1"); shift ;;
    esac
done
((${#POSITIONAL[@]} <= 2)) || usage
CASES="${POSITIONAL[0]:-*}"
EXCLUDE="${POSITIONAL[1]:-}"
[[ "$TIMEOUT_S" =~ ^[0-9]+$ ]] || { echo "error: AUTOBAHN_TIMEOUT must be a number of seconds" >&2; usage; }

NSEL=0            # number of selected cases, once known
SERVER_PID=""
WSTEST_PID=""
SETUP_PID=""

finish() {  # finish EXIT_CODE NOTE : print the final line (no results: all selected missing), exit
    local line="autobahn: $NSEL cases, 0 failed"
    ((NSEL == 0)) || line+=", $NSEL missing"
    echo "$line ($2)"
    exit "$1"
}

stop_pid() {  # stop_pid PID GRACE_SECONDS : TERM, wait, then KILL; returns 0 if it went on TERM
    local pid="$1" grace="$2" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
}

# shellcheck disable=SC2329  # called from the traps
cleanup() {
    if [[ -n "$SETUP_PID" ]]; then stop_pid "$SETUP_PID" 20 >/dev/null 2>&1 || true; fi
    if [[ -n "$WSTEST_PID" ]]; then stop_pid "$WSTEST_PID" 20 >/dev/null 2>&1 || true; fi
    if [[ -n "$SERVER_PID" ]]; then stop_pid "$SERVER_PID" 20 >/dev/null 2>&1 || true; fi
    SETUP_PID="" WSTEST_PID="" SERVER_PID=""
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; cleanup; finish 1 interrupted' INT TERM

cd "$ROOT"

# ---- the server's Python ----------------------------------------------------------------
if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10); import websock_actors, gevent' 2>/dev/null; then
    echo "error: '$PYTHON' cannot import websock_actors (Python >= 3.10 with the project installed" \
         "is needed; e.g. PYTHON=.venv/bin/python)" >&2
    finish 1 "no usable PYTHON"
fi

# ---- report directory ------------------------------------------------------------------------
if [[ -n "${AUTOBAHN_REPORT_DIR:-}" ]]; then
    REPORT_DIR="$AUTOBAHN_REPORT_DIR"
else
    REPORT_DIR="$CACHE/reports/$(date +%Y%m%d-%H%M%S)-$$"
    # keep the newest KEEP_REPORTS - 1 older default report directories
    if [[ -d "$CACHE/reports" ]]; then
        { ls -1dt "$CACHE"/reports/*/ 2>/dev/null || true; } | tail -n +"$KEEP_REPORTS" |
            while read -r old; do rm -rf -- "$old"; done
    fi
fi
mkdir -p "$REPORT_DIR"
REPORT_DIR="$(cd "$REPORT_DIR" && pwd)"
rm -f "$REPORT_DIR"/index.json "$REPORT_DIR"/summary.json

# ---- wstest (run in the background so that a signal stops the install too) -----------------------
SETUP_RC=0
"$HERE/setup.sh" >"$REPORT_DIR/setup.out" &
SETUP_PID=$!
wait "$SETUP_PID" || SETUP_RC=$?
SETUP_PID=""
WSTEST="$(tail -n 1 "$REPORT_DIR/setup.out")"
if ((SETUP_RC != 0)) || [[ ! -x "$WSTEST" ]]; then
    echo "error: installing wstest failed (messages above)" >&2
    finish 1 "setup failed"
fi
PY2="$(dirname "$WSTEST")/python2"

# ---- spec and case selection -----------------------------------------------------------------
# a free loopback port (the server is restarted on another one if it loses a race for it)
free_port() {
    "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}
PORT="$(free_port)"
SCHEME=ws
if [[ "${AUTOBAHN_TLS:-}" == 1 ]]; then
    SCHEME=wss
    "$PYTHON" -c 'import sys, trustme
leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
leaf.private_key_pem.write_to_path(sys.argv[2])
with open(sys.argv[1], "wb") as out:
    out.write(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))' \
        "$REPORT_DIR/tls-chain.pem" "$REPORT_DIR/tls-key.pem"
    SERVER_OPTS+=(--certfile "$REPORT_DIR/tls-chain.pem" --keyfile "$REPORT_DIR/tls-key.pem")
fi
URL="$SCHEME://127.0.0.1:$PORT"

# cases.py writes the spec and prints the selected ids (with the suite's own matcher);
# wstest never stops on an empty selection, so that is rejected here.
if ! timeout 120 "$PY2" "$HERE/cases.py" "$REPORT_DIR/spec.json" "$URL" websock-actors \
        "$CASES" "$EXCLUDE" >"$REPORT_DIR/selected-cases.txt"; then
    echo "error: bad case selection: cases='$CASES' exclude='$EXCLUDE'" >&2
    finish 2 "bad case selection"
fi
NSEL="$(wc -l <"$REPORT_DIR/selected-cases.txt" | tr -d ' ')"

# ---- start the echo server ----------------------------------------------------------------
start_server() {
    "$PYTHON" -m websock_actors run "$APP" --host 127.0.0.1 --port "$PORT" "${SERVER_OPTS[@]}" \
        >>"$REPORT_DIR/server.log" 2>&1 &
    SERVER_PID=$!
}
accepts_tcp() {  # bash's /dev/tcp; loopback connects answer at once
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null
}
: >"$REPORT_DIR/server.log"
up=""
for attempt in 1 2 3; do
    start_server
    for ((i = 0; i < 300; i++)); do   # up to 30 s
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" 2>/dev/null || true
            SERVER_PID=""
            break
        fi
        if accepts_tcp; then up=1; break; fi
        sleep 0.1
    done
    [[ -n "$up" ]] && break
    if [[ -n "$SERVER_PID" ]]; then  # alive but silent for 30 s: give up
        break
    fi
    echo "the server exited at startup (attempt $attempt of 3)" >&2
    ((attempt < 3)) || break
    PORT="$(free_port)"   # perhaps it lost the port to another process
    URL="$SCHEME://127.0.0.1:$PORT"
    "$PYTHON" -c 'import json, sys
p = sys.argv[1]
with open(p) as f:
    spec = json.load(f)
spec["servers"][0]["url"] = sys.argv[2]
with open(p, "w") as f:
    json.dump(spec, f, indent=2, sort_keys=True)' "$REPORT_DIR/spec.json" "$URL"
done
if [[ -z "$up" ]]; then
    echo "error: the server did not come up on $URL; end of $REPORT_DIR/server.log:" >&2
    tail -n 20 "$REPORT_DIR/server.log" >&2
    finish 1 "server did not start"
fi

echo "Autobahn|Testsuite fuzzingclient -> $APP on $URL (server pid $SERVER_PID)"
echo "cases: $CASES   exclude: ${EXCLUDE:-(none)}   selected: $NSEL   timeout: ${TIMEOUT_S}s"
echo "reports: $REPORT_DIR"

# ---- run wstest (bounded) -----------------------------------------------------------------
START=$SECONDS
(cd "$REPORT_DIR" && exec timeout --kill-after=15 "$TIMEOUT_S" "$WSTEST" -m fuzzingclient -s spec.json) \
    >"$REPORT_DIR/wstest.log" 2>&1 &
WSTEST_PID=$!
NEXT_PROGRESS=$((START + 60))
while kill -0 "$WSTEST_PID" 2>/dev/null; do
    sleep 1
    if ((SECONDS >= NEXT_PROGRESS)); then
        NEXT_PROGRESS=$((SECONDS + 60))
        started="$(grep -c '^Running test case ID' "$REPORT_DIR/wstest.log" || true)"
        echo "  ... $((SECONDS - START))s: case ${started:-0} of $NSEL"
    fi
done
WSTEST_RC=0
wait "$WSTEST_PID" || WSTEST_RC=$?
WSTEST_PID=""
echo "wstest exited with status $WSTEST_RC after $((SECONDS - START))s"
if ((WSTEST_RC != 0)); then
    ((WSTEST_RC == 124 || WSTEST_RC == 137)) && echo "error: wstest exceeded AUTOBAHN_TIMEOUT=${TIMEOUT_S}s"
    echo "---- end of $REPORT_DIR/wstest.log ----"
    tail -n 15 "$REPORT_DIR/wstest.log"
    echo "----"
fi

# ---- stop the server, note anything odd about it ---------------------------------------------
SERVER_PROBLEM=""
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    SERVER_RC=0
    wait "$SERVER_PID" 2>/dev/null || SERVER_RC=$?
    SERVER_PROBLEM="the server exited during the run (status $SERVER_RC)"
elif ! stop_pid "$SERVER_PID" 20; then
    echo "warning: the server did not stop within 20 s of SIGTERM; it was killed"
fi
SERVER_PID=""
if grep -qE 'Traceback|CRITICAL' "$REPORT_DIR/server.log"; then
    echo "warning: the server logged errors ($(grep -c 'Traceback' "$REPORT_DIR/server.log") tracebacks);" \
         "see $REPORT_DIR/server.log"
fi
if [[ -n "$SERVER_PROBLEM" ]]; then
    echo "error: $SERVER_PROBLEM; end of $REPORT_DIR/server.log:"
    tail -n 20 "$REPORT_DIR/server.log"
fi

# ---- summary (its last line is the result line) ----------------------------------------------
SUMMARY_RC=0
"$PYTHON" "$HERE/summarize.py" "$REPORT_DIR" "$REPORT_DIR/selected-cases.txt" || SUMMARY_RC=$?
if ((SUMMARY_RC == 0)) && { ((WSTEST_RC != 0)) || [[ -n "$SERVER_PROBLEM" ]]; }; then
    # every case has a passing result, but the run itself went wrong: say so in the last line
    echo "autobahn: $NSEL cases, 0 failed (but ${SERVER_PROBLEM:-wstest exited with status $WSTEST_RC})"
    exit 1
fi
exit "$SUMMARY_RC"
