#!/usr/bin/env python3
"""Makes a runnable PaliGemma folder from the paligemma fixture (which has no tokenizer): the fixture's files plus a
byte-level BPE tokenizer.json whose vocabulary gives the fixture's toy prompt ids for the text "abcde":
"<image>" = image_token_index, "<bos>" = 2, "a".."e" = the prefix ids of reference/input_ids, "\\n" = meta.newline_id,
the other ids <extra_N> fillers; no post-processor (PaliGemmaProcessor's tokenizer adds no BOS / EOS) and no chat
template (PaliGemma's folders have none).

usage: make_paligemma_model.py FIXTURE_DIR OUT_DIR"""
import json, os, shutil, struct, sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for f in ("config.json", "model.safetensors", "generation_config.json", "preprocessor_config.json"):
    shutil.copy(os.path.join(src, f), os.path.join(out, f))
cfg = json.load(open(os.path.join(src, "config.json")))
man = json.load(open(os.path.join(src, "reference", "manifest.json")))
meta = man["meta"]
raw = open(os.path.join(src, "reference", "input_ids.bin"), "rb").read()
ids = struct.unpack("<%di" % (len(raw) // 4), raw)
img, n_img = cfg["image_token_index"], meta["num_image_tokens"]
prefix = ids[n_img + 1:-1]                       # after the image tokens and <bos>, before "\n"
assert ids[n_img] == 2 and ids[-1] == meta["newline_id"] and len(prefix) == 5
V = cfg["text_config"]["vocab_size"]
named = {img: "<image>", 2: "<bos>", 1: "<eos>", 0: "<pad>", meta["newline_id"]: "Ċ"}   # Ċ = ByteLevel "\n"
for ch, i in zip("abcde", prefix):
    named[i] = ch
vocab = {named.get(i, "<extra_%d>" % i): i for i in range(V)}
added = [{"id": i, "content": named[i], "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
          "special": True} for i in (0, 1, 2, img)]
tok = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []},
}
json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"), ensure_ascii=False)
json.dump({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "clean_up_tokenization_spaces": False},
          open(os.path.join(out, "tokenizer_config.json"), "w"))
