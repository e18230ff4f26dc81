# The shipped default model models/vlmc-tiny, trained from nothing by `make model` (scripts/train_default_model.sh;
# sourced helpers: tests/clilib.sh). Its greedy answers to the 128 bundled held-out questions must be the ones
# recorded when it was trained (examples/heldout/answers.jsonl): a regression check of the whole inference path
# (PNG decoding, CLIP preprocessing, tower, projector, decoder, chat template, tokenizer, greedy decoding). Also:
# `vlmc run` finds the model without -m from any folder and answers as `vlmc eval` does; eval's accuracy equals a
# recount from its sample log; log-likelihood scoring runs on it.
. tests/clilib.sh
D=models/vlmc-tiny
if [ ! -f "$D/config.json" ]; then skip "default model" "models/vlmc-tiny absent (make model trains it)"; finish; exit $?; fi
ABS_VLMC=$(cd "$(dirname "$VLMC")" && pwd)/$(basename "$VLMC")
H=$(pwd)/$D/examples/heldout

# 1. `vlmc run` without -m, from another folder, answers the first held-out question as recorded
mapfile -t L < <(python3 - "$H" <<'PY'
import json, sys
h = sys.argv[1]
q = json.loads(open(h + "/test_qa.jsonl").readline())
a = json.loads(open(h + "/answers.jsonl").readline())
print(h + "/" + q["image"]); print(q["question"]); print(a["response"])
PY
)
IMG=${L[0]} Q=${L[1]} WANT=${L[2]}
(cd "$TMP" && env -u VLMC_MODEL "$ABS_VLMC" run --image "$IMG" -p "$Q" -n 64 --json) > "$TMP/run.json" 2> "$TMP/run.err"; rc=$?
got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["text"])' "$TMP/run.json" 2>/dev/null)
[ $rc -eq 0 ] && [ "$got" = "$WANT" ] && ok "run without -m (another folder): \"$Q\" -> \"$got\", as recorded" ||
  fail "run without -m" "rc=$rc got '$got' want '$WANT' $(cat "$TMP/run.err")"

# 2. eval on the bundled held-out questions: the recorded answers, and an accuracy equal to the recount
"$VLMC" eval --tasks synth --data "$H" --output "$TMP/ev" --log-samples --quiet > "$TMP/ev.out" 2>&1; rc=$?
if [ $rc -eq 0 ] && python3 - "$TMP/ev" "$H/answers.jsonl" <<'PY'
import json, sys
d, ref = sys.argv[1], sys.argv[2]
got = {s["doc_id"]: s for s in map(json.loads, open(d + "/samples_synth.jsonl"))}
want = [json.loads(l) for l in open(ref)]
assert len(got) == len(want) == 128, (len(got), len(want))
bad = [(w["id"], w["response"], got[w["doc_id"]]["response"]) for w in want if got[w["doc_id"]]["response"] != w["response"]]
assert not bad, "answers differ from the recorded ones: %s" % bad[:5]
scored = [s for s in got.values() if s.get("subtask") != "caption"]
acc = sum(s["score"] for s in scored) / len(scored)
res = json.load(open(d + "/results.json"))["results"]["synth"]["accuracy"]
assert abs(acc - res) < 1e-9, (acc, res)
print("    held-out sample: accuracy %.3f over %d questions" % (acc, len(scored)))
PY
then ok "eval: the 128 recorded answers, accuracy = recount from the sample log"; else fail "eval on the held-out sample" "rc=$rc $(tail -3 "$TMP/ev.out")"; fi

