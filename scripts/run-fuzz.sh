#!/usr/bin/env bash
# Runs every built fuzz target for a few seconds on a copy of its seed corpus.
# Usage: run-fuzz.sh BUILD_DIR SECONDS
set -u
dir=$1; secs=$2; fail=0
for bin in "$dir"/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin"); seeds="fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d); [ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null
  dict=""; [ -f "fuzz/${name#fuzz_}.dict" ] && dict="-dict=fuzz/${name#fuzz_}.dict"
  mkdir -p build/fuzz-artifacts
  if "$bin" $dict -artifact_prefix=build/fuzz-artifacts/"$name"- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=0 "$work" >"$work.log" 2>&1; then
    echo "fuzz $name: clean for ${secs}s ($(grep -c . <(ls "$work")) corpus files)"
  else
    echo "fuzz $name: FAILED"; tail -40 "$work.log"; fail=1
  fi
  rm -rf "$work" "$work.log"
done
exit $fail
