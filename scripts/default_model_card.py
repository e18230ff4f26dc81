#!/usr/bin/env python3
"""Writes MODEL/training/results.md: the default model's held-out accuracy per task (from `vlmc eval`'s
results.json) next to the targets of the default-model issue, and the training run's figures.

usage: default_model_card.py MODEL_DIR"""
import json, os, sys

# task -> (what is measured, target); the breakdown's "accuracy" is exact match, or IoU >= 0.5 for grounding
TARGETS = [("color", "exact match", 0.95), ("shape", "exact match", 0.95), ("yesno", "exact match", 0.95),
           ("exists", "exact match", 0.95), ("count", "exact match", 0.90), ("position", "exact match", None),
           ("relation", "exact match", 0.85), ("grounding", "IoU >= 0.5", 0.80), ("ocr", "exact match", 0.80),
           ("mcq", "letter", 0.90)]
# what guessing from the answer list alone scores: 8 colours, 6 shapes, balanced yes/no, 7 counts (0..6), 9 grid cells,
# 52 words, 4 letters; a box guess scores about nothing
CHANCE = {"color": 1 / 8, "shape": 1 / 6, "yesno": 0.5, "exists": 0.5, "count": 1 / 7, "position": 1 / 9,
          "relation": 0.5, "grounding": 0.0, "ocr": 1 / 52, "mcq": 0.25}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    res = json.load(open(os.path.join(d, "eval_results.json")))
    recipe = json.load(open(os.path.join(d, "training", "recipe.json")))
    tasks = res["breakdown"]["synth"]["task"]
    out = ["# Held-out results of this model", "",
           "`vlmc eval --tasks synth` on the first %d questions of the test split of `vlmc synth --n %d --seed 1`"
           % (recipe["eval_limit"], recipe["n_images"]),
           "(images never seen in training). Rerun: `make model`, or `vlmc eval -m models/vlmc-tiny --tasks synth "
           "--data build/model-work/synth --output OUT --limit %d`." % recipe["eval_limit"], "",
           "| task | metric | n | result | chance | target | met |", "|---|---|---|---|---|---|---|"]
    for t, metric, target in TARGETS:
        if t not in tasks:
            continue
        r = tasks[t]
        acc = r["accuracy"]
        extra = " (mean IoU %.3f)" % r["mean_iou"] if "mean_iou" in r else ""
        met = "" if target is None else ("yes" if acc >= target else "no")
        out.append("| %s | %s | %d | %.1f %%%s | %.1f %% | %s | %s |" % (t, metric, r["n"], 100 * acc, extra, 100 * CHANCE[t],
                                                                         "" if target is None else "%d %%" % (100 * target), met))
    if "caption" in tasks:
        c = tasks["caption"]
        out.append("| caption | CIDEr-D | %d | %.3f (BLEU-4 %.3f) | | | |" % (c["n"], c["cider"], c.get("bleu4", 0)))
    overall = res["results"]["synth"]
    out += ["", "All questions but captions: accuracy %.1f %%." % (100 * overall["accuracy"]), "",
            "Training: %d s on %d threads (%d + %d optimizer steps, batch %d, peak lr %s; stage 1 on captions, "
            "stage 2 on every task)." % (recipe["train_seconds"], recipe["threads"], recipe["stage1_steps"],
                                         recipe["stage2_steps"], recipe["batch"], recipe["lr"]), ""]
    with open(os.path.join(d, "training", "results.md"), "w") as f:
        f.write("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()
