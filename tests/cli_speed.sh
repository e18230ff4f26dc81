# End-to-end tests of `vlmc init`, `vlmc quantize`, `vlmc convert` and `vlmc bench` (helpers: tests/clilib.sh).
. tests/clilib.sh

M=$TMP/tiny
"$VLMC" init --arch tiny-idefics3 --random --out "$M" --seed 4 --set text_config.hidden_size=128 \
    --set num_hidden_layers=3 --set vision_config.image_size=28 > "$TMP/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && [ -s "$M/model.safetensors" ] && [ -s "$M/preprocessor_config.json" ] \
   && "$VLMC" info --json "$M" > "$TMP/info.json" 2>&1 \
   && python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); t=c["text_config"]; v=c["vision_config"]
assert t["hidden_size"] == 128 and t["num_hidden_layers"] == 3 and v["image_size"] == 28, c' "$M/config.json"; then
  ok "init with --set overrides"; else fail "init with --set overrides" "rc=$rc $(head -3 "$TMP/out" "$TMP/info.json")"; fi

"$VLMC" init --arch tiny-idefics3 --random --out "$TMP/again" --seed 4 --set text_config.hidden_size=128 \
    --set num_hidden_layers=3 --set vision_config.image_size=28 > /dev/null 2>&1
if cmp -s "$M/model.safetensors" "$TMP/again/model.safetensors"; then ok "init: same seed, same weights"
else fail "init: same seed, same weights"; fi

"$VLMC" init --arch gpt-17 --random --out "$TMP/x" > "$TMP/err" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q "unknown architecture 'gpt-17'" "$TMP/err" && grep -q smolvlm-256m "$TMP/err"; then
  ok "init: unknown architecture"; else fail "init: unknown architecture" "rc=$rc $(cat "$TMP/err")"; fi
"$VLMC" init --arch llava --random --out "$TMP/x" --set vision_config.nope > "$TMP/err" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q "expected KEY=VALUE" "$TMP/err"; then ok "init: bad --set"
else fail "init: bad --set" "rc=$rc $(cat "$TMP/err")"; fi

"$VLMC" quantize -m "$M" --type q4_0 --out "$TMP/q" > "$TMP/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && [ -s "$TMP/q/model.gguf" ] && [ -s "$TMP/q/config.json" ] && [ ! -e "$TMP/q/model.safetensors" ] \
   && [ "$(stat -c %s "$TMP/q/model.gguf")" -lt "$(stat -c %s "$M/model.safetensors")" ]; then
  ok "quantize q4_0: a smaller model.gguf"; else fail "quantize q4_0: a smaller model.gguf" "rc=$rc $(cat "$TMP/out")"; fi
"$VLMC" quantize -m "$M" --type q3_k --out "$TMP/q3" > "$TMP/err" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q "expected q8_0" "$TMP/err"; then ok "quantize: unknown type"
else fail "quantize: unknown type" "rc=$rc $(cat "$TMP/err")"; fi

"$VLMC" convert -m "$TMP/q" --to gguf --out "$TMP/g" > "$TMP/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && [ -s "$TMP/g/model.gguf" ] && [ -s "$TMP/g/mmproj.gguf" ] && [ -s "$TMP/g/preprocessor_config.json" ]; then
  ok "convert: model.gguf + mmproj.gguf"; else fail "convert: model.gguf + mmproj.gguf" "rc=$rc $(cat "$TMP/out")"; fi

for m in "$TMP/q" "$TMP/g"; do
  "$VLMC" bench -m "$m" -t 1 -p 32 -n 8 --json > "$TMP/bench.json" 2> "$TMP/err"; rc=$?
  if [ $rc -eq 0 ] && python3 -c 'import json,sys; b=json.load(open(sys.argv[1]))
for k in ("image_encode_s", "prompt_tokens_per_s", "gen_tokens_per_s", "peak_rss_bytes", "copy_gb_per_s", "fma_gflops"):
    assert b[k] > 0, k' "$TMP/bench.json"; then
    ok "bench --json keys ($(basename "$m"))"; else fail "bench --json keys ($(basename "$m"))" "rc=$rc $(cat "$TMP/err" "$TMP/bench.json")"; fi
done
"$VLMC" bench -m "$M" -t 1 -p 2000 -n 8 > "$TMP/err" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q "exceed max_position_embeddings" "$TMP/err"; then ok "bench: prompt longer than the context"
else fail "bench: prompt longer than the context" "rc=$rc $(cat "$TMP/err")"; fi

finish
