# End-to-end tests of `vlmc info` (sourced helpers: tests/clilib.sh).
. tests/clilib.sh

out=$("$VLMC" info models/tiny-random-llava 2>&1)
if [ $? -eq 0 ] && echo "$out" | grep -q "LlavaForConditionalGeneration" && echo "$out" | grep -q "parameters     260288"; then
  ok "info on the bundled model"; else fail "info on the bundled model" "$out"; fi

json=$("$VLMC" info --json models/tiny-random-llava)
if echo "$json" | python3 -c '
import json, sys
j = json.load(sys.stdin)
total = sum(t["parameters"] for t in j["tensors"])
c = j["components"]
sys.exit(0 if j["architecture"] == "LlavaForConditionalGeneration" and j["parameters"] == total
         and c["vision_tower"] + c["projector"] + c["decoder"] == total and len(j["tensors"]) == 64 else 1)'; then
  ok "info --json is consistent"; else fail "info --json is consistent" "$json"; fi

# Every fixture folder: names, shapes and counts equal the safetensors headers (read independently here).
if have_shared; then
  bad=""
  for d in "$SHARED"/fixtures/*/; do
    [ -f "$d/model.safetensors" ] || continue
    "$VLMC" info --json "$d" > "$TMP/info.json" 2>"$TMP/err" || { bad="$bad $(basename "$d")(exit: $(cat "$TMP/err"))"; continue; }
    python3 - "$d" "$TMP/info.json" <<'PY' || bad="$bad $(basename "$d")"
import json, struct, sys, os, glob
d, info = sys.argv[1], json.load(open(sys.argv[2]))
want = {}
files = [os.path.join(d, "model.safetensors")]
cfg = json.load(open(os.path.join(d, "config.json")))
vt = cfg.get("mm_vision_tower")
if isinstance(vt, str) and os.path.isdir(os.path.join(d, vt)):
    files += glob.glob(os.path.join(d, vt, "*.safetensors"))
for f in files:
    with open(f, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        for k, v in json.loads(fh.read(n)).items():
            if k != "__metadata__": want[k] = v["shape"]
got = {t["name"]: t["shape"] for t in info["tensors"]}
total = sum(eval("*".join(map(str, s)) or "1") for s in want.values())
ok = got == want and info["parameters"] == total and sum(info["components"].values()) == total
if not ok: print("mismatch in", d, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
  done
  if [ -z "$bad" ]; then ok "info matches every fixture's safetensors"; else fail "info matches every fixture's safetensors" "$bad"; fi
else
  skip "info matches every fixture's safetensors" "../shared or python3 absent"
fi

"$VLMC" info /nonexistent/model > "$TMP/out" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q "/nonexistent/model" "$TMP/out"; then ok "missing path is a clear error"; else fail "missing path is a clear error" "rc=$rc $(cat "$TMP/out")"; fi

mkdir -p "$TMP/broken" && printf '{"model_type": "llama", "hidden_size": -1}' > "$TMP/broken/config.json"
"$VLMC" info "$TMP/broken" > "$TMP/out" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q "config.json" "$TMP/out" && grep -q "hidden_size" "$TMP/out"; then ok "bad config is a clear error"; else fail "bad config is a clear error" "$(cat "$TMP/out")"; fi

out=$("$VLMC" info fuzz/corpus/gguf/small_valid.gguf 2>&1)
if echo "$out" | grep -q "GGUF v3" && echo "$out" | grep -q "parameters     96"; then ok "info on a GGUF file"; else fail "info on a GGUF file" "$out"; fi

finish
