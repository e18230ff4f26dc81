# The chat page (/) of `vlmc serve -m echo` driven by headless Chromium (playwright-core
# with Debian's chromium). Skips when chromium or tests/node/node_modules is absent.
. tests/clilib.sh
. tests/servelib.sh
IMG=tests/data/images
KEY=sekrit-key
# ---- server C: the chat page in headless Chromium --------------------------------------
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  skip "chat page in headless Chromium" "$CHROMIUM is absent: run 'make deps-web' (installs Debian's chromium)"
elif [ ! -d tests/node/node_modules/playwright-core ]; then
  skip "chat page in headless Chromium" "tests/node/node_modules is missing: run 'make deps-web'"
else
  start_server C -m echo:50 --api-key "$KEY" --web web --quiet || { fail "server C starts"; finish; exit; }
  CHROMIUM=$CHROMIUM timeout 60 node tests/node/browser.mjs "http://127.0.0.1:$PORT" "$KEY" "$IMG/rgb.png" "$TMP/chrome-profile" > "$TMP/browser.out" 2>&1
  rc=$?
  while IFS= read -r line; do
    case "$line" in "ok   "*) ok "${line#ok   }";; "FAIL "*) fail "${line#FAIL }";; esac
  done < "$TMP/browser.out"
  [ $rc -eq 0 ] || grep -q '^FAIL ' "$TMP/browser.out" || fail "headless Chromium run" "rc=$rc $(tail -5 "$TMP/browser.out")"
  stop_server "$SPID" C
fi
finish
