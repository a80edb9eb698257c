#!/usr/bin/env bash
# ansible-lint with the production profile, on the collection as installed under build/collections.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
python -c 'import sys; sys.path.insert(0, "."); from tests.conftest import ensure_collection_tree; ensure_collection_tree()'
ANSIBLE_COLLECTIONS_PATH="$repo/build/collections" ansible-lint --profile production --offline
