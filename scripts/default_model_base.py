#!/usr/bin/env python3
"""Makes the untrained starting point of vlmc's default model: a LLaVA-1.5-layout Hugging Face folder
(LlavaForConditionalGeneration: CLIP vision tower -> 2-layer GELU projector -> Llama decoder) with random
weights, a byte-level BPE tokenizer learned on the synthetic training text, and a ChatML chat template.
`vlmc train` then trains every part of it (see `make model` and models/README.md).

usage: default_model_base.py SYNTH_DIR OUT_DIR [--seed S]

Standard library only (no numpy), so that `make model` runs on a bare Debian with python3.

Why these choices:
- The tokenizer splits every digit on its own, so a box coordinate such as 664 is three tokens "6","6","4":
  the hundreds digit is one 10-way decision, then the tens, and a small model learns coordinates digit by
  digit instead of 1001 separate number tokens that each appear rarely.
- Merges are learned on the training conversations only (train.jsonl), most frequent pair first, ties broken
  by the pair's text so the file is the same on every run; the vocabulary stops at VOCAB_TARGET entries.
- Weights: normal(0, 0.02) for every matrix and embedding as transformers' `_init_weights` does for Llama
  and LLaVA (initializer_range 0.02), norms at 1, biases at 0; CLIP's class/position embeddings likewise.
"""
import json, math, os, random, re, struct, sys

VOCAB_TARGET = 512           # byte alphabet (256) + learned merges + special tokens, padded to a multiple of 64
SPECIAL = ["<pad>", "<|im_start|>", "<|im_end|>", "<image>"]

VISION = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=6, num_attention_heads=6,
              image_size=128, patch_size=16)
TEXT = dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
            num_key_value_heads=4, max_position_embeddings=1024)

