#!/usr/bin/env python3
"""Makes a chat-ready model folder for the CLI tests: a fixture model (weights, config, preprocessor) plus a
small byte-level BPE tokenizer.json with exactly vocab_size entries and a LLaVA-style chat template.

usage: make_chat_model.py FIXTURE_DIR OUT_DIR

Vocabulary: 0 <pad>, 1 <s>, 2 </s>, 3..258 the 256 ByteLevel byte characters, then two-letter words
("ab" ...) and "Ġ"-prefixed letters with their merges, then <extra_N> fillers; the config's image token
id is the added special token "<image>"."""
import json, os, shutil, sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for f in ("config.json", "model.safetensors", "generation_config.json", "preprocessor_config.json"):
    if os.path.exists(os.path.join(src, f)):
        shutil.copy(os.path.join(src, f), os.path.join(out, f))
cfg = json.load(open(os.path.join(src, "config.json")))
V = cfg.get("text_config", cfg)["vocab_size"]
img = cfg.get("image_token_index", cfg.get("image_token_id"))

# GPT-2's bytes_to_unicode
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
byte_chars = [chr(c) for b, c in sorted(zip(bs, cs))]

vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
for ch in byte_chars:
    vocab[ch] = len(vocab)
merges = []
letters = "abcdefghijklmnopqrstuvwxyz"
for a in letters:
    merges.append("Ġ " + a); vocab["Ġ" + a] = len(vocab)
for a in letters:
    for b in letters:
        if len(vocab) >= V - 40: break
        merges.append(a + " " + b); vocab[a + b] = len(vocab)
ids = {}
while len(vocab) < V:
    i = len(vocab)
    vocab["<image>" if i == img else "<extra_%d>" % i] = i
added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
          "special": True} for t, i in vocab.items() if t in ("<pad>", "<s>", "</s>", "<image>")]
tok = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges},
}
json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"), ensure_ascii=False)
template = ("{% for message in messages %}"
            "{% if message['role'] == 'system' %}"
            "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] + '\\n' }}{% endif %}{% endfor %}"
            "{% else %}{{ message['role'].upper() + ': ' }}"
            "{% for c in message['content'] %}{% if c['type'] == 'image' %}{{ '<image>\\n' }}{% endif %}{% endfor %}"
            "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
            "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}"
            "{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}")
json.dump({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "clean_up_tokenization_spaces": False,
           "chat_template": template}, open(os.path.join(out, "tokenizer_config.json"), "w"))
