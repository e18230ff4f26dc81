#!/usr/bin/env python3
"""Makes a model folder whose tokenizer and chat template turn `vlmc run --image IMAGES... -p TEXT` into exactly
the fixture's input_ids, so that the whole pipeline (PNG → processor → vision → prompt expansion → splice →
generation) can be compared with transformers' generated_ids.

usage: make_fixture_prompt_model.py FIXTURE_DIR OUT_DIR

idefics3: the fixture's toy tokenizer (meta.toy_tokenizer_other_chars: one token per character, id = ord(c) + 3,
BOS 1; meta.toy_tokenizer_special_ids as added special tokens) and SmolVLM's real chat template; the prompt is
"What is this?" (meta.prompt_text).
llava, llava_next, llava_multi_image: the fixture's text ids are arbitrary, so they become added tokens "<tN>" and
the template writes the fixture's text segments around the images (the message text is not used).
qwen2_vl: the same, with no BOS, and each image written as Qwen2-VL's template does:
<|vision_start|><|image_pad|><|vision_end|> (the processor repeats <|image_pad|> per image token).
moondream2: no chat template (the model builds its prompt from ids); the fixture's toy character tokenizer
(meta.toy_text_tokenizer: printable ASCII c -> 100 + ord(c) - 32, newline -> 195, bos = eos = 500); the question is
"What is in the picture?"."""
import json, os, shutil, struct, sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for f in ("config.json", "model.safetensors", "generation_config.json", "preprocessor_config.json"):
    if os.path.exists(os.path.join(src, f)):
        shutil.copy(os.path.join(src, f), os.path.join(out, f))
cfg = json.load(open(os.path.join(src, "config.json")))
meta = json.load(open(os.path.join(src, "reference", "manifest.json")))["meta"]

if cfg["model_type"] == "moondream1":
    V = cfg["config"]["text"]["vocab_size"]
    vocab = {chr(c): 100 + c - 32 for c in range(32, 127)}
    vocab["\n"] = 195
    vocab["<|endoftext|>"] = 500
    for i in range(V):
        if i not in vocab.values():
            vocab["<extra_%d>" % i] = i
    tok = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": 500, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                             "rstrip": False, "normalized": False, "special": True}],
           "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}
    json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"), ensure_ascii=False)
    sys.exit(0)

V = cfg["text_config"]["vocab_size"] if "text_config" in cfg else cfg["vocab_size"]
img = cfg.get("image_token_index", cfg.get("image_token_id"))
b = open(os.path.join(src, "reference", "input_ids.bin"), "rb").read()
ids = list(struct.unpack("<%di" % (len(b) // 4), b))

def added(i, t, special):
    return {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
            "special": special}

if cfg["model_type"] == "idefics3":
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for c in range(128):
        vocab[chr(c)] = c + 3
    specials = dict(meta["toy_tokenizer_special_ids"])
    for t, i in specials.items():
        vocab[t] = i
    used = set(vocab.values())
    for i in range(V):
        if i not in used:
            vocab["<extra_%d>" % i] = i
    add = [added(1, "<s>", True), added(2, "</s>", True)] + [added(i, t, True) for t, i in specials.items()]
    template = ("<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
                "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
                "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
                "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
                "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")
    pre = None
elif cfg["model_type"] == "qwen2_vl":
    vs, ve, vid = cfg["vision_start_token_id"], cfg["vision_end_token_id"], cfg["video_token_id"]
    specials = {"<|image_pad|>": img, "<|vision_start|>": vs, "<|vision_end|>": ve, "<|video_pad|>": vid}
    segs, cur, k = [], [], 0
    while k < len(ids):
        if ids[k] == vs:  # <|vision_start|> <|image_pad|>... <|vision_end|>
            segs.append(cur); cur = []
            while ids[k] != ve: k += 1
            k += 1
        else:
            cur.append(ids[k]); k += 1
    segs.append(cur)
    text_ids = sorted({i for s in segs for i in s})
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    names = {i: t for t, i in specials.items()}
    for i in range(3, V):
        vocab[names.get(i, "<t%d>" % i)] = i
    add = [added(2, "</s>", True)] + [added(i, t, True) for t, i in specials.items()] + \
          [added(i, "<t%d>" % i, False) for i in text_ids]
    seg_text = ["".join("<t%d>" % i for i in s) for s in segs]
    template = (seg_text[0] + "{% set segs = " + json.dumps(seg_text[1:]) + " %}"
                "{% for c in messages[-1]['content'] %}{% if c['type'] == 'image' %}"
                "{{ '<|vision_start|><|image_pad|><|vision_end|>' + segs[loop.index0] }}{% endif %}{% endfor %}")
else:
    assert ids[0] == 1
    segs, cur, k = [], [], 1
    while k < len(ids):
        if ids[k] == img:
            segs.append(cur); cur = []
            while k < len(ids) and ids[k] == img: k += 1
        else:
            cur.append(ids[k]); k += 1
    segs.append(cur)
    text_ids = sorted({i for s in segs for i in s})
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(3, V):
        vocab["<image>" if i == img else ("<t%d>" % i)] = i
    add = [added(1, "<s>", True), added(2, "</s>", True), added(img, "<image>", True)] + \
          [added(i, "<t%d>" % i, False) for i in text_ids]
    seg_text = ["".join("<t%d>" % i for i in s) for s in segs]
    template = (seg_text[0] + "{% set segs = " + json.dumps(seg_text[1:]) + " %}"
                "{% for c in messages[-1]['content'] %}{% if c['type'] == 'image' %}{{ '<image>' + segs[loop.index0] }}"
                "{% endif %}{% endfor %}")
tok = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": add, "normalizer": None,
       "pre_tokenizer": None,
       "post_processor": {"type": "TemplateProcessing",
                          "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                          "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                   {"Sequence": {"id": "B", "type_id": 1}}],
                          "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
       "decoder": None,
       "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": []}}
if cfg["model_type"] == "qwen2_vl":
    tok["post_processor"] = None
json.dump(tok, open(os.path.join(out, "tokenizer.json"), "w"), ensure_ascii=False)
json.dump({"bos_token": None if cfg["model_type"] == "qwen2_vl" else "<s>", "eos_token": "</s>", "clean_up_tokenization_spaces": False, "chat_template": template},
          open(os.path.join(out, "tokenizer_config.json"), "w"))
