# `vlmc serve` on a real model folder: the idefics3 fixture with its toy tokenizer and SmolVLM's chat
# template (tests/make_fixture_prompt_model.py), so that the prompt of "What is this?" and one image is
# exactly the fixture's 77 input ids. Helpers: clilib.sh, servelib.sh.
. tests/clilib.sh
. tests/servelib.sh

if ! have_shared || ! command -v curl > /dev/null || ! command -v python3 > /dev/null; then
  skip "serve on a model folder" "../shared, curl or python3 missing"; finish; exit
fi
python3 tests/make_fixture_prompt_model.py "$SHARED/fixtures/idefics3" "$TMP/m" > /dev/null 2>&1 || { fail "test model"; finish; exit; }
start_server M -m "$TMP/m" --quiet || { fail "server M starts"; finish; exit; }
BASE="http://127.0.0.1:$PORT"
IMG=$(base64 -w0 "$SHARED/fixtures/idefics3/reference/image.png")
BODY="{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,$IMG\"}},{\"type\":\"text\",\"text\":\"What is this?\"}]}],\"max_tokens\":8,\"temperature\":0}"

curl -s --max-time 60 "$BASE/v1/chat/completions" -H 'Content-Type: application/json' -d "$BODY" > "$TMP/r1"
if python3 - "$TMP/r1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
u = d["usage"]
assert u["prompt_tokens"] == 77 and u["completion_tokens"] == 8, u
assert d["choices"][0]["finish_reason"] == "length" and d["choices"][0]["message"]["content"]
PY
then ok "image + question: 77 prompt tokens (the fixture's ids), 8 generated"; else fail "image + question" "$(head -c 400 "$TMP/r1")"; fi

# Greedy answers are deterministic, and streaming sends the same text as one response.
curl -s --max-time 60 "$BASE/v1/chat/completions" -H 'Content-Type: application/json' -d "$BODY" > "$TMP/r2"
curl -sN --max-time 60 "$BASE/v1/chat/completions" -H 'Content-Type: application/json' -d "${BODY%\}},\"stream\":true}" > "$TMP/s1"
if python3 - "$TMP/r1" "$TMP/r2" "$TMP/s1" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["choices"][0]["message"]["content"]
b = json.load(open(sys.argv[2]))["choices"][0]["message"]["content"]
lines = [l[6:] for l in open(sys.argv[3]).read().split("\n") if l.startswith("data: ")]
assert lines[-1] == "[DONE]", lines[-1]
streamed = "".join(json.loads(l)["choices"][0]["delta"].get("content") or "" for l in lines[:-1])
assert a == b == streamed, (a, b, streamed)
PY
then ok "greedy answers repeat, and the stream carries the same text"; else fail "greedy determinism / stream" "$(head -c 300 "$TMP/s1")"; fi

# A prefill (last message from the assistant) cannot be served: 400, and the server keeps serving.
CODE=$(curl -s -o "$TMP/b" -w '%{http_code}' --max-time 30 "$BASE/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"he"}],"max_tokens":2}')
[ "$CODE" = 400 ] && ok "assistant prefill is a 400" || fail "assistant prefill" "$CODE $(head -c 200 "$TMP/b")"
stop_server "$SPID" M
finish
