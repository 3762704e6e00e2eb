#!/usr/bin/env bash
# Load test of `mio serve` on the tiny model, loopback only, at most 60 s:
#   scripts/load-serve.sh [CLIENTS=4] [SECONDS=60] [MAX_REQUESTS=2000] [MAX_TOKENS=16]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mio-target}"
cargo build -q -p mio-runtime --bin mio --example load_serve
"$CARGO_TARGET_DIR/debug/examples/load_serve" "$CARGO_TARGET_DIR/debug/mio" tests/fixtures/model \
  "${1:-4}" "${2:-60}" "${3:-2000}" "${4:-16}"
