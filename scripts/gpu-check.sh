#!/usr/bin/env bash
# Runs on a GPU machine (NVIDIA driver, Python with numpy + sentencepiece; no Rust needed)
# what scripts/build-gpu-check.sh built into gpu-bin/, from the repository root:
#   tests  the five numeric parity suites (one binary) with MIO_TEST_DEVICE=cuda (goldens at 1e-4, ids
#          and codes exact, as on the CPU)
#   cli    `mio` on the tiny model: the same commands on cpu and cuda, outputs compared
#   lm     `mio bench lm` on a random MIO-7B-shaped LM (32 layers, f16 safetensors written by
#          scripts/make-random-release.py --fast), f16 and bf16 on cuda
#   codecs the real-size random SpeechTokenizer, SEED encoder and unCLIP decoder written by
#          scripts/bench-pytorch/*.py, benchmarked on cuda by PyTorch and by `mio bench`,
#          side by side (needs diffusers, speechtokenizer, beartype and importlib_metadata:
#          wheels in .whl/ are installed first when present); CODECS="speech image_encode
#          image_decode" (the default) picks the parts
# Logs and a summary go to $OUT (default /tmp/gpu-check).
#   lmq    after lm: that LM converted to q4_k_m GGUF, `mio bench lm` on cuda
#   bash scripts/gpu-check.sh [tests] [cli] [lm] [lmq] [codecs]  (default: all but lmq)
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
stages=${*:-tests cli lm codecs}
S=$OUT/summary.txt
say() { echo "$*" | tee -a "$S"; }
since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$S"
B=$PWD/gpu-bin
for f in "$B"/*.xz; do [ -e "$f" ] && xz -d -f -T0 "$f"; done
chmod +x "$B"/mio "$B"/gpu_parity
# cuBLAS, cuRAND and NVRTC of CUDA 13 (the toolkit's, or the pip wheels').
libs=$(find /usr/local /opt /usr/lib -xdev \( -name 'libcublas.so.13' -o -name 'libnvrtc.so.13' \
  -o -name 'libcurand.so.10' -o -name 'libcudart.so.13' \) 2>/dev/null | xargs -r -n1 dirname | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH=${libs}${LD_LIBRARY_PATH:-}:$B/lib
M=$PWD/tests/fixtures/model
export MIO_FIXTURES_DIR=$PWD/tests/fixtures MIO_CACHE_DIR=$OUT/cache

if [[ " $stages " == *" tests "* ]]; then
  start=$(date +%s.%N)
  MIO_TEST_DEVICE=cuda timeout 400 "$B/gpu_parity" --test-threads 1 --nocapture \
    >"$OUT/gpu_parity.log" 2>&1
  rc=$?
  say "gpu_parity rc=$rc $(since "$start")s: $(grep -E '^test result' "$OUT/gpu_parity.log" | tail -1)"
  grep -E '^test .* FAILED$|panicked' "$OUT/gpu_parity.log" | head -20 | tee -a "$S"
fi

if [[ " $stages " == *" cli "* ]]; then
  run() { # run NAME DEVICE ARGS...: stdout to $OUT/cli_NAME_DEVICE.out
    local name=$1 dev=$2
    shift 2
    local start rc
    start=$(date +%s.%N)
    timeout 120 "$B/mio" "$@" --model "$M" --device "$dev" >"$OUT/cli_${name}_$dev.out" \
      2>"$OUT/cli_${name}_$dev.err"
    rc=$?
    say "cli $name $dev rc=$rc $(since "$start")s $(tail -c 300 "$OUT/cli_${name}_$dev.err" | tr '\n' ' ')"
  }
  I=tests/fixtures/golden/inputs
  for dev in cpu cuda; do
    run info "$dev" info
    run generate "$dev" generate --prompt "Hello there" --max-new-tokens 24 --json
    run image_encode "$dev" image encode "$I/test_image_0.jpg" "$I/synthetic_0.png" --json
    run speech_encode "$dev" speech encode "$I/speech_22k.wav" --timbre --json
    run image_decode "$dev" image decode --codes "$(seq -s, 0 31)" --steps 3 --seed 0 \
      --out "$OUT/decode_$dev.png" --json
    run chat "$dev" chat --mode chat "Describe a cat." --out "$OUT/chat_$dev"
    run voice "$dev" chat --mode voice --audio "$I/speech_16k.wav" "Answer me." \
      --out "$OUT/voice_$dev"
    run image_turn "$dev" chat --mode image "A red apple." --out "$OUT/image_$dev"
  done
  for name in generate image_encode speech_encode; do
    if cmp -s "$OUT/cli_${name}_cpu.out" "$OUT/cli_${name}_cuda.out"; then
      say "cli $name: cpu and cuda outputs identical"
    else
      say "cli $name: cpu and cuda outputs DIFFER"
    fi
  done
  python3 - "$OUT" <<'EOF' | tee -a "$S"
import sys, numpy as np
from PIL import Image
out = sys.argv[1]
try:
    a = np.asarray(Image.open(f"{out}/decode_cpu.png"), dtype=np.int16)
    b = np.asarray(Image.open(f"{out}/decode_cuda.png"), dtype=np.int16)
    print(f"cli image_decode: max |cpu - cuda| {np.abs(a - b).max()} of 255, "
          f"{(a == b).mean() * 100:.1f} % equal")
except Exception as e:
    print("cli image_decode compare failed:", e)
EOF
fi

if [[ " $stages " == *" lm "* ]]; then
  R=/tmp/mio-7b-f16
  start=$(date +%s)
  python3 scripts/make-random-release.py --layers 32 --out "$R" --format safetensors-f16 \
    --fast >"$OUT/make-release.log" 2>&1
  say "random 7B f16 written: rc=$? $(($(date +%s) - start))s $(du -sh "$R" | cut -f1)"
  for p in f16 bf16; do
    timeout 240 "$B/mio" bench lm --model "$R" --device cuda --precision "$p" \
      --prompt-tokens 128 --decode-tokens 64 --repeat 2 >"$OUT/bench_lm_$p.txt" 2>&1
    say "bench lm cuda $p rc=$?: $(tail -3 "$OUT/bench_lm_$p.txt" | tr '\n' ' ')"
  done
fi

if [[ " $stages " == *" lmq "* ]]; then # after lm: the same LM as q4_k_m GGUF (candle's CUDA k-quant kernels)
  R=/tmp/mio-7b-f16
  start=$(date +%s.%N)
  timeout 300 "$B/mio" convert --model "$R" --out /tmp/mio-7b-q4km.gguf --type q4_k_m \
    >"$OUT/convert.log" 2>&1
  say "convert q4_k_m rc=$? $(since "$start")s"
  timeout 240 "$B/mio" bench lm --model "$R" --lm /tmp/mio-7b-q4km.gguf --device cuda \
    --prompt-tokens 128 --decode-tokens 64 --repeat 2 >"$OUT/bench_lm_q4km.txt" 2>&1
  say "bench lm cuda q4_k_m rc=$?: $(tail -3 "$OUT/bench_lm_q4km.txt" | tr '\n' ' ')"
fi
if [[ " $stages " == *" codecs "* ]]; then
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site
  fi
  D=/tmp/mio-real
  P=scripts/bench-pytorch
  parts=${CODECS:-speech image_encode image_decode}
  for part in $parts; do
    start=$(date +%s.%N)
    python3 "$P/$part.py" write --out "$D" >"$OUT/write_$part.log" 2>&1
    say "write $part rc=$? $(since "$start")s"
  done
  bench() { # bench PART MIO-SUBCOMMAND PYTHON-ARGS -- MIO-ARGS
    local part=$1 sub=$2
    shift 2
    local py=() mio=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do py+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    mio=("$@")
    timeout 300 python3 "$P/$part.py" bench --model "$D" --device cuda "${py[@]}" \
      --json "$OUT/pt_$part.json" >"$OUT/pt_$part.log" 2>&1
    say "pytorch $part rc=$?"
    timeout 300 "$B/mio" bench "$sub" --model "$D" --device cuda "${mio[@]}" \
      --pytorch "$OUT/pt_$part.json" >"$OUT/mio_$part.txt" 2>&1
    say "mio $sub rc=$?:"
    tail -25 "$OUT/mio_$part.txt" | tee -a "$S"
  }
  [[ " $parts " == *" speech "* ]] && bench speech speech --repeat 3 -- --repeat 3
  [[ " $parts " == *" image_encode "* ]] && bench image_encode image-encode --batch 8 --repeat 3 \
    -- --batch 8 --repeat 3
  [[ " $parts " == *" image_decode "* ]] && bench image_decode image-decode --steps 5 \
    -- --steps 20 --warmup 1 --repeat 1
fi
say "done"
