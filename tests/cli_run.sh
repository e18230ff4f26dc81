# End-to-end tests of `vlmc run` and `vlmc dump` (sourced helpers: tests/clilib.sh). The fixtures have no
# tokenizer: tests/make_chat_model.py turns the llava fixture into a chat-ready folder (byte-level BPE of
# exactly vocab_size entries, "<image>" = id 1000, a LLaVA-style template). Checks run's greedy ids against
# `vlmc dump --generate` on the same prompt ids and pixels, and the dump seam against the fixture references.
. tests/clilib.sh

IMG="$SHARED/fixtures/llava/reference/image.png"
if ! have_shared || [ ! -d "$SHARED/fixtures/llava" ]; then
  skip "vlmc run" "../shared/fixtures/llava absent"; finish; exit $?
fi
M="$TMP/model"
python3 tests/make_chat_model.py "$SHARED/fixtures/llava" "$M" || { fail "make test model" "python3"; finish; exit 1; }

# json field extractor: jf FILE EXPR (python expression over j)
jf() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# 1. greedy run, then the same prompt ids + pixels through the dump: the same tokens
"$VLMC" run -m "$M" --image "$IMG" -p "hi" -n 8 --temp 0 --ignore-eos --json -t 1 >"$TMP/run.json" 2>"$TMP/err"
if [ $? -eq 0 ] && [ "$(jf "$TMP/run.json" 'len(j["ids"])')" = 8 ] &&
   [ "$(jf "$TMP/run.json" 'j["prompt_ids"].count(1000)')" = 16 ] && [ "$(jf "$TMP/run.json" 'j["prompt_ids"][0]')" = 1 ]; then
  ok "run --json: 8 ids, 16 image tokens, one BOS"
else fail "run --json" "$(cat "$TMP/err" "$TMP/run.json")"; fi

"$VLMC" preprocess -m "$M" --image "$IMG" --out "$TMP/pp" >/dev/null 2>"$TMP/err" || fail "preprocess" "$(cat "$TMP/err")"
mkdir -p "$TMP/in"
cp "$TMP/pp/pixel_values.bin" "$TMP/in/"
python3 - "$TMP/run.json" "$TMP/in" <<'PY'
import json, struct, sys
ids = json.load(open(sys.argv[1]))["prompt_ids"]; d = sys.argv[2]; T = len(ids)
open(d + "/input_ids.bin", "wb").write(struct.pack("<%di" % T, *ids))
open(d + "/attention_mask.bin", "wb").write(struct.pack("<%di" % T, *([1] * T)))
arr = lambda n, dt, sh: {"name": n, "file": n + ".bin", "dtype": dt, "shape": sh}
json.dump({"format": "vlmc test", "meta": {}, "arrays": [arr("input_ids", "int32", [1, T]),
          arr("attention_mask", "int32", [1, T]), arr("pixel_values", "float32", [1, 3, 56, 56])]},
          open(d + "/manifest.json", "w"))
PY
if "$VLMC" dump -m "$M" --inputs "$TMP/in" --out "$TMP/out" --generate 8 2>"$TMP/err" &&
   python3 - "$TMP/run.json" "$TMP/out/generated_ids.bin" <<'PY'
