#!/usr/bin/env bash
# vlmc against llama.cpp on the same model shapes, threads and weight format, in one run.
#
#   bench/vs_llamacpp.sh -m MODEL_DIR [-t THREADS] [--type f32|bf16|q8_0|q4_0|q4_k|q6_k] [--llama-cpp BUILD_DIR]
#
# MODEL_DIR is an HF folder (e.g. `vlmc init --arch smolvlm-256m --random --out DIR`). The script quantizes it
# with `vlmc quantize` (unless --type f32), writes the GGUF pair with `vlmc convert`, runs `vlmc bench --json`
# and, when --llama-cpp names a llama.cpp build folder (with bin/llama-bench, and bin/llama-mtmd-cli for image
# encoding), runs llama.cpp on the same GGUF files and prints the ratios vlmc / llama.cpp. It never builds or
# downloads llama.cpp. VLMC_BIN overrides the vlmc binary (default build/vlmc).
set -euo pipefail

VLMC=${VLMC_BIN:-build/vlmc}
MODEL= THREADS=$(nproc) TYPE=f32 LLAMA= WORK=
while [ $# -gt 0 ]; do
    case "$1" in
        -m) MODEL=$2; shift 2 ;;
        -t) THREADS=$2; shift 2 ;;
        --type) TYPE=$2; shift 2 ;;
        --llama-cpp) LLAMA=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "vs_llamacpp.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$MODEL" ] || { echo "vs_llamacpp.sh: -m MODEL_DIR is required" >&2; exit 2; }
[ -x "$VLMC" ] || { echo "vs_llamacpp.sh: $VLMC is not built (make)" >&2; exit 2; }
if [ -z "$WORK" ]; then WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi

SRC=$MODEL
if [ "$TYPE" != f32 ]; then
    SRC=$WORK/hf-$TYPE
    "$VLMC" quantize -m "$MODEL" --type "$TYPE" --out "$SRC"
fi
GGUF=$WORK/gguf-$TYPE
"$VLMC" convert -m "$SRC" --to gguf --out "$GGUF"

echo "== vlmc ($TYPE, $THREADS threads; load: $(cut -d' ' -f1-3 /proc/loadavg))"
VJSON=$("$VLMC" bench -m "$SRC" -t "$THREADS" --json)
echo "$VJSON"

[ -n "$LLAMA" ] || { echo "(no --llama-cpp: vlmc only)"; exit 0; }
LB=$LLAMA/bin/llama-bench
[ -x "$LB" ] || LB=$LLAMA/llama-bench
[ -x "$LB" ] || { echo "vs_llamacpp.sh: no llama-bench in $LLAMA/bin" >&2; exit 2; }
echo "== llama.cpp llama-bench"
LJSON=$("$LB" -m "$GGUF/model.gguf" -p 512 -n 128 -t "$THREADS" -o json)
MT=$LLAMA/bin/llama-mtmd-cli
ENC_MS=
if [ -x "$MT" ]; then
    python3 - "$WORK/img.ppm" <<'PY'
import sys
w = h = 512
with open(sys.argv[1], "wb") as f:
    f.write(b"P6 %d %d 255\n" % (w, h))
    f.write(bytes((x * 7 + y * 3) % 256 for y in range(h) for x in range(w) for _ in range(3)))
PY
    ENC_MS=$("$MT" -m "$GGUF/model.gguf" --mmproj "$GGUF/mmproj.gguf" --image "$WORK/img.ppm" -p "describe" -n 1 \
             -t "$THREADS" 2>&1 | sed -n 's/.*image slice encoded in \([0-9.]*\) ms.*/\1/p' | head -1 || true)
fi
python3 - "$VJSON" "$LJSON" "${ENC_MS:-}" <<'PY'
import json, sys
v = json.loads(sys.argv[1]); runs = json.loads(sys.argv[2]); enc_ms = sys.argv[3]
pp = next((r["avg_ts"] for r in runs if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0), None)
tg = next((r["avg_ts"] for r in runs if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0), None)
def row(name, a, b, higher_better=True):
    if b is None: print(f"{name:24s} vlmc {a:10.3f}   llama.cpp      n/a"); return
    r = a / b if higher_better else b / a
    print(f"{name:24s} vlmc {a:10.3f}   llama.cpp {b:10.3f}   vlmc/llama.cpp {r:5.2f}")
row("prompt tokens/s (512)", v["prompt_tokens_per_s"], pp)
row("generation tokens/s (128)", v["gen_tokens_per_s"], tg)
if v["image_encode_s"] > 0:
    row("image encode s / tile", v["image_encode_s"], float(enc_ms) / 1000 if enc_ms else None, higher_better=False)
print("(ratios > 1: vlmc faster)")
PY
