# End-to-end tests of `vlmc eval` (sourced helpers: tests/clilib.sh).
. tests/clilib.sh

"$VLMC" synth --out "$TMP/d" --n 60 --seed 9 --test 0.2 --quiet > "$TMP/out" 2>&1 || fail "synth dataset" "$(cat "$TMP/out")"

"$VLMC" eval -m oracle --tasks synth --data "$TMP/d" --output "$TMP/o1" --log-samples --json > "$TMP/res1" 2> "$TMP/err1"; rc=$?
if [ $rc -eq 0 ] && [ -s "$TMP/o1/results.json" ] && [ -s "$TMP/o1/samples_synth.jsonl" ] && [ ! -s "$TMP/err1" ]; then
  ok "oracle on a synth test split (no progress line when stderr is not a terminal)"
else fail "oracle on a synth test split" "rc=$rc $(head -c 300 "$TMP/err1")"; fi

# recount the main metrics from the sample log with python3
recount() { # results.json samples.jsonl task expected-accuracy-or-empty
  python3 - "$@" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"][sys.argv[3]]
rows = [json.loads(l) for l in open(sys.argv[2])]
for r in rows:
    for k in ("task", "doc_id", "prompt", "target", "response", "parsed", "score"):
        assert k in r, k
assert [r["doc_id"] for r in rows] == list(range(len(rows)))
qa = [r for r in rows if r.get("subtask") != "caption"]
acc = sum(r["score"] for r in qa) / len(qa)
assert abs(acc - res["accuracy"]) < 1e-12, (acc, res["accuracy"])
g = [r for r in rows if r.get("subtask") == "grounding"]
if g:
    iou = sum(r["iou"] >= 0.5 for r in g) / len(g)
    assert abs(iou - res["iou_accuracy"]) < 1e-12, (iou, res["iou_accuracy"])
c = [r for r in rows if r.get("subtask") == "caption"]
if c:
    assert abs(sum(r["score"] for r in c) / len(c) - res["cider"]) < 1e-9
if len(sys.argv) > 4:
    assert abs(acc - float(sys.argv[4])) < 1e-12, acc
print(acc)
PY
}
if command -v python3 > /dev/null && recount "$TMP/o1/results.json" "$TMP/o1/samples_synth.jsonl" synth 1 > /dev/null; then
  ok "oracle: accuracy 1, equal to the recount of the sample log"; else fail "oracle: accuracy 1, equal to the recount of the sample log"; fi

# a replay file from the oracle's log with every third answer wrong
python3 - "$TMP/o1/samples_synth.jsonl" "$TMP/replay.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as out:
    for l in open(sys.argv[1]):
        r = json.loads(l)
        resp = r["response"]
        if r["doc_id"] % 3 == 0:
            resp = {"grounding": "[0, 0, 10, 10]", "mcq": "I cannot tell"}.get(r.get("subtask"), "purple elephant")
        elif r["doc_id"] % 3 == 1:
            resp = "The answer is: " + resp + "."  if r.get("subtask") not in ("grounding", "caption") else resp
        out.write(json.dumps({"task": r["task"], "doc_id": r["doc_id"], "response": resp}) + "\n")
PY
"$VLMC" eval -m "replay:$TMP/replay.jsonl" --tasks synth --data "$TMP/d" --output "$TMP/o2" --log-samples --batch-size 3 > "$TMP/res2" 2>&1; rc=$?
acc=$(recount "$TMP/o2/results.json" "$TMP/o2/samples_synth.jsonl" synth 2> "$TMP/py")
if [ $rc -eq 0 ] && [ -n "$acc" ] && python3 -c "import sys; a = float(sys.argv[1]); assert 0.3 < a < 0.9" "$acc"; then
  ok "replay with wrong answers: accuracy $acc equals the recount from the sample log"
else fail "replay with wrong answers" "rc=$rc acc=$acc $(cat "$TMP/res2" "$TMP/py" | tail -5)"; fi
if grep -q "| synth *| accuracy" "$TMP/res2"; then ok "results table on stdout"; else fail "results table on stdout" "$(head -5 "$TMP/res2")"; fi

