#!/usr/bin/env bash
# One setup step, said before it starts and timed when it ends, so a first `make` shows what it is
# doing instead of minutes of silence:  tools/step.sh "label" command [args...]
set -u
label=$1
shift
started=$(date +%s)
echo "==> $label"
"$@"
status=$?
took=$(($(date +%s) - started))
if [ "$status" -eq 0 ]; then
    echo "<== $label: done in ${took} s"
else
    echo "<== $label: FAILED after ${took} s (exit $status)" >&2
fi
exit "$status"
