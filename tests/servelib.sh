# Sourced by tests/cli_serve*.sh after tests/clilib.sh: start and stop `vlmc serve` on a free loopback port.
PIDS=()
# start_server NAME ARGS...: starts `vlmc serve --port 0 ARGS` in the background; sets PORT and SPID.
start_server() {
  local name=$1; shift
  rm -f "$TMP/$name.port"
  "$VLMC" serve --port 0 --port-file "$TMP/$name.port" "$@" > "$TMP/$name.log" 2>&1 &
  SPID=$!; PIDS+=("$SPID")
  for _ in $(seq 1 200); do
    if [ -s "$TMP/$name.port" ]; then PORT=$(cat "$TMP/$name.port"); return 0; fi
    kill -0 "$SPID" 2> /dev/null || break
    sleep 0.05
  done
  echo "server $name did not start:"; cat "$TMP/$name.log"; return 1
}
stop_server() { # pid name: SIGTERM, expect a clean exit
  kill -TERM "$1" 2> /dev/null; wait "$1"; local rc=$?
  if [ $rc -eq 0 ] && grep -q "vlmc serve: stopped" "$TMP/$2.log"; then ok "$2: SIGTERM stops the server cleanly"
  else fail "$2: SIGTERM stops the server cleanly" "rc=$rc $(tail -3 "$TMP/$2.log")"; fi
}
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2> /dev/null; done; }
trap cleanup EXIT

