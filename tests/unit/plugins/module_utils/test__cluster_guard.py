"""Unit tests for _cluster_guard: last control-plane node, minimum Ready nodes, etcd quorum."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _cluster_guard as guard

CP = "node-role.kubernetes.io/control-plane"


def node(name, ready=True, cordoned=False, control_plane=False):
    labels = {CP: ""} if control_plane else {}
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"unschedulable": cordoned},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]}}


def etcd_pod(node_name, ready=True):
    return {"metadata": {"name": "etcd-" + node_name},
            "spec": {"nodeName": node_name},
            "status": {"phase": "Running" if ready else "Pending",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


# ------------------------------------------------------------------------------------------------
# control plane
# ------------------------------------------------------------------------------------------------

def test_a_worker_passes_the_control_plane_guard():
    result = guard.control_plane_guard([node("cp", control_plane=True), node("w")], "w")
    assert result["status"] == "pass" and result["reason"] == "not a control-plane node"


def test_the_last_ready_control_plane_node_is_refused():
    nodes = [node("cp-1", control_plane=True), node("cp-2", ready=False, control_plane=True), node("w")]
    result = guard.control_plane_guard(nodes, "cp-1")
    assert result["status"] == "fail"
    assert "last Ready control-plane node" in result["reason"] and "cp-2 (Ready=Unknown)" in result["reason"]


def test_a_control_plane_node_with_another_ready_one_passes_even_when_that_one_is_cordoned():
    nodes = [node("cp-1", control_plane=True), node("cp-2", cordoned=True, control_plane=True)]
    result = guard.control_plane_guard(nodes, "cp-1")
    assert result["status"] == "pass" and result["other_ready"] == ["cp-2"]


def test_other_control_plane_labels_count():
    nodes = [{"metadata": {"name": "m", "labels": {"node-role.kubernetes.io/master": ""}}, "status": {}}]
    assert guard.control_plane_guard(nodes, "m", ["node-role.kubernetes.io/master"])["status"] == "fail"
    assert guard.control_plane_guard(nodes, "m")["status"] == "pass"


def test_an_unknown_node_fails():
    assert guard.control_plane_guard([node("a")], "b")["status"] == "fail"


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=8), st.data())
def test_control_plane_guard_refuses_exactly_when_no_other_ready_control_plane_node(specs, data):
    nodes = [node("n%d" % i, ready=r, cordoned=c, control_plane=cp) for i, (r, c, cp) in enumerate(specs)]
    target = data.draw(st.integers(0, len(nodes) - 1))
    result = guard.control_plane_guard(nodes, "n%d" % target)
    others = [i for i, (r, _c, cp) in enumerate(specs) if cp and r and i != target]
    expected_fail = specs[target][2] and not others
    assert (result["status"] == "fail") == expected_fail


# ------------------------------------------------------------------------------------------------
# min ready nodes
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, parsed", [(3, (3, False)), ("3", (3, False)), ("50%", (50, True)),
                                           (" 100 % ", (100, True)), (0, (0, False))])
def test_parse_min_ready(value, parsed):
    assert guard.parse_min_ready(value) == parsed


@pytest.mark.parametrize("value", [True, "-1", "101%", "three", "3.5", None, "%"])
def test_parse_min_ready_refuses_nonsense(value):
    with pytest.raises(ValueError):
        guard.parse_min_ready(value)


@given(st.integers(0, 100), st.integers(0, 500))
def test_a_percentage_rounds_up(percent, total):
    needed = guard.required_ready("%d%%" % percent, total)
    assert needed == math.ceil(total * percent / 100.0)
    assert needed * 100 >= total * percent and (needed - 1) * 100 < total * percent or needed == 0


def test_min_ready_refuses_when_too_few_stay():
    nodes = [node("a"), node("b"), node("c", cordoned=True), node("d", ready=False)]
    result = guard.min_ready_guard(nodes, "a", 2)
    assert result["status"] == "fail"
    assert result["available_now"] == 2 and result["available_after"] == 1 and result["required"] == 2
    assert "c (cordoned)" in result["reason"] and "d (Ready=Unknown)" in result["reason"]


def test_min_ready_passes_when_enough_stay_and_counts_percentages_of_the_pool():
    nodes = [node("a"), node("b"), node("c")]
    assert guard.min_ready_guard(nodes, "a", 2)["status"] == "pass"
    assert guard.min_ready_guard(nodes, "a", "67%")["status"] == "fail"  # ceil(3 * 0.67) = 3
    assert guard.min_ready_guard(nodes, "a", "66%")["status"] == "pass"  # ceil(1.98) = 2


def test_a_node_outside_the_pool_does_not_reduce_it():
    assert guard.min_ready_guard([node("a"), node("b")], "elsewhere", 2)["status"] == "pass"


def test_min_ready_zero_skips():
    assert guard.min_ready_guard([node("a")], "a", 0)["status"] == "skip"


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=10), st.integers(0, 12), st.data())
def test_min_ready_refuses_exactly_when_fewer_would_stay(specs, minimum, data):
    nodes = [node("n%d" % i, ready=r, cordoned=c) for i, (r, c) in enumerate(specs)]
    target = data.draw(st.integers(0, len(nodes) - 1))
    result = guard.min_ready_guard(nodes, "n%d" % target, minimum)
    staying = sum(1 for i, (r, c) in enumerate(specs) if r and not c and i != target)
    if minimum == 0:
        assert result["status"] == "skip"
    else:
        assert (result["status"] == "fail") == (staying < minimum)
        assert result["available_after"] == staying


# ------------------------------------------------------------------------------------------------
# etcd quorum
# ------------------------------------------------------------------------------------------------

def test_members_from_pods():
    members = guard.etcd_members_from_pods([etcd_pod("b", ready=False), etcd_pod("a")])
    assert [(m["node"], m["healthy"]) for m in members] == [("a", True), ("b", False)]


def test_a_terminating_etcd_pod_is_not_healthy():
    pod = etcd_pod("a")
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not guard.etcd_members_from_pods([pod])[0]["healthy"]


def test_three_healthy_members_spare_one():
    members = guard.etcd_members_from_pods([etcd_pod("a"), etcd_pod("b"), etcd_pod("c")])
    result = guard.etcd_quorum_guard(members, "a")
    assert result["status"] == "pass" and result["quorum"] == 2 and result["healthy_after"] == 2


def test_three_members_with_one_down_cannot_spare_a_healthy_one():
    members = guard.etcd_members_from_pods([etcd_pod("a"), etcd_pod("b"), etcd_pod("c", ready=False)])
    result = guard.etcd_quorum_guard(members, "a")
    assert result["status"] == "fail"
    assert "lose quorum" in result["reason"] and "etcd-c on c" in result["reason"]
    # the unhealthy member's own node may go: it is not part of the quorum now
    assert guard.etcd_quorum_guard(members, "c")["status"] == "pass"


def test_a_node_without_a_member_passes_and_no_members_skips():
    members = guard.etcd_members_from_pods([etcd_pod("a")])
    assert guard.etcd_quorum_guard(members, "w")["status"] == "pass"
    assert guard.etcd_quorum_guard([], "w")["status"] == "skip"


def test_a_single_member_etcd_is_refused():
    members = guard.etcd_members_from_pods([etcd_pod("a")])
    assert guard.etcd_quorum_guard(members, "a")["status"] == "fail"


@given(st.lists(st.booleans(), min_size=1, max_size=9), st.data())
def test_quorum_guard_matches_the_raft_rule(health, data):
    members = [{"name": "m%d" % i, "node": "n%d" % i, "healthy": h} for i, h in enumerate(health)]
    target = data.draw(st.integers(0, len(health) - 1))
    result = guard.etcd_quorum_guard(members, "n%d" % target)
    left = sum(1 for i, h in enumerate(health) if h and i != target)
    assert (result["status"] == "fail") == (left < len(health) // 2 + 1)


@pytest.mark.parametrize("code, body, healthy", [
    (200, '{"health":"true","reason":""}', True),
    (200, b'{"health":"true"}', True),
    (503, '{"health":"false","reason":"RAFT NO LEADER"}', False),
    (200, '{"health":"false","reason":"RAFT NO LEADER"}', False),
    (200, "<html>", False),
    (200, "[]", False),
])
def test_parse_etcd_health(code, body, healthy):
    assert guard.parse_etcd_health(code, body)[0] is healthy


def test_refusals_lists_only_failures():
    results = [guard.guard_result("a", "pass", "ok"), guard.guard_result("b", "fail", "no"),
               guard.guard_result("c", "skip", "-")]
    assert guard.refusals(results) == ["no"]
