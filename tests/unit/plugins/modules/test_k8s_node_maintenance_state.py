"""k8s_node_maintenance_state's write loop: a write that lost a race (409) is recomputed on a fresh read.

The API is a small fake here (a unit test); the real API server is exercised by
tests/integration/test_k8s_node_maintenance_state.py.
"""
from __future__ import annotations

import json

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _maintenance_state as ms
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import ApiException
from ansible_collections.kubeops.node_maintenance.plugins.modules import k8s_node_maintenance_state as module


class FakeApiClient:
    @staticmethod
    def sanitize_for_serialization(obj):
        return json.loads(json.dumps(obj))


class RacingCore:
    """A node whose annotation another writer changes right after our first read."""

    def __init__(self):
        self.node = {"metadata": {"name": "n1", "resourceVersion": "1", "annotations": {}}}
        self.reads = 0
        self.patches = []

    def read_node(self, name, **_):
        self.reads += 1
        node = json.loads(json.dumps(self.node))
        if self.reads == 1:  # someone else writes between our read and our patch
            other = ms.merge_record({}, {"rollout": "r1", "phase": "drain"}, ms.utc_now())
            self.node["metadata"]["annotations"][ms.ANNOTATION] = ms.render_record(other)
            self.node["metadata"]["resourceVersion"] = "2"
        return node

    def patch_node(self, name, patch, **_):
        if patch["metadata"].get("resourceVersion") != self.node["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.patches.append(patch)
        self.node["metadata"]["annotations"][ms.ANNOTATION] = patch["metadata"]["annotations"][ms.ANNOTATION]
        return self.node


def test_conflict_is_recomputed_on_a_fresh_read():
    core = RacingCore()
    updates = {key: None for key in ms.UPDATABLE}
    updates.update(rollout="r1", message="from us")

    def compute(node):
        before, warnings = ms.parse_record((node["metadata"].get("annotations") or {}).get(ms.ANNOTATION))
        after = ms.merge_record(before, updates, ms.utc_now())
        return before, after, ms.record_patch(node, after), warnings

    node, before, after, changed, _warnings = module.write_record(
        core, FakeApiClient(), "n1", compute, check_mode=False, deadline=10 ** 12, sleep=lambda s: None)
    assert changed and core.reads == 2 and len(core.patches) == 1
    # the other writer's phase survived, our message was added on top of it
    assert before["phase"] == "drain"
    assert after["phase"] == "drain" and after["message"] == "from us"
    assert json.loads(core.node["metadata"]["annotations"][ms.ANNOTATION]) == after


def test_check_mode_reads_but_never_patches():
    core = RacingCore()

    def compute(node):
        return {}, {"rollout": "r1"}, {"metadata": {}}, []

    _node, _before, after, changed, _warnings = module.write_record(core, FakeApiClient(), "n1", compute,
                                                                    check_mode=True, deadline=10 ** 12)
    assert changed and after == {"rollout": "r1"} and core.patches == []
