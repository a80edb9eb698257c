"""Unit tests for _lb_exclusion: when the load-balancer exclusion label is added or removed, and the
patches that do it (the real API server applies them in tests/integration/test_k8s_node_cordon.py
and test_k8s_node_taint.py)."""
import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _lb_exclusion

LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def node(labels=None):
    out = {"metadata": {"name": "n1"}, "spec": {}}
    if labels is not None:
        out["metadata"]["labels"] = labels
    return out


def test_the_label_is_the_one_the_service_controller_reads():
    assert _lb_exclusion.LABEL == LABEL and _lb_exclusion.VALUE == "true"


@pytest.mark.parametrize("labels, exclude, change", [
    ({}, True, (LABEL, "true")),
    (None, True, (LABEL, "true")),
    ({"other": "x"}, True, (LABEL, "true")),
    # already there, whatever its value: someone else's, left alone
    ({LABEL: "true"}, True, None),
    ({LABEL: "karpenter"}, True, None),
    ({LABEL: ""}, True, None),
    ({LABEL: "true"}, False, (LABEL, None)),
    ({LABEL: "aws-node-termination-handler"}, False, (LABEL, None)),
    ({}, False, None),
    (None, False, None),
    ({LABEL: "true"}, None, None),
    ({}, None, None),
])
def test_label_change(labels, exclude, change):
    assert _lb_exclusion.label_change(node(labels), exclude) == change


def test_the_strategic_merge_patch_sets_or_nulls_the_one_key():
    assert _lb_exclusion.merge_patch((LABEL, "true")) == {"metadata": {"labels": {LABEL: "true"}}}
    assert _lb_exclusion.merge_patch((LABEL, None)) == {"metadata": {"labels": {LABEL: None}}}
    assert _lb_exclusion.merge_patch(None) == {}


def test_the_json_patch_escapes_the_slash_of_the_key():
    assert _lb_exclusion.json_patch_ops(node({}), (LABEL, "true")) == [
        {"op": "add", "path": "/metadata/labels/node.kubernetes.io~1exclude-from-external-load-balancers",
         "value": "true"}]
    assert _lb_exclusion.json_patch_ops(node({LABEL: "true"}), (LABEL, None)) == [
        {"op": "remove", "path": "/metadata/labels/node.kubernetes.io~1exclude-from-external-load-balancers"}]
    # a node without labels at all gets the map (an add below a missing member fails)
    assert _lb_exclusion.json_patch_ops(node(None), (LABEL, "true")) == [
        {"op": "add", "path": "/metadata/labels", "value": {LABEL: "true"}}]
    assert _lb_exclusion.json_patch_ops(node({}), None) == []
    assert _lb_exclusion.json_pointer("a~b/c") == "/metadata/labels/a~0b~1c"


def apply_json_patch(doc, ops):
    """RFC 6902 ``add`` / ``remove`` on object members, as the API server applies them."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        parent = doc
        for part in parts[:-1]:
            parent = parent[part]  # a missing member fails, as on the API server
        if op["op"] == "add":
            parent[parts[-1]] = copy.deepcopy(op["value"])
        else:
            del parent[parts[-1]]
    return doc


label_maps = st.one_of(st.none(), st.dictionaries(
    st.sampled_from(["a", "kubernetes.io/hostname", LABEL, "x/y~z"]), st.sampled_from(["", "true", "false", "v"])))


@settings(max_examples=300, deadline=None)
@given(labels=label_maps, exclude=st.one_of(st.none(), st.booleans()))
def test_both_patches_give_the_node_apply_describes_and_then_nothing_is_left_to_do(labels, exclude):
    before = node(copy.deepcopy(labels))
    change = _lb_exclusion.label_change(before, exclude)
    expected = _lb_exclusion.apply(before, change)
    assert before == node(labels)  # not modified
    assert apply_json_patch(before, _lb_exclusion.json_patch_ops(before, change)) == (
        expected if change else before)
    # idempotent: the node after the change needs none
    assert _lb_exclusion.label_change(expected, exclude) is None
    if exclude is not None:
        assert _lb_exclusion.excluded(expected) is exclude
    # other labels are never touched
    others = dict((k, v) for k, v in (labels or {}).items() if k != LABEL)
    assert dict((k, v) for k, v in _lb_exclusion.node_labels(expected).items() if k != LABEL) == others
    diff = _lb_exclusion.label_diff(before, expected)
    assert diff["labels_added"] == ([LABEL] if change and change[1] is not None else [])
    # what a phase record names ahead of the write is what the write then adds
    assert _lb_exclusion.labels_to_add(before, exclude) == diff["labels_added"]
    assert diff["labels_removed"] == ([LABEL] if change and change[1] is None else [])
