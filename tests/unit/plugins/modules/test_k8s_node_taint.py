"""k8s_node_taint against a scripted API server on 127.0.0.1 (fake_k8s_server): the guarded JSON
patch, the retry after a conflicting write, the paged pod list and whole module runs. The real API
server is exercised by tests/integration/test_k8s_node_taint.py.
"""
from __future__ import annotations

import copy
import time

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import ApiException
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._lease import parse_time
from ansible_collections.kubeops.node_maintenance.plugins.modules import k8s_node_taint as module
from tests.unit.fake_k8s_server import (
    generated_classes,
    not_found,
    run_module,
    status_body,
    warning_texts,
)

NODE_PATH = "/api/v1/nodes/n1"
PODS_PATH = "/api/v1/pods"
OLD = {"key": "old", "effect": "NoExecute", "timeAdded": "2026-11-30T05:35:33Z"}
MAINT = {"key": "maint", "value": "now", "effect": "NoExecute"}
REJECTED = (422, status_body(422, "Invalid", "the server rejected our request due to an error in our request"))


def pod(name, tolerations=()):
    return {"metadata": {"namespace": "shop", "name": name, "uid": "uid-" + name},
            "spec": {"nodeName": "n1", "tolerations": list(tolerations)}, "status": {"phase": "Running"}}


class TaintStore:
    """Node n1 that applies JSON patches (``test`` + ``add``) as the API server does; its pods come
    in pages of one. ``interfere`` other writes land right after our reads."""

    def __init__(self, taints=(OLD,), pods=(), interfere=0):
        self.node = {"metadata": {"name": "n1", "resourceVersion": "5"}, "spec": {"taints": list(taints)}}
        self.pods = list(pods)
        self.interfere = interfere
        self.refuse = None

    def __call__(self, request):
        method, path, query = request["method"], request["path"], dict(request["query"])
        if path == PODS_PATH and method == "GET":
            start = int(query.get("continue") or 0)
            page = {"kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": self.pods[start:start + 1]}
            if start + 1 < len(self.pods):
                page["metadata"]["continue"] = str(start + 1)
            return 200, page
        if path != NODE_PATH:
            return not_found("nodes", path.rsplit("/", 1)[-1])
        if method == "GET":
            answer = copy.deepcopy(self.node)
            if self.interfere:
                self.interfere -= 1
                self.node["spec"]["taints"].append({"key": "other-%d" % self.interfere, "effect": "NoSchedule"})
                self._bump()
            return 200, answer
        if method == "PATCH":
            assert request["headers"]["content-type"] == "application/json-patch+json"
            if self.refuse:
                return self.refuse
            test, add = request["body"]
            assert test["op"] == "test" and test["path"] == "/metadata/resourceVersion"
            assert add["op"] == "add" and add["path"] == "/spec/taints"
            if test["value"] != self.node["metadata"]["resourceVersion"]:
                return REJECTED
            self.node["spec"]["taints"] = add["value"]
            self._bump()
            return 200, copy.deepcopy(self.node)
        return 405, status_body(405, "MethodNotAllowed", "not allowed")

    def _bump(self):
        self.node["metadata"]["resourceVersion"] = str(int(self.node["metadata"]["resourceVersion"]) + 1)


def test_a_conflicting_write_is_read_again_and_redone(k8s_server):
    store = TaintStore(interfere=2)
    server = k8s_server(store)
    deadline = time.monotonic() + 60
    nodes = module.NodeTaints(server.raw(), "n1", deadline)
    before, after, change, conflicts = module.converge_taints(nodes, [MAINT], "present", False, False, deadline,
                                                              sleep=lambda s: None)
    assert conflicts == 2 and change["changed"] is True
    assert [m for m, _p in server.calls()] == ["GET", "PATCH"] * 3
    assert [t["key"] for t in before["spec"]["taints"]] == ["old", "other-1", "other-0"]
    assert [t["key"] for t in after["spec"]["taints"]] == ["old", "other-1", "other-0", "maint"]
    assert after == store.node
    # the untouched taint goes back exactly as the API server wrote it
    assert server.requests[-1]["body"][1]["value"][0] == OLD


