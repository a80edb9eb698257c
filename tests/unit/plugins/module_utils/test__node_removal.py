"""Whether a node may go (pure), and remove_node against a scripted API server (fake_k8s_server);
the module file end to end is tests/unit/plugins/modules/test_k8s_node_remove.py."""
import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _node_removal
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from tests.unit.fake_k8s_server import by_path, item_list


def pod(name, owner_kind=None, phase="Running", mirror=False, deleting=False):
    meta = {"name": name, "namespace": "shop", "annotations": {}}
    if owner_kind:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "owner", "controller": True}]
    if mirror:
        meta["annotations"]["kubernetes.io/config.mirror"] = "abc"
    if deleting:
        meta["deletionTimestamp"] = "2026-11-25T08:00:00Z"
    return {"metadata": meta, "spec": {}, "status": {"phase": phase}}


def test_only_pods_a_drain_would_move_are_in_the_way():
    pods = [pod("ds", "DaemonSet"), pod("static", mirror=True), pod("job", "Job", phase="Succeeded"),
            pod("going", "ReplicaSet", deleting=True), pod("web", "ReplicaSet"), pod("bare")]
    assert _node_removal.pods_in_the_way(pods) == ["shop/web", "shop/bare"]


def test_refusal_names_every_reason_and_the_fix():
    node = {"spec": {}}
    msg = _node_removal.removal_refusal("worker-3", node, ["shop/web"], True, True)
    assert "node/worker-3" in msg and "not cordoned" in msg and "shop/web" in msg and "k8s_node_drain" in msg


def test_a_cordoned_drained_node_may_go_and_checks_can_be_waived():
    assert _node_removal.removal_refusal("w", {"spec": {"unschedulable": True}}, [], True, True) is None
    assert _node_removal.removal_refusal("w", {"spec": {}}, ["a/b"], False, False) is None


def node_and_pods(k8s_server, unschedulable, pods):
    node = {"metadata": {"name": "w1", "uid": "uid-w1"}, "spec": {"unschedulable": unschedulable}}
    return k8s_server(by_path({"/api/v1/nodes/w1": lambda query: (200, node),
                               "/api/v1/pods": lambda query: (200, item_list("PodList", pods))}))


def test_a_refusal_fails_with_the_results_fields_and_deletes_nothing(k8s_server):
    server = node_and_pods(k8s_server, False, [pod("web", "ReplicaSet"), pod("ds", "DaemonSet")])
    with pytest.raises(ModuleFailure) as refused:
        _node_removal.remove_node(server.raw(), "w1", False, 10 ** 12)
    assert refused.value.msg == _node_removal.removal_refusal("w1", {"spec": {}}, ["shop/web"], True, True)
    assert refused.value.fields == {"changed": False, "existed": True, "uid": "uid-w1", "blocking_pods": ["shop/web"]}
    assert server.calls() == [("GET", "/api/v1/nodes/w1"), ("GET", "/api/v1/pods")]


def test_check_mode_and_waived_checks_say_it_would_go_without_deleting(k8s_server):
    server = node_and_pods(k8s_server, False, [pod("web", "ReplicaSet")])
    result = _node_removal.remove_node(server.raw(), "w1", True, 10 ** 12, require_cordoned=False,
                                       require_drained=False)
    assert result == {"changed": True, "existed": True, "uid": "uid-w1", "blocking_pods": ["shop/web"]}
    assert "DELETE" not in [method for method, _path in server.calls()]
