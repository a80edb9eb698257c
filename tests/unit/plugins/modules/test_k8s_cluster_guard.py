"""k8s_cluster_guard run as Ansible runs it, over HTTP (a scripted API server on 127.0.0.1).

What it checks, reads and waits for is tested in tests/unit/plugins/module_utils/test__cluster_guard.py;
the real API server is exercised by tests/integration/test_rollout_guards.py."""
from __future__ import annotations

from tests.unit.fake_k8s_server import (
    STAMPS,
    by_path,
    generated_classes,
    item_list,
    run_module,
    status_body,
)
from tests.unit.plugins.module_utils.test__cluster_guard import (
    CP,
    PAGE,
    api_etcd_pod,
    api_node,
)


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
            api_etcd_pod("cp1"), api_etcd_pod("cp2", ready=False), api_etcd_pod("w1", stamp=STAMPS[1])])),
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
    # the shared failure shape, beside the guard fields
    assert result["status"] is None and result["object"] == "node/cp1" and result["name"] == "cp1"
    assert isinstance(result["seconds"], float) and isinstance(result["waited_seconds"], float)

    result, _imported = run_module("k8s_cluster_guard", dict(server.params, name="w1", etcd_quorum=False,
                                                             min_ready_nodes=1, node_selector="pool=x"), tmp_path)
    assert result["failed"] is True
    assert result["refused"] == ["taking node/w1 out leaves 0 of 2 nodes Ready and schedulable, fewer than the 1 "
                                 "required (min_ready_nodes 1); not available now: w2 (cordoned)"]
    assert ("/api/v1/nodes", [("labelSelector", "pool=x"), PAGE]) in [(r["path"], r["query"]) for r in server.requests]

    result, _imported = run_module("k8s_cluster_guard", dict(server.params, name="w1", etcd_quorum=False), tmp_path,
                                   check_mode=True)
    assert result["passed"] is True and result["changed"] is False and "failed" not in result
    assert result["refused"] == [] and result["checks"] == 1 and result["name"] == "w1"
    assert [(g["guard"], g["status"]) for g in result["guards"]] == [("control_plane", "pass")]


def test_module_run_fails_with_the_translated_error(k8s_server, tmp_path):
    server = k8s_server(by_path({"/api/v1/nodes": lambda q: (401, status_body(401, "Unauthorized", "Unauthorized"))}))
    result, _imported = run_module("k8s_cluster_guard", dict(server.params, name="a"), tmp_path)
    assert result["failed"] is True and result["status"] == 401 and result["name"] == "a"
    assert result["msg"].startswith("nodes: unauthorized (401): Unauthorized; the API server did not accept the credentials")
    assert result["object"] == "node/a"


def test_module_run_refuses_a_bad_option_before_connecting(tmp_path):
    args = {"host": "https://127.0.0.1:1", "api_key": "x", "name": "a", "min_ready_nodes": "most"}
    result, _imported = run_module("k8s_cluster_guard", args, tmp_path)
    assert result["failed"] is True and result["name"] == "a" and result["object"] == "node/a"
    assert result["msg"] == "min_ready_nodes must be a number or a percentage such as 50%, not 'most'"
    assert result["status"] is None and "guards" not in result