# resume: cut the log after 25 lines (and half a line), run again, same results
mkdir -p "$TMP/o3"
head -n 25 "$TMP/o2/samples_synth.jsonl" > "$TMP/o3/samples_synth.jsonl"
sed -n 26p "$TMP/o2/samples_synth.jsonl" | head -c 40 >> "$TMP/o3/samples_synth.jsonl"
sed "s#$TMP/o2#$TMP/o3#" "$TMP/o2/samples_synth.settings.json" > "$TMP/o3/samples_synth.settings.json"
"$VLMC" eval -m "replay:$TMP/replay.jsonl" --tasks synth --data "$TMP/d" --output "$TMP/o3" --log-samples > /dev/null 2> "$TMP/err3"; rc=$?
if [ $rc -eq 0 ] && cmp -s "$TMP/o2/samples_synth.jsonl" "$TMP/o3/samples_synth.jsonl" && python3 - "$TMP/o2/results.json" "$TMP/o3/results.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
assert a["results"] == b["results"] and a["breakdown"] == b["breakdown"]
PY
then ok "resumed run: same sample log and results"; else fail "resumed run: same sample log and results" "rc=$rc $(cat "$TMP/err3")"; fi

"$VLMC" eval -m oracle --tasks synth --data "$TMP/d" --output "$TMP/o3" > "$TMP/out" 2>&1; rc=$?
if [ $rc -ne 0 ] && grep -q "cannot resume" "$TMP/out"; then ok "another model on the same output is refused"
else fail "another model on the same output is refused" "rc=$rc $(cat "$TMP/out")"; fi

"$VLMC" eval -m oracle --tasks synth_sample,mmbench_sample,scienceqa_sample,scienceqa_sample_ll --output "$TMP/o4" --log-samples > "$TMP/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && python3 - "$TMP/o4" <<'PY'
import json, sys, os
d = sys.argv[1]
res = json.load(open(os.path.join(d, "results.json")))
for t in ("synth_sample", "mmbench_sample", "scienceqa_sample", "scienceqa_sample_ll"):
    assert res["results"][t]["accuracy"] == 1, t
    rows = [json.loads(l) for l in open(os.path.join(d, "samples_%s.jsonl" % t))]
    assert all(r["score"] == 1 for r in rows if r.get("subtask") != "caption"), t
m = [json.loads(l) for l in open(os.path.join(d, "samples_mmbench_sample.jsonl"))]
groups = {r["circular_group"] for r in m}
assert len(groups) == res["n-samples"]["mmbench_sample"]["effective"] == 43
assert "category" in res["breakdown"]["mmbench_sample"]
PY
then ok "oracle scores 100% on the bundled samples"; else fail "oracle scores 100% on the bundled samples" "rc=$rc $(tail -3 "$TMP/out")"; fi

# CircularEval through replayed answers: every 7th prompt answered wrong; recount by circular group
python3 - "$TMP/o4/samples_mmbench_sample.jsonl" "$TMP/replay_mmb.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as out:
    for l in open(sys.argv[1]):
        r = json.loads(l)
        resp = r["target"] if r["doc_id"] % 7 else ("A" if r["target"] != "A" else "B")
        out.write(json.dumps({"task": r["task"], "doc_id": r["doc_id"], "response": "The answer is " + resp}) + "\n")
PY
"$VLMC" eval -m "replay:$TMP/replay_mmb.jsonl" --tasks mmbench_sample --output "$TMP/o8" --log-samples > /dev/null 2>&1; rc=$?
if [ $rc -eq 0 ] && python3 - "$TMP/o8" <<'PY'
import json, os, sys
d = sys.argv[1]
res = json.load(open(os.path.join(d, "results.json")))
rows = [json.loads(l) for l in open(os.path.join(d, "samples_mmbench_sample.jsonl"))]
groups = {}
for r in rows:
    groups.setdefault(r["circular_group"], []).append(r["score"] == 1)
circ = sum(all(v) for v in groups.values()) / len(groups)
vanilla = [r["score"] for r in rows if r["rotation"] == 0]
assert abs(circ - res["results"]["mmbench_sample"]["accuracy"]) < 1e-12, circ
assert abs(sum(vanilla) / len(vanilla) - res["results"]["mmbench_sample"]["vanilla_accuracy"]) < 1e-12
assert 0 < circ < 1
cats = {}
for r in rows:
    if r["rotation"] == 0:
        cats.setdefault(r["category"], []).append(all(groups[r["circular_group"]]))
for c, v in cats.items():
    assert abs(sum(v) / len(v) - res["breakdown"]["mmbench_sample"]["category"][c]["accuracy"]) < 1e-12, c
