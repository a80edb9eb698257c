"""Where the DaemonSet controller runs a DaemonSet's pod (nodeSelector, required node affinity, taints
against the template's tolerations plus the controller's own), and which pods are a node's mirror pods."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _daemonset_placement as dp
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _selectors as sel
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import taint_ref

EFFECTS = ["NoSchedule", "PreferNoSchedule", "NoExecute"]
keys = st.sampled_from(["a", "b", "zone", "node-role.kubernetes.io/infra", "example.com/x"])
values = st.sampled_from(["", "1", "2", "x", "y", "10"])
taints = st.builds(lambda k, v, e: {"key": k, "value": v, "effect": e} if v else {"key": k, "effect": e},
                   keys, values, st.sampled_from(EFFECTS))
labels = st.dictionaries(keys, values, max_size=4)


def node(name="n1", labels=None, taints=None):
    return {"metadata": {"name": name, "labels": dict(labels or {})}, "spec": {"taints": list(taints or [])}}


def daemonset(spec=None, name="agent", namespace="kube-system", uid="ds-uid", deleting=False):
    metadata = {"name": name, "namespace": namespace, "uid": uid}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": metadata, "spec": {"template": {"spec": dict(spec or {})}}}


def affinity(*terms):
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": list(terms)}}}}


def expr(key, operator, *vals):
    requirement = {"key": key, "operator": operator}
    if vals:
        requirement["values"] = list(vals)
    return requirement


def test_the_controllers_own_tolerations_are_added_to_the_templates():
    own = {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}
    added = dp.daemon_pod_tolerations({"tolerations": [own]})
    assert added[0] == own
    assert {(t["key"], t["effect"]) for t in added[1:]} == {
        ("node.kubernetes.io/not-ready", "NoExecute"), ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"), ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"), ("node.kubernetes.io/unschedulable", "NoSchedule")}
    assert all(t["operator"] == "Exists" for t in added[1:])
    network = ("node.kubernetes.io/network-unavailable", "NoSchedule")
    assert network not in {(t["key"], t["effect"]) for t in dp.daemon_pod_tolerations({})}
    assert network in {(t["key"], t["effect"]) for t in dp.daemon_pod_tolerations({"hostNetwork": True})}


@pytest.mark.parametrize("taint", [
    {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},  # a cordoned node
    {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "effect": "NoSchedule"},
    {"key": "anything", "value": "x", "effect": "PreferNoSchedule"},  # never keeps a pod off
])
def test_a_daemonset_without_tolerations_runs_despite_the_taints_the_controller_tolerates(taint):
    assert dp.daemonset_obstacle(daemonset(), node(taints=[taint])) is None


@pytest.mark.parametrize("taint, text", [
    ({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}, "node.kubernetes.io/not-ready:NoSchedule"),
    ({"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"},
     "node.kubernetes.io/network-unavailable:NoSchedule"),
    ({"key": "dedicated", "value": "infra", "effect": "NoExecute"}, "dedicated=infra:NoExecute"),
])
def test_a_taint_the_controller_does_not_tolerate_keeps_the_daemonset_off(taint, text):
    assert dp.daemonset_obstacle(daemonset(), node(taints=[taint])) == (
        "it does not tolerate the node's taint %s" % text)


def test_host_network_daemonsets_tolerate_network_unavailable():
    taint = {"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}
    assert dp.daemonset_obstacle(daemonset({"hostNetwork": True}), node(taints=[taint])) is None


@given(st.lists(taints, max_size=5))
def test_a_blocking_taint_keeps_the_daemonset_off_unless_tolerated(node_taints):
    blocking = [t for t in node_taints if t["effect"] != "PreferNoSchedule"]
    obstacle = dp.daemonset_obstacle(daemonset(), node(taints=node_taints))
    if blocking:
        assert obstacle == "it does not tolerate the node's taint %s" % taint_ref(blocking[0])
    else:
        assert obstacle is None
    # tolerating each one by key and effect lets it run
    tolerations = [{"key": t["key"], "operator": "Exists", "effect": t["effect"]} for t in node_taints]
    assert dp.daemonset_obstacle(daemonset({"tolerations": tolerations}), node(taints=node_taints)) is None


# ------------------------------------------------------------------------------------------------
# nodeSelector, required node affinity, nodeName
# ------------------------------------------------------------------------------------------------

@given(labels, st.data())
def test_a_node_selector_matches_when_every_pair_is_a_node_label(node_labels, data):
    subset = data.draw(st.sets(st.sampled_from(sorted(node_labels)) if node_labels else st.nothing()))
    selector = {key: node_labels[key] for key in subset}
    assert dp.daemonset_obstacle(daemonset({"nodeSelector": selector}), node(labels=node_labels)) is None
    key = data.draw(keys)
    wrong = dict(selector, **{key: node_labels.get(key, "") + "-not"})
    assert dp.daemonset_obstacle(daemonset({"nodeSelector": wrong}), node(labels=node_labels)) == (
        "nodeSelector %s=%s does not match the node's labels" % (key, wrong[key]))


@given(labels, st.lists(st.lists(st.builds(expr, keys, st.sampled_from(["Exists", "DoesNotExist"])),
                                 max_size=3), max_size=3))
def test_terms_are_ored_and_their_requirements_anded(node_labels, terms_exprs):
    terms = [{"matchExpressions": exprs} for exprs in terms_exprs]
    want = any(exprs and all(sel.requirement_matches(e, node_labels) for e in exprs) for exprs in terms_exprs)
    obstacle = dp.daemonset_obstacle(daemonset(affinity(*terms)), node(labels=node_labels))
    assert (obstacle is None) == want
    if not want:
        assert obstacle == "its required node affinity does not match the node"


def test_empty_terms_and_no_terms_match_nothing_but_no_affinity_matches_all():
    assert dp.daemonset_obstacle(daemonset(affinity()), node()) is not None
    assert dp.daemonset_obstacle(daemonset(affinity({})), node()) is not None
    assert dp.daemonset_obstacle(daemonset({"affinity": {"nodeAffinity": {}}}), node()) is None
    assert dp.daemonset_obstacle(daemonset({"affinity": {}}), node()) is None


def test_match_fields_name_the_node():
    def obstacle(*fields):
        return dp.daemonset_obstacle(daemonset(affinity({"matchFields": list(fields)})), node("n1"))

    assert obstacle(expr("metadata.name", "In", "n1")) is None
    assert obstacle(expr("metadata.name", "In", "n2")) is not None
    assert obstacle(expr("metadata.name", "NotIn", "n2")) is None
    # only metadata.name, only In/NotIn, exactly one value
    assert obstacle(expr("metadata.name", "In", "n1", "n2")) is not None
    assert obstacle(expr("metadata.name", "Exists")) is not None
    assert obstacle(expr("spec.unschedulable", "In", "false")) is not None
    # fields and expressions of one term are ANDed
    both = {"matchFields": [expr("metadata.name", "In", "n1")], "matchExpressions": [expr("zone", "Exists")]}
    assert dp.daemonset_obstacle(daemonset(affinity(both)), node("n1")) is not None
    assert dp.daemonset_obstacle(daemonset(affinity(both)), node("n1", {"zone": "a"})) is None


def test_node_name_and_deletion():
    assert dp.daemonset_obstacle(daemonset({"nodeName": "n1"}), node("n1")) is None
    assert dp.daemonset_obstacle(daemonset({"nodeName": "n2"}), node("n1")) == "its template's nodeName is n2"
    assert dp.daemonset_obstacle(daemonset(deleting=True), node("n1")) == "it is being deleted"


def test_the_first_obstacle_is_named_selector_before_affinity_before_taints():
    ds = daemonset(dict(affinity({"matchExpressions": [expr("zone", "Exists")]}), nodeSelector={"role": "edge"}))
    tainted = node(taints=[{"key": "x", "effect": "NoSchedule"}])
    assert dp.daemonset_obstacle(ds, tainted).startswith("nodeSelector role=edge")
    assert dp.daemonset_obstacle(ds, node(labels={"role": "edge"}, taints=tainted["spec"]["taints"])) == (
        "its required node affinity does not match the node")


# ------------------------------------------------------------------------------------------------
# mirror pods, DaemonSet pods
# ------------------------------------------------------------------------------------------------

def pod(name="p", node_name="n1", annotations=None, owners=None, namespace="kube-system"):
    return {"metadata": {"name": name, "namespace": namespace, "annotations": dict(annotations or {}),
                         "ownerReferences": list(owners or [])},
            "spec": {"nodeName": node_name}}


MIRROR = {"kubernetes.io/config.mirror": "0123abcd"}
NODE_OWNER = {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "node-uid", "controller": True}


def test_a_mirror_pod_has_the_annotation_and_is_bound_to_the_node():
    assert dp.is_node_mirror_pod(pod("etcd-n1", annotations=MIRROR, owners=[NODE_OWNER]), "n1")
    assert dp.is_node_mirror_pod(pod("etcd-n1", annotations=MIRROR), "n1")  # older kubelets set no owner
    assert not dp.is_node_mirror_pod(pod("etcd-n1", annotations=MIRROR, owners=[NODE_OWNER]), "n2")
    assert not dp.is_node_mirror_pod(pod("web", owners=[NODE_OWNER]), "n1")  # the owner alone is not enough
    assert not dp.is_node_mirror_pod(pod("web", annotations={"kubernetes.io/config.hash": "x"}), "n1")


def test_a_daemonset_pod_is_the_one_its_controller_reference_names():
    ds = daemonset(name="agent", uid="u1")
    owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u1", "controller": True}
    assert dp.is_pod_of_daemonset(pod(owners=[owner]), ds)
    assert not dp.is_pod_of_daemonset(pod(owners=[dict(owner, uid="u0")]), ds)  # a DaemonSet of the same name before
    assert not dp.is_pod_of_daemonset(pod(owners=[dict(owner, controller=False)]), ds)
    assert not dp.is_pod_of_daemonset(pod(owners=[dict(owner, name="other")]), ds)
    assert not dp.is_pod_of_daemonset(pod(owners=[owner], namespace="elsewhere"), ds)
    assert dp.is_pod_of_daemonset(pod(owners=[{k: v for k, v in owner.items() if k != "uid"}]), ds)
