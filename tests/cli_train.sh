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
finish
