#!/usr/bin/env bash
# Trains vlmc's default model from nothing, with vlmc alone: `make model` runs this.
#   1. `vlmc synth` writes the synthetic world (seed 1): conversations for instruction tuning, and captions of
#      the same kind of images for the alignment stage.
#   2. scripts/default_model_base.py learns the tokenizer on the training text and writes a LLaVA-1.5-layout
#      folder (CLIP tower, MLP projector, Llama decoder) with random weights.
#   3. `vlmc train`, stage 1 (alignment): captions only. LLaVA freezes a pretrained tower and decoder here; ours
#      are random, so every part trains (--stage full) and this stage teaches the tower to see every object.
#   4. `vlmc train`, stage 2 (instruction tuning): all tasks, from the stage-1 weights.
#   5. `vlmc eval --tasks synth` on the held-out test split; results.json and the per-task table go into the model.
# Usage: scripts/train_default_model.sh [OUT_DIR]   (default models/vlmc-tiny; work files in build/model-work)
# Knobs (environment): THREADS, STAGE1_STEPS, STAGE2_STEPS, BATCH, LR, EVAL_LIMIT, N_IMAGES.
# Then: MODEL/examples (held-out pictures and the answers recorded for tests/cli_default_model.sh) and
# MODEL/training/results.md (the held-out accuracy per task next to the targets).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-models/vlmc-tiny}
WORK=${WORK:-build/model-work}
VLMC=${VLMC:-build/vlmc}
THREADS=${THREADS:-2}
N_IMAGES=${N_IMAGES:-44000}
STAGE1_STEPS=${STAGE1_STEPS:-250}
STAGE2_STEPS=${STAGE2_STEPS:-700}
BATCH=${BATCH:-16}
LR=${LR:-5e-4}
EVAL_LIMIT=${EVAL_LIMIT:-2000}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

start=$(date +%s)
say() { echo "== $* ($(( $(date +%s) - start )) s)"; }
mkdir -p "$WORK"

say "synthetic data: $N_IMAGES images (seed 1), and captions of the first 10000"
"$VLMC" synth --out "$WORK/synth" --n "$N_IMAGES" --seed 1 --quiet
"$VLMC" synth --out "$WORK/captions" --n 10000 --seed 1 --tasks caption --questions 1 --quiet

say "untrained model: tokenizer learned on the training text, random weights"
python3 scripts/default_model_base.py "$WORK/synth" "$WORK/base" --seed 1

say "stage 1: alignment on captions ($STAGE1_STEPS steps)"
rm -rf "$WORK/stage1"
"$VLMC" train -m "$WORK/base" --data "$WORK/captions/train.jsonl" --out "$WORK/stage1" --stage full \
  --lr "$LR" --warmup-steps 20 --lr-scheduler-type constant --max-steps "$STAGE1_STEPS" --batch-size 32 \
  --threads "$THREADS" --seed 1

say "stage 2: instruction tuning on every task ($STAGE2_STEPS steps)"
rm -rf "$WORK/stage2"
"$VLMC" train -m "$WORK/stage1" --data "$WORK/synth/train.jsonl" --eval-data "$WORK/synth/val.jsonl" \
  --out "$WORK/stage2" --stage full --lr "$LR" --warmup-steps 20 --lr-scheduler-type cosine \
  --max-steps "$STAGE2_STEPS" --batch-size "$BATCH" --threads "$THREADS" --seed 2

say "the model folder: $OUT"
rm -rf "$OUT.new"
mkdir -p "$OUT.new/training"
for f in config.json generation_config.json model.safetensors preprocessor_config.json special_tokens_map.json \
         tokenizer.json tokenizer_config.json; do
  cp "$WORK/stage2/$f" "$OUT.new/$f"
done
for s in 1 2; do
  cp "$WORK/stage$s/metrics.jsonl" "$OUT.new/training/stage${s}_metrics.jsonl"
  cp "$WORK/stage$s/loss.svg" "$OUT.new/training/stage${s}_loss.svg"
done
train_s=$(( $(date +%s) - start ))

say "evaluation on the held-out test split (first $EVAL_LIMIT questions)"
rm -rf "$WORK/eval"
"$VLMC" eval -m "$OUT.new" --tasks synth --data "$WORK/synth" --output "$WORK/eval" --limit "$EVAL_LIMIT" \
  --log-samples --quiet | tee "$OUT.new/training/eval.txt"
cp "$WORK/eval/results.json" "$OUT.new/eval_results.json"
echo "{\"train_seconds\": $train_s, \"threads\": $THREADS, \"n_images\": $N_IMAGES, \"stage1_steps\": $STAGE1_STEPS," \
     "\"stage2_steps\": $STAGE2_STEPS, \"batch\": $BATCH, \"lr\": $LR, \"eval_limit\": $EVAL_LIMIT}" \
     > "$OUT.new/training/recipe.json"
[ -f "$OUT/README.md" ] && cp "$OUT/README.md" "$OUT.new/README.md"
scripts/default_model_examples.sh "$OUT.new" "$WORK/synth" "$VLMC"
python3 scripts/default_model_card.py "$OUT.new"
rm -rf "$OUT"
mv "$OUT.new" "$OUT"
say "done: $OUT (training took $train_s s)"
