#!/usr/bin/env bash
# vlmc tokenize: the --jsonl seam against the reference outputs in
# ../shared/data/tokenizers (one JSON string per input line, one object out).
. "$(dirname "$0")/clilib.sh"
EXP=$SHARED/data/tokenizers/expected
FILES=$SHARED/data/tokenizers/files

# check NAME FLAG: feeds every case text of expected/NAME.json through --jsonl and
# compares ids, tokens and both decodes with the reference fields.
check() {
  local name=$1 flag=$2 label="jsonl $1 ${2:-plain}"
  python3 - "$EXP/$name.json" >"$TMP/in.jsonl" <<'PY' || { fail "$label" "cannot build input"; return; }
import json, sys
for c in json.load(open(sys.argv[1]))["cases"]:
    print(json.dumps(c["text"]))
PY
  if ! "$VLMC" tokenize -m "$FILES/$name" $flag --jsonl <"$TMP/in.jsonl" >"$TMP/out.jsonl" 2>"$TMP/err"; then
    fail "$label" "exit status $?: $(head -3 "$TMP/err")"; return
  fi
  local res
  res=$(python3 - "$EXP/$name.json" "$TMP/out.jsonl" "$flag" <<'PY'
import json, sys
cases = json.load(open(sys.argv[1]))["cases"]
out = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
special = sys.argv[3] == "--add-special-tokens"
if len(out) != len(cases):
    print("got %d lines for %d inputs" % (len(out), len(cases))); sys.exit(0)
bad = []
for c, o in zip(cases, out):
    want = {"ids": c["ids_with_special" if special else "ids"],
            "tokens": c["tokens_with_special" if special else "tokens"],
            "decoded": c["decoded" if special else "decoded_plain"]}
    if special:
        want["decoded_skip_special"] = c["decoded_skip_special"]
    for k, v in want.items():
        if o.get(k) != v:
            bad.append("%s %s" % (c["id"], k)); break
print("OK %d" % len(cases) if not bad else "mismatch: " + ", ".join(bad[:5]))
PY
)
  case $res in OK*) ok "$label (${res#OK } cases)";; *) fail "$label" "$res";; esac
}

if ! have_shared; then
  skip "tokenize --jsonl" "$SHARED is absent"
elif ! command -v python3 >/dev/null; then
  skip "tokenize --jsonl" "python3 is needed to compare JSON"
else
  check llama-spm --add-special-tokens
  check gpt2 ""
  # a line that is not a JSON string: an error object, the other lines still answered, status 1
  printf '"a"\n42\n"b"\n' | "$VLMC" tokenize -m "$FILES/gpt2" --jsonl >"$TMP/o" 2>/dev/null; rc=$?
  if [ "$rc" -eq 1 ] && [ "$(wc -l <"$TMP/o")" -eq 3 ] && sed -n 2p "$TMP/o" | grep -q '"error"'; then
    ok "jsonl bad line"
  else
    fail "jsonl bad line" "rc=$rc, output: $(cat "$TMP/o")"
  fi
fi

# arguments
if "$VLMC" tokenize >/dev/null 2>&1; then fail "no -m" "should fail"; else ok "no -m is a usage error"; fi
if "$VLMC" tokenize -m /nonexistent "x" 2>"$TMP/e" >/dev/null; then fail "missing folder" "should fail"
elif grep -q /nonexistent "$TMP/e"; then ok "missing folder names the path"; else fail "missing folder" "$(cat "$TMP/e")"; fi
if have_shared; then
  out=$("$VLMC" tokenize -m "$FILES/mistral-7b-v0.1" --add-special-tokens "Hello world")
  if [ "$(echo "$out" | head -1)" = "3 tokens: 1 22557 1526" ]; then ok "text mode"; else fail "text mode" "$out"; fi
fi
finish
