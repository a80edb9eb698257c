from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _node_removal


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
