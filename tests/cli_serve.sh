# End-to-end tests of `vlmc serve` (echo backend) on loopback: curl for the HTTP
# surface and malformed requests, the official openai npm package, queueing and
# cancellation (the chat page: tests/cli_serve_web.sh). Helpers: clilib.sh, servelib.sh.
. tests/clilib.sh
. tests/servelib.sh
IMG=tests/data/images
KEY=sekrit-key

if ! command -v curl > /dev/null || ! command -v python3 > /dev/null; then
  skip "serve tests" "curl or python3 missing"; finish; exit
fi

# req ARGS...: curl to the server; status in $CODE, body in $TMP/body.
req() { CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' --max-time 20 "$@"); }
AUTH=(-H "Authorization: Bearer $KEY")
chat() { req "${AUTH[@]}" -H 'Content-Type: application/json' "http://127.0.0.1:$PORT/v1/chat/completions" "$@"; }
# jq-like field access with python: jfield FILE 'expr on d'
jfield() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1" 2> /dev/null; }
# expect_err NAME STATUS TYPE PARAM CODE: checks the last response.
# (plain grep: the server writes compact JSON; python3 starts slowly on a loaded machine)
expect_err() {
  local b; b=$(cat "$TMP/body")
  local p='"param":null'; [ "$4" = None ] || p="\"param\":\"$4\""
  local c='"code":null'; [ "$5" = None ] || c="\"code\":\"$5\""
  if [ "$CODE" = "$2" ] && [[ "$b" == '{"error":{"message":"'?* ]] && [[ "$b" == *"\"type\":\"$3\","* ]] &&
     [[ "$b" == *"$p"* ]] && [[ "$b" == *"$c}}" ]]; then ok "$1"
  else fail "$1" "status $CODE (want $2; type $3, param $4, code $5): $(head -c 300 "$TMP/body")"; fi
}
# health KEY: a number from GET /health
health() {
  curl -s --max-time 5 "http://127.0.0.1:$PORT/health" > "$TMP/health"
  grep -o "\"$1\":[0-9]*" "$TMP/health" | head -1 | cut -d: -f2
}

b64() { base64 -w0 "$1"; }
img_msg() { # data-url image part + text, as a messages array
  printf '[{"role":"user","content":[{"type":"image_url","image_url":{"url":"%s"}},{"type":"text","text":"%s"}]}]' "$1" "$2"
}

# ---- server A: limits, auth, validation ------------------------------------------------
mkdir -p "$TMP/allowed/sub" "$TMP/outside"
cp "$IMG/rgb.png" "$TMP/allowed/sub/a b.png"; cp "$IMG/rgb.png" "$TMP/outside/x.png"
start_server A -m echo --api-key "$KEY" --allow-path "$TMP/allowed" --max-body 65536 --max-images 2 \
  --max-image-pixels 1000 --ctx 64 --web web || { fail "server A starts"; finish; exit; }
BASE="http://127.0.0.1:$PORT"

timeout 10 "$VLMC" serve -m echo --port "$PORT" > "$TMP/dup.log" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "cannot listen" "$TMP/dup.log" && ok "a port in use is an error" || fail "a port in use is an error" "rc=$rc $(cat "$TMP/dup.log")"
VLMC_MODEL="$TMP/no-such-model" "$VLMC" serve --port 0 > "$TMP/cli.log" 2>&1; rc=$?
[ $rc -ne 0 ] && grep -q -- "no-such-model" "$TMP/cli.log" && ok "serve without -m loads \$VLMC_MODEL (missing: named)" || fail "serve without -m" "rc=$rc $(cat "$TMP/cli.log")"
"$VLMC" serve -m echo --parallel 0 > "$TMP/cli.log" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q -- "--parallel" "$TMP/cli.log" && ok "--parallel 0 is a usage error" || fail "--parallel 0" "rc=$rc"
"$VLMC" serve -m models/tiny-random-llava --port 0 > "$TMP/cli.log" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "tokenizer.json" "$TMP/cli.log" && ok "a model folder without a tokenizer is a clear error" || fail "model folder without a tokenizer" "rc=$rc $(cat "$TMP/cli.log")"

req "$BASE/health"
if [ "$CODE" = 200 ] && [ "$(jfield "$TMP/body" 'd["status"]')" = ok ]; then ok "GET /health is 200 without a key"; else fail "GET /health" "$CODE"; fi
req "$BASE/v1/models"; expect_err "no API key: 401" 401 invalid_request_error None missing_api_key
req -H "Authorization: Bearer nope" "$BASE/v1/models"; expect_err "wrong API key: 401" 401 invalid_request_error None invalid_api_key
req -H "Authorization: Bearer nope" "$BASE/v1/chat/completions" -d '{"messages":[{"role":"user","content":"hi"}]}'; expect_err "wrong API key on chat: 401" 401 invalid_request_error None invalid_api_key
req "${AUTH[@]}" "$BASE/v1/models"
if [ "$CODE" = 200 ] && [ "$(jfield "$TMP/body" 'd["data"][0]["id"]')" = echo ]; then ok "GET /v1/models with the key"; else fail "GET /v1/models" "$CODE $(cat "$TMP/body")"; fi
req "${AUTH[@]}" "$BASE/v1/models/echo"; [ "$CODE" = 200 ] && ok "GET /v1/models/echo" || fail "GET /v1/models/echo" "$CODE"
req "${AUTH[@]}" "$BASE/v1/models/gpt-4"; expect_err "unknown model: 404" 404 invalid_request_error model model_not_found
req "${AUTH[@]}" "$BASE/v1/nothing"; expect_err "unknown route: 404" 404 invalid_request_error None not_found
req "${AUTH[@]}" "$BASE/v1/chat/completions"; expect_err "GET on chat: 405" 405 invalid_request_error None method_not_allowed
curl -s -D "$TMP/hdr" -o /dev/null "${AUTH[@]}" -X PUT "$BASE/v1/chat/completions"
grep -qi '^Allow: POST' "$TMP/hdr" && ok "405 names the allowed method" || fail "405 names the allowed method" "$(cat "$TMP/hdr")"
req -X POST -d x "$BASE/health"; expect_err "POST /health: 405" 405 invalid_request_error None method_not_allowed

chat -d '{"messages": [ {"role": "user", "content": "hi"} '; expect_err "truncated JSON: 400" 400 invalid_request_error None invalid_json
chat --data-binary $'{"messages":"\xff"}'; expect_err "invalid UTF-8: 400" 400 invalid_request_error None invalid_json
chat -d '[1,2]'; expect_err "JSON array body: 400" 400 invalid_request_error None invalid_type
chat -d '{"model":"echo"}'; expect_err "missing messages: 400" 400 invalid_request_error messages missing_required_parameter
chat -d '{"messages":"hello"}'; expect_err "messages not an array: 400" 400 invalid_request_error messages invalid_type
chat -d '{"messages":[]}'; expect_err "empty messages: 400" 400 invalid_request_error messages empty_array
chat -d '{"messages":[{"role":"user","content":5}]}'; expect_err "content a number: 400" 400 invalid_request_error 'messages[0].content' invalid_type
chat -d '{"messages":[{"role":"wizard","content":"x"}]}'; expect_err "unknown role: 400" 400 invalid_request_error 'messages[0].role' invalid_value
chat -d '{"messages":[{"content":"x"}]}'; expect_err "missing role: 400" 400 invalid_request_error 'messages[0].role' missing_required_parameter
chat -d '{"messages":[{"role":"user","content":[{"type":"audio"}]}]}'; expect_err "unknown part type: 400" 400 invalid_request_error 'messages[0].content[0].type' invalid_value
chat -d '{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}'; expect_err "temperature a string: 400" 400 invalid_request_error temperature invalid_type
chat -d '{"messages":[{"role":"user","content":"x"}],"temperature":3}'; expect_err "temperature 3: 400" 400 invalid_request_error temperature decimal_above_max_value
chat -d '{"messages":[{"role":"user","content":"x"}],"top_p":-1}'; expect_err "top_p -1: 400" 400 invalid_request_error top_p decimal_below_min_value
chat -d '{"messages":[{"role":"user","content":"x"}],"max_tokens":0}'; expect_err "max_tokens 0: 400" 400 invalid_request_error max_tokens integer_below_min_value
chat -d '{"messages":[{"role":"user","content":"x"}],"max_tokens":1.5}'; expect_err "max_tokens 1.5: 400" 400 invalid_request_error max_tokens invalid_type
chat -d '{"messages":[{"role":"user","content":"x"}],"n":3}'; expect_err "n 3: 400" 400 invalid_request_error n unsupported_value
chat -d '{"messages":[{"role":"user","content":"x"}],"stop":[1]}'; expect_err "stop [1]: 400" 400 invalid_request_error 'stop[0]' invalid_type
chat -d '{"messages":[{"role":"user","content":"x"}],"stream":"yes"}'; expect_err "stream a string: 400" 400 invalid_request_error stream invalid_type

python3 -c "import json; print(json.dumps({'messages':[{'role':'user','content':'x'*70000}]}))" > "$TMP/big.json"
chat --data-binary @"$TMP/big.json"; expect_err "body over --max-body: 413" 413 invalid_request_error None request_too_large
chat -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big.json"; expect_err "chunked body over --max-body: 413" 413 invalid_request_error None request_too_large

chat -d "$(printf '{"messages":%s}' "$(img_msg "https://example.com/cat.png" hi)")"
expect_err "remote image URL: 400, never fetched" 400 invalid_request_error 'messages[0].content[0].image_url.url' unsupported_image_url
chat -d "$(printf '{"messages":%s}' "$(img_msg "file://$TMP/outside/x.png" hi)")"
expect_err "file:// outside --allow-path: 403" 403 permission_error 'messages[0].content[0].image_url.url' file_url_not_allowed
chat -d "$(printf '{"messages":%s}' "$(img_msg "file://$TMP/allowed/../outside/x.png" hi)")"
expect_err "file:// escaping with ..: 403" 403 permission_error 'messages[0].content[0].image_url.url' file_url_not_allowed
chat -d "$(printf '{"messages":%s}' "$(img_msg "file://$TMP/allowed/sub/a%20b.png" hi)")"
if [ "$CODE" = 200 ] && jfield "$TMP/body" 'd["choices"][0]["message"]["content"]' | grep -q '^You said: hi \[image 23x17 sha256:'; then
  ok "file:// under --allow-path is read"; else fail "file:// under --allow-path is read" "$CODE $(cat "$TMP/body")"; fi
chat -d "$(printf '{"messages":%s}' "$(img_msg "data:image/png;base64,$(printf 'not an image' | base64)" hi)")"
expect_err "undecodable image: 400" 400 invalid_request_error 'messages[0].content[0].image_url.url' invalid_image
chat -d "$(printf '{"messages":%s}' "$(img_msg "data:image/x-portable-graymap;base64,$(b64 "$IMG/maxval1000.pgm")" hi)")"
expect_err "image over --max-image-pixels: 400" 400 invalid_request_error 'messages[0].content[0].image_url.url' image_too_large
P="data:image/png;base64,$(b64 "$IMG/rgb.png")"
three=$(printf '[{"role":"user","content":[{"type":"image_url","image_url":{"url":"%s"}},{"type":"image_url","image_url":{"url":"%s"}},{"type":"image_url","image_url":{"url":"%s"}}]}]' "$P" "$P" "$P")
chat -d "{\"messages\":$three}"; expect_err "more images than --max-images: 400" 400 invalid_request_error messages too_many_images
chat -d '{"messages":[{"role":"assistant","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}]}'
expect_err "image in an assistant message: 400" 400 invalid_request_error 'messages[0].content[0]' invalid_value
words=$(python3 -c "print(' '.join(['w']*70))")
chat -d "{\"messages\":[{\"role\":\"user\",\"content\":\"$words\"}]}"; expect_err "prompt over --ctx: 400" 400 invalid_request_error messages context_length_exceeded

hits0=$(health hits)
chat -d "{\"messages\":$(img_msg "$P" "first")}"; c1=$CODE
chat -d "{\"messages\":$(img_msg "$P" "second")}"; c2=$CODE
hits1=$(health hits)
if [ "$c1" = 200 ] && [ "$c2" = 200 ] && [ "$hits1" -ge $((hits0 + 1)) ]; then ok "a repeated image is served from the image cache"
else fail "a repeated image is served from the image cache" "codes $c1 $c2 hits $hits0 -> $hits1"; fi

chat -d '{"messages":[{"role":"user","content":"still alive"}],"max_tokens":100}'
if [ "$CODE" = 200 ] && [ "$(jfield "$TMP/body" 'd["choices"][0]["message"]["content"]')" = "You said: still alive" ]; then
  ok "serves normally after the bad requests"; else fail "serves normally after the bad requests" "$CODE $(cat "$TMP/body")"; fi
curl -sN "${AUTH[@]}" "$BASE/v1/chat/completions" -d '{"messages":[{"role":"user","content":"sse check"}],"stream":true}' > "$TMP/sse"
if python3 - "$TMP/sse" <<'PY'
import json, sys
raw = open(sys.argv[1]).read()
assert raw.endswith("data: [DONE]\n\n"), raw[-60:]
events = raw.split("\n\n")[:-1]
assert all(e.startswith("data: ") for e in events)
chunks = [json.loads(e[6:]) for e in events[:-1]]
assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
assert text == "You said: sse check", text
assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["choices"][0]["delta"] == {}
assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
PY
then ok "SSE framing: role chunk, content chunks, finish chunk, [DONE]"; else fail "SSE framing" "$(head -c 400 "$TMP/sse")"; fi
req "$BASE/"
if [ "$CODE" = 200 ] && grep -q 'app.js' "$TMP/body"; then ok "GET / serves the chat page"; else fail "GET / serves the chat page" "$CODE"; fi

# The official openai npm client.
if [ -d tests/node/node_modules/openai ] && command -v node > /dev/null; then
  node tests/node/openai_client.mjs "$BASE" "$KEY" "$IMG" > "$TMP/node.out" 2>&1
  while IFS= read -r line; do
    case "$line" in "ok   "*) ok "${line#ok   }";; "FAIL "*) fail "${line#FAIL }";; esac
  done < "$TMP/node.out"
  grep -q '^ok   ' "$TMP/node.out" || fail "openai npm client ran" "$(head -5 "$TMP/node.out")"