# 3. log-likelihood scoring (ScienceQA-style options) runs on the default model; accuracy = recount
"$VLMC" eval --tasks scienceqa_sample_ll --output "$TMP/ll" --log-samples --quiet > "$TMP/ll.out" 2>&1; rc=$?
if [ $rc -eq 0 ] && python3 - "$TMP/ll" <<'PY'
import json, sys
d = sys.argv[1]
s = [json.loads(l) for l in open(d + "/samples_scienceqa_sample_ll.jsonl")]
assert s and all(len(x["logprobs"]) >= 2 and all(lp < 0 for lp in x["logprobs"]) for x in s)
acc = sum(x["score"] for x in s) / len(s)
res = json.load(open(d + "/results.json"))["results"]["scienceqa_sample_ll"]["accuracy"]
assert abs(acc - res) < 1e-9, (acc, res)
PY
then ok "eval by log-likelihood: options scored, accuracy = recount"; else fail "log-likelihood eval" "rc=$rc $(tail -3 "$TMP/ll.out")"; fi

# 4. the bundled benchmark samples (MMBench-style with CircularEval, ScienceQA-style), generation on the default
# model: accuracy and CircularEval equal the recount from the sample logs
"$VLMC" eval --tasks mmbench_sample,scienceqa_sample --output "$TMP/bm" --log-samples --quiet > "$TMP/bm.out" 2>&1; rc=$?
if [ $rc -eq 0 ] && python3 - "$TMP/bm" <<'PY'
import json, sys
d = sys.argv[1]
res = json.load(open(d + "/results.json"))["results"]
rows = [json.loads(l) for l in open(d + "/samples_mmbench_sample.jsonl")]
groups = {}
for r in rows:
    groups.setdefault(r["circular_group"], []).append(r["score"] == 1)
circ = sum(all(v) for v in groups.values()) / len(groups)
assert abs(circ - res["mmbench_sample"]["accuracy"]) < 1e-12, (circ, res["mmbench_sample"])
s = [json.loads(l) for l in open(d + "/samples_scienceqa_sample.jsonl")]
acc = sum(x["score"] for x in s) / len(s)
assert abs(acc - res["scienceqa_sample"]["accuracy"]) < 1e-12, (acc, res["scienceqa_sample"])
print("    mmbench_sample CircularEval %.3f (%d questions), scienceqa_sample %.3f" % (circ, len(groups), acc))
PY
then ok "eval on the bundled benchmark samples: accuracy = recount (CircularEval too)"; else fail "benchmark samples" "rc=$rc $(tail -3 "$TMP/bm.out")"; fi

# 5. `vlmc serve` without -m serves it: the official openai client gets the recorded answer, plain and streamed,
# and so does the chat page driven by headless Chromium
. tests/servelib.sh
if [ -d tests/node/node_modules/openai ] && command -v node > /dev/null; then
  if start_server D --quiet; then
    node tests/node/openai_default_model.mjs "http://127.0.0.1:$PORT" "$IMG" "$Q" "$WANT" > "$TMP/node.out" 2>&1
    while read -r status name; do
      case "$status" in ok) ok "$name" ;; FAIL) fail "$name" ;; esac
    done < <(grep -E '^(ok|FAIL) ' "$TMP/node.out")
    grep -q '^ok ' "$TMP/node.out" || fail "openai client on the default model" "$(tail -5 "$TMP/node.out")"
    # the chat page in headless Chromium, on the same server
    if [ -x "${CHROMIUM:-/usr/bin/chromium}" ] && [ -d tests/node/node_modules/playwright-core ]; then
      timeout 90 node tests/node/browser_model.mjs "http://127.0.0.1:$PORT" vlmc-tiny "$IMG" "$Q" "$WANT" "$TMP/chrome" > "$TMP/browser.out" 2>&1
      while IFS= read -r line; do
        case "$line" in "ok   "*) ok "${line#ok   }";; "FAIL "*) fail "${line#FAIL }";; esac
      done < "$TMP/browser.out"
      grep -qE '^(ok|FAIL) ' "$TMP/browser.out" || fail "chat page on the default model" "$(tail -5 "$TMP/browser.out")"
    else skip "chat page on the default model" "chromium or playwright-core missing (make deps-web)"; fi
    stop_server "$SPID" D
  else fail "serve without -m starts on the default model"; fi
else skip "openai client on the default model" "tests/node not installed (make deps-web)"; fi

finish
