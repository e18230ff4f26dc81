# End-to-end tests of `vlmc synth` (sourced helpers: tests/clilib.sh).
. tests/clilib.sh

"$VLMC" synth --out "$TMP/a" --n 50 --seed 3 --quiet > "$TMP/out" 2>&1; rc1=$?
"$VLMC" synth --out "$TMP/b" --n 50 --seed 3 --threads 1 --quiet > "$TMP/out2" 2>&1; rc2=$?
if [ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && diff -r "$TMP/a" "$TMP/b" > "$TMP/diff" 2>&1; then
  ok "same seed, byte-identical dataset"; else fail "same seed, byte-identical dataset" "rc=$rc1/$rc2 $(cat "$TMP/out" "$TMP/out2" "$TMP/diff" | head -5)"; fi

n_png=$(find "$TMP/a/images" -name '*.png' | wc -l)
rows=$(cat "$TMP/a/train.jsonl" "$TMP/a/val.jsonl" "$TMP/a/test.jsonl" | wc -l)
if [ "$n_png" -eq 50 ] && [ "$rows" -eq 50 ] && [ -s "$TMP/a/meta.json" ] && [ -s "$TMP/a/train_qa.jsonl" ] \
   && [ -f "$TMP/a/images/train/000001.png" ] && [ -f "$TMP/a/images/test/000050.png" ]; then
  ok "layout: 50 images, 50 rows, meta.json"; else fail "layout: 50 images, 50 rows, meta.json" "png=$n_png rows=$rows"; fi

if command -v python3 > /dev/null && python3 - "$TMP/a" <<'PY'
import json, os, sys
d = sys.argv[1]
meta = json.load(open(os.path.join(d, "meta.json")))
ids = {}
for split in ("train", "val", "test"):
    rows = [json.loads(l) for l in open(os.path.join(d, split + ".jsonl"))]
    assert len(rows) == meta["splits"][split], split
    for r in rows:
        assert r["id"] not in ids
        ids[r["id"]] = split
        assert r["images"] == ["images/%s/%s.png" % (split, r["id"])]
        assert os.path.exists(os.path.join(d, r["images"][0]))
        assert len(r["messages"]) == 2 * len(r["tasks"])
    for q in (json.loads(l) for l in open(os.path.join(d, split + "_qa.jsonl"))):
        assert ids[q["id"]] == split
        assert q["task"] in meta["tasks"]
        if q["task"] == "grounding":
            assert q["answer"] == "[%d, %d, %d, %d]" % tuple(q["box"]) and all(0 <= v <= 1000 for v in q["box"])
        if q["task"] == "mcq":
            assert q["answer"] in "ABCD" and len(q["options"]) == 4
assert len(ids) == 50
PY
then ok "JSONL rows and splits are consistent"; else fail "JSONL rows and splits are consistent"; fi

"$VLMC" synth --out "$TMP/c" --n 50 --seed 4 --quiet > /dev/null 2>&1
if ! cmp -s "$TMP/a/train.jsonl" "$TMP/c/train.jsonl" && ! cmp -s "$TMP/a/images/train/000001.png" "$TMP/c/images/train/000001.png"; then
  ok "another seed, another dataset"; else fail "another seed, another dataset"; fi

# --tasks: only those tasks are asked, about the very same images
"$VLMC" synth --out "$TMP/cap" --n 50 --seed 3 --tasks caption,ocr --quiet > "$TMP/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && diff -r "$TMP/a/images" "$TMP/cap/images" > /dev/null && python3 - "$TMP/cap" <<'PY'
import json, os, sys
d = sys.argv[1]
meta = json.load(open(os.path.join(d, "meta.json")))
assert meta["asked_tasks"] == ["caption", "ocr"], meta["asked_tasks"]
seen = set()
for split in ("train", "val", "test"):
    for line in open(os.path.join(d, split + ".jsonl")):
        r = json.loads(line)
        assert 1 <= len(r["tasks"]) <= 2 and set(r["tasks"]) <= {"caption", "ocr"}, r["tasks"]
        assert ("ocr" in r["tasks"]) == (r["scene"]["word"] is not None)
        seen.update(r["tasks"])
assert seen == {"caption", "ocr"}
PY
then ok "--tasks caption,ocr: only those questions, same images"; else fail "--tasks" "rc=$rc $(cat "$TMP/out")"; fi

bad() { # name, expected text in stderr, args...
  local name=$1 want=$2; shift 2
  "$VLMC" synth "$@" > "$TMP/out" 2>&1; local rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$want" "$TMP/out"; then ok "$name"; else fail "$name" "rc=$rc $(cat "$TMP/out")"; fi
}
bad "missing --out is an error" "required" --n 5
bad "missing --n is an error" "required" --out "$TMP/x"
bad "non-numeric --n is an error" "'abc'" --out "$TMP/x" --n abc
bad "--n 0 is an error" "--n" --out "$TMP/x" --n 0
bad "negative seed is an error" "--seed" --out "$TMP/x" --n 5 --seed -1
bad "too small --size is an error" "--size" --out "$TMP/x" --n 5 --size 16
bad "fractions over 1 are an error" "fraction" --out "$TMP/x" --n 5 --val 0.7 --test 0.7
bad "unknown option is an error" "unknown option" --out "$TMP/x" --n 5 --colour red
bad "option without value is an error" "needs a value" --out "$TMP/x" --n
bad "unknown task is an error" "unknown task 'colour'" --out "$TMP/x" --n 5 --tasks caption,colour
bad "unwritable folder is an error" "cannot create" --out /proc/vlmc-nope/d --n 2
if [ ! -e "$TMP/x" ]; then ok "nothing written on bad arguments"; else fail "nothing written on bad arguments"; fi

"$VLMC" synth --help > "$TMP/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q -- "--seed" "$TMP/out"; then ok "synth --help"; else fail "synth --help" "rc=$rc"; fi

finish