def test_a_refused_write_with_the_node_unchanged_is_an_error_not_a_conflict(k8s_server):
    store = TaintStore()
    store.refuse = REJECTED
    server = k8s_server(store)
    deadline = time.monotonic() + 60
    with pytest.raises(ApiException) as refused:
        module.converge_taints(module.NodeTaints(server.raw(), "n1", deadline), [MAINT], "present", False, False,
                               deadline, sleep=lambda s: None)
    assert refused.value.status == 422 and [m for m, _p in server.calls()] == ["GET", "PATCH", "GET"]


def test_pods_are_listed_page_by_page_for_the_node(k8s_server):
    server = k8s_server(TaintStore(pods=[pod("a"), pod("b"), pod("c")]))
    pods = module.NodeTaints(server.raw(), "n1", time.monotonic() + 60).pods()
    assert [p["metadata"]["name"] for p in pods] == ["a", "b", "c"]
    assert [dict(r["query"]).get("continue") for r in server.requests] == [None, "1", "2"]
    assert all(dict(r["query"])["fieldSelector"] == "spec.nodeName=n1" and dict(r["query"])["limit"] == "500"
               for r in server.requests)


def test_module_adds_a_noexecute_taint_and_names_the_pods_it_evicts(k8s_server, tmp_path):
    tolerant = pod("patient", [{"key": "maint", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}])
    store = TaintStore(pods=[pod("web"), tolerant])
    server = k8s_server(store)
    started = time.time()
    result, imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[MAINT]), tmp_path,
                                  diff=True)
    assert not result.get("failed"), result
    assert result["changed"] is True and result["conflict_retries"] == 0
    (added,) = result["added"]
    stamp = added.pop("timeAdded")
    assert added == MAINT and stamp.endswith("Z") and abs(parse_time(stamp).timestamp() - started) < 60
    assert result["taints"] == [OLD, dict(MAINT, timeAdded=stamp)] and result["taints_before"] == [OLD]
    assert result["diff"]["before"] == {"spec": {"taints": [OLD]}}
    assert result["resource_version"] == "6" and store.node["spec"]["taints"] == result["taints"]
    assert result["noexecute_evictions"] == [
        {"namespace": "shop", "name": "web", "uid": "uid-web", "taints": ["maint=now:NoExecute"], "after_seconds": 0},
        {"namespace": "shop", "name": "patient", "uid": "uid-patient", "taints": ["maint=now:NoExecute"],
         "after_seconds": 30}]
    (warning,) = warning_texts(result)
    assert warning.startswith("The added NoExecute taint maint=now:NoExecute on node/n1 deletes 1 pod(s) at once "
                              "and 1 more after their tolerationSeconds")
    # pods first (the eviction controller acts right after the write), then read and patch
    assert [p for _m, p in server.calls()] == [PODS_PATH, PODS_PATH, NODE_PATH, NODE_PATH]
    assert generated_classes(imported) == []

    again, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[MAINT]), tmp_path)
    assert again["changed"] is False and again["noexecute_evictions"] == [] and again["taints"] == result["taints"]
    assert [m for m, _p in server.calls()][4:] == ["GET", "GET", "GET"]  # two pod pages and the node; no patch


def test_module_check_mode_and_missing_node(k8s_server, tmp_path):
    store = TaintStore()
    server = k8s_server(store)
    args = dict(server.params, name="n1", taints=[{"key": "old"}], state="absent")
    result, _imported = run_module("k8s_node_taint", args, tmp_path, check_mode=True)
    assert result["changed"] is True and result["removed"] == [OLD] and result["taints"] == []
    assert store.node["spec"]["taints"] == [OLD] and [m for m, _p in server.calls()] == ["GET"]
    missing, _imported = run_module("k8s_node_taint", dict(args, name="gone"), tmp_path)
    assert missing["failed"] is True and missing["status"] == 404
    assert missing["msg"] == "node/gone: not found (404); `kubectl get nodes` lists the names"