else
  skip "openai npm client" "tests/node/node_modules is missing: run 'make deps-web'"
fi
stop_server "$SPID" A

# ---- server B: one slow slot, a queue of one ------------------------------------------
start_server B -m echo:150 --parallel 1 --queue 1 --quiet || { fail "server B starts"; finish; exit; }
BASE="http://127.0.0.1:$PORT"
long=$(python3 -c "print(' '.join(['word']*40))")
AUTH=()
curl -s --max-time 20 "$BASE/v1/chat/completions" -d '{"messages":[{"role":"user","content":"one two a b c d e f g h i j k l m n o p q r"}]}' -o "$TMP/q1" &
q1=$!
for _ in $(seq 1 100); do [ "$(health slots_busy)" = 1 ] && break; sleep 0.02; done
curl -s --max-time 20 "$BASE/v1/chat/completions" -d '{"messages":[{"role":"user","content":"three four a b c d e f g h i j k l m n o p q r"}]}' -o "$TMP/q2" &
q2=$!
for _ in $(seq 1 100); do [ "$(health queued)" = 1 ] && break; sleep 0.02; done
curl -s -D "$TMP/hdr503" -o "$TMP/body" -w '%{http_code}' --max-time 10 "$BASE/v1/chat/completions" -d '{"messages":[{"role":"user","content":"x"}]}' > "$TMP/code"
CODE=$(cat "$TMP/code")
expect_err "queue full: 503" 503 server_error None server_overloaded
grep -qi '^Retry-After:' "$TMP/hdr503" && ok "503 carries Retry-After" || fail "503 carries Retry-After"
wait $q1 $q2
if [ "$(jfield "$TMP/q1" 'd["choices"][0]["message"]["content"]')" = "You said: one two a b c d e f g h i j k l m n o p q r" ] && \
   [ "$(jfield "$TMP/q2" 'd["choices"][0]["message"]["content"]')" = "You said: three four a b c d e f g h i j k l m n o p q r" ]; then
  ok "the running and the queued request both complete"; else fail "the running and the queued request both complete" "$(cat "$TMP/q1" "$TMP/q2")"; fi

