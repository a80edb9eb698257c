#!/usr/bin/env bash
# The version matrix as tests/run.sh runs it, in the background of pytest: the sessions CI runs
# (noxfile.py's defaults) into DIR: sessions.json (what nox selected), nox.log (its whole output),
# report.json (nox --report: each session's result) and rc (nox's exit status, written last).
# tests/matrix/report.py DIR judges them.
#
#   bash tests/matrix/ci.sh DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1
rc=0
bash "$here/nox.sh" -l --json > "$dir/sessions.json" 2> "$dir/nox.log" || rc=$?
if [[ $rc == 0 ]]; then
  bash "$here/nox.sh" --report "$dir/report.json" >> "$dir/nox.log" 2>&1 || rc=$?
fi
echo "$rc" > "$dir/rc"
