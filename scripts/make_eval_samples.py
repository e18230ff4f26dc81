#!/usr/bin/env python3
"""Builds the bundled benchmark samples of `vlmc eval` (tasks/data/) from a dataset
written by `vlmc synth`:

  vlmc synth --out /tmp/s64 --n 400 --seed 11 --size 64 --val 0.05 --test 0.1 --quiet
  python3 scripts/make_eval_samples.py /tmp/s64 tasks/data

- mmbench_sample.tsv: the multiple-choice questions of the val and test splits in
  MMBench's TSV layout (index, question, hint, A, B, C, D, answer, image as base64
  PNG, category, l2-category), written as pandas.to_csv(sep='\\t') writes (csv module,
  minimal quoting), with a few hints that need quoting and rows whose image field
  is the index of an earlier row with the same picture (as VLMEvalKit's TSVs do);
- scienceqa_sample.jsonl (+ scienceqa_images/): ScienceQA-style rows (question,
  choices, answer = 0-based index, hint, image path or none, subject) from the
  position and relation questions, plus a few text-only ones;
- synth_sample/: the first 12 test images and their test_qa.jsonl rows.
Only the standard library is used; the output is a function of the input folder."""
import base64, csv, json, os, random, shutil, sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
rows = []
for split in ("val", "test"):
    with open(os.path.join(src, split + "_qa.jsonl")) as f:
        rows += [json.loads(l) for l in f]

# ---- MMBench-style TSV ----
def category(stem):
    if stem.startswith("What color"): return "color_recognition", "Attribute Perception"
    if stem.startswith("What shape"): return "shape_recognition", "Attribute Perception"
    if stem.startswith("How many"): return "object_counting", "Coarse Perception"
    return "ocr", "Text Recognition"

hints = ["Shapes never overlap.", 'Words are written in "capital" letters.', "Look at\tevery shape.", ""]
seen_image = {}
with open(os.path.join(out, "mmbench_sample.tsv"), "w", newline="") as f:
    w = csv.writer(f, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(["index", "question", "hint", "A", "B", "C", "D", "answer", "image", "category", "l2-category"])
    index = 0
    for r in rows:
        if r["task"] != "mcq":
            continue
        stem = r["question"].split("\n")[0]
        cat, l2 = category(stem)
        if r["image"] in seen_image:
            image = str(seen_image[r["image"]])
        else:
            seen_image[r["image"]] = index
            with open(os.path.join(src, r["image"]), "rb") as im:
                image = base64.b64encode(im.read()).decode()
        w.writerow([index, stem, hints[index % 4]] + r["options"] + [r["answer"], image, cat, l2])
        index += 1
    # a few more questions on pictures already used: their image field is that row's index
    colors = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
    crng = random.Random(3)
    extra = 0
    for r in rows:
        if r["task"] != "color" or r["image"] not in seen_image or extra == 4:
            continue
        opts = [r["answer"]] + crng.sample([c for c in colors if c != r["answer"]], 3)
        crng.shuffle(opts)
        w.writerow([index, r["question"], "", *opts, "ABCD"[opts.index(r["answer"])], str(seen_image[r["image"]]),
                    "color_recognition", "Attribute Perception"])
        index += 1
        extra += 1

# ---- ScienceQA-style JSONL ----
rng = random.Random(7)
positions = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]
imgdir = os.path.join(out, "scienceqa_images")
os.makedirs(imgdir, exist_ok=True)
sqa = []
for r in rows:
    if r["task"] == "position":
        choices = [r["answer"]] + rng.sample([p for p in positions if p != r["answer"]], 2)
    elif r["task"] == "relation":
        choices = ["yes", "no"]
    else:
        continue
    rng.shuffle(choices)
    name = os.path.basename(r["image"])
    shutil.copyfile(os.path.join(src, r["image"]), os.path.join(imgdir, name))
    sqa.append({"id": "%s_%d" % (r["id"], r["turn"]), "question": r["question"], "choices": choices,
                "answer": choices.index(r["answer"]), "hint": "The picture shows flat shapes on a background.",
                "image": "scienceqa_images/" + name, "subject": "spatial reasoning"})
    if len(sqa) == 24:
        break
text_only = [
    ("Which of these is a shape with three corners?", ["circle", "triangle", "square"], 1),
    ("How many sides does a square have?", ["3", "4", "5", "6"], 1),
    ("Which color do you get by mixing red and yellow?", ["orange", "purple", "green"], 0),
    ("Which of these is not a color?", ["blue", "star", "black"], 1),
]
for k, (q, c, a) in enumerate(text_only):
    sqa.append({"id": "text_%d" % k, "question": q, "choices": c, "answer": a, "hint": "", "image": None,
                "subject": "general knowledge"})
with open(os.path.join(out, "scienceqa_sample.jsonl"), "w") as f:
    for r in sqa:
        f.write(json.dumps(r) + "\n")

# ---- a small synth test split ----
sd = os.path.join(out, "synth_sample")
os.makedirs(os.path.join(sd, "images", "test"), exist_ok=True)
with open(os.path.join(src, "test_qa.jsonl")) as f:
    test = [json.loads(l) for l in f]
ids = sorted({r["id"] for r in test})[:12]
with open(os.path.join(sd, "test_qa.jsonl"), "w") as f:
    for r in test:
        if r["id"] in ids:
            f.write(json.dumps(r) + "\n")
for i in ids:
    shutil.copyfile(os.path.join(src, "images", "test", i + ".png"), os.path.join(sd, "images", "test", i + ".png"))
