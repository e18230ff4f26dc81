# End-to-end tests of `vlmc chat` through pipes (sourced helpers: tests/clilib.sh): /image, two turns, /reset,
# Ctrl-C stopping an answer but not the program, Ctrl-C at the prompt leaving. The model is the llava fixture made
# chat-ready by tests/make_chat_model.py.
. tests/clilib.sh

IMG="$SHARED/fixtures/llava/reference/image.png"
if ! have_shared || [ ! -d "$SHARED/fixtures/llava" ]; then
  skip "vlmc chat" "../shared/fixtures/llava absent"; finish; exit $?
fi
M="$TMP/model"
python3 tests/make_chat_model.py "$SHARED/fixtures/llava" "$M" || { fail "make test model" "python3"; finish; exit 1; }

# 1. two turns with an image: the first answer is what `vlmc run` answers
printf '/image %s\nhi\nand then?\n/quit\nnot read\n' "$IMG" |
  "$VLMC" chat -m "$M" -n 6 --ignore-eos -t 1 >"$TMP/chat.out" 2>"$TMP/chat.err"; rc=$?
"$VLMC" run -m "$M" --image "$IMG" -p "hi" -n 6 --ignore-eos -t 1 >"$TMP/run.out" 2>/dev/null
if [ $rc -eq 0 ] && [ "$(wc -l <"$TMP/chat.out")" -eq 2 ] && [ "$(head -1 "$TMP/chat.out")" = "$(cat "$TMP/run.out")" ] &&
   grep -q "attached" "$TMP/chat.err"; then
  ok "chat: /image, two turns, first answer = vlmc run"
else fail "chat two turns" "rc=$rc $(cat "$TMP/chat.out" "$TMP/chat.err")"; fi

# 2. /reset forgets: the same question gets the same answer again
printf '/image %s\nhi\n/reset\n/image %s\nhi\n' "$IMG" "$IMG" |
  "$VLMC" chat -m "$M" -n 6 --ignore-eos -t 1 >"$TMP/reset.out" 2>"$TMP/reset.err"
if [ "$(wc -l <"$TMP/reset.out")" -eq 2 ] && [ "$(sed -n 1p "$TMP/reset.out")" = "$(sed -n 2p "$TMP/reset.out")" ] &&
   grep -q "reset" "$TMP/reset.err"; then ok "chat: /reset"; else fail "chat /reset" "$(cat "$TMP/reset.out" "$TMP/reset.err")"; fi

# 3. errors inside the chat do not end it
printf '/image %s/missing.png\n/frobnicate\nhi\n' "$TMP" | "$VLMC" chat -m "$M" -n 3 -t 1 >"$TMP/e.out" 2>"$TMP/e.err"; rc=$?
if [ $rc -eq 0 ] && grep -q "missing.png" "$TMP/e.err" && grep -q "unknown command" "$TMP/e.err" &&
   [ "$(wc -l <"$TMP/e.out")" -eq 1 ]; then ok "chat: bad /image and unknown command are reported, chat goes on"
else fail "chat errors" "rc=$rc $(cat "$TMP/e.out" "$TMP/e.err")"; fi

# 4. Ctrl-C stops the current answer only: two long answers (until the 16000-token context is full), each
# interrupted, then /quit
mkfifo "$TMP/fifo"
"$VLMC" chat -m "$M" -n 0 -c 16000 --ignore-eos -t 1 <"$TMP/fifo" >"$TMP/int.out" 2>"$TMP/int.err" &
pid=$!
exec 3>"$TMP/fifo"
echo "hi" >&3; sleep 2; kill -INT $pid; sleep 0.5
echo "more" >&3; sleep 2; kill -INT $pid; sleep 0.5
echo "/quit" >&3; exec 3>&-
wait $pid; rc=$?
if [ $rc -eq 0 ] && [ "$(grep -c "answer stopped" "$TMP/int.err")" -eq 2 ]; then
  ok "chat: Ctrl-C stops the answer, not the program"
else fail "chat Ctrl-C" "rc=$rc $(cat "$TMP/int.err"; wc -l <"$TMP/int.out")"; fi

# 5. Ctrl-C at the prompt leaves
rm -f "$TMP/fifo"; mkfifo "$TMP/fifo"
"$VLMC" chat -m "$M" -t 1 <"$TMP/fifo" >/dev/null 2>&1 &
pid=$!
exec 3>"$TMP/fifo"
sleep 1; kill -INT $pid
for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 $pid 2>/dev/null || break; sleep 0.3; done
if kill -0 $pid 2>/dev/null; then kill $pid; fail "chat: Ctrl-C at the prompt" "still running"
else wait $pid; rc=$?; [ $rc -eq 0 ] && ok "chat: Ctrl-C at the prompt leaves" || fail "chat: Ctrl-C at the prompt" "rc=$rc"; fi
exec 3>&-

"$VLMC" chat -m "$M" --nope >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "nope" "$TMP/o" && ok "chat: unknown flag" || fail "chat unknown flag" "rc=$rc"

# 6. On a pseudo-terminal (util-linux script): the "> " prompt, and a real Ctrl-C (the terminal's ^C, turned into
# SIGINT by the line discipline) stops the answer; the chat then reads /quit and ends normally. The command is
# exec'd: a non-exec'ing /bin/sh (dash) between script and vlmc would itself die of that SIGINT (rc 130).
if command -v script >/dev/null 2>&1; then
  (printf 'hi\n'; sleep 2.5; printf '\003'; sleep 1; printf '/quit\n'; sleep 0.5) |
    timeout 60 script -qec "exec $VLMC chat -m $M -n 0 -c 16000 --ignore-eos -t 1" /dev/null >"$TMP/pty.out" 2>&1; rc=$?
  if [ $rc -eq 0 ] && grep -aq "answer stopped" "$TMP/pty.out" && grep -aq "^> /quit" "$TMP/pty.out"; then
    ok "chat on a pseudo-terminal: prompt, ^C stops the answer"
  else fail "chat on a pty" "rc=$rc $(tail -c 300 "$TMP/pty.out")"; fi
else skip "chat on a pty" "no script(1)"; fi

finish
