#!/usr/bin/env bash
# nox for the version matrix (noxfile.py), from a small virtualenv of its own, keyed by the hash of
# tests/matrix/requirements-nox.txt, built here when missing (the hash written last, so an
# interrupted install is redone). Waits first for a matrix build tests/bootstrap.sh runs in the
# background (its lock), so that two never install into one virtualenv at once; with
# KUBEOPS_MATRIX_LOCKED=1 the caller holds that lock (bootstrap). Virtualenvs of older requirements
# are removed. The arguments go to nox (default: the sessions CI runs), with --reuse-venv=yes.
#
#   bash tests/matrix/nox.sh -l                                  # the sessions
#   bash tests/matrix/nox.sh -s core-2.17 -- subset k8s=all      # one line, every Kubernetes minor
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$repo/tests/testbed/versions.sh"
say() { printf '[matrix %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mkdir -p "$TESTBED_CACHE/nox"
if [[ ${KUBEOPS_MATRIX_LOCKED:-} != 1 ]]; then
  exec 8>"$TESTBED_CACHE/.matrix-venvs.lock"
  flock 8
fi
want=$(sha256sum < "$here/requirements-nox.txt" | cut -c1-16)
runner="$TESTBED_CACHE/nox-runner-$want"
if [[ "$(cat "$runner/.requirements-hash" 2>/dev/null || true)" != "$want" ]]; then
  say "nox virtualenv $runner"
  rm -rf "$runner"
  python3 -m venv "$runner"
  "$runner/bin/pip" install -q -r "$here/requirements-nox.txt" >&2
  echo "$want" > "$runner/.requirements-hash"
fi
find "$TESTBED_CACHE" -maxdepth 1 -name 'nox-runner-*' ! -name "nox-runner-$want" -exec rm -rf {} +
key=$("$runner/bin/python" -c 'import runpy, sys; print(runpy.run_path(sys.argv[1])["KEY"])' "$repo/noxfile.py")
find "$TESTBED_CACHE/nox" -mindepth 1 -maxdepth 1 ! -name "$key" -exec rm -rf {} +
if [[ ${KUBEOPS_MATRIX_LOCKED:-} != 1 ]]; then
  exec 8>&-  # nothing is being built: parallel nox runs may share the virtualenvs from here on
fi  # (else the lock stays held by nox, which inherits it, until its --install-only run ends)
cd "$repo"
exec "$runner/bin/nox" -f "$repo/noxfile.py" --reuse-venv=yes "$@"
