#!/usr/bin/env bash
# Installs the Debian packages named on the command line that are not installed yet.
# Idempotent; exits non-zero with a clear message when it cannot install.
set -u
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "vlmc: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"
else
  echo "vlmc: cannot install ${missing[*]}: not root and no password-less sudo." >&2
  echo "      Install them yourself: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  $sudo apt-get update -q >/dev/null 2>&1
  if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    echo "vlmc: apt-get could not install: ${missing[*]}" >&2
    exit 1
  fi
fi
exit 0