import json, struct, sys
ids = json.load(open(sys.argv[1]))["ids"]
b = open(sys.argv[2], "rb").read()
sys.exit(0 if list(struct.unpack("<%di" % (len(b) // 4), b)) == ids else 1)
PY
then ok "run greedy ids = dump --generate on the same prompt"; else fail "run vs dump" "$(cat "$TMP/err")"; fi

# 2. streaming output = the json text
"$VLMC" run -m "$M" --image "$IMG" -p "hi" -n 8 --ignore-eos -t 1 >"$TMP/stream.txt" 2>"$TMP/err"
if python3 -c '
import json, sys
t = open(sys.argv[2], encoding="utf-8", errors="surrogateescape").read()
sys.exit(0 if t == json.load(open(sys.argv[1]))["text"] + "\n" else 1)' "$TMP/run.json" "$TMP/stream.txt"; then
  ok "streamed text = the answer"; else fail "streamed text" "$(cat "$TMP/err")"; fi

# 3. seeds: same seed same tokens, another seed other tokens
s1=$("$VLMC" run -m "$M" -p "tell me" -n 16 --ignore-eos --temp 0.9 --top-k 50 --top-p 0.95 --seed 5 --json -t 1 | jf /dev/stdin 'j["ids"]')
s2=$("$VLMC" run -m "$M" -p "tell me" -n 16 --ignore-eos --temp 0.9 --top-k 50 --top-p 0.95 --seed 5 --json -t 1 | jf /dev/stdin 'j["ids"]')
s3=$("$VLMC" run -m "$M" -p "tell me" -n 16 --ignore-eos --temp 0.9 --top-k 50 --top-p 0.95 --seed 6 --json -t 1 | jf /dev/stdin 'j["ids"]')
if [ -n "$s1" ] && [ "$s1" = "$s2" ] && [ "$s1" != "$s3" ]; then ok "sampling is deterministic per seed"
else fail "seeds" "$s1 / $s2 / $s3"; fi
s4=$("$VLMC" run -m "$M" -p "tell me" -n 16 --ignore-eos --temp 0.9 --min-p 0.2 --repeat-penalty 1.3 --seed 5 --json -t 1 | jf /dev/stdin 'len(j["ids"])')
[ "$s4" = 16 ] && ok "min-p and repetition penalty run" || fail "min-p / repeat-penalty" "$s4"

# 4. max new tokens
n=$("$VLMC" run -m "$M" -p "hi" -n 3 --ignore-eos --json -t 1 | jf /dev/stdin 'str(len(j["ids"])) + j["stop"]')
[ "$n" = "3length" ] && ok "-n 3 stops after 3 tokens" || fail "-n 3" "$n"

# 5. a stop string cut from the greedy answer: the text ends right before it
"$VLMC" run -m "$M" --image "$IMG" -p "hi" -n 24 --ignore-eos --json -t 1 >"$TMP/long.json"
stop=$(jf "$TMP/long.json" '[j["text"][k:k+2] for k in range(4, len(j["text"]) - 2) if j["text"][k:k+2].isascii() and j["text"][k:k+2].isalpha()][0]')
want=$(jf "$TMP/long.json" 'j["text"][:j["text"].find("'"$stop"'")]')
"$VLMC" run -m "$M" --image "$IMG" -p "hi" -n 24 --ignore-eos --stop "$stop" --json -t 1 >"$TMP/stop.json"
if [ -n "$stop" ] && [ "$(jf "$TMP/stop.json" 'j["text"]')" = "$want" ] && [ "$(jf "$TMP/stop.json" 'j["stop"]')" = stop ]; then
  ok "stop string \"$stop\" ends the answer before it"; else fail "stop string" "$stop: $(cat "$TMP/stop.json")"; fi
"$VLMC" run -m "$M" --image "$IMG" -p "hi" -n 24 --ignore-eos --stop "$stop" -t 1 >"$TMP/stop.txt"
[ "$(cat "$TMP/stop.txt")" = "$want" ] && ok "stop string while streaming" || fail "stop string streaming" "$(cat "$TMP/stop.txt") vs $want"

# 6. EOS: generation_config.json eos_token_id as a list [unused id, the 3rd greedy token]: the answer stops at the
# first of them, which is the last id, and its text is not in the answer
cp -r "$M" "$TMP/eos"
"$VLMC" run -m "$M" -p "hi" -n 8 --ignore-eos --json -t 1 >"$TMP/g8.json"
x=$(jf "$TMP/g8.json" 'j["ids"][2]')
printf '{"bos_token_id": 1, "eos_token_id": [1023, %s], "pad_token_id": 0}' "$x" >"$TMP/eos/generation_config.json"
"$VLMC" run -m "$TMP/eos" -p "hi" -n 8 --json -t 1 >"$TMP/eos.json"
want=$(jf "$TMP/g8.json" 'j["ids"][:j["ids"].index('"$x"') + 1]')
if [ "$(jf "$TMP/eos.json" 'j["ids"]')" = "$want" ] && [ "$(jf "$TMP/eos.json" 'j["stop"]')" = eos ]; then
  ok "EOS ids from generation_config.json (a list) stop the answer"
else fail "eos list" "want $want: $(cat "$TMP/eos.json")"; fi

# 7. errors
"$VLMC" run -m "$M" --image "$TMP/nope.png" -p "hi" >"$TMP/o" 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "nope.png" "$TMP/o" && ok "missing image: clear error" || fail "missing image" "rc=$rc $(cat "$TMP/o")"
"$VLMC" run -m "$M" -p "hi" --bogus >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "bogus" "$TMP/o" && ok "unknown flag" || fail "unknown flag" "rc=$rc $(cat "$TMP/o")"
"$VLMC" run -m "$M" -p "hi" --temp abc >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "temp" "$TMP/o" && ok "bad --temp value" || fail "bad --temp" "rc=$rc $(cat "$TMP/o")"
VLMC_MODEL="$TMP/no-such-model" "$VLMC" run -p "hi" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "no-such-model" "$TMP/o" && ok "no -m: \$VLMC_MODEL is the model, a missing one is named" || fail "no -m, VLMC_MODEL" "rc=$rc $(cat "$TMP/o")"
mkdir -p "$TMP/bin" && cp "$VLMC" "$TMP/bin/vlmc"
(cd "$TMP" && env -u VLMC_MODEL ./bin/vlmc run -p "hi") >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "no model given" "$TMP/o" && grep -q "models/vlmc-tiny" "$TMP/o" && ok "no -m and no default model beside the binary: clear error" || fail "no -m, no default" "rc=$rc $(cat "$TMP/o")"
"$VLMC" run -m "$SHARED/fixtures/llava" -p "hi" >"$TMP/o" 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "tokenizer" "$TMP/o" && ok "no tokenizer: clear error" || fail "no tokenizer" "rc=$rc $(cat "$TMP/o")"
"$VLMC" run -m "$M" -p "hi there, how are you today" -c 8 >"$TMP/o" 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q "context" "$TMP/o" && ok "prompt longer than -c: clear error" || fail "-c too small" "rc=$rc $(cat "$TMP/o")"
if [ -d "$SHARED/fixtures/llama" ]; then
  python3 tests/make_chat_model.py "$SHARED/fixtures/llama" "$TMP/llama"
  "$VLMC" run -m "$TMP/llama" -p "hi" -n 4 --json -t 1 >"$TMP/o" 2>&1 && ok "decoder-only model runs" || fail "decoder-only run" "$(cat "$TMP/o")"
  "$VLMC" run -m "$TMP/llama" --image "$IMG" -p "hi" >"$TMP/o" 2>&1; rc=$?
  [ $rc -ne 0 ] && grep -q "takes no images" "$TMP/o" && ok "image to a text model: clear error" || fail "image to text model" "$(cat "$TMP/o")"
fi

# 8. the dump seam on fixture inputs: logits and generated ids against the references
for fx in llava llava_next idefics3 llama deepseek_vl deepseek_vl_hybrid; do
  d="$SHARED/fixtures/$fx"
  [ -d "$d" ] || { skip "dump $fx" "absent"; continue; }
  mkdir -p "$TMP/din_$fx"
  python3 - "$d/reference" "$TMP/din_$fx" "$fx" <<'PY'
import json, shutil, sys
ref, out, fx = sys.argv[1], sys.argv[2], sys.argv[3]
m = json.load(open(ref + "/manifest.json"))
names = ("input_ids", "attention_mask", "pixel_values", "image_sizes", "pixel_attention_mask")
if fx.startswith("deepseek"):  # DeepSeek-VL's original inputs; the raw image is preprocessed by vlmc
    names += ("images_seq_mask", "images_emb_mask", "image_raw")
keep = [a for a in m["arrays"] if a["name"] in names]
for a in keep: shutil.copy(ref + "/" + a["file"], out + "/" + a["file"])
json.dump({"format": m["format"], "meta": {}, "arrays": keep}, open(out + "/manifest.json", "w"))
PY
  if "$VLMC" dump -m "$d" --inputs "$TMP/din_$fx" --out "$TMP/dout_$fx" --generate 16 2>"$TMP/err" &&
     python3 - "$d/reference" "$TMP/dout_$fx" <<'PY'
import array, json, sys
def load(d, name):
    m = json.load(open(d + "/manifest.json"))
    a = [x for x in m["arrays"] if x["name"] == name][0]
    v = array.array("f" if a["dtype"] == "float32" else "i"); v.frombytes(open(d + "/" + a["file"], "rb").read())
    return a["shape"], v
ref, out = sys.argv[1], sys.argv[2]
s1, l1 = load(ref, "logits"); s2, l2 = load(out, "logits")
ok = s1 == s2 and max(abs(a - b) for a, b in zip(l1, l2)) <= 1e-4 * max(abs(a) for a in l1)
ok = ok and load(ref, "generated_ids") == load(out, "generated_ids")
sys.exit(0 if ok else 1)
PY
  then ok "vlmc dump $fx: logits and generated ids match"; else fail "vlmc dump $fx" "$(cat "$TMP/err")"; fi
done
cp -r "$TMP/din_llava" "$TMP/din_bad"
python3 - "$SHARED/fixtures/llava/reference" "$TMP/din_bad" <<'PY'
import json, shutil, sys
ref, out = sys.argv[1], sys.argv[2]
m = json.load(open(out + "/manifest.json"))
lab = [a for a in json.load(open(ref + "/manifest.json"))["arrays"] if a["name"] == "labels"][0]
shutil.copy(ref + "/" + lab["file"], out + "/" + lab["file"]); m["arrays"].append(lab)
json.dump(m, open(out + "/manifest.json", "w"))
PY
if "$VLMC" dump -m "$SHARED/fixtures/llava" --inputs "$TMP/din_bad" --out "$TMP/dbad" --grads >"$TMP/o" 2>&1 &&
   python3 - "$SHARED/fixtures/llava/reference" "$TMP/dbad" <<'PY'
import array, json, struct, sys
ref, out = sys.argv[1], sys.argv[2]
def loss(d):
    a = [x for x in json.load(open(d + "/manifest.json"))["arrays"] if x["name"] == "loss"][0]
    return struct.unpack("<f", open(d + "/" + a["file"], "rb").read())[0]
def st(path):
    b = open(path, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return {k: array.array("f", b[8 + n + v["data_offsets"][0]: 8 + n + v["data_offsets"][1]]) for k, v in h.items() if k != "__metadata__"}
assert abs(loss(ref) - loss(out)) <= 1e-5 * abs(loss(ref)), (loss(ref), loss(out))
g, w = st(out + "/grads.safetensors"), st(ref + "/grads.safetensors")
for k, v in w.items():
    if "vision" in k and "k_proj.bias" in k: continue  # true gradient 0: float noise on both sides
    m = max(abs(x) for x in v); d = max(abs(a - b) for a, b in zip(g[k], v))
    assert d <= 1e-4 * m, (k, d, m)
PY
then ok "dump with labels and --grads: loss and every gradient match PyTorch's"; else fail "dump --grads" "$(cat "$TMP/o")"; fi
"$VLMC" dump -m "$SHARED/fixtures/llava" --inputs "$TMP/din_llava" --out "$TMP/dg" --grads >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "labels" "$TMP/o" && ok "dump --grads without labels: clear error" || fail "dump --grads without labels" "rc=$rc $(cat "$TMP/o")"

# 9. The whole pipeline from the PNG files: tests/make_fixture_prompt_model.py gives each fixture a tokenizer and
# chat template under which `vlmc run` builds exactly the fixture's input_ids (Idefics3: SmolVLM's template and
# the fixture's toy tokenizer); the answer must be transformers' generated_ids.
for fx in llava llava_multi_image llava_next idefics3 qwen2_vl; do
  d="$SHARED/fixtures/$fx"
  [ -d "$d" ] || { skip "run $fx from PNG" "absent"; continue; }
  python3 tests/make_fixture_prompt_model.py "$d" "$TMP/fp_$fx" || { fail "run $fx from PNG" "python3"; continue; }
  if [ -f "$d/reference/image0.png" ]; then set -- --image "$d/reference/image0.png" --image "$d/reference/image1.png"
  else set -- --image "$d/reference/image.png"; fi
  "$VLMC" run -m "$TMP/fp_$fx" "$@" -p "What is this?" -n 16 --ignore-eos --temp 0 --json -t 1 >"$TMP/fp_$fx.json" 2>"$TMP/err"
  if python3 - "$d/reference" "$TMP/fp_$fx.json" <<'PY'
import json, struct, sys
rd = lambda n: (lambda b: list(struct.unpack("<%di" % (len(b) // 4), b)))(open(sys.argv[1] + "/" + n, "rb").read())
j = json.load(open(sys.argv[2]))
sys.exit(0 if j["prompt_ids"] == rd("input_ids.bin") and j["ids"] == rd("generated_ids.bin") else 1)
PY
  then ok "run $fx from PNG: prompt ids and generated ids = transformers'"
  else fail "run $fx from PNG" "$(cat "$TMP/err" "$TMP/fp_$fx.json")"; fi
done

# moondream2 builds its own prompt (no chat template): [bos] + image slots + "\n\nQuestion: ...\n\nAnswer:" ids, the
# crops made from the PNG; the answer must be the original generator's, also with passes of -b 5 (the 730-token
# bidirectional prefix still runs in one pass)
d="$SHARED/fixtures/moondream2"
if [ -d "$d" ] && python3 tests/make_fixture_prompt_model.py "$d" "$TMP/fp_moondream2"; then
  for b in 512 5; do
    "$VLMC" run -m "$TMP/fp_moondream2" --image "$d/reference/image.png" -p "What is in the picture?" -n 16 --ignore-eos \
      -b $b --json -t 1 >"$TMP/fp_md.json" 2>"$TMP/err"
    if python3 - "$d/reference" "$TMP/fp_md.json" <<'PY'
import json, struct, sys
rd = lambda n: (lambda b: list(struct.unpack("<%di" % (len(b) // 4), b)))(open(sys.argv[1] + "/" + n, "rb").read())
j = json.load(open(sys.argv[2]))
sys.exit(0 if j["prompt_ids"] == rd("input_ids_full.bin") and j["ids"] == rd("generated_ids.bin") else 1)
PY
    then ok "run moondream2 from PNG (-b $b): prompt ids and generated ids = the original code's"
    else fail "run moondream2 from PNG (-b $b)" "$(cat "$TMP/err" "$TMP/fp_md.json")"; fi
  done
  "$VLMC" run -m "$TMP/fp_moondream2" -p "What is in the picture?" -n 4 >"$TMP/o" 2>&1; rc=$?
  [ $rc -eq 1 ] && grep -q "one image" "$TMP/o" && ok "run moondream2 without an image: clear error" \
    || fail "moondream2 without an image" "rc=$rc $(cat "$TMP/o")"
else skip "run moondream2 from PNG" "fixture absent"; fi

# a prompt run in passes of 5 tokens (-b 5) gives the same answer (qwen2_vl: M-RoPE positions cut into passes)
for fx in llava_next qwen2_vl; do
  [ -d "$TMP/fp_$fx" ] || continue
  "$VLMC" run -m "$TMP/fp_$fx" --image "$SHARED/fixtures/$fx/reference/image.png" -p x -n 16 --ignore-eos \
    -b 5 --json -t 1 >"$TMP/b5.json" 2>"$TMP/err"
  if [ "$(jf "$TMP/b5.json" 'j["ids"]')" = "$(jf "$TMP/fp_$fx.json" 'j["ids"]')" ]; then ok "$fx: prefill in passes of -b 5 tokens"
  else fail "$fx: -b 5" "$(cat "$TMP/err")"; fi
done

finish
