"""Unit tests for _cluster_guard: last control-plane node, minimum Ready nodes, etcd quorum; the
lists k8s_cluster_guard reads (over a scripted API server on 127.0.0.1), its wait and its result."""
import json
import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _cluster_guard as guard
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import K8sAccessError
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from tests.unit.fake_k8s_server import STAMPS, TOKEN, by_path, item_list, status_body
from tests.unit.plugins.module_utils.test__k8s_client import FakeClock

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


# ------------------------------------------------------------------------------------------------
# the other nodes of the batch (with_nodes) are out at the same time
# ------------------------------------------------------------------------------------------------

def test_each_guard_counts_the_rest_of_the_batch_as_gone():
    nodes = [node("a"), node("b"), node("c"), node("d")]
    assert guard.min_ready_guard(nodes, "a", 2)["status"] == "pass"
    batch = guard.min_ready_guard(nodes, "a", 2, with_nodes=["b", "c"])
    assert batch["status"] == "fail" and batch["available_after"] == 1
    assert batch["reason"].startswith("taking node/a (with node/b, node/c of its batch) out leaves 1 of 4 nodes")
    planes = [node("cp-1", control_plane=True), node("cp-2", control_plane=True), node("w")]
    assert guard.control_plane_guard(planes, "cp-1")["status"] == "pass"
    refused = guard.control_plane_guard(planes, "cp-1", with_nodes=["cp-2", "w"])
    assert refused["status"] == "fail" and refused["reason"].startswith(
        "taking node/cp-1 (with node/cp-2, node/w of its batch) out leaves no Ready control-plane node")
    assert refused["reason"].endswith("or take fewer nodes at once.")
    members = guard.etcd_members_from_pods([etcd_pod("a"), etcd_pod("b"), etcd_pod("c")])
    assert guard.etcd_quorum_guard(members, "a")["status"] == "pass"
    lost = guard.etcd_quorum_guard(members, "a", with_nodes=["b"])
    assert lost["status"] == "fail" and "taking node/a (with node/b of its batch) out leaves 1 healthy" in lost["reason"]


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=1, max_size=10),
       st.integers(0, 12), st.data())
