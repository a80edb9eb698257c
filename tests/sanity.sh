#!/usr/bin/env bash
# ansible-test sanity needs the collection at .../ansible_collections/kubeops/node_maintenance:
# copy the tracked files there (a symlink is not accepted) and run it with this Python.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# One ansible-test at a time builds or uses its virtualenvs (~/.ansible/test/venv): the bootstrap
# primes them in the background on a cold machine (--prime-venvs), and the sanity stage waits here
# until that is done instead of building the same ones beside it.
mkdir -p "$HOME/.ansible/test"
exec 9>"$HOME/.ansible/test/kubeops-sanity.lock"
if ! flock -n 9; then
  echo "[sanity $(date +%H:%M:%S)] waiting for another ansible-test sanity (the bootstrap priming its virtualenvs?)" >&2
  flock 9
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest="$tmp/ansible_collections/kubeops/node_maintenance"
mkdir -p "$dest"
cd "$repo"
# Tracked and new (not ignored) files: what a clean checkout would have.
git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
git init -q . && git add -A >/dev/null
# ansible-test seeds pip into its virtualenvs with a get-pip.py from a host we cannot reach:
# put our offline stand-in where it looks for a cached copy.
pip_version=$(python -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; from ansible_test._internal.host_configs import NativePythonConfig as P; import sys; print(g(P(version="%d.%d" % sys.version_info[:2], path=sys.executable))["pip"])' 2>/dev/null || echo 24.2)
mkdir -p "$HOME/.ansible/test/cache"
cp "$repo/tests/testbed/get_pip_offline.py" "$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
python_version=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ansible-test sanity --requirements --python "$python_version" --color no "$@"