# the pre-tokenizer: ASCII words with an optional leading space, single digits, punctuation runs, spaces
SPLIT_REGEX = r" ?[A-Za-z]+| ?[0-9]| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def bytes_to_unicode():
    """GPT-2's reversible map of the 256 byte values to printable characters (ByteLevel's alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def training_text(synth_dir):
    """Every string the model will see in training, as the chat template renders it (roles included)."""
    out = []
    with open(os.path.join(synth_dir, "train.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            for m in row["messages"]:
                out.append(m["role"] + "\n")
                for part in m["content"]:
                    if part["type"] == "text":
                        out.append(part["text"])
    return out


def learn_bpe(texts, n_merges):
    b2u = bytes_to_unicode()
    split = re.compile(SPLIT_REGEX)
    words = {}
    for t in texts:
        for w in split.findall(t):
            key = tuple(b2u[b] for b in w.encode("utf-8"))
            words[key] = words.get(key, 0) + 1
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                if b.isdigit() or a.isdigit() or a.strip("Ġ").isdigit() or b.strip("Ġ").isdigit():
                    continue  # digits stay single tokens (the regex already isolates them; keep them unmerged)
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        (a, b) = best[0]
        merges.append((a, b))
        new = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        words = new
    return merges


def write_tokenizer(out, merges):
    b2u = bytes_to_unicode()
    vocab = {}
    for t in SPECIAL:
        vocab[t] = len(vocab)
    for b in range(256):
        vocab[b2u[b]] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    n = len(vocab)
    V = (n + 63) // 64 * 64
    added = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for t in SPECIAL]
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": SPLIT_REGEX}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tok, f, ensure_ascii=False, indent=1)
    decoder = {str(vocab[t]): {k: v for k, v in a.items() if k != "id"} for t, a in zip(SPECIAL, added)}
    cfg = {"added_tokens_decoder": decoder, "bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<pad>",
           "unk_token": None, "image_token": "<image>", "clean_up_tokenization_spaces": False,
           "model_max_length": TEXT["max_position_embeddings"], "tokenizer_class": "PreTrainedTokenizerFast",
           "processor_class": "LlavaProcessor", "chat_template": CHAT_TEMPLATE}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(out, "special_tokens_map.json"), "w") as f:
        json.dump({"eos_token": "<|im_end|>", "pad_token": "<pad>"}, f, indent=1)
    return vocab, V


def config(vocab, V):
    n_patches = (VISION["image_size"] // VISION["patch_size"]) ** 2
    return {
        "architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
        "ignore_index": -100, "image_token_index": vocab["<image>"], "image_seq_length": n_patches,
        "projector_hidden_act": "gelu", "vision_feature_layer": -1, "vision_feature_select_strategy": "default",
        "pad_token_id": vocab["<pad>"], "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": "4.47.1",
        "text_config": dict(TEXT, model_type="llama", vocab_size=V, head_dim=TEXT["hidden_size"] // TEXT["num_attention_heads"],
                            rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu", pad_token_id=vocab["<pad>"],
                            bos_token_id=None, eos_token_id=vocab["<|im_end|>"], tie_word_embeddings=False,
                            torch_dtype="float32"),
        "vision_config": dict(VISION, model_type="clip_vision_model", hidden_act="quick_gelu", layer_norm_eps=1e-5,
                              num_channels=3, projection_dim=VISION["hidden_size"], torch_dtype="float32"),
    }


def preprocessor():
    s = VISION["image_size"]
    return {"image_processor_type": "CLIPImageProcessor", "processor_class": "LlavaProcessor",
            "do_resize": True, "size": {"shortest_edge": s}, "resample": 3,
            "do_center_crop": True, "crop_size": {"height": s, "width": s},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}


def weights(cfg):
    """(name, shape, init) in the order transformers' LlavaForConditionalGeneration lists them."""
    v, t = cfg["vision_config"], cfg["text_config"]
    D, F, P = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    N = (v["image_size"] // P) ** 2 + 1
    d, f, V = t["hidden_size"], t["intermediate_size"], t["vocab_size"]
    hd = t["head_dim"]
    kv = t["num_key_value_heads"] * hd
    W = []
    vt = "vision_tower.vision_model."
    W += [(vt + "embeddings.class_embedding", [D], "normal"), (vt + "embeddings.patch_embedding.weight", [D, 3, P, P], "normal"),
          (vt + "embeddings.position_embedding.weight", [N, D], "normal"),
          (vt + "pre_layrnorm.weight", [D], "one"), (vt + "pre_layrnorm.bias", [D], "zero")]
    for i in range(v["num_hidden_layers"]):
        p = vt + "encoder.layers.%d." % i
        for m in ("q_proj", "k_proj", "v_proj", "out_proj"):
            W += [(p + "self_attn." + m + ".weight", [D, D], "normal"), (p + "self_attn." + m + ".bias", [D], "zero")]
        W += [(p + "layer_norm1.weight", [D], "one"), (p + "layer_norm1.bias", [D], "zero"),
              (p + "mlp.fc1.weight", [F, D], "normal"), (p + "mlp.fc1.bias", [F], "zero"),
              (p + "mlp.fc2.weight", [D, F], "normal"), (p + "mlp.fc2.bias", [D], "zero"),
              (p + "layer_norm2.weight", [D], "one"), (p + "layer_norm2.bias", [D], "zero")]
    W += [(vt + "post_layernorm.weight", [D], "one"), (vt + "post_layernorm.bias", [D], "zero")]
    W += [("multi_modal_projector.linear_1.weight", [d, D], "normal"), ("multi_modal_projector.linear_1.bias", [d], "zero"),
          ("multi_modal_projector.linear_2.weight", [d, d], "normal"), ("multi_modal_projector.linear_2.bias", [d], "zero")]
    lm = "language_model.model."
    W += [(lm + "embed_tokens.weight", [V, d], "normal")]
    for i in range(t["num_hidden_layers"]):
        p = lm + "layers.%d." % i
        W += [(p + "self_attn.q_proj.weight", [d, d], "normal"), (p + "self_attn.k_proj.weight", [kv, d], "normal"),
              (p + "self_attn.v_proj.weight", [kv, d], "normal"), (p + "self_attn.o_proj.weight", [d, d], "normal"),
              (p + "mlp.gate_proj.weight", [f, d], "normal"), (p + "mlp.up_proj.weight", [f, d], "normal"),
              (p + "mlp.down_proj.weight", [d, f], "normal"),
              (p + "input_layernorm.weight", [d], "one"), (p + "post_attention_layernorm.weight", [d], "one")]
    W += [(lm + "norm.weight", [d], "one"), ("language_model.lm_head.weight", [V, d], "normal")]
    return W


def write_safetensors(path, tensors, rng):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, shape, init in tensors:
        n = math.prod(shape)
        if init == "normal":
            vals = [rng.gauss(0.0, 0.02) for _ in range(n)]
        else:
            vals = [1.0 if init == "one" else 0.0] * n
        blob = struct.pack("<%df" % n, *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    args = sys.argv[1:]
    seed = 0
    if "--seed" in args:
        i = args.index("--seed")
        seed = int(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    synth, out = args
    os.makedirs(out, exist_ok=True)
    merges = learn_bpe(training_text(synth), VOCAB_TARGET - 256 - len(SPECIAL))
    vocab, V = write_tokenizer(out, merges)
    cfg = config(vocab, V)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out, "preprocessor_config.json"), "w") as f:
        json.dump(preprocessor(), f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": vocab["<|im_end|>"], "pad_token_id": vocab["<pad>"],
                   "transformers_version": "4.47.1"}, f, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), weights(cfg), random.Random(seed))
    print("%s: vocab %d (%d merges), image tokens %d" % (out, V, len(merges), cfg["image_seq_length"]))


if __name__ == "__main__":
    main()
