"""What a pod is: Ready, serving, mirror, DaemonSet, finished, terminating (one home for the rules the
drain, the preflight, the cluster guard and node removal each had a copy of)."""
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _pod_rules as rules

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
STATUSES = ("True", "False", "Unknown")
conditions = st.lists(st.builds(dict, type=st.sampled_from(["Ready", "ContainersReady", "PodScheduled"]),
                                status=st.sampled_from(STATUSES)), max_size=4)


def pod(phase="Running", conds=(), deleting=False, owner=None, annotations=None):
    meta = {"name": "p", "namespace": "ns", "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    if owner:
        meta["ownerReferences"] = [owner]
    return {"metadata": meta, "status": {"phase": phase, "conditions": list(conds)}}


@given(conditions)
def test_ready_is_the_first_ready_condition(conds):
    ready = [c for c in conds if c["type"] == "Ready"]
    assert rules.is_ready(pod(conds=conds)) == bool(ready and ready[0]["status"] == "True")


@given(conditions, st.lists(st.builds(dict, type=st.just("ContainersReady"), status=st.sampled_from(STATUSES))))
def test_other_conditions_do_not_change_readiness(conds, others):
    assert rules.is_ready(pod(conds=conds)) == rules.is_ready(pod(conds=others + conds + others))


@given(st.sampled_from(PHASES), conditions, st.booleans())
def test_serving_is_ready_running_and_not_being_deleted(phase, conds, deleting):
    p = pod(phase, conds, deleting)
    assert rules.is_serving(p) == (rules.is_ready(p) and phase == "Running" and not deleting)
    assert rules.is_serving(p) == rules.serving(phase, rules.is_terminating(p), rules.is_ready(p))


def test_a_pod_without_status_is_not_ready():
    assert not rules.is_ready({}) and not rules.is_serving({}) and not rules.is_ready({"status": None})


def test_mirror_daemonset_finished_and_terminating():
    assert rules.is_mirror_pod(pod(annotations={rules.MIRROR_POD_ANNOTATION: "x"}))
    assert not rules.is_mirror_pod(pod())
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": True}
    assert rules.is_daemonset_pod(pod(owner=ds))
    assert not rules.is_daemonset_pod(pod(owner=dict(ds, controller=False)))
    assert not rules.is_daemonset_pod(pod(owner=dict(ds, apiVersion="apps.kruise.io/v1alpha1")))
    assert rules.is_finished(pod("Succeeded")) and rules.is_finished(pod("Failed")) and not rules.is_finished(pod())
    assert rules.is_terminating(pod(deleting=True)) and not rules.is_terminating(pod())
