#!/usr/bin/env bash
# Prints the path of a Python 3.13 interpreter (the Lambda runtime's version), or explains what to
# install and exits 1. Looks on PATH first, then in pyenv's versions.
set -u
want="3.13"
try() {
    local candidate=$1
    [ -x "$candidate" ] || candidate=$(command -v "$candidate" 2>/dev/null) || return 1
    local got
    got=$("$candidate" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || return 1
    [ "$got" = "$want" ] || return 1
    "$candidate" -c 'import sys; print(sys.executable)'
}
try python3.13 && exit 0
try python3 && exit 0
if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    for dir in $(ls -d "$root"/versions/"$want"* 2>/dev/null | sort -rV); do
        try "$dir/bin/python$want" && exit 0
    done
fi
cat >&2 <<MSG
error: Python $want was not found (the Lambda runtime is python$want; the venv and 'sam build' use it).
Install it with one of:
  pyenv install $want          (then re-run make; no need to make it the global version)
  apt-get install python$want python$want-venv   (where your distribution ships it)
or put a python$want executable on PATH.
MSG
exit 1
