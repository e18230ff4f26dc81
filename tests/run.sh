#!/usr/bin/env bash
# Runs every test program in DIR (and tests/cli_*.sh scripts) and adds up their
# RESULT lines. The last line printed is "N passed, N failed".
# Usage: tests/run.sh DIR   (VLMC_BIN names the CLI for the script tests)
set -u
dir=${1:-build/tests}
export VLMC_BIN=${VLMC_BIN:-build/vlmc}
pass=0; fail=0; skip=0
run_one() {
  local name=$1; shift
  local log; log=$(mktemp)
  "$@" >"$log" 2>&1; local rc=$?
  cat "$log"
  local res; res=$(grep '^RESULT ' "$log" | tail -1)
  if [ -z "$res" ]; then
    echo "FAIL $name: exited with status $rc before reporting (crash or sanitizer error)"
    fail=$((fail + 1))
  else
    set -- $res
    pass=$((pass + $2)); fail=$((fail + $3)); skip=$((skip + $4))
    if [ "$rc" -ne 0 ] && [ "$3" -eq 0 ]; then
      echo "FAIL $name: exited with status $rc"; fail=$((fail + 1))
    fi
  fi
  rm -f "$log"
}
for t in "$dir"/test_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t"
done
for s in tests/cli_*.sh; do
  [ -f "$s" ] || continue
  run_one "$(basename "$s")" bash "$s"
done
echo "($skip skipped)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
