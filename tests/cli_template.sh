#!/usr/bin/env bash
# The `vlmc template --jsonl` seam against every reference case of
# ../shared/data/templates/chat_templates.json (needs jq), plus -m DIR loading.
. tests/clilib.sh

# A model folder with the template in tokenizer_config.json (named-list form) and AddedToken-style tokens.
mkdir -p "$TMP/model"
cat >"$TMP/model/tokenizer_config.json" <<'JSON'
{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>",
 "chat_template": [{"name": "tool_use", "template": "TOOLS"},
                   {"name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}"}]}
JSON
echo '[{"role": "user", "content": "hi"}]' >"$TMP/msgs.json"
out=$("$VLMC" template -m "$TMP/model" "$TMP/msgs.json" --add-generation-prompt)
want=$(printf '<s>[user] hi</s>\n[assistant]')
if [ "$out" = "$want" ]; then ok "model folder, named template list"; else fail "model folder, named template list" "got [$out]"; fi

# chat_template.jinja wins over tokenizer_config.json
printf '{{ messages[0].content | upper }}' >"$TMP/model/chat_template.jinja"
out=$("$VLMC" template -m "$TMP/model" "$TMP/msgs.json")
if [ "$out" = "HI" ]; then ok "chat_template.jinja preferred"; else fail "chat_template.jinja preferred" "got [$out]"; fi

# errors are JSON lines, not crashes
out=$(printf '{"messages": [{"role": "user", "content": "x"}]}\nnot json\n' | "$VLMC" template --template-file "$TMP/model/chat_template.jinja" --jsonl)
if [ "$(echo "$out" | sed -n 1p)" = '{"text":"X"}' ] && echo "$out" | sed -n 2p | grep -q '"error"'; then
  ok "jsonl text and error lines"
else
  fail "jsonl text and error lines" "got [$out]"
fi
printf '{{ raise_exception("nope") }}' >"$TMP/raise.jinja"
out=$(echo '{"messages": []}' | "$VLMC" template --template-file "$TMP/raise.jinja" --jsonl)
if echo "$out" | grep -q '"error":.*nope'; then ok "raise_exception is an error line"; else fail "raise_exception is an error line" "got [$out]"; fi

ref="$SHARED/data/templates/chat_templates.json"
if ! have_shared || [ ! -f "$ref" ]; then
  skip "reference cases" "$ref is absent"
elif ! command -v jq >/dev/null; then
  skip "reference cases" "jq is not installed"
else
  export VLMC_NOW="2025-07-10 12:00:00" # the instant the reference renders froze strftime_now at
  total=0; bad=0; i=0
  n=$(jq 'length' "$ref")
  while [ "$i" -lt "$n" ]; do
    jq -r --argjson i "$i" '[.[]][$i].template' "$ref" >"$TMP/t.jinja"
    # keep the template byte-exact: jq -r adds one newline at the end
    truncate -s -1 "$TMP/t.jinja"
    jq -c --argjson i "$i" '[.[]][$i].cases[] | {messages, add_generation_prompt, bos_token, eos_token, extra_context}' "$ref" >"$TMP/in.jsonl"
    jq -c --argjson i "$i" '[.[]][$i].cases[] | if has("expected") then {text: .expected} else {error: true} end' "$ref" >"$TMP/want.jsonl"
    "$VLMC" template --template-file "$TMP/t.jinja" --jsonl <"$TMP/in.jsonl" | jq -c 'if has("error") then {error: true} else . end' >"$TMP/got.jsonl"
    c=$(wc -l <"$TMP/want.jsonl"); total=$((total + c))
    d=$(diff "$TMP/want.jsonl" "$TMP/got.jsonl" | grep -c '^<')
    if [ "$d" -ne 0 ]; then
      bad=$((bad + d))
      echo "  template #$i ($(jq -r --argjson i "$i" 'keys_unsorted[$i]' "$ref")): $d case(s) differ"
    fi
    i=$((i + 1))
  done
  if [ "$bad" -eq 0 ]; then ok "reference cases through --jsonl ($total)"; else fail "reference cases through --jsonl" "$bad of $total differ"; fi
fi
finish
