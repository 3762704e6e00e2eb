#!/usr/bin/env bash
# Builds llama.cpp's own `llama-bench` and `llama-server` against the
# exact llama.cpp library that the llama-cpp-sys-2 crate in Cargo.lock vendors, with the same
# CPU baseline as our build (x86-64-v3: AVX2, FMA, F16C, BMI2; see .cargo/config.toml).
#
# The crate ships llama.cpp without the tools' sources, so they are taken from the
# llama.cpp copy inside the llama-cpp-python 0.3.36 source package on PyPI (sha256 pinned;
# its llama.h differs from the crate's by 8 lines) and compiled against the crate's tree:
# the kernels measured are the crate's. Prints the folder holding the binaries; cached.
set -euo pipefail
cd "$(dirname "$0")/.."
ver=$(grep -A1 '^name = "llama-cpp-sys-2"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
cargo fetch >/dev/null 2>&1 || true
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$ver" | head -1)
out="${LLAMA_TOOLS_DIR:-$HOME/.cache/mio-llama-tools/$ver}"
bin="$out/build/bin"
if [[ -x "$bin/llama-bench" && -x "$bin/llama-server" ]]; then echo "$bin"; exit 0; fi
mkdir -p "$out"

sdist_url="https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz"
sdist_sha="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
sdist="$out/llama_cpp_python-0.3.36.tar.gz"
if [[ ! -f "$sdist" ]] || ! echo "$sdist_sha  $sdist" | sha256sum -c --quiet - 2>/dev/null; then
  curl -sSfL -o "$sdist.partial" "$sdist_url"
  echo "$sdist_sha  $sdist.partial" | sha256sum -c --quiet -
  mv "$sdist.partial" "$sdist"
fi

# The source tree: the crate's llama.cpp plus, from the sdist, the tools' sources the crate
# leaves out (llama-bench; llama-server with its web-UI embedding script) and the helper
# libraries the server's sources are written against (the sdist's `common` and `mtmd`, a
# few weeks newer than the crate's). The model code and kernels (src/, ggml/) stay the crate's. The sdist has no
# prebuilt web UI and nothing is downloaded, so llama-server embeds an empty UI (API only).
# Made once (stamp), so a later run that only adds a tool recompiles only that tool.
tree="$out/src"
stamp="$tree/.mio-tree-v4"
if [[ ! -f "$stamp" ]]; then
  sd=llama_cpp_python-0.3.36/vendor/llama.cpp
  [[ -d "$tree" ]] || cp -r "$src/llama.cpp" "$tree"
  tar -xzf "$sdist" -C "$out" "$sd/tools/llama-bench" "$sd/tools/server" "$sd/tools/mtmd" "$sd/common" \
    "$sd/tools/ui/CMakeLists.txt" "$sd/tools/ui/ui.cpp.in" "$sd/tools/ui/ui.h.in" \
    "$sd/scripts/ui-assets.cmake"
  for t in llama-bench server mtmd; do
    rm -rf "$tree/tools/$t"
    cp -rp "$out/$sd/tools/$t" "$tree/tools/"
  done
  cp "$out/$sd/tools/ui/"{CMakeLists.txt,ui.cpp.in,ui.h.in} "$tree/tools/ui/"
  rm -rf "$tree/common"
  cp -r "$out/$sd/common" "$tree/common"
  mkdir -p "$tree/scripts"
  cp "$out/$sd/scripts/ui-assets.cmake" "$tree/scripts/"
  printf '%s\n' 'llama_add_compile_flags()' 'add_subdirectory(llama-bench)' \
    'add_subdirectory(mtmd)' 'add_subdirectory(ui)' 'add_subdirectory(server)' \
    > "$tree/tools/CMakeLists.txt"
  touch "$stamp"
fi

arch_flags=()
if [[ $(uname -m) == x86_64 ]]; then
  arch_flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
    -DGGML_BMI2=ON -DGGML_SSE42=ON "-DCMAKE_C_FLAGS=-march=x86-64-v3" "-DCMAKE_CXX_FLAGS=-march=x86-64-v3")
fi
cmake -S "$tree" -B "$out/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_COMMON=ON -DLLAMA_CURL=OFF \
  -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DMTMD_VIDEO=OFF \
  -DBUILD_SHARED_LIBS=OFF -DGGML_OPENMP=ON "${arch_flags[@]}" \
  >"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log" >&2; exit 1; }
for t in llama-bench llama-server; do
  [[ -x "$bin/$t" ]] && continue
  cmake --build "$out/build" --target "$t" -j "$(nproc)" >"$out/build-$t.log" 2>&1 \
    || { tail -30 "$out/build-$t.log" >&2; exit 1; }
done
echo "$bin"
