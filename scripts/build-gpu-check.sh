#!/usr/bin/env bash
# Builds, on a machine WITHOUT a GPU or a CUDA install, what scripts/gpu-check.sh runs on a
# GPU machine that has no Rust toolchain: `mio` and the `gpu_parity` test binary (the five
# numeric parity suites) with candle's CUDA kernels for sm_$CUDA_COMPUTE_CAP, stripped and
# xz-compressed into gpu-bin/ (git-ignored).
#
# The CUDA 13 compiler, headers and libraries come from PyPI's `cuda-toolkit` wheels (into
# /opt/cu13, ~1.2 GB); the driver library is not shipped there, so a link-only libcuda.so
# with the driver API's symbol names (from cudarc's bindings) stands in for it at link time.
# At run time the GPU machine's own libcuda.so.1 is loaded.
#
#   bash scripts/build-gpu-check.sh          # then: scripts/gpu-check.sh on the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
CU=/opt/cu13/nvidia/cu13
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
if [ ! -x "$CU/bin/nvcc" ]; then
  python3 -m pip install -q --target /opt/cu13 \
    'cuda-toolkit[nvcc,cublas,cudart,curand,nvrtc,cccl,crt]==13.0.*'
fi
for l in cublas cublasLt cudart nvrtc; do ln -sf "lib$l.so.13" "$CU/lib/lib$l.so"; done
ln -sf libcurand.so.10 "$CU/lib/libcurand.so"
# The stub below reads cudarc's sources from the registry: fetch them on a fresh machine.
cargo fetch --locked
if [ ! -f /opt/cu13/stub/libcuda.so ]; then
  mkdir -p /opt/cu13/stub
  bindings=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | tail -1)
  grep -ohE '^\s+(pub )?fn cu[A-Za-z0-9_]+\(' "$bindings" \
    | sed -E 's/.*fn (cu[A-Za-z0-9_]+)\(/void \1(void){}/' | sort -u >/opt/cu13/stub/stub.c
  gcc -shared -fPIC -o /opt/cu13/stub/libcuda.so -Wl,-soname,libcuda.so.1 /opt/cu13/stub/stub.c
fi
export CUDA_PATH=$CU CUDA_ROOT=$CU PATH=$CU/bin:$PATH
# The linker finds the stub and the libraries through LIBRARY_PATH (RUSTFLAGS would replace
# .cargo/config.toml's CPU baseline).
export LIBRARY_PATH=/opt/cu13/stub:$CU/lib
export CARGO_TARGET_DIR=${CUDA_TARGET_DIR:-$HOME/.cache/mio-cuda}
# Without the default `video` feature: no FFmpeg libraries to find on the GPU machine.
cargo build --release -p mio-runtime --bin mio --no-default-features --features mio-models/cuda
cargo test --release -p mio-tests --features cuda --no-run --test gpu_parity \
  --message-format json >"$CARGO_TARGET_DIR/gpu-tests.json"
rm -rf gpu-bin && mkdir -p gpu-bin
strip -o gpu-bin/mio "$CARGO_TARGET_DIR/release/mio"
test_bin=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu_parity":
        print(m["executable"])' "$CARGO_TARGET_DIR/gpu-tests.json")
strip -o gpu-bin/gpu_parity "$test_bin"
xz -T0 -6 gpu-bin/*
# ALSA (cpal) and OpenMP (llama.cpp) from this machine, in case the GPU machine lacks them.
mkdir -p gpu-bin/lib
for l in libasound.so.2 libgomp.so.1; do cp -L "$(ldconfig -p | awk -v l=$l '$1 == l { print $NF; exit }')" gpu-bin/lib/; done
ls -la gpu-bin gpu-bin/lib
