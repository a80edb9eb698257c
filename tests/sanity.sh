#!/usr/bin/env bash
# ansible-test sanity needs the collection at .../ansible_collections/kubeops/node_maintenance:
# copy the tracked files there (a symlink is not accepted) and run it with this Python.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest="$tmp/ansible_collections/kubeops/node_maintenance"
mkdir -p "$dest"
cd "$repo"
# Tracked and new (not ignored) files: what a clean checkout would have.
git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
git init -q . && git add -A >/dev/null
python_version=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ansible-test sanity --requirements --python "$python_version" --color no "$@"
