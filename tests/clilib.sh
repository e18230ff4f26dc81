# Sourced by tests/cli_*.sh: a shell twin of testlib.h for end-to-end tests of the CLI.
# Cases call ok/fail/skip; finish prints the RESULT line.
VLMC=${VLMC_BIN:-build/vlmc}
SHARED=${VLMC_SHARED:-../shared}
_pass=0; _fail=0; _skip=0
ok()   { echo "ok   $1"; _pass=$((_pass + 1)); }
fail() { echo "FAIL $1: ${2:-}"; _fail=$((_fail + 1)); }
skip() { echo "skip $1: ${2:-}"; _skip=$((_skip + 1)); }
have_shared() { [ -d "$SHARED" ]; }
TMP=$(mktemp -d /tmp/vlmc-cli-XXXXXX)
finish() { rm -rf "$TMP"; echo "RESULT $_pass $_fail $_skip"; [ "$_fail" -eq 0 ]; }
