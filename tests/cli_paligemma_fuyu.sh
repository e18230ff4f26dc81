# End-to-end tests of the CLI on the paligemma and fuyu fixtures (sourced helpers: tests/clilib.sh): `vlmc info`,
# `vlmc preprocess` (bit-exact processor outputs), `vlmc dump` (logits, training loss) and `vlmc run` from the PNG
# (a tokenizer from tests/make_plain_prompt_model.py spells the fixture's toy ids; answers = transformers').
. tests/clilib.sh

if ! have_shared || [ ! -d "$SHARED/fixtures/fuyu" ] || [ ! -d "$SHARED/fixtures/paligemma" ]; then
  skip "paligemma / fuyu CLI" "../shared/fixtures absent"; finish; exit $?
fi
P="$SHARED/fixtures/paligemma"; F="$SHARED/fixtures/fuyu"

out=$("$VLMC" info "$P" 2>&1) && echo "$out" | grep -q "PaliGemmaForConditionalGeneration" && echo "$out" | grep -q "decoder        gemma" \
  && ok "info paligemma" || fail "info paligemma" "$out"
out=$("$VLMC" info "$F" 2>&1) && echo "$out" | grep -q "FuyuForCausalLM" && echo "$out" | grep -q "decoder        persimmon" \
  && ok "info fuyu" || fail "info fuyu" "$out"

# preprocess: the arrays equal the fixture's bit for bit
same() { cmp -s "$1" "$2"; }
"$VLMC" preprocess -m "$F" --image "$F/reference/image.png" --out "$TMP/pf" >"$TMP/o" 2>&1 \
  && same "$TMP/pf/pixel_values.bin" "$F/reference/processed_image.bin" && same "$TMP/pf/image_patches.bin" "$F/reference/image_patches.bin" \
  && grep -q "rows 4 cols 6" "$TMP/o" && ok "preprocess fuyu: processed image and patches exact" || fail "preprocess fuyu" "$(cat "$TMP/o")"
"$VLMC" preprocess -m "$P" --image "$P/reference/image.png" --out "$TMP/pp" >"$TMP/o" 2>&1 \
  && same "$TMP/pp/pixel_values.bin" "$P/reference/pixel_values.bin" && grep -q "16 image tokens" "$TMP/o" \
  && ok "preprocess paligemma: pixel_values exact" || fail "preprocess paligemma" "$(cat "$TMP/o")"

# dump: an inputs folder made from the fixture's arrays (renamed: train_* → the seam's names)
inputs() { # REF OUT NAME[=AS]...
  python3 - "$@" <<'PY'
import json, os, shutil, sys
ref, out, pairs = sys.argv[1], sys.argv[2], [a.split("=") + [a] for a in sys.argv[3:]]
m = {a["name"]: a for a in json.load(open(ref + "/manifest.json"))["arrays"]}
os.makedirs(out, exist_ok=True)
arrs = []
for p in pairs:
    a, n = m[p[0]], p[1] if len(p) == 3 else p[0]
    shutil.copy(ref + "/" + a["file"], out + "/" + n + ".bin")
    arrs.append({"name": n, "file": n + ".bin", "dtype": a["dtype"], "shape": a["shape"]})
json.dump({"format": "raw", "arrays": arrs}, open(out + "/manifest.json", "w"))
PY
}
close() { # OUT_ARRAY REF_ARRAY TOL
  python3 - "$@" <<'PY'
import struct, sys
rd = lambda p: (lambda b: struct.unpack("<%df" % (len(b) // 4), b))(open(p, "rb").read())
a, b = rd(sys.argv[1]), rd(sys.argv[2])
sys.exit(0 if len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= float(sys.argv[3]) * max(abs(y) for y in b) else 1)
PY
}
inputs "$F/reference" "$TMP/fin" input_ids attention_mask image_patches image_patches_indices
"$VLMC" dump -m "$F" --inputs "$TMP/fin" --out "$TMP/fout" --generate 16 >"$TMP/o" 2>&1 \
  && close "$TMP/fout/logits.bin" "$F/reference/logits.bin" 1e-4 && same "$TMP/fout/generated_ids.bin" "$F/reference/generated_ids.bin" \
  && ok "dump fuyu: logits and generated ids" || fail "dump fuyu" "$(cat "$TMP/o")"
inputs "$P/reference" "$TMP/ptin" train_input_ids=input_ids train_token_type_ids=token_type_ids train_labels=labels pixel_values
"$VLMC" dump -m "$P" --inputs "$TMP/ptin" --out "$TMP/ptout" >"$TMP/o" 2>&1 \
  && close "$TMP/ptout/loss.bin" "$P/reference/train_loss.bin" 1e-5 && close "$TMP/ptout/logits.bin" "$P/reference/train_logits.bin" 1e-4 \
  && ok "dump paligemma with labels: training loss and prefix-LM logits" || fail "dump paligemma train" "$(cat "$TMP/o")"
"$VLMC" dump -m "$P" --inputs "$TMP/ptin" --out "$TMP/ptg" --grads >"$TMP/o" 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "grads" "$TMP/o" && ok "dump paligemma --grads: clear error" || fail "dump paligemma --grads" "rc=$rc $(cat "$TMP/o")"

# run from the PNG: the processor's prompt layout (no chat template), then transformers' greedy answer
for fx in paligemma fuyu; do
  text=$(python3 tests/make_plain_prompt_model.py "$SHARED/fixtures/$fx" "$TMP/m_$fx") || { fail "run $fx" "python3"; continue; }
  "$VLMC" run -m "$TMP/m_$fx" --image "$SHARED/fixtures/$fx/reference/image.png" -p "$text" -n 16 --ignore-eos --json -t 1 \
    >"$TMP/r_$fx.json" 2>"$TMP/err"
  if python3 - "$SHARED/fixtures/$fx/reference" "$TMP/r_$fx.json" <<'PY'
import json, struct, sys
rd = lambda n: (lambda b: list(struct.unpack("<%di" % (len(b) // 4), b)))(open(sys.argv[1] + "/" + n, "rb").read())
j = json.load(open(sys.argv[2]))
sys.exit(0 if j["prompt_ids"] == rd("input_ids.bin") and j["ids"] == rd("generated_ids.bin") else 1)
PY
  then ok "run $fx from PNG: prompt ids and generated ids = transformers'"
  else fail "run $fx from PNG" "$(cat "$TMP/err" "$TMP/r_$fx.json")"; fi
done

finish
