#!/usr/bin/env bash
# vlmc train: the CLI end to end on a tiny random Llama with the tokenizer_gpt2 fixture's tokenizer:
# progress line, metrics.jsonl, eval loss, loss.svg, checkpoints, export, resume.
. "$(dirname "$0")/clilib.sh"
TK=$SHARED/fixtures/tokenizer_gpt2
if ! have_shared || [ ! -d "$TK" ]; then
  skip "train cli" "$SHARED/fixtures/tokenizer_gpt2 is absent"; finish; exit
fi
M=$TMP/model
mkdir -p "$M"
cp "$TK"/vocab.json "$TK"/merges.txt "$TK"/tokenizer_config.json "$TK"/special_tokens_map.json "$TK"/added_tokens.json "$M"/
python3 - "$M" <<'PY'
import json, random, struct, sys
d = sys.argv[1]
V, D, I, L = 563, 32, 64, 2
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": D,
       "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": 4, "num_key_value_heads": 2,
       "head_dim": 8, "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
       "max_position_embeddings": 256, "tie_word_embeddings": True, "pad_token_id": 0, "torch_dtype": "float32"}
json.dump(cfg, open(d + "/config.json", "w"))
open(d + "/chat_template.jinja", "w").write(
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
random.seed(1)
t = {"model.embed_tokens.weight": [V, D], "model.norm.weight": [D]}
for l in range(L):
    p = "model.layers.%d." % l
    t.update({p + "input_layernorm.weight": [D], p + "post_attention_layernorm.weight": [D],
              p + "self_attn.q_proj.weight": [32, D], p + "self_attn.k_proj.weight": [16, D],
              p + "self_attn.v_proj.weight": [16, D], p + "self_attn.o_proj.weight": [D, 32],
              p + "mlp.gate_proj.weight": [I, D], p + "mlp.up_proj.weight": [I, D], p + "mlp.down_proj.weight": [D, I]})
hdr, blobs, off = {}, [], 0
for name, shape in t.items():
    n = 1
    for s in shape: n *= s
    vals = [1.0] * n if name.endswith("norm.weight") else [random.gauss(0, 0.2) for _ in range(n)]
    b = struct.pack("<%df" % n, *vals)
    hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
    blobs.append(b); off += len(b)
h = json.dumps(hdr).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(d + "/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h); [f.write(b) for b in blobs]
rows = [("What is the capital of France?", "Paris."), ("Say hello.", "Hello there!"),
        ("What is two plus two?", "It is four."), ("Opposite of hot?", "Cold.")]
with open(d + "/../train.jsonl", "w") as f:
    for q, a in rows:
        f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
with open(d + "/../val.json", "w") as f:
    json.dump([{"conversations": [{"from": "human", "value": "Say hello."}, {"from": "gpt", "value": "Hello there!"}]}], f)
PY
OUT=$TMP/out
if "$VLMC" train -m "$M" --data "$TMP/train.jsonl" --eval-data "$TMP/val.json" --out "$OUT" --lr 1e-3 --epochs 3 \
     --batch-size 2 --warmup-steps 1 --lr-scheduler-type cosine --save-steps 3 --seed 3 --threads 1 2>"$TMP/err"; then
  ok "train runs"
else
  fail "train runs" "$(tail -3 "$TMP/err")"
fi
grep -q "step 6/6 | epoch 3.00 | loss " "$TMP/err" && grep -q "tok/s" "$TMP/err" && grep -q "ETA" "$TMP/err" \
  && ok "progress line" || fail "progress line" "$(tr '\r' '\n' <"$TMP/err" | tail -3)"
n=$(grep -c '"loss"' "$OUT/metrics.jsonl" 2>/dev/null); e=$(grep -c '"eval_loss"' "$OUT/metrics.jsonl" 2>/dev/null)
[ "$n" = 6 ] && [ "$e" = 3 ] && ok "metrics.jsonl: 6 steps, 3 evals" || fail "metrics.jsonl" "$n steps, $e evals"
grep -q "<polyline" "$OUT/loss.svg" 2>/dev/null && ok "loss.svg" || fail "loss.svg" "missing"
[ -f "$OUT/checkpoint-3/trainable.safetensors" ] && [ -f "$OUT/checkpoint-3/optimizer.safetensors" ] \
  && [ -f "$OUT/checkpoint-6/trainer_state.json" ] && ok "checkpoints" || fail "checkpoints" "missing"
for f in config.json model.safetensors vocab.json merges.txt tokenizer_config.json chat_template.jinja; do
  [ -f "$OUT/$f" ] || { fail "export" "$f missing"; break; }
done
[ -f "$OUT/model.safetensors" ] && ok "export files"
# the export is a model folder vlmc reads (test_trainer checks its logits through the decoder)
"$VLMC" info "$OUT" >"$TMP/info" 2>&1 && grep -qi "llama" "$TMP/info" && ok "export: vlmc info reads it" \
  || fail "export: vlmc info" "$(head -3 "$TMP/info")"
# resume from the step-3 checkpoint gives the same step 4..6 losses
if "$VLMC" train -m "$M" --data "$TMP/train.jsonl" --out "$TMP/out2" --lr 1e-3 --epochs 3 --batch-size 2 \
     --warmup-steps 1 --lr-scheduler-type cosine --seed 3 --threads 1 --resume "$OUT/checkpoint-3" -q --no-export \
     2>"$TMP/err3"; then
  a=$(grep '"loss"' "$OUT/metrics.jsonl" | tail -3 | sed 's/.*"loss": \([^,]*\),.*/\1/')
  b=$(grep '"loss"' "$TMP/out2/metrics.jsonl" | sed 's/.*"loss": \([^,]*\),.*/\1/')
  [ "$a" = "$b" ] && ok "resume: same losses" || fail "resume: same losses" "$a vs $b"
else
  fail "resume" "$(tail -2 "$TMP/err3")"
fi
"$VLMC" train -m "$M" --data "$TMP/train.jsonl" --out "$TMP/out3" --stage projector 2>"$TMP/err4"
[ $? -eq 1 ] && grep -q "needs a VLM" "$TMP/err4" && ok "projector stage on a text model is an error" \
  || fail "projector stage error" "$(cat "$TMP/err4")"
# vlmc dump --grads on the LLaVA-NeXT and Idefics3 fixtures (5-D pixel_values, image_sizes /
# pixel_attention_mask; labels = ids with -100 on the image tokens): the loss equals the cross-entropy of
# transformers' logits, and every tensor on the loss path has a gradient.
for fx in llava_next idefics3; do
  d="$SHARED/fixtures/$fx"
  [ -d "$d" ] || { skip "dump --grads $fx" "absent"; continue; }
  python3 - "$d" "$TMP/gin_$fx" <<'PY'
import json, os, shutil, struct, sys
src, out = sys.argv[1], sys.argv[2]
ref = src + "/reference"
os.makedirs(out, exist_ok=True)
m = json.load(open(ref + "/manifest.json"))
keep = [a for a in m["arrays"] if a["name"] in ("input_ids", "attention_mask", "pixel_values", "image_sizes",
                                                "pixel_attention_mask")]
for a in keep: shutil.copy(ref + "/" + a["file"], out + "/" + a["file"])
ids = list(struct.unpack("<%di" % (os.path.getsize(ref + "/input_ids.bin") // 4), open(ref + "/input_ids.bin", "rb").read()))
lab = [-100 if i < 3 or t == 1000 else t for i, t in enumerate(ids)]
open(out + "/labels.bin", "wb").write(struct.pack("<%di" % len(lab), *lab))
keep.append({"name": "labels", "file": "labels.bin", "dtype": "int32", "shape": [1, len(lab)]})
json.dump({"format": m["format"], "meta": {}, "arrays": keep}, open(out + "/manifest.json", "w"))
PY
  if "$VLMC" dump -m "$d" --inputs "$TMP/gin_$fx" --out "$TMP/gout_$fx" --grads >"$TMP/o" 2>&1 &&
     python3 - "$d" "$TMP/gin_$fx" "$TMP/gout_$fx" <<'PY'
import array, json, math, struct, sys
src, inp, out = sys.argv[1:4]
def arr(d, name):
    a = [x for x in json.load(open(d + "/manifest.json"))["arrays"] if x["name"] == name][0]
    v = array.array("f" if a["dtype"] == "float32" else "i"); v.frombytes(open(d + "/" + a["file"], "rb").read())
    return a["shape"], v
(_, T, V), lg = arr(src + "/reference", "logits")
_, lab = arr(inp, "labels")
tot, n = 0.0, 0
for t in range(T - 1):
    y = lab[t + 1]
    if y == -100: continue
    row = lg[t * V:(t + 1) * V]; mx = max(row)
    tot += mx + math.log(sum(math.exp(x - mx) for x in row)) - row[y]; n += 1
_, loss = arr(out, "loss")
assert abs(loss[0] - tot / n) <= 1e-5 * (tot / n), (loss[0], tot / n)
b = open(out + "/grads.safetensors", "rb").read(); k = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + k]); h.pop("__metadata__", None)
w = open(src + "/model.safetensors", "rb").read(); k2 = struct.unpack("<Q", w[:8])[0]
names = set(json.loads(w[8:8 + k2])) - {"__metadata__"}
assert set(h) <= names and len(h) == {"llava_next": 47, "idefics3": 59}[src.rstrip("/").split("/")[-1]], len(h)
PY
  then ok "dump --grads $fx: loss = cross-entropy of transformers' logits, a gradient per tensor on the path"
  else fail "dump --grads $fx" "$(cat "$TMP/o")"; fi
done
finish
