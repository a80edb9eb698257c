"""k8s_node_taint run end to end as Ansible runs it, against the scripted API server of
test__node_api.py. Its logic is tested in tests/unit/plugins/module_utils/test__node_api.py, the
real API server in tests/integration/test_k8s_node_taint.py.
"""
from __future__ import annotations

import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._lease import parse_time
from tests.unit.fake_k8s_server import generated_classes, run_module, warning_texts
from tests.unit.plugins.module_utils.test__node_api import MAINT, NODE_PATH, OLD, PODS_PATH, TaintStore, pod


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


def test_failures_have_the_shared_shape(k8s_server, tmp_path):
    server = k8s_server(TaintStore())
    missing, _imported = run_module("k8s_node_taint", dict(server.params, name="gone", taints=[MAINT]), tmp_path)
    assert missing["failed"] is True and missing["status"] == 404
    assert missing["name"] == "gone" and missing["object"] == "node/gone" and isinstance(missing["seconds"], float)
    refused, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[{"key": "old"}],
                                                           state="absent", replace=True), tmp_path)
    assert refused["failed"] is True and refused["msg"] == "replace=true applies to state=present only"
    assert refused["name"] == "n1" and refused["object"] == "node/n1" and refused["status"] is None
    invalid, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[{"key": "no effect"}]),
                                    tmp_path)
    assert invalid["failed"] is True and invalid["msg"].startswith("invalid taints for node/n1: ")
    # the NoExecute taint: its pods listed first; then bad options ask nothing of the API
    assert [p for _m, p in server.calls()] == [PODS_PATH, "/api/v1/nodes/gone"]
