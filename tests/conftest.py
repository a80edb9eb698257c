"""Make the repository importable as ``ansible_collections.kubeops.node_maintenance``.

The collection lives at the repository root; Python (and ansible-core's collection loader) expect
it under ``<dir>/ansible_collections/kubeops/node_maintenance``. A symlink tree in ``build/``
provides that without copying anything.
"""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, "build", "collections")


def ensure_collection_tree():
    namespace_dir = os.path.join(COLLECTIONS_ROOT, "ansible_collections", "kubeops")
    link = os.path.join(namespace_dir, "node_maintenance")
    os.makedirs(namespace_dir, exist_ok=True)
    if not os.path.islink(link):
        os.symlink(REPO_ROOT, link)
    return COLLECTIONS_ROOT


ensure_collection_tree()
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)
