#!/usr/bin/env bash
# Installs what building and testing MIO Desktop needs on a fresh Debian machine.
# Safe to run again: packages already present are skipped by apt.
set -euo pipefail

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake clang libclang-dev pkg-config libasound2-dev curl ca-certificates \
  python3 python3-venv >/dev/null
# Video decoding (ffmpeg-next against FFmpeg 5.1) and webcams (nokhwa's V4L2 bindings need the
# kernel headers of linux-libc-dev and libclang, above).
$SUDO apt-get install -y -qq --no-install-recommends \
  libavformat-dev libavcodec-dev libswscale-dev libavutil-dev linux-libc-dev >/dev/null

if ! command -v cargo >/dev/null 2>&1; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

# Desktop app (src-tauri, ui/): WebKitGTK and friends for Tauri 2, Node.js + npm for the UI
# build (Debian 12 ships Node 18; the UI's pinned Vite 6 / Vitest 3 / Svelte 5 support it),
# Xvfb and WebKitWebDriver for the end-to-end test, tauri-driver from crates.io.
$SUDO apt-get install -y -qq --no-install-recommends \
  libwebkit2gtk-4.1-dev libxdo-dev libssl-dev librsvg2-dev xvfb xauth webkit2gtk-driver >/dev/null
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if ! command -v tauri-driver >/dev/null 2>&1; then
  cargo install tauri-driver --version ^2 --locked
fi