PY
then ok "CircularEval accuracy and categories equal the recount from the sample log"
else fail "CircularEval accuracy and categories equal the recount from the sample log" "rc=$rc"; fi

"$VLMC" eval -m oracle --tasks mmbench_sample --limit 5 --output "$TMP/o5" --json > "$TMP/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && python3 -c "
import json,sys; r=json.load(open(sys.argv[1])); n=r['n-samples']['mmbench_sample']
assert n['effective']==5 and n['original']==43 and r['config']['limit']==5" "$TMP/o5/results.json" && [ ! -e "$TMP/o5/samples_mmbench_sample.jsonl" ]; then
  ok "--limit counts questions; logs removed without --log-samples"; else fail "--limit" "rc=$rc $(head -c 300 "$TMP/out")"; fi

bad() { # name, expected text in stderr, args...
  local name=$1 want=$2; shift 2
  "$VLMC" eval "$@" > "$TMP/out" 2>&1; local rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$want" "$TMP/out"; then ok "$name"; else fail "$name" "rc=$rc $(cat "$TMP/out")"; fi
}
bad "missing --tasks is an error" "required" -m oracle --output "$TMP/x"
bad "unknown task lists the known ones" "mmbench_sample" -m oracle --tasks nope --output "$TMP/x"
bad "synth without --data names the flag" "--data" -m oracle --tasks synth --output "$TMP/x"
bad "pope without --image-dir names the flag" "--image-dir" -m oracle --tasks pope --output "$TMP/x"
bad "a model folder without a tokenizer is a clear error" "tokenizer.json" -m models/tiny-random-llava --tasks synth_sample --output "$TMP/x"

# A real model through the session API: the idefics3 fixture with its toy tokenizer and SmolVLM's template
# (random weights, so the answers are noise; what is checked is the pipeline and the recount).
if have_shared; then
  python3 tests/make_fixture_prompt_model.py "$SHARED/fixtures/idefics3" "$TMP/m_idefics3" > /dev/null 2>&1
  "$VLMC" eval -m "$TMP/m_idefics3" --tasks synth_sample --limit 6 --output "$TMP/om" --log-samples --quiet > "$TMP/outm" 2>&1; rc=$?
  if [ $rc -eq 0 ] && recount "$TMP/om/results.json" "$TMP/om/samples_synth_sample.jsonl" synth_sample > /dev/null 2> "$TMP/py" \
     && python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; assert len(r)==6 and all(isinstance(x['response'], str) for x in r)" "$TMP/om/samples_synth_sample.jsonl"; then
    ok "a model folder (idefics3 fixture): 6 answers generated, accuracy equals the recount"
  else fail "a model folder (idefics3 fixture): 6 answers generated, accuracy equals the recount" "rc=$rc $(head -c 400 "$TMP/outm") $(cat "$TMP/py")"; fi
else skip "a model folder (idefics3 fixture)" "../shared absent"; fi
bad "log-likelihood tasks need a backend that scores" "log-likelihood" -m "replay:$TMP/replay.jsonl" --tasks scienceqa_sample_ll --output "$TMP/x"
bad "bad --limit" "--limit" -m oracle --tasks synth_sample --output "$TMP/x" --limit 0
bad "unknown option" "unknown option" -m oracle --tasks synth_sample --output "$TMP/x" --shots 5

if command -v script > /dev/null; then
  script -qc "$VLMC eval -m oracle --tasks synth_sample --output $TMP/o6" /dev/null > "$TMP/tty" 2>&1
  if grep -q "synth_sample: 96/96 .*ETA" "$TMP/tty"; then ok "progress line on a terminal"; else fail "progress line on a terminal" "$(head -c 300 "$TMP/tty")"; fi
  script -qc "$VLMC eval -m oracle --tasks synth_sample --output $TMP/o7 --quiet" /dev/null > "$TMP/tty" 2>&1
  if ! grep -q "96/96" "$TMP/tty"; then ok "--quiet: no progress line"; else fail "--quiet: no progress line"; fi
else skip "progress line on a terminal" "no script(1)"; fi

"$VLMC" eval --tasks list > "$TMP/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -qx "mmbench_sample" "$TMP/out" && grep -qx "synth" "$TMP/out"; then ok "--tasks list"; else fail "--tasks list" "$(cat "$TMP/out")"; fi
"$VLMC" eval --help > "$TMP/out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -q -- "--log-samples" "$TMP/out"; then ok "eval --help"; else fail "eval --help" "rc=$rc"; fi

finish
