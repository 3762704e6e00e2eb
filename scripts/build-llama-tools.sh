#!/usr/bin/env bash
# Builds llama.cpp's own tools (llama-bench, llama-server, llama-cli) from the exact
# llama.cpp source that the llama-cpp-sys-2 crate in Cargo.lock vendors, with the same CPU
# baseline as our build (x86-64-v3: AVX2, FMA, F16C, BMI2; see .cargo/config.toml).
# Prints the folder holding the binaries. Cached: a second run only prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
ver=$(grep -A1 '^name = "llama-cpp-sys-2"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
cargo fetch --locked >/dev/null 2>&1 || cargo fetch >/dev/null
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$ver" | head -1)
out="${LLAMA_TOOLS_DIR:-$HOME/.cache/mio-llama-tools/$ver}"
tools=(llama-bench llama-server llama-cli)
done_all=1
for t in "${tools[@]}"; do [[ -x "$out/build/bin/$t" ]] || done_all=0; done
if [[ $done_all == 1 ]]; then echo "$out/build/bin"; exit 0; fi
arch_flags=()
if [[ $(uname -m) == x86_64 ]]; then
  arch_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
    -DGGML_BMI2=ON "-DCMAKE_C_FLAGS=-march=x86-64-v3" "-DCMAKE_CXX_FLAGS=-march=x86-64-v3")
fi
mkdir -p "$out"
cmake -S "$src/llama.cpp" -B "$out/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF \
  -DGGML_OPENMP=ON "${arch_flags[@]}" >"$out.cmake.log" 2>&1
cmake --build "$out/build" --target "${tools[@]}" -j "$(nproc)" >"$out.build.log" 2>&1
echo "$out/build/bin"
