"""k8s_node_remove against a scripted API server on 127.0.0.1 (fake_k8s_server): the paged pod list
it decides on, the uid-guarded DELETE, check mode and the errors. The real API server is exercised
by tests/integration/test_k8s_node_remove.py.
"""
from __future__ import annotations

from tests.unit.fake_k8s_server import (
    generated_classes,
    not_found,
    run_module,
    status_body,
)

NODE_PATH = "/api/v1/nodes/n1"
PODS_PATH = "/api/v1/pods"


def pod(name, owner_kind=None, phase="Running", deleting=False):
    metadata = {"namespace": "shop", "name": name, "uid": "uid-" + name}
    if owner_kind:
        metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "x", "controller": True}]
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-30T05:35:33Z"
    return {"metadata": metadata, "spec": {"nodeName": "n1"}, "status": {"phase": phase}}


class NodeStore:
    """Node n1 (cordoned unless told) and its pods in pages of two; ``delete_answer`` scripts the DELETE."""

    def __init__(self, pods=(), unschedulable=True, exists=True):
        self.node = {"metadata": {"name": "n1", "uid": "uid-n1", "resourceVersion": "3"},
                     "spec": {"unschedulable": unschedulable}} if exists else None
        self.pods = list(pods)
        self.delete_answer = None

    def __call__(self, request):
        method, path, query = request["method"], request["path"], dict(request["query"])
        if path == PODS_PATH and method == "GET":
            assert query["fieldSelector"] == "spec.nodeName=n1"
            start = int(query.get("continue") or 0)
            page = {"kind": "PodList", "metadata": {}, "items": self.pods[start:start + 2]}
            if start + 2 < len(self.pods):
                page["metadata"]["continue"] = str(start + 2)
            return 200, page
        if path != NODE_PATH or self.node is None:
            return not_found("nodes", path.rsplit("/", 1)[-1])
        if method == "GET":
            return 200, self.node
        if method == "DELETE":
            if self.delete_answer:
                return self.delete_answer
            if request["body"] != {"preconditions": {"uid": self.node["metadata"]["uid"]}}:
                return 409, status_body(409, "Conflict", "Precondition failed: UID in precondition: %s, UID in "
                                                         "object meta: uid-n1" % request["body"])
            gone, self.node = self.node, None
            return 200, gone
        return 405, status_body(405, "MethodNotAllowed", "not allowed")


def test_refuses_while_pods_would_lose_their_node_listed_over_several_pages(k8s_server, tmp_path):
    pods = [pod("ds", owner_kind="DaemonSet"), pod("done", phase="Succeeded"), pod("leaving", deleting=True),
            pod("web", owner_kind="ReplicaSet"), pod("db", owner_kind="StatefulSet")]
    store = NodeStore(pods=pods)
    server = k8s_server(store)
    result, imported = run_module("k8s_node_remove", dict(server.params, name="n1"), tmp_path)
    assert result["failed"] is True and result["changed"] is False and result["existed"] is True
    assert result["blocking_pods"] == ["shop/web", "shop/db"] and result["uid"] == "uid-n1"
    assert result["msg"].startswith("refusing to delete node/n1: 2 pod(s) still run on it: shop/web, shop/db;")
    assert server.calls() == [("GET", NODE_PATH)] + [("GET", PODS_PATH)] * 3
    assert [dict(r["query"]).get("continue") for r in server.requests[1:]] == [None, "2", "4"]
    assert store.node is not None
    assert generated_classes(imported) == []


def test_deletes_a_drained_cordoned_node_guarded_by_its_uid(k8s_server, tmp_path):
    store = NodeStore(pods=[pod("ds", owner_kind="DaemonSet")])
    server = k8s_server(store)
    check, _imported = run_module("k8s_node_remove", dict(server.params, name="n1"), tmp_path, check_mode=True)
    assert check["changed"] is True and check["blocking_pods"] == [] and store.node is not None
    assert "DELETE" not in [m for m, _p in server.calls()]
    result, _imported = run_module("k8s_node_remove", dict(server.params, name="n1"), tmp_path)
    assert result["changed"] is True and result["existed"] is True and store.node is None
    (delete,) = [r for r in server.requests if r["method"] == "DELETE"]
    assert delete["path"] == NODE_PATH and delete["body"] == {"preconditions": {"uid": "uid-n1"}}
    assert delete["headers"]["user-agent"] == "kubeops.node_maintenance/k8s_node_remove"
    again, _imported = run_module("k8s_node_remove", dict(server.params, name="n1"), tmp_path)
    assert again == {"changed": False, "existed": False, "name": "n1", "invocation": again["invocation"]}


def test_a_node_gone_meanwhile_counts_as_removed_a_recreated_one_is_an_error(k8s_server, tmp_path):
    store = NodeStore()
    store.delete_answer = not_found("nodes", "n1")
    server = k8s_server(store)
    result, _imported = run_module("k8s_node_remove", dict(server.params, name="n1"), tmp_path)
    assert result["changed"] is True and not result.get("failed")

    store = NodeStore()
    store.delete_answer = (409, status_body(409, "Conflict", "Precondition failed: UID in precondition: uid-n1, UID "
                                                             "in object meta: uid-new"))
    server = k8s_server(store)
    result, _imported = run_module("k8s_node_remove", dict(server.params, name="n1"), tmp_path)
    assert result["failed"] is True and result["status"] == 409
    assert result["msg"] == ("node/n1: conflict (409): Precondition failed: UID in precondition: uid-n1, UID in "
                             "object meta: uid-new; someone else changed it at the same time; run the task again")


def test_refuses_a_schedulable_node_unless_told(k8s_server, tmp_path):
    server = k8s_server(NodeStore(unschedulable=False))
    result, _imported = run_module("k8s_node_remove", dict(server.params, name="n1"), tmp_path)
    assert result["failed"] is True and "it is not cordoned" in result["msg"]
    result, _imported = run_module("k8s_node_remove", dict(server.params, name="n1", require_cordoned=False),
                                   tmp_path)
    assert result["changed"] is True
