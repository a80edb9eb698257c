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
# KUBEOPS_MATRIX_GO (tests/run.sh's KUBEOPS_MATRIX_START=free-core): start only once that file exists
# (pytest's first worker out of work, tests/conftest.py, or pytest's end)
if [[ -n ${KUBEOPS_MATRIX_GO:-} ]]; then
  waited=$SECONDS
  while [[ ! -e $KUBEOPS_MATRIX_GO ]]; do sleep 5; done
  echo "nox > (tests/matrix/ci.sh waited $((SECONDS - waited))s for a free core)" > "$dir/nox.log"
fi
bash "$here/nox.sh" -l --json > "$dir/sessions.json" 2>> "$dir/nox.log" || rc=$?
if [[ $rc == 0 ]]; then
  bash "$here/nox.sh" --report "$dir/report.json" >> "$dir/nox.log" 2>&1 || rc=$?
fi
echo "$rc" > "$dir/rc"
