"""k8s_cluster_guard's check_guards: which guards run and which lists they read (a fake reader here;
the real API server is exercised by tests/integration/test_rollout_guards.py)."""
from __future__ import annotations

from ansible_collections.kubeops.node_maintenance.plugins.modules import k8s_cluster_guard as module

CP = "node-role.kubernetes.io/control-plane"


def node(name, labels=None, ready=True):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class FakeReader:
    def __init__(self, nodes, pool=None, pods=(), endpoints=()):
        self._nodes, self._pool, self._pods, self._endpoints = nodes, pool, list(pods), list(endpoints)
        self.calls = []

    def nodes(self, deadline, selector=""):
        self.calls.append(("nodes", selector))
        return self._pool if selector else self._nodes

    def etcd_pods(self, deadline):
        self.calls.append(("etcd_pods",))
        return self._pods

    def etcd_endpoint_members(self):
        self.calls.append(("endpoints",))
        return self._endpoints


def params(**overrides):
    values = {"name": "a", "control_plane": True, "control_plane_labels": [CP], "min_ready_nodes": 0,
              "node_selector": "", "etcd_quorum": True, "etcd_endpoints": []}
    values.update(overrides)
    return values


def test_defaults_read_the_nodes_and_the_etcd_pods_once():
    reader = FakeReader([node("a"), node("b")])
    results = module.check_guards(reader, params(), 0)
    assert [(r["guard"], r["status"]) for r in results] == [("control_plane", "pass"), ("etcd_quorum", "skip")]
    assert reader.calls == [("nodes", ""), ("etcd_pods",)]


def test_a_selector_reads_its_pool_and_the_pool_decides():
    reader = FakeReader([node("a"), node("b"), node("c")], pool=[node("a"), node("b", ready=False)])
    results = module.check_guards(reader, params(control_plane=False, etcd_quorum=False, min_ready_nodes="50%",
                                                 node_selector="pool=x"), 0)
    assert reader.calls == [("nodes", ""), ("nodes", "pool=x")]
    assert results[0]["guard"] == "min_ready_nodes" and results[0]["status"] == "fail"


def test_endpoints_replace_the_pods():
    members = [{"name": "u1", "node": "a", "healthy": True}, {"name": "u2", "node": "b", "healthy": False}]
    reader = FakeReader([node("a", {CP: ""})], endpoints=members)
    results = module.check_guards(reader, params(etcd_endpoints=[{"node": "a", "url": "u1"}]), 0)
    assert ("endpoints",) in reader.calls and ("etcd_pods",) not in reader.calls
    assert {r["guard"]: r["status"] for r in results} == {"control_plane": "fail", "etcd_quorum": "fail"}


def test_an_unknown_node_is_one_clear_failure():
    results = module.check_guards(FakeReader([node("b")]), params(), 0)
    assert len(results) == 1 and "node/a not found" in results[0]["reason"]
