#!/usr/bin/env bash
# Bundles a few held-out pictures with the default model (MODEL/examples/heldout: the first 16 images of the
# synthetic test split and their 128 questions, in `vlmc synth`'s layout so that `vlmc eval --tasks synth
# --data MODEL/examples/heldout` reads them), records the model's greedy answers to them
# (examples/heldout/answers.jsonl, the regression reference of tests/cli_default_model.sh), and copies the
# first picture to MODEL/examples/shapes.png for the README.
# Usage: scripts/default_model_examples.sh MODEL_DIR SYNTH_DIR [VLMC]
set -euo pipefail
MODEL=$1 SYNTH=$2 VLMC=${3:-build/vlmc}
H="$MODEL/examples/heldout"
rm -rf "$MODEL/examples"
mkdir -p "$H/images/test"
first=$(python3 -c "import json; print(json.load(open('$SYNTH/meta.json'))['split_ranges']['test'][0])")
python3 - "$SYNTH" "$H" "$first" <<'PY'
import json, os, shutil, sys
synth, out, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
keep = {"%06d" % i for i in range(first, first + 16)}
with open(os.path.join(out, "test_qa.jsonl"), "w") as f:
    for line in open(os.path.join(synth, "test_qa.jsonl")):
        if json.loads(line)["id"] in keep:
            f.write(line)
for i in sorted(keep):
    shutil.copy(os.path.join(synth, "images", "test", i + ".png"), os.path.join(out, "images", "test", i + ".png"))
meta = json.load(open(os.path.join(synth, "meta.json")))
meta["note"] = "the first 16 images of the test split of the dataset described here, and their questions"
json.dump(meta, open(os.path.join(out, "meta.json"), "w"), indent=1)
PY
cp "$H/images/test/$(printf %06d "$first").png" "$MODEL/examples/shapes.png"
rm -rf "$H.eval"
"$VLMC" eval -m "$MODEL" --tasks synth --data "$H" --output "$H.eval" --log-samples --quiet > /dev/null
python3 - "$H.eval/samples_synth.jsonl" "$H/answers.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as f:
    for line in open(sys.argv[1]):
        s = json.loads(line)
        f.write(json.dumps({"doc_id": s["doc_id"], "id": s["id"], "response": s["response"], "score": s["score"]}) + "\n")
PY
rm -rf "$H.eval"
echo "examples: $MODEL/examples (16 held-out images, $(wc -l < "$H/test_qa.jsonl") questions)"
