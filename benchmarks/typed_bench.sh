#!/usr/bin/env bash
# The typed-path benchmark (benchmarks/typed_bench.py): raw echo vs typed echo vs chat broadcast.
#   benchmarks/typed_bench.sh [PYTHON]      (ROUNDS=5 for more rounds; default 3)
#   INLINE=1 benchmarks/typed_bench.sh      (both echo apps declared inline: Application.inline)
set -euo pipefail
cd "$(dirname "$0")/.."
options=(--rounds "${ROUNDS:-3}")
if [ "${INLINE:-0}" = 1 ]; then options+=(--inline); fi
exec "${1:-.venv/bin/python}" benchmarks/typed_bench.py "${options[@]}"
