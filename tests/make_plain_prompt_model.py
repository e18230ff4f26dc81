#!/usr/bin/env python3
"""Makes a runnable folder from the paligemma or fuyu fixture (they have no tokenizer and, like the published
folders, no chat template): the fixture's files plus a byte-level BPE tokenizer.json under which the family's plain
prompt of the text "abcde" (paligemma) / "abcdef" (fuyu) and the fixture image gives exactly reference/input_ids:

paligemma: "<image>" = image_token_index, "<bos>" = 2, the letters = the prefix ids, "\\n" = meta.newline_id.
fuyu: "|SPEAKER|" = meta.image_placeholder_id (also written to config.json as image_token_id), "|NEWLINE|" =
meta.image_newline_id, "<s>" = bos_token_id, the letters = the text ids, the byte 0x04 = meta.boa_id.
Other ids are <extra_N> fillers; no post-processor (neither processor adds special tokens to the text).

usage: make_plain_prompt_model.py FIXTURE_DIR OUT_DIR"""
import json, os, shutil, struct, sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for f in ("model.safetensors", "generation_config.json", "preprocessor_config.json"):
    shutil.copy(os.path.join(src, f), os.path.join(out, f))
cfg = json.load(open(os.path.join(src, "config.json")))
meta = json.load(open(os.path.join(src, "reference", "manifest.json")))["meta"]
raw = open(os.path.join(src, "reference", "input_ids.bin"), "rb").read()
ids = struct.unpack("<%di" % (len(raw) // 4), raw)
V = cfg["text_config"]["vocab_size"]
byte = lambda b: chr(256 + b) if b < 33 else chr(b)   # ByteLevel's character for a control byte / printable byte
if cfg["model_type"] == "paligemma":
    img, n_img = cfg["image_token_index"], meta["num_image_tokens"]
    text_ids = ids[n_img + 1:-1]                      # after the image tokens and <bos>, before "\n"
    assert ids[n_img] == 2 and ids[-1] == meta["newline_id"]
    named = {img: "<image>", 2: "<bos>", 1: "<eos>", 0: "<pad>", meta["newline_id"]: byte(10)}
    special, bos, eos = (0, 1, 2, img), "<bos>", "<eos>"
else:
    img, nl, bos_id = meta["image_placeholder_id"], meta["image_newline_id"], cfg["bos_token_id"]
    k = ids.index(bos_id)
    text_ids = ids[k + 1:-1]
    assert ids[-1] == meta["boa_id"] and all(i in (img, nl) for i in ids[:k])
    named = {img: "|SPEAKER|", nl: "|NEWLINE|", bos_id: "<s>", cfg["eos_token_id"]: "</s>", meta["boa_id"]: byte(4)}
    special, bos, eos = (img, nl, bos_id, cfg["eos_token_id"]), "<s>", "</s>"
    cfg["image_token_id"] = img
for ch, i in zip("abcdefgh", text_ids):
    named[i] = ch
vocab = {named.get(i, "<extra_%d>" % i): i for i in range(V)}
added = [{"id": i, "content": named[i], "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
          "special": True} for i in special]
tok = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []},
}
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"), ensure_ascii=False)
json.dump({"bos_token": bos, "eos_token": eos, "clean_up_tokenization_spaces": False},
          open(os.path.join(out, "tokenizer_config.json"), "w"))
print("abcdefgh"[:len(text_ids)])
