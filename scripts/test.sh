#!/usr/bin/env bash
# The project's test command: the UI's unit tests and build, formatting, lints (warnings are
# errors), every Rust test, then the desktop app end to end under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mio-target}"

# UI first: src-tauri's generate_context! embeds ui/dist.
(cd ui && npm ci --no-audit --no-fund && npm test && npm run build)

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# llama.cpp's llama-server (and llama-bench) for the remote-LM tests, cached in ~/.cache.
bash scripts/build-llama-tools.sh >/dev/null
cargo test --workspace

# The real app (the debug binary `cargo test` just built), driven through tauri-driver and
# WebKitWebDriver on a virtual display; screenshots go to $CARGO_TARGET_DIR/e2e-shots.
cargo build -p mio-desktop
E2E_SHOTS="$CARGO_TARGET_DIR/e2e-shots" xvfb-run -a -s "-screen 0 1280x860x24" \
  node ui/e2e/app.e2e.mjs "$CARGO_TARGET_DIR/debug/mio-desktop"
