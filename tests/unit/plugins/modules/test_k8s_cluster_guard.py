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


# ------------------------------------------------------------------------------------------------
# GuardReader and the module over HTTP (a scripted API server on 127.0.0.1)
# ------------------------------------------------------------------------------------------------

import time  # noqa: E402

import pytest  # noqa: E402

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (  # noqa: E402
    K8sAccessError,
)
from tests.unit.fake_k8s_server import (  # noqa: E402
    STAMPS,
    TOKEN,
    by_path,
    generated_classes,
    item_list,
    run_module,
    status_body,
)


PAGE = ("limit", "500")  # every list is paged, as kubectl pages (--chunk-size 500)


def api_node(name, labels=None, ready="True", unschedulable=False, stamp=STAMPS[0]):
    return {"metadata": {"name": name, "labels": labels or {}, "creationTimestamp": stamp},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                                       "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}]}}


def etcd_pod(node_name, ready=True, deleting=None, stamp=STAMPS[0]):
    metadata = {"name": "etcd-" + node_name, "namespace": "kube-system", "labels": {"component": "etcd"},
                "creationTimestamp": stamp}
    if deleting:
        metadata["deletionTimestamp"] = deleting
    return {"metadata": metadata, "spec": {"nodeName": node_name},
            "status": {"phase": "Running", "startTime": stamp,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": stamp}]}}


def reader_for(server, **overrides):
    values = {"etcd_pod_namespace": "kube-system", "etcd_pod_selector": "component=etcd", "etcd_endpoints": []}
    values.update(overrides)
    return module.GuardReader(server.raw(user_agent=module.USER_AGENT), values)


def test_reader_lists_nodes_and_etcd_pods_on_the_wire(k8s_server):
    server = k8s_server(by_path({
        "/api/v1/nodes": lambda q: (200, item_list("NodeList", [api_node("a"), api_node("b")])),
        "/api/v1/namespaces/kube-system/pods": lambda q: (200, item_list("PodList", [etcd_pod("a")])),
    }))
    reader = reader_for(server)
    deadline = time.monotonic() + 10
    assert [n["metadata"]["name"] for n in reader.nodes(deadline)] == ["a", "b"]
    assert reader.nodes(deadline, "pool=x")[0]["status"]["conditions"][0]["lastTransitionTime"] == STAMPS[0]
    assert reader.etcd_pods(deadline)[0]["spec"] == {"nodeName": "a"}
    assert [(r["path"], r["query"]) for r in server.requests] == [
        ("/api/v1/nodes", [PAGE]),
        ("/api/v1/nodes", [("labelSelector", "pool=x"), PAGE]),
        ("/api/v1/namespaces/kube-system/pods", [("labelSelector", "component=etcd"), PAGE]),
    ]
    for request in server.requests:
        assert request["headers"]["authorization"] == "Bearer " + TOKEN
        assert request["headers"]["user-agent"] == "kubeops.node_maintenance/k8s_cluster_guard"
        assert request["headers"]["accept"] == "application/json"


def test_reader_names_the_namespace_as_one_path_segment(k8s_server):
    server = k8s_server(by_path({}))
    reader = reader_for(server, etcd_pod_namespace="a/b")
    with pytest.raises(K8sAccessError):
        reader.etcd_pods(time.monotonic() + 5)
    assert server.calls() == [("GET", "/api/v1/namespaces/a%2Fb/pods")]


def test_reader_forbidden_is_one_access_error_with_the_rbac_hint(k8s_server):
    message = 'nodes is forbidden: User "x" cannot list resource "nodes" in API group "" at the cluster scope'
    server = k8s_server(by_path({"/api/v1/nodes": lambda q: (403, status_body(403, "Forbidden", message))}))
    with pytest.raises(K8sAccessError) as caught:
        reader_for(server).nodes(time.monotonic() + 5)
    assert caught.value.status == 403
    assert caught.value.message == (
        "nodes: forbidden (403): %s; the identity in use lacks the RBAC right; grant it with a (Cluster)Role "
        "and binding, and check with `kubectl auth can-i list nodes`" % message)
    assert len(server.requests) == 1  # not retried


def test_reader_retries_a_transient_answer(k8s_server):
    answers = [(503, status_body(503, "ServiceUnavailable", "etcd leader changed")),
               (200, item_list("NodeList", [api_node("a")]))]
    server = k8s_server(by_path({"/api/v1/nodes": lambda q: answers.pop(0)}))
    assert [n["metadata"]["name"] for n in reader_for(server).nodes(time.monotonic() + 10)] == ["a"]
    assert len(server.requests) == 2


@pytest.mark.parametrize("stamp", STAMPS)
def test_timestamps_in_either_form_read_the_same(k8s_server, stamp):
    """A terminating etcd pod is not a healthy member, whichever way its deletionTimestamp is written."""
    server = k8s_server(by_path({
        "/api/v1/nodes": lambda q: (200, item_list("NodeList", [api_node(n, {CP: ""}, stamp=stamp) for n in "abc"])),
        "/api/v1/namespaces/kube-system/pods": lambda q: (200, item_list("PodList", [
            etcd_pod("a", stamp=stamp), etcd_pod("b", deleting=stamp, stamp=stamp), etcd_pod("c", stamp=stamp)])),
    }))
    results = module.check_guards(reader_for(server), params(name="a"), time.monotonic() + 10)
    etcd = [r for r in results if r["guard"] == "etcd_quorum"][0]
    assert etcd["status"] == "fail" and etcd["healthy"] == 2 and etcd["healthy_after"] == 1
    assert [m["healthy"] for m in etcd["members"]] == [True, False, True]


def test_module_run_reads_the_api_without_the_generated_classes(k8s_server, tmp_path):
    nodes = [api_node("cp1", {CP: ""}), api_node("cp2", {CP: ""}, ready="False"), api_node("w1", {"pool": "x"}),
             api_node("w2", {"pool": "x"}, unschedulable=True, stamp=STAMPS[1])]

    def list_nodes(query):
        wanted = query.get("labelSelector")
        assert wanted in (None, "pool=x")
        return 200, item_list("NodeList", [n for n in nodes if not wanted or n["metadata"]["labels"].get("pool") == "x"])

    server = k8s_server(by_path({
        "/api/v1/nodes": list_nodes,
        "/api/v1/namespaces/kube-system/pods": lambda q: (200, item_list("PodList", [
            etcd_pod("cp1"), etcd_pod("cp2", ready=False), etcd_pod("w1", stamp=STAMPS[1])])),
    }))
    result, imported = run_module("k8s_cluster_guard", dict(server.params, name="cp1", min_ready_nodes=2), tmp_path)
    assert generated_classes(imported) == []
    assert result["failed"] is True and not result.get("changed") and result["passed"] is False
    assert {g["guard"]: g["status"] for g in result["guards"]} == {
        "control_plane": "fail", "min_ready_nodes": "fail", "etcd_quorum": "fail"}
    assert result["msg"].startswith("node/cp1: refused by the cluster guards: node/cp1 is the last Ready "
                                    "control-plane node (control-plane nodes: cp1 (Ready), cp2 (Ready=False))")
    assert "taking node/cp1 out leaves 1 of 4 nodes Ready and schedulable, fewer than the 2 required" in result["msg"]
    assert "not available now: cp2 (Ready=False), w2 (cordoned)" in result["msg"]
    assert result["checks"] == 1

    result, _imported = run_module("k8s_cluster_guard", dict(server.params, name="w1", etcd_quorum=False,
                                                             min_ready_nodes=1, node_selector="pool=x"), tmp_path)
    assert result["failed"] is True
    assert result["refused"] == ["taking node/w1 out leaves 0 of 2 nodes Ready and schedulable, fewer than the 1 "
                                 "required (min_ready_nodes 1); not available now: w2 (cordoned)"]
    assert ("/api/v1/nodes", [("labelSelector", "pool=x"), PAGE]) in [(r["path"], r["query"]) for r in server.requests]


def test_module_run_fails_with_the_translated_error(k8s_server, tmp_path):
    server = k8s_server(by_path({"/api/v1/nodes": lambda q: (401, status_body(401, "Unauthorized", "Unauthorized"))}))
    result, _imported = run_module("k8s_cluster_guard", dict(server.params, name="a"), tmp_path)
    assert result["failed"] is True and result["status"] == 401 and result["name"] == "a"
    assert result["msg"].startswith("nodes: unauthorized (401): Unauthorized; the API server did not accept the credentials")


def test_a_big_node_list_is_read_page_by_page(k8s_server):
    nodes = [api_node("n%04d" % i) for i in range(1203)]

    def list_nodes(query):
        start = int(query.get("continue") or 0)
        end = start + int(query["limit"])
        return 200, item_list("NodeList", nodes[start:end], continue_token=str(end) if end < len(nodes) else None)

    server = k8s_server(by_path({"/api/v1/nodes": list_nodes}))
    listed = reader_for(server).nodes(time.monotonic() + 10)
    assert [n["metadata"]["name"] for n in listed] == [n["metadata"]["name"] for n in nodes]
    assert [dict(r["query"]).get("continue") for r in server.requests] == [None, "500", "1000"]
