"""k8s_node_drain run end to end as Ansible runs it, against the scripted API server of
test__drain.py: the result and the one failure shape every k8s module shares. The drain itself is
tested in tests/unit/plugins/module_utils/test__drain.py."""
from __future__ import annotations

import json

from tests.unit.fake_k8s_server import generated_classes, run_module, warning_texts
from tests.unit.plugins.module_utils.test__drain import Cluster, pod


def test_a_drain_returns_its_result_without_the_generated_api_classes(k8s_server, tmp_path):
    cluster = Cluster([pod("a")], pdbs=[])
    server = k8s_server(cluster)
    result, imported = run_module("k8s_node_drain", dict(server.params, node="n1"), tmp_path)
    assert not result.get("failed"), result
    assert result["node"] == "n1" and result["changed"] is True and result["cordoned"] is True
    assert result["stopped_by"] is None and result["counts"]["evicted"] == 1
    assert [p["action"] for p in result["pods"]] == ["evicted"] and cluster.pods == {}
    assert generated_classes(imported) == []
    assert all(r["headers"]["user-agent"] == "kubeops.node_maintenance/k8s_node_drain" for r in server.requests)
    assert "warnings" not in result and "deprecations" not in result


def test_warnings_are_the_modules_own_with_no_deprecation(k8s_server, tmp_path):
    server = k8s_server(Cluster([pod("a")], pdbs=None))
    result, _imported = run_module("k8s_node_drain", dict(server.params, name="n1"), tmp_path)
    assert not result.get("failed"), result
    (warning,) = warning_texts(result)
    assert warning.startswith("cannot list PodDisruptionBudgets (403)")
    assert "deprecations" not in result, result["deprecations"]


def test_a_refused_drain_fails_in_the_shared_shape_with_its_result(k8s_server, tmp_path):
    server = k8s_server(Cluster([pod("lonely", owner=None)]))
    result, _imported = run_module("k8s_node_drain", dict(server.params, name="n1"), tmp_path)
    assert result["failed"] is True and result["msg"].startswith("cannot drain node/n1, nothing was evicted")
    assert result["stopped_by"] == "refused" and result["changed"] is False and result["cordoned"] is False
    assert result["node"] == "n1" and result["object"] == "node/n1" and result["status"] is None
    assert result["pods"][0]["plan"] == "refuse" and result["counts"]["none"] == 1
    assert isinstance(result["seconds"], float) and "api_requests" in result


def test_bad_options_and_a_missing_node_fail_in_the_shared_shape(k8s_server, tmp_path):
    server = k8s_server(Cluster())
    bad, _imported = run_module("k8s_node_drain", dict(server.params, name="n1", timeout=0), tmp_path)
    assert bad["failed"] is True and bad["msg"] == "timeout must be at least 1 second"
    assert bad["node"] == "n1" and bad["object"] == "node/n1" and bad["status"] is None and "pods" not in bad
    assert server.requests == []
    missing, _imported = run_module("k8s_node_drain", dict(server.params, name="gone"), tmp_path)
    assert missing["failed"] is True and missing["status"] == 404
    assert missing["msg"] == "node/gone: not found (404); `kubectl get nodes` lists the names"
    assert missing["node"] == "gone" and missing["object"] == "node/gone" and "stopped_by" not in missing
    assert "seconds" in missing


def test_the_load_balancer_label_its_cordon_added_is_recorded_for_the_return(k8s_server, tmp_path):
    lb = "node.kubernetes.io/exclude-from-external-load-balancers"
    cluster = Cluster([pod("a")], pdbs=[])
    server = k8s_server(cluster)
    record = {"rollout": "r1", "phase": "drain", "labels_added": []}
    result, _imported = run_module("k8s_node_drain", dict(server.params, name="n1", exclude_from_load_balancers=True,
                                                          record=record), tmp_path)
    assert not result.get("failed"), result
    assert result["labels_added"] == [lb] and result["phase_record"]["labels_added"] == [lb]
    assert cluster.node["metadata"]["labels"][lb] == "true"
    stored = json.loads(cluster.node["metadata"]["annotations"]["maintenance.kubeops.io/state"])
    assert stored["labels_added"] == [lb] and stored["phase"] == "drain"
    # a drain that added nothing leaves the recorded keys as they were
    again, _imported = run_module("k8s_node_drain", dict(server.params, name="n1", exclude_from_load_balancers=True,
                                                         record=dict(record, labels_added=[lb])), tmp_path)
    assert again["changed"] is False and again["labels_added"] == [] and again["phase_record"]["labels_added"] == [lb]