def test_guards_with_a_batch_judge_as_if_every_node_of_it_were_gone(specs, minimum, data):
    names = ["n%d" % i for i in range(len(specs))]
    nodes = [node(n, ready=r, cordoned=c, control_plane=cp) for n, (r, c, cp) in zip(names, specs)]
    target = data.draw(st.sampled_from(names))
    batch = data.draw(st.lists(st.sampled_from(names), max_size=len(names)))
    going = {target} | set(batch)
    ready_left = [i for i, (r, c, _cp) in enumerate(specs) if r and not c and names[i] not in going]
    result = guard.min_ready_guard(nodes, target, minimum, with_nodes=batch)
    if minimum:
        assert (result["status"] == "fail") == (len(ready_left) < minimum)
    planes_left = [i for i, (r, _c, cp) in enumerate(specs) if cp and r and names[i] not in going]
    is_plane = specs[names.index(target)][2]
    assert (guard.control_plane_guard(nodes, target, with_nodes=batch)["status"] == "fail") == (
        is_plane and not planes_left)
    members = [{"name": "m-" + n, "node": n, "healthy": r} for n, (r, _c, _cp) in zip(names, specs)]
    healthy_left = [m for m in members if m["healthy"] and m["node"] not in going]
    assert (guard.etcd_quorum_guard(members, target, with_nodes=batch)["status"] == "fail") == (
        len(healthy_left) < len(members) // 2 + 1)


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


# ------------------------------------------------------------------------------------------------
# check_guards: which guards run and which lists they read (a fake reader here; the real API
# server is exercised by tests/integration/test_rollout_guards.py)
# ------------------------------------------------------------------------------------------------


def listed_node(name, labels=None, ready=True):
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


class FakeReader:
    def __init__(self, nodes, pool=None, pods=(), endpoints=()):
        self._nodes, self._pool, self._pods, self._endpoints = nodes, pool, list(pods), list(endpoints)
        self.calls = []

    def nodes(self, deadline, selector=""):
        self.calls.append(("nodes", selector))
        return self._pool if selector else self._nodes

    def etcd_pods(self, deadline):
        self.calls.append(("etcd_pods",))
        return self._pods

    def etcd_endpoint_members(self):
        self.calls.append(("endpoints",))
        return self._endpoints


def params(**overrides):
    values = {"name": "a", "control_plane": True, "control_plane_labels": [CP], "min_ready_nodes": 0,
              "node_selector": "", "etcd_quorum": True, "etcd_endpoints": []}
    values.update(overrides)
    return values


def test_defaults_read_the_nodes_and_the_etcd_pods_once():
    reader = FakeReader([listed_node("a"), listed_node("b")])
    results = guard.check_guards(reader, params(), 0)
    assert [(r["guard"], r["status"]) for r in results] == [("control_plane", "pass"), ("etcd_quorum", "skip")]
    assert reader.calls == [("nodes", ""), ("etcd_pods",)]


def test_a_selector_reads_its_pool_and_the_pool_decides():
    reader = FakeReader([listed_node("a"), listed_node("b"), listed_node("c")],
                        pool=[listed_node("a"), listed_node("b", ready=False)])
    results = guard.check_guards(reader, params(control_plane=False, etcd_quorum=False, min_ready_nodes="50%",
                                                node_selector="pool=x"), 0)
    assert reader.calls == [("nodes", ""), ("nodes", "pool=x")]
    assert results[0]["guard"] == "min_ready_nodes" and results[0]["status"] == "fail"


def test_endpoints_replace_the_pods():
    members = [{"name": "u1", "node": "a", "healthy": True}, {"name": "u2", "node": "b", "healthy": False}]
    reader = FakeReader([listed_node("a", {CP: ""})], endpoints=members)
    results = guard.check_guards(reader, params(etcd_endpoints=[{"node": "a", "url": "u1"}]), 0)
    assert ("endpoints",) in reader.calls and ("etcd_pods",) not in reader.calls
    assert {r["guard"]: r["status"] for r in results} == {"control_plane": "fail", "etcd_quorum": "fail"}


def test_an_unknown_node_is_one_clear_failure():
    results = guard.check_guards(FakeReader([listed_node("b")]), params(), 0)
    assert len(results) == 1 and "node/a not found" in results[0]["reason"]


# ------------------------------------------------------------------------------------------------
# wait_for_guards and cluster_guard: the wait, the result, the refusal (a fake reader and clock)
# ------------------------------------------------------------------------------------------------

class ComingBack(FakeReader):
    """Node b is not Ready for the first ``checks_down`` checks, Ready after."""

    def __init__(self, checks_down):
        super(ComingBack, self).__init__([])
        self.checks_down = checks_down

    def nodes(self, deadline, selector=""):
        self.calls.append(("nodes", selector, deadline))
        down = len(self.calls) <= self.checks_down
        return [listed_node("a", {CP: ""}), listed_node("b", {CP: ""}, ready=not down)]


def wait_params(**overrides):
    return params(**dict({"etcd_quorum": False, "wait_timeout": 20, "poll_interval": 5}, **overrides))


def test_the_guards_are_checked_until_met_within_the_wait():
    clock = FakeClock()
    reader = ComingBack(checks_down=2)
    result = guard.wait_for_guards(reader, wait_params(), False, sleep=clock.sleep, clock=clock)
    assert result == {"changed": False, "name": "a", "passed": True, "refused": [], "checks": 3,
                      "waited_seconds": 10.0, "guards": result["guards"]}
    assert [g["status"] for g in result["guards"]] == ["pass"]
    assert clock.sleeps == [5, 5]
    # each check's list calls may retry until the wait's end, and always for 30 s at least
    assert [call[2] - 1000 for call in reader.calls] == [30, 35, 40]


def test_a_refusal_after_the_wait_is_a_failure_with_every_result_field():
    clock = FakeClock()
    with pytest.raises(ModuleFailure) as caught:
        guard.wait_for_guards(ComingBack(checks_down=99), wait_params(poll_interval=7), False,
                              sleep=clock.sleep, clock=clock)
    failure = caught.value
    assert failure.msg.startswith("node/a: refused by the cluster guards after 20s: node/a is the last Ready "
                                  "control-plane node (control-plane nodes: a (Ready), b (Ready=False))")
    assert clock.sleeps == [7, 7, 6] and failure.fields["checks"] == 4 and failure.fields["waited_seconds"] == 20.0
    assert failure.fields["passed"] is False and failure.fields["name"] == "a"
    assert failure.fields["refused"] == [failure.fields["guards"][0]["reason"]]
    assert "status" not in failure.fields and "changed" not in failure.fields


def test_check_mode_and_no_wait_check_once():
    for check_mode, wait in ((True, 20), (False, 0)):
        clock = FakeClock()
        with pytest.raises(ModuleFailure) as caught:
            guard.wait_for_guards(ComingBack(checks_down=1), params(etcd_quorum=False, wait_timeout=wait,
                                                                    poll_interval=5), check_mode,
                                  sleep=clock.sleep, clock=clock)
        assert caught.value.fields["checks"] == 1 and clock.sleeps == []
        assert caught.value.msg.startswith("node/a: refused by the cluster guards%s: node/a is the last"
                                           % (" after 0s" if wait else ""))


def test_a_failing_list_ends_the_wait_with_its_own_error():
    class Failing(FakeReader):
        def nodes(self, deadline, selector=""):
            raise K8sAccessError("nodes: forbidden (403): no", status=403)

    clock = FakeClock()
    with pytest.raises(K8sAccessError) as caught:
        guard.wait_for_guards(Failing([]), wait_params(), False, sleep=clock.sleep, clock=clock)
    assert caught.value.status == 403 and clock.sleeps == []


@pytest.mark.parametrize("overrides, message", [
    ({"min_ready_nodes": "three"}, "min_ready_nodes must be a number or a percentage such as 50%, not 'three'"),
    ({"wait_timeout": -1}, "wait_timeout must not be negative and poll_interval must be at least 1"),
    ({"poll_interval": 0}, "wait_timeout must not be negative and poll_interval must be at least 1"),
])
def test_bad_options_fail_before_any_connection(overrides, message):
    connected = []
    with pytest.raises(ModuleFailure) as caught:
        guard.cluster_guard(lambda: connected.append(1), wait_params(**overrides), False)
    assert caught.value.msg == message and caught.value.fields == {}
    assert connected == []


# ------------------------------------------------------------------------------------------------
# GuardReader over HTTP (a scripted API server on 127.0.0.1)
# ------------------------------------------------------------------------------------------------

PAGE = ("limit", "500")  # every list is paged, as kubectl pages (--chunk-size 500)
USER_AGENT = "kubeops.node_maintenance/k8s_cluster_guard"


def api_node(name, labels=None, ready="True", unschedulable=False, stamp=STAMPS[0]):
    return {"metadata": {"name": name, "labels": labels or {}, "creationTimestamp": stamp},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                                       "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}]}}


def api_etcd_pod(node_name, ready=True, deleting=None, stamp=STAMPS[0]):
    metadata = {"name": "etcd-" + node_name, "namespace": "kube-system", "labels": {"component": "etcd"},
                "creationTimestamp": stamp}
    if deleting:
        metadata["deletionTimestamp"] = deleting
    return {"metadata": metadata, "spec": {"nodeName": node_name},
            "status": {"phase": "Running", "startTime": stamp,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": stamp}]}}


def reader_for(server, **overrides):
    values = {"etcd_pod_namespace": "kube-system", "etcd_pod_selector": "component=etcd", "etcd_endpoints": []}
    values.update(overrides)
    return guard.GuardReader(server.raw(user_agent=USER_AGENT), values)


def test_reader_lists_nodes_and_etcd_pods_on_the_wire(k8s_server):
    server = k8s_server(by_path({
        "/api/v1/nodes": lambda q: (200, item_list("NodeList", [api_node("a"), api_node("b")])),
        "/api/v1/namespaces/kube-system/pods": lambda q: (200, item_list("PodList", [api_etcd_pod("a")])),
    }))
    reader = reader_for(server)
    deadline = time.monotonic() + 10
    assert [n["metadata"]["name"] for n in reader.nodes(deadline)] == ["a", "b"]
    assert reader.nodes(deadline, "pool=x")[0]["status"]["conditions"][0]["lastTransitionTime"] == STAMPS[0]
    assert reader.etcd_pods(deadline)[0]["spec"] == {"nodeName": "a"}
    assert [(r["path"], r["query"]) for r in server.requests] == [
        ("/api/v1/nodes", [PAGE]),
        ("/api/v1/nodes", [("labelSelector", "pool=x"), PAGE]),
        ("/api/v1/namespaces/kube-system/pods", [("labelSelector", "component=etcd"), PAGE]),
    ]
    for request in server.requests:
        assert request["headers"]["authorization"] == "Bearer " + TOKEN
        assert request["headers"]["user-agent"] == "kubeops.node_maintenance/k8s_cluster_guard"
        assert request["headers"]["accept"] == "application/json"


def test_reader_names_the_namespace_as_one_path_segment(k8s_server):
    server = k8s_server(by_path({}))
    reader = reader_for(server, etcd_pod_namespace="a/b")
    with pytest.raises(K8sAccessError):
        reader.etcd_pods(time.monotonic() + 5)
    assert server.calls() == [("GET", "/api/v1/namespaces/a%2Fb/pods")]


def test_reader_forbidden_is_one_access_error_with_the_rbac_hint(k8s_server):
    message = 'nodes is forbidden: User "x" cannot list resource "nodes" in API group "" at the cluster scope'
    server = k8s_server(by_path({"/api/v1/nodes": lambda q: (403, status_body(403, "Forbidden", message))}))
    with pytest.raises(K8sAccessError) as caught:
        reader_for(server).nodes(time.monotonic() + 5)
    assert caught.value.status == 403
    assert caught.value.message == (
        "nodes: forbidden (403): %s; the identity in use lacks the RBAC right; grant it with a (Cluster)Role "
        "and binding, and check with `kubectl auth can-i list nodes`" % message)
    assert len(server.requests) == 1  # not retried


def test_reader_retries_a_transient_answer(k8s_server):
    answers = [(503, status_body(503, "ServiceUnavailable", "etcd leader changed")),
               (200, item_list("NodeList", [api_node("a")]))]
    server = k8s_server(by_path({"/api/v1/nodes": lambda q: answers.pop(0)}))
    assert [n["metadata"]["name"] for n in reader_for(server).nodes(time.monotonic() + 10)] == ["a"]
    assert len(server.requests) == 2


@pytest.mark.parametrize("stamp", STAMPS)
def test_timestamps_in_either_form_read_the_same(k8s_server, stamp):
    """A terminating etcd pod is not a healthy member, whichever way its deletionTimestamp is written."""
    server = k8s_server(by_path({
        "/api/v1/nodes": lambda q: (200, item_list("NodeList", [api_node(n, {CP: ""}, stamp=stamp) for n in "abc"])),
        "/api/v1/namespaces/kube-system/pods": lambda q: (200, item_list("PodList", [
            api_etcd_pod("a", stamp=stamp), api_etcd_pod("b", deleting=stamp, stamp=stamp),
            api_etcd_pod("c", stamp=stamp)])),
    }))
    results = guard.check_guards(reader_for(server), params(name="a"), time.monotonic() + 10)
    etcd = [r for r in results if r["guard"] == "etcd_quorum"][0]
    assert etcd["status"] == "fail" and etcd["healthy"] == 2 and etcd["healthy_after"] == 1
    assert [m["healthy"] for m in etcd["members"]] == [True, False, True]


def test_a_big_node_list_is_read_page_by_page(k8s_server):
    nodes = [api_node("n%04d" % i) for i in range(1203)]

    def list_nodes(query):
        start = int(query.get("continue") or 0)
        end = start + int(query["limit"])
        return 200, item_list("NodeList", nodes[start:end], continue_token=str(end) if end < len(nodes) else None)

    server = k8s_server(by_path({"/api/v1/nodes": list_nodes}))
    listed = reader_for(server).nodes(time.monotonic() + 10)
    assert [n["metadata"]["name"] for n in listed] == [n["metadata"]["name"] for n in nodes]
    assert [dict(r["query"]).get("continue") for r in server.requests] == [None, "500", "1000"]


def test_an_etcd_endpoint_that_fails_in_any_way_is_a_refusal_not_an_error(k8s_server):
    """However an endpoint's /health fails (an HTTP error, not JSON, no answer), the member is
    unhealthy and the guard refuses; the run does not end as an API or access error."""
    api = k8s_server(by_path({"/api/v1/nodes": lambda q: (200, item_list("NodeList", [api_node(n) for n in "abc"]))}))
    etcd = k8s_server(by_path({"/ok/health": lambda q: (200, {"health": "true"}),
                               "/down/health": lambda q: (503, status_body(503, "ServiceUnavailable", "x")),
                               "/proxy/health": lambda q: (200, b"<html>login</html>")}))
    closed = k8s_server(by_path({}))
    closed.close()
    endpoints = [{"node": "a", "url": etcd.url + "/ok"}, {"node": "b", "url": etcd.url + "/down/"},
                 {"node": "c", "url": etcd.url + "/proxy"}, {"node": "d", "url": closed.url}]
    values = dict(params(control_plane=False, etcd_endpoints=endpoints), wait_timeout=0, poll_interval=5,
                  etcd_validate_certs=True, etcd_ca_cert=None, etcd_client_cert=None, etcd_client_key=None)
    with pytest.raises(ModuleFailure) as caught:
        guard.cluster_guard(lambda: api.raw(user_agent=USER_AGENT), values, False)
    members = {m["node"]: m for m in caught.value.fields["guards"][0]["members"]}
    assert {node: m["healthy"] for node, m in members.items()} == {"a": True, "b": False, "c": False, "d": False}
    assert members["b"]["reason"].startswith("no answer: ") and "Service Unavailable" in members["b"]["reason"]
    assert members["c"]["reason"] == "not JSON: %s" % b"<html>login</html>"
    assert members["d"]["reason"].startswith("no answer: ") and "refused" in members["d"]["reason"]
    assert caught.value.msg.startswith("node/a: refused by the cluster guards: etcd has 4 members (quorum 3), "
                                       "1 healthy; taking node/a out leaves 0 healthy")
    assert "status" not in caught.value.fields and caught.value.fields["refused"]
    assert [r["path"] for r in etcd.requests] == ["/ok/health", "/down/health", "/proxy/health"]
    assert json.dumps(caught.value.fields)  # the result is plain JSON