c0=$(health cancelled)
t0=$(date +%s%N)
curl -sN --max-time 1 "$BASE/v1/chat/completions" -d "{\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}],\"stream\":true}" > "$TMP/cut" 2>&1
freed=0
for _ in $(seq 1 100); do
  if [ "$(health slots_busy)" = 0 ] && [ "$(health cancelled)" -gt "$c0" ]; then freed=1; break; fi
  sleep 0.02
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if [ $freed = 1 ] && grep -q '"content"' "$TMP/cut"; then ok "client disconnect mid-stream frees the slot (${ms}ms, not the ~6s the answer takes)"
else fail "client disconnect mid-stream frees the slot" "busy=$(health slots_busy) cancelled=$(health cancelled)"; fi

c0=$(health cancelled)
curl -s --max-time 20 "$BASE/v1/chat/completions" -d "{\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}]}" -o /dev/null &
q3=$!
for _ in $(seq 1 100); do [ "$(health slots_busy)" = 1 ] && break; sleep 0.02; done
curl -s --max-time 0.5 "$BASE/v1/chat/completions" -d '{"messages":[{"role":"user","content":"queued then gone"}]}' -o /dev/null
freed=0
for _ in $(seq 1 50); do [ "$(health queued)" = 0 ] && [ "$(health cancelled)" -gt "$c0" ] && { freed=1; break; }; sleep 0.02; done
[ $freed = 1 ] && ok "a queued request whose client left leaves the queue" || fail "a queued request whose client left leaves the queue" "$(cat "$TMP/health")"
kill "$q3" 2> /dev/null; wait "$q3" 2> /dev/null
freed=0
for _ in $(seq 1 100); do [ "$(health slots_busy)" = 0 ] && { freed=1; break; }; sleep 0.02; done
[ $freed = 1 ] && ok "client disconnect on a non-streaming request frees the slot" || fail "non-streaming disconnect frees the slot" "$(cat "$TMP/health")"
req "$BASE/v1/chat/completions" -d '{"messages":[{"role":"user","content":"after"}]}'
[ "$CODE" = 200 ] && ok "serves after cancellations" || fail "serves after cancellations" "$CODE"

# SIGTERM in the middle of a stream: the stream ends, the server exits cleanly.
curl -sN --max-time 10 "$BASE/v1/chat/completions" -d "{\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}],\"stream\":true}" > "$TMP/term" 2>&1 &
q4=$!
for _ in $(seq 1 100); do [ "$(health slots_busy)" = 1 ] && break; sleep 0.02; done
stop_server "$SPID" B
wait "$q4" 2> /dev/null
tail -c 20 "$TMP/term" | grep -q 'data: \[DONE\]' && ok "a stream in flight at shutdown still ends with [DONE]" || fail "a stream in flight at shutdown ends" "$(tail -c 200 "$TMP/term")"

finish
