# End-to-end tests of the Yi-VL and Qwen-VL families through the CLI (sourced helpers: tests/clilib.sh):
# `vlmc info` names the family, `vlmc dump` on the fixture's own inputs (image_raw; for Qwen-VL also the image
# path inside the ids) gives the fixture's logits and greedy ids, `vlmc run` on Qwen-VL with a tokenizer.json
# written for the fixture's toy vocabulary gives the fixture's greedy ids, and a folder without a tokenizer is
# a clear error.
. tests/clilib.sh

if ! have_shared || [ ! -d "$SHARED/fixtures/yi_vl" ] || [ ! -d "$SHARED/fixtures/qwen_vl" ]; then
  skip "yi_vl / qwen_vl" "../shared/fixtures absent"; finish; exit $?
fi
YI="$SHARED/fixtures/yi_vl"; QW="$SHARED/fixtures/qwen_vl"

out=$("$VLMC" info "$YI" 2>&1)
if echo "$out" | grep -q "^family *LlavaLlamaForCausalLM (Yi-VL)"; then ok "info: Yi-VL"; else fail "info: Yi-VL" "$out"; fi
out=$("$VLMC" info --json "$QW" 2>&1)
if echo "$out" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["family"] == "QWenLMHeadModel (Qwen-VL)" else 1)'
then ok "info --json: Qwen-VL"; else fail "info --json: Qwen-VL" "$out"; fi

# inputs: a folder with the named reference arrays (manifest entries copied)
make_in() { # make_in FIXTURE OUT NAME...
  python3 - "$@" <<'PY'
import json, shutil, sys, os
ref, out, names = sys.argv[1] + "/reference", sys.argv[2], sys.argv[3:]
m = json.load(open(ref + "/manifest.json"))
keep = [a for a in m["arrays"] if a["name"] in names]
os.makedirs(out, exist_ok=True)
for a in keep: shutil.copy(os.path.join(ref, a["file"]), out)
json.dump({"format": m["format"], "meta": {}, "arrays": keep}, open(out + "/manifest.json", "w"))
PY
}
# same_as_ref FIXTURE OUT: greedy ids equal, logits within 1e-4 * max|ref|
same_as_ref() {
  python3 - "$1/reference" "$2" <<'PY'
import struct, sys
ref, out = sys.argv[1], sys.argv[2]
def f32(p):
    b = open(p, "rb").read(); return struct.unpack("<%df" % (len(b) // 4), b)
if open(ref + "/generated_ids.bin", "rb").read() != open(out + "/generated_ids.bin", "rb").read(): sys.exit("ids differ")
r, o = f32(ref + "/logits.bin"), f32(out + "/logits.bin")
d = max(abs(a - b) for a, b in zip(r, o)) if len(r) == len(o) else float("inf")
m = max(abs(a) for a in r)
print("logits max|d| %.3g, max|ref| %.3g" % (d, m))
sys.exit(0 if d <= 1e-4 * m else 1)
PY
}

for fx in "$YI" "$QW"; do
  n=$(basename "$fx")
  make_in "$fx" "$TMP/in_$n" input_ids attention_mask image_raw
  if "$VLMC" dump -m "$fx" --inputs "$TMP/in_$n" --out "$TMP/out_$n" --generate 16 2>"$TMP/err" &&
     r=$(same_as_ref "$fx" "$TMP/out_$n" 2>&1); then ok "dump $n from image_raw: ids exact, $r"
  else fail "dump $n from image_raw" "$(cat "$TMP/err") $r"; fi
done

# Qwen-VL opens the path written inside the <img> span (here image.png, relative to the inputs folder)
make_in "$QW" "$TMP/in_path" input_ids attention_mask
cp "$QW/reference/image.png" "$TMP/in_path/"
if "$VLMC" dump -m "$QW" --inputs "$TMP/in_path" --out "$TMP/out_path" --generate 16 2>"$TMP/err" &&
   r=$(same_as_ref "$QW" "$TMP/out_path" 2>&1); then ok "dump qwen_vl from the path in the ids: $r"
else fail "dump qwen_vl from the path in the ids" "$(cat "$TMP/err") $r"; fi
rm "$TMP/in_path/image.png"
if "$VLMC" dump -m "$QW" --inputs "$TMP/in_path" --out "$TMP/out_path2" 2>"$TMP/err"; then
  fail "dump qwen_vl without its image" "exit 0"
elif grep -q "image.png" "$TMP/err"; then ok "dump qwen_vl without its image: $(cat "$TMP/err")"
else fail "dump qwen_vl without its image" "$(cat "$TMP/err")"; fi

# vlmc run: the fixture folders have no tokenizer.json
out=$("$VLMC" run -m "$YI" --image "$YI/reference/image.png" -p hi 2>&1)
if [ $? -ne 0 ] && echo "$out" | grep -q "tokenizer.json"; then ok "run yi_vl: $out"; else fail "run yi_vl" "$out"; fi

# vlmc run on Qwen-VL with the toy vocabulary as tokenizer.json and the fixture's prompt layout as template
M="$TMP/qwen_run"; mkdir -p "$M"
for f in config.json model.safetensors generation_config.json; do ln -s "$(cd "$QW" && pwd)/$f" "$M/$f"; done
python3 - "$M" <<'PY'
import json, sys
d = sys.argv[1]
special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>",
           "<img>", "</img>", "<imgpad>"]
vocab = {}
for i in range(1024):
    if 300 <= i < 395: vocab[chr(i - 300 + 32)] = i
    elif i == 395: vocab["\n"] = i
    elif 1009 <= i < 1021: vocab[special[i - 1009]] = i
    else: vocab["<t%d>" % i] = i
tok = {"version": "1.0", "truncation": None, "padding": None,
       "added_tokens": [{"id": 1009 + k, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                         "normalized": False, "special": True} for k, s in enumerate(special)],
       "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}
json.dump(tok, open(d + "/tokenizer.json", "w"))
tpl = ("{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}Picture {{ loop.index }}: "
       "<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}")
json.dump({"chat_template": tpl}, open(d + "/tokenizer_config.json", "w"))
PY
"$VLMC" run -m "$M" --image "$QW/reference/image.png" -p "<ref>a cat</ref><box>(120,340),(560,780)</box> is" \
  -n 16 --temp 0 --ignore-eos --json >"$TMP/run.json" 2>"$TMP/err"
if [ $? -eq 0 ] && python3 - "$TMP/run.json" "$QW/reference/generated_ids.bin" <<'PY'
import json, struct, sys
j = json.load(open(sys.argv[1])); b = open(sys.argv[2], "rb").read()
sys.exit(0 if j["ids"] == list(struct.unpack("<%di" % (len(b) // 4), b)) and len(j["prompt_ids"]) == 301 else 1)
PY
then ok "run qwen_vl (toy tokenizer): the fixture's greedy ids"
else fail "run qwen_vl (toy tokenizer)" "$(cat "$TMP/err" "$TMP/run.json")"; fi

finish
