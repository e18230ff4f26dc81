#!/usr/bin/env bash
# Load test of `vlmc serve` on loopback (the echo backend, or LOAD_MODEL=DIR for a real model): 8 concurrent clients for SECONDS
# (default 20; 60 for the issue's acceptance run), mixed JSON / SSE / image requests.
# Reports requests/s, failures other than the intended 503s, and the server's RSS
# over the run (flat memory). Exits non-zero on a failure or a crash.
# Usage: bench/load_serve.sh [SECONDS] [CLIENTS]      (VLMC_BIN: the binary, default build/vlmc)
set -u
secs=${1:-20}; clients=${2:-8}
VLMC=${VLMC_BIN:-build/vlmc}
cd "$(dirname "$0")/.."
command -v node > /dev/null || { echo "load_serve: needs node"; exit 1; }
tmp=$(mktemp -d /tmp/vlmc-load-XXXXXX)
# 4 slots and a queue of 2 for 8 clients: some requests are meant to get 503.
"$VLMC" serve -m "${LOAD_MODEL:-echo:2}" --port 0 --port-file "$tmp/port" --parallel 4 --queue 2 --quiet > "$tmp/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.05; done
port=$(cat "$tmp/port" 2> /dev/null) || { echo "load_serve: server did not start"; cat "$tmp/server.log"; exit 1; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2> /dev/null; }
# warm-up (so that "before" counts the allocator's steady state and the cached images)
node bench/load_client.mjs "http://127.0.0.1:$port" 2 "$clients" > /dev/null 2>&1
rss0=$(rss)
( while kill -0 "$pid" 2> /dev/null; do echo "$(date +%s) $(rss)"; sleep 5; done ) > "$tmp/rss" &
sampler=$!
model=${LOAD_MODEL:-echo:2}
expect=any; [ "${model%%:*}" = echo ] && expect=echo
LOAD_EXPECT=$expect node bench/load_client.mjs "http://127.0.0.1:$port" "$secs" "$clients" > "$tmp/result" 2> "$tmp/client.err"
crc=$?
rss1=$(rss)
kill "$sampler" 2> /dev/null; wait "$sampler" 2> /dev/null
alive=1; kill -0 "$pid" 2> /dev/null || alive=0
curl -s "http://127.0.0.1:$port/health" > "$tmp/health" 2> /dev/null
kill -TERM "$pid" 2> /dev/null; wait "$pid"; src=$?
echo "load_serve: $clients clients, ${secs}s, backend $model (echo:2 = 2 ms per token), --parallel 4 --queue 2"
echo "client:  $(cat "$tmp/result" "$tmp/client.err")"
echo "server:  $(cat "$tmp/health")"
echo "RSS kB:  before ${rss0:-?}, after ${rss1:-?}; samples every 5 s: $(awk '{printf "%s ", $2}' "$tmp/rss")"
echo "server exit status $src, alive at the end: $alive"
rc=0
[ $crc -eq 0 ] || { echo "load_serve: FAILED requests (other than 503)"; rc=1; }
[ $alive -eq 1 ] && [ $src -eq 0 ] || { echo "load_serve: the server crashed or did not stop cleanly"; tail -5 "$tmp/server.log"; rc=1; }
rm -rf "$tmp"
exit $rc
