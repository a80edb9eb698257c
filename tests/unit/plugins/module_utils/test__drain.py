"""_drain: the drain's orchestration (cordon, plan, evict, how it ended) against a scripted API
server on 127.0.0.1 (fake_k8s_server), and its pure parts. The engine's rules are tested in
test__eviction.py, the per-pod decisions in test__pods.py, the real API server by
tests/integration/test_k8s_node_drain.py and test_faults_drain.py."""
from __future__ import annotations

import copy
import threading
import time

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _drain, _eviction
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import build_api_client
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from ansible_collections.kubeops.node_maintenance.plugins.modules import k8s_node_drain
from tests.unit.fake_k8s_server import item_list, not_found, status_body

NODE_PATH = "/api/v1/nodes/n1"
PODS_PATH = "/api/v1/pods"
PDBS_PATH = "/apis/policy/v1/poddisruptionbudgets"
STAMP = "2026-11-30T05:35:33Z"


def params(**options):
    """k8s_node_drain's options with their defaults (from its argument spec), on node n1."""
    values = dict((key, spec.get("default")) for key, spec in k8s_node_drain.argument_spec().items())
    values.update(name="n1", timeout=30)
    values.update(options)
    return values


def pod(name, owner="ReplicaSet", labels=None, namespace="shop", priority=None, class_name=None):
    meta = {"namespace": namespace, "name": name, "uid": "uid-" + name, "labels": labels or {"app": "web"}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": owner.lower() + "-1",
                                    "controller": True}]
    spec = {"nodeName": "n1", "containers": [{"name": "app"}]}
    if priority is not None:
        spec["priority"] = priority
    if class_name:
        spec["priorityClassName"] = class_name
    return {"metadata": meta, "spec": spec,
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def pdb(name, allowed, labels=None, namespace="shop"):
    return {"metadata": {"namespace": namespace, "name": name},
            "spec": {"selector": {"matchLabels": labels or {"app": "web"}}, "minAvailable": 2},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 2, "desiredHealthy": 2, "expectedPods": 2}}


class Cluster:
    """Node n1 and its pods as the API server keeps them.

    An accepted eviction or delete takes the pod away, or with ``linger`` leaves it terminating.
    ``evictions`` maps a pod name to the ``(status, body)`` its evictions get (else 201);
    ``daemonsets`` are the DaemonSets that exist; ``pdbs`` None answers the PDB list with 403;
    ``polls_fail`` answers every pod list after the first with that ``(status, body)``;
    ``on_accept(cluster)`` runs after each accepted eviction; ``attachments`` are the
    VolumeAttachments (and ``volumes_attached`` the node's status entries) that never go;
    ``namespaces``: name -> labels."""

    def __init__(self, pods=(), unschedulable=False, pdbs=(), evictions=None, daemonsets=(), linger=False,
                 polls_fail=None, on_accept=None, labels=None, attachments=(), volumes_attached=(), namespaces=None):
        self.node = {"metadata": {"name": "n1", "resourceVersion": "3", "labels": dict(labels or {})}, "spec": {},
                     "status": {"volumesAttached": [{"name": v, "devicePath": ""} for v in volumes_attached]}}
        self.attachments = list(attachments)
        if unschedulable:
            self.node["spec"]["unschedulable"] = True
        self.pods = dict((p["metadata"]["name"], copy.deepcopy(p)) for p in pods)
        self.pdbs = None if pdbs is None else list(pdbs)
        self.evictions = evictions or {}
        self.daemonsets = set(daemonsets)
        self.linger = linger
        self.polls_fail = polls_fail
        self.on_accept = on_accept
        self.node_gone = False
        self.pod_lists = 0
        self.namespaces = namespaces or {}
        self.events = []

    def __call__(self, request):
        method, path = request["method"], request["path"]
        if path.startswith("/api/v1/nodes/"):
            if self.node_gone or path != NODE_PATH:
                return not_found("nodes", path.rsplit("/", 1)[-1])
            if method == "PATCH" and request["headers"]["content-type"] == "application/merge-patch+json":
                # the maintenance record (k8s_node_drain with record): the annotation alone
                annotations = self.node["metadata"].setdefault("annotations", {})
                annotations.update(request["body"]["metadata"]["annotations"])
            elif method == "PATCH":
                assert request["headers"]["content-type"] == "application/strategic-merge-patch+json"
                self.node["spec"].update(request["body"].get("spec") or {})
                for key, value in ((request["body"].get("metadata") or {}).get("labels") or {}).items():
                    if value is None:
                        self.node["metadata"]["labels"].pop(key, None)
                    else:
                        self.node["metadata"]["labels"][key] = value
            return 200, copy.deepcopy(self.node)
        if path == "/apis/storage.k8s.io/v1/volumeattachments":
            return 200, item_list("VolumeAttachmentList", self.attachments)
        if path == "/api/v1/persistentvolumes":
            return 200, item_list("PersistentVolumeList", [])
        if path == PODS_PATH and method == "GET":
            assert dict(request["query"])["fieldSelector"] == "spec.nodeName=n1"
            self.pod_lists += 1
            if self.polls_fail and self.pod_lists > 1:
                return self.polls_fail
            return 200, item_list("PodList", [copy.deepcopy(p) for p in self.pods.values()])
        if path == PDBS_PATH:
            if self.pdbs is None:
                return 403, status_body(403, "Forbidden", "poddisruptionbudgets.policy is forbidden")
            return 200, item_list("PodDisruptionBudgetList", self.pdbs)
        if path == "/api/v1/namespaces" and method == "GET":
            return 200, item_list("NamespaceList", [{"metadata": {"name": name, "labels": labels}}
                                                    for name, labels in self.namespaces.items()])
        if path.startswith("/apis/apps/v1/namespaces/"):
            name = path.rsplit("/", 1)[-1]
            return (200, {"kind": "DaemonSet"}) if name in self.daemonsets else not_found("daemonsets.apps", name)
        if path == "/api/v1/namespaces/default/events" and method == "POST":
            self.events.append(request["body"])
            return 201, request["body"]
        parts = path.split("/")  # /api/v1/namespaces/<ns>/pods/<name>[/eviction]
        name = parts[6]
        if name not in self.pods:
            return not_found("pods", name)
        if method == "POST" and parts[-1] == "eviction":
            answer = self.evictions.get(name)
            if answer:
                return answer
            if not (request["body"].get("deleteOptions") or {}).get("dryRun"):
                self._accept(name)
            return 201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 201}
        if method == "DELETE":
            self._accept(name)
            return 200, copy.deepcopy(self.pods.get(name) or {})
        return 405, status_body(405, "MethodNotAllowed", "not allowed")

    def _accept(self, name):
        if self.linger:
            self.pods[name]["metadata"]["deletionTimestamp"] = STAMP
        else:
            del self.pods[name]
        if self.on_accept:
            self.on_accept(self)


def drain(server, check_mode=False, warned=None, **options):
    """The drain's result; ``warned``: a list that gets its warnings (else there must be none)."""
    def warn(msg):
        assert warned is not None, "unexpected warning: %s" % msg
        warned.append(msg)

    return _drain.drain(params(**options), check_mode, time.monotonic(), lambda: build_api_client(server.params),
                        warn)


def failure(server, check_mode=False, **options):
    with pytest.raises(ModuleFailure) as failed:
        drain(server, check_mode, **options)
    return failed.value


def verbs(server):
    return [(m, p.rsplit("/", 1)[-1]) for m, p in server.calls()]


# --- whole drains against the scripted API server ---------------------------------------------

def test_bad_options_fail_before_anything_is_asked_of_the_api():
    def connect():
        raise AssertionError("no client for bad options")

    with pytest.raises(ModuleFailure) as failed:
        _drain.drain(params(timeout=0, max_concurrency=0, grace_period=-2, skip_wait_for_delete_timeout=-1),
                     False, time.monotonic(), connect, None)
    assert failed.value.msg == (
        "timeout must be at least 1 second; max_concurrency must be at least 1; grace_period must be -1 (the "
        "pod's own), 0 (immediately) or a number of seconds; skip_wait_for_delete_timeout must be 0 (always "
        "wait) or a number of seconds")
    assert failed.value.fields == {}


def test_a_drain_cordons_evicts_every_pod_and_nothing_stopped_it(k8s_server):
    cluster = Cluster([pod("a"), pod("b")], pdbs=[pdb("web", 2)])
    server = k8s_server(cluster)
    result = drain(server)
    assert result["stopped_by"] is None and "node_deleted" not in result
    assert result["node"] == "n1" and result["changed"] is True and result["cordoned"] is True
    assert cluster.node["spec"]["unschedulable"] is True and cluster.pods == {}
    assert [(p["name"], p["plan"], p["action"], p["attempts"]) for p in result["pods"]] == [
        ("a", "evict", "evicted", 1), ("b", "evict", "evicted", 1)]
    assert all(p["pdb"][0]["name"] == "web" and "pdb_keys" not in p for p in result["pods"])
    assert result["counts"]["evicted"] == 2 and result["counts"]["total"] == 2
    assert result["api_requests"]["get node"] == 1 and result["api_requests"]["patch node"] == 1
    assert result["api_requests"]["evict"] == 2 and result["api_requests"]["list pdbs"] == 1
    assert 0 <= result["seconds"] < 30 and "warnings" not in result
    # cordoned before the pods are listed; the evictions carry the pod's UID
    assert verbs(server)[:4] == [("GET", "n1"), ("PATCH", "n1"), ("GET", "pods"), ("GET", "poddisruptionbudgets")]
    evictions = [r["body"] for r in server.requests if r["path"].endswith("/eviction")]
    assert sorted(b["deleteOptions"]["preconditions"]["uid"] for b in evictions) == ["uid-a", "uid-b"]


LB = "node.kubernetes.io/exclude-from-external-load-balancers"


def test_the_load_balancer_label_goes_into_the_cordons_one_write(k8s_server):
    cluster = Cluster([pod("a")], labels={"zone": "a"})
    server = k8s_server(cluster)
    result = drain(server, exclude_from_load_balancers=True)
    assert result["changed"] is True and result["stopped_by"] is None
    assert result["labels_added"] == [LB] and result["labels_removed"] == [] and result["excluded_from_load_balancers"]
    assert cluster.node["metadata"]["labels"] == {"zone": "a", LB: "true"}
    patches = [r["body"] for r in server.requests if r["method"] == "PATCH"]
    assert patches == [{"spec": {"unschedulable": True}, "metadata": {"labels": {LB: "true"}}}]
    # again: nothing left to do, no write
    again = drain(server, exclude_from_load_balancers=True)
    assert again["changed"] is False and again["labels_added"] == [] and again["excluded_from_load_balancers"]
    assert len([r for r in server.requests if r["method"] == "PATCH"]) == 1


def test_a_load_balancer_label_someone_else_set_is_left_alone(k8s_server):
    cluster = Cluster(unschedulable=True, labels={LB: "karpenter"})
    server = k8s_server(cluster)
    result = drain(server, exclude_from_load_balancers=True)
    assert result["changed"] is False and result["labels_added"] == [] and result["excluded_from_load_balancers"]
    assert cluster.node["metadata"]["labels"] == {LB: "karpenter"} and ("PATCH", "n1") not in verbs(server)


def test_check_mode_says_the_label_would_be_added_and_writes_nothing(k8s_server):
    cluster = Cluster(unschedulable=True)
    server = k8s_server(cluster)
    result = drain(server, check_mode=True, exclude_from_load_balancers=True)
    assert result["changed"] is True and result["labels_added"] == [LB] and result["excluded_from_load_balancers"]
    assert cluster.node["metadata"]["labels"] == {} and all(m == "GET" for m, _p in server.calls())


def test_a_refused_drain_takes_the_label_it_added_off_again_with_the_cordon(k8s_server):
    cluster = Cluster([pod("bare", owner=None)])
    server = k8s_server(cluster)
    refused = failure(server, exclude_from_load_balancers=True)
    assert refused.fields["stopped_by"] == "refused" and refused.fields["labels_added"] == []
    assert refused.fields["excluded_from_load_balancers"] is False and refused.fields["cordoned"] is False
    assert cluster.node["metadata"]["labels"] == {} and cluster.node["spec"]["unschedulable"] is False
    assert [r["body"] for r in server.requests if r["method"] == "PATCH"][-1] == {
        "spec": {"unschedulable": False}, "metadata": {"labels": {LB: None}}}


def test_without_cordon_the_label_is_written_alone(k8s_server):
    cluster = Cluster()
    server = k8s_server(cluster)
    result = drain(server, cordon=False, exclude_from_load_balancers=True)
    assert result["changed"] is True and result["cordoned"] is False and result["labels_added"] == [LB]
    assert [r["body"] for r in server.requests if r["method"] == "PATCH"] == [{"metadata": {"labels": {LB: "true"}}}]


ATTACHMENT = {"metadata": {"name": "va-1"}, "spec": {"attacher": "fake.csi", "nodeName": "n1",
                                                     "source": {"persistentVolumeName": "pv-1"}},
              "status": {"attached": True}}


def test_volumes_still_attached_at_their_timeout_stop_a_drained_node_as_volumes_attached(k8s_server):
    cluster = Cluster([pod("a")], attachments=[ATTACHMENT])
    server = k8s_server(cluster)
    failed = failure(server, wait_for_volume_detach=True, volume_detach_timeout=0)
    assert failed.fields["stopped_by"] == "volumes_attached" and cluster.pods == {}
    assert failed.fields["cordoned"] is True and failed.fields["pods"][0]["action"] == "evicted"
    assert failed.fields["volumes"]["detached"] is False and failed.fields["volumes"]["polls"] == 1
    assert failed.msg.startswith("drain of node/n1: the pods are gone, but 1 volume(s) were still attached")
    assert "volumeattachment/va-1 (pv/pv-1, attacher fake.csi, attached)" in failed.msg
    assert failed.fields["api_requests"]["list volumeattachments"] == 1


def test_check_mode_reports_the_attached_volumes_without_waiting_or_failing(k8s_server):
    server = k8s_server(Cluster([pod("a")], attachments=[ATTACHMENT]))
    result = drain(server, check_mode=True, wait_for_volume_detach=True)
    assert result["stopped_by"] is None and result["volumes"]["polls"] == 1
    assert [v["name"] for v in result["volumes"]["pending"]] == ["va-1"]


def test_a_drained_node_without_volumes_passes_the_wait_at_once(k8s_server):
    server = k8s_server(Cluster([pod("a")]))
    result = drain(server, wait_for_volume_detach=True)
    assert result["stopped_by"] is None and result["volumes"]["detached"] is True and result["volumes"]["polls"] == 1
    assert "volumes" not in drain(server)  # not asked, not looked at


def test_a_negative_volume_detach_timeout_is_refused():
    with pytest.raises(ModuleFailure) as failed:
        _drain.drain(params(volume_detach_timeout=-1), False, time.monotonic(), None, None)
    assert failed.value.msg == "volume_detach_timeout must be 0 (look once) or a number of seconds"


def test_an_empty_cordoned_node_is_no_change(k8s_server):
    server = k8s_server(Cluster(unschedulable=True))
    result = drain(server)
    assert result["changed"] is False and result["cordoned"] is True and result["pods"] == []
    assert result["stopped_by"] is None and verbs(server) == [("GET", "n1"), ("GET", "pods")]


def test_check_mode_plans_and_writes_nothing(k8s_server):
    cluster = Cluster([pod("a")], pdbs=[pdb("web", 0)])
    server = k8s_server(cluster)
    result = drain(server, check_mode=True)
    assert result["changed"] is True and result["cordoned"] is True and result["stopped_by"] is None
    assert "unschedulable" not in cluster.node["spec"] and "a" in cluster.pods
    (planned,) = result["pods"]
    assert planned["plan"] == "evict" and planned["action"] == "none"
    assert planned["reason"] == "evictable; pdb shop/web (disruptionsAllowed 0, healthy 2/2)"
    assert all(m == "GET" for m, _p in server.calls())


def test_without_cordon_the_node_is_only_read(k8s_server):
    cluster = Cluster([pod("a")])
    server = k8s_server(cluster)
    result = drain(server, cordon=False)
    assert result["cordoned"] is False and result["stopped_by"] is None and result["changed"] is True
    assert "unschedulable" not in cluster.node["spec"] and ("PATCH", "n1") not in verbs(server)


def test_pods_the_options_do_not_allow_stop_it_as_refused_and_the_cordon_is_undone(k8s_server):
    cluster = Cluster([pod("a"), pod("lonely", owner=None)])
    server = k8s_server(cluster)
    refused = failure(server)
    assert refused.fields["stopped_by"] == "refused"
    assert refused.msg.startswith("cannot drain node/n1, nothing was evicted: 1 pod(s) block it. pods that "
                                  "declare no controller (set force: true to drain them anyway): shop/lonely")
    assert refused.msg.endswith(". The node was left schedulable as it was")
    assert refused.fields["changed"] is False and refused.fields["cordoned"] is False
    assert "node_deleted" not in refused.fields
    lonely = refused.fields["pods"][1]
    assert lonely["plan"] == "refuse" and lonely["action"] == "none"
    assert lonely["reason"] == "would stop the drain: declares no controller, so nothing recreates it"
    assert [b["option"] for b in lonely["blockers"]] == ["force"]
    assert refused.fields["pods"][0]["action"] == "none" and refused.fields["counts"]["none"] == 2
    # cordoned, then uncordoned with one patch and no second read; nothing evicted
    assert verbs(server) == [("GET", "n1"), ("PATCH", "n1"), ("GET", "pods"), ("GET", "poddisruptionbudgets"),
                             ("PATCH", "n1")]
    assert [r["body"] for r in server.requests if r["method"] == "PATCH"] == [
        {"spec": {"unschedulable": True}}, {"spec": {"unschedulable": False}}]
    assert cluster.node["spec"]["unschedulable"] is False and sorted(cluster.pods) == ["a", "lonely"]


def test_a_refusal_on_a_node_cordoned_before_leaves_it_cordoned(k8s_server):
    server = k8s_server(Cluster([pod("agent", owner="DaemonSet")], unschedulable=True, daemonsets={"daemonset-1"}))
    refused = failure(server)
    assert refused.fields["stopped_by"] == "refused" and refused.fields["cordoned"] is True
    assert refused.msg.endswith(". node/n1 stays cordoned as it was before this task")
    assert "set ignore_daemonsets: true" in refused.msg
    assert ("PATCH", "n1") not in verbs(server)


def test_daemonsets_are_looked_up_once_and_orphans_go_with_force(k8s_server):
    pods = [pod("agent-1", owner="DaemonSet"), pod("agent-2", owner="DaemonSet"),
            dict(pod("orphan", owner="DaemonSet"), metadata=dict(pod("orphan")["metadata"], ownerReferences=[
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "gone", "controller": True}]))]
    server = k8s_server(Cluster(pods, daemonsets={"daemonset-1"}))
    result = drain(server, ignore_daemonsets=True, force=True)
    actions = dict((p["name"], p["action"]) for p in result["pods"])
    assert actions == {"agent-1": "skipped", "agent-2": "skipped", "orphan": "evicted"}
    assert result["pods"][2]["warnings"] == ["orphaned DaemonSet pod (daemonset shop/gone not found)"]
    assert result["api_requests"]["get daemonset"] == 2 and result["stopped_by"] is None


def test_a_budget_that_never_has_room_stops_it_at_the_timeout(k8s_server):
    cluster = Cluster([pod("a")], pdbs=[pdb("web", 0)])
    server = k8s_server(cluster)
    started = time.monotonic()
    stopped = failure(server, timeout=1)
    assert time.monotonic() - started < 10
    assert stopped.fields["stopped_by"] == "timeout" and stopped.fields["node_deleted"] is False
    assert stopped.msg.startswith("drain of node/n1 did not finish within the timeout (1s): 1 pod(s) still on "
                                  "the node. shop/a: held back until the timeout, no disruption allowed by pdb "
                                  "shop/web (disruptionsAllowed 0, healthy 2/2)")
    assert stopped.msg.endswith("node/n1 stays cordoned; fix the cause and run the drain again")
    assert stopped.fields["changed"] is True and stopped.fields["cordoned"] is True
    assert stopped.fields["pods"][0]["action"] == "failed" and stopped.fields["counts"]["failed"] == 1
    assert "a" in cluster.pods and cluster.node["spec"]["unschedulable"] is True


def test_a_node_deleted_mid_drain_stops_it_as_node_deleted(k8s_server, monkeypatch):
    monkeypatch.setattr(_eviction, "NODE_CHECK_SECONDS", 0.1)

    def delete_node(cluster):
        cluster.node_gone = True

    server = k8s_server(Cluster([pod("a")], linger=True, on_accept=delete_node))
    started = time.monotonic()
    stopped = failure(server, timeout=30)
    assert time.monotonic() - started < 10, "stopped long before the timeout"
    assert stopped.fields["stopped_by"] == "node_deleted" and stopped.fields["node_deleted"] is True
    assert stopped.msg.startswith("drain of node/n1 stopped: the Node object was deleted during the drain")
    assert "shop/a: still on node/n1 when the node was deleted" in stopped.msg
    assert "stays cordoned" not in stopped.msg


@pytest.mark.parametrize("status, words", [(401, "unauthorized (401)"), (403, "forbidden (403)")])
def test_credentials_refused_while_waiting_stop_it_as_access_lost(k8s_server, status, words):
    answer = (status, status_body(status, "Unauthorized" if status == 401 else "Forbidden", "no"))
    server = k8s_server(Cluster([pod("a"), pod("b")], linger=True, polls_fail=answer))
    started = time.monotonic()
    stopped = failure(server, timeout=30)
    assert time.monotonic() - started < 10, "stopped long before the timeout"
    assert stopped.fields["stopped_by"] == "access_lost" and stopped.fields["node_deleted"] is False
    assert stopped.msg.startswith("drain of node/n1 stopped before its timeout: pods on node/n1: " + words)
    assert "2 pod(s) not confirmed gone: shop/a, shop/b. node/n1 stays cordoned; renew the credentials" in stopped.msg


@pytest.mark.parametrize("answer, reason", [
    ((403, status_body(403, "Forbidden", 'pods "a" is forbidden: no eviction for you')), "eviction refused (403)"),
    ((500, status_body(500, "InternalError", "This pod has more than one PodDisruptionBudget, which the "
                                             "eviction subresource does not support.")),
     "covered by more than one PodDisruptionBudget"),
])
def test_pods_the_api_refuses_for_good_stop_it_as_pod_errors(k8s_server, answer, reason):
    cluster = Cluster([pod("a"), pod("b")], evictions={"a": answer})
    server = k8s_server(cluster)
    started = time.monotonic()
    stopped = failure(server, timeout=30)
    assert time.monotonic() - started < 10, "a refusal is not waited for"
    assert stopped.fields["stopped_by"] == "pod_errors" and stopped.fields["node_deleted"] is False
    assert stopped.msg.startswith("drain of node/n1 failed: 1 pod(s) still on the node. shop/a: " + reason)
    assert stopped.fields["changed"] is True, "pod b was evicted"
    assert [p["action"] for p in stopped.fields["pods"]] == ["failed", "evicted"]
    assert sorted(cluster.pods) == ["a"]


def test_a_server_dry_run_reports_refusals_without_failing_or_cordoning(k8s_server):
    refusal = (429, status_body(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's "
                                                        "disruption budget."))
    cluster = Cluster([pod("a"), pod("b")], pdbs=[pdb("web", 1)], evictions={"b": refusal})
    server = k8s_server(cluster)
    result = drain(server, dry_run="server")
    assert result["stopped_by"] is None and result["changed"] is True
    assert [p["action"] for p in result["pods"]] == ["none", "none"]
    assert "would be accepted" in result["pods"][0]["reason"] and "would be refused" in result["pods"][1]["reason"]
    assert "unschedulable" not in cluster.node["spec"] and sorted(cluster.pods) == ["a", "b"]
    assert all(r["body"]["deleteOptions"]["dryRun"] == ["All"] for r in server.requests if r["method"] == "POST")


def test_budgets_it_may_not_list_are_a_warning_not_a_failure(k8s_server):
    server = k8s_server(Cluster([pod("a")], pdbs=None))
    warned = []
    result = drain(server, warned=warned)
    assert result["stopped_by"] is None and result["pods"][0]["action"] == "evicted"
    assert result["pods"][0]["pdb"] == [] and "warnings" not in result
    (warning,) = warned
    assert warning.startswith("cannot list PodDisruptionBudgets (403); evictions a budget refuses are retried every 5s")


def test_disable_eviction_deletes_and_lists_no_budgets(k8s_server):
    cluster = Cluster([pod("a")], pdbs=[pdb("web", 0)])
    server = k8s_server(cluster)
    result = drain(server, disable_eviction=True, grace_period=0)
    assert result["pods"][0]["action"] == "deleted" and cluster.pods == {}
    assert "list pdbs" not in result["api_requests"] and result["api_requests"]["delete"] == 1
    (delete,) = [r for r in server.requests if r["method"] == "DELETE"]
    assert delete["body"]["gracePeriodSeconds"] == 0


def evicted_in_order(server):
    return [r["path"].split("/")[6] for r in server.requests if r["path"].endswith("/eviction")]


def test_pods_go_in_tiers_lowest_priority_first_critical_last(k8s_server):
    cluster = Cluster([pod("dns", class_name="system-cluster-critical", priority=2000000000),
                       pod("web-1", priority=100), pod("batch", priority=-5), pod("web-2", priority=100)],
                      pdbs=[pdb("web", 2)])
    server = k8s_server(cluster)
    result = drain(server)
    assert result["stopped_by"] is None and cluster.pods == {}
    order = evicted_in_order(server)
    assert order[0] == "batch" and sorted(order[1:3]) == ["web-1", "web-2"] and order[3] == "dns"
    assert [(t["index"], t["critical"], t["priority"], t["pods"], t["state"]) for t in result["tiers"]] == [
        (1, False, -5, 1, "drained"), (2, False, 100, 2, "drained"), (3, True, 2000000000, 1, "drained")]
    assert [p["tier"]["index"] for p in result["pods"]] == [3, 2, 1, 2]
    # the budgets are read again before each later tier, the node's pods listed between the tiers
    assert result["api_requests"]["list pdbs"] == 3
    calls = [p.rsplit("/", 1)[-1] for _m, p in server.calls()]
    first_web = min(i for i, name in enumerate(calls) if name == "eviction" and i > calls.index("eviction"))
    assert "pods" in calls[calls.index("eviction") + 1:first_web]


def test_check_mode_shows_the_tiers_and_the_rules_without_evicting(k8s_server):
    cluster = Cluster([pod("db-0", labels={"app": "db"}), pod("web"), pod("dns", class_name="system-node-critical"),
                       pod("agent", owner="DaemonSet")], daemonsets={"daemonset-1"})
    server = k8s_server(cluster)
    rules = [{"selector": {"matchLabels": {"app": "db"}}, "namespace_selector": None, "order": 10}]
    result = drain(server, check_mode=True, drain_rules=rules, ignore_daemonsets=True)
    assert [(t["index"], t["order"], t["critical"], t["pods"], t["state"]) for t in result["tiers"]] == [
        (1, 0, False, 1, "planned"), (2, 10, False, 1, "planned"), (3, 0, True, 1, "planned")]
    tiers = dict((p["name"], (p["tier"] and p["tier"]["index"], p["drain_rule"])) for p in result["pods"])
    assert tiers == {"db-0": (2, 0), "web": (1, None), "dns": (3, None), "agent": (None, None)}
    assert all(m == "GET" for m, _p in server.calls()) and len(cluster.pods) == 4


def test_drain_order_none_without_rules_is_one_tier_as_kubectl(k8s_server):
    server = k8s_server(Cluster([pod("dns", class_name="system-cluster-critical"), pod("batch", priority=-5)]))
    result = drain(server, drain_order="none")
    assert [(t["index"], t["critical"], t["priority"], t["pods"]) for t in result["tiers"]] == [(1, None, None, 2)]
    assert result["pods"][0]["tier"] == {"index": 1, "order": 0, "critical": None, "priority": None}


def test_a_namespace_selector_lists_the_namespaces_once(k8s_server):
    cluster = Cluster([pod("a", namespace="warehouse"), pod("b", namespace="shop")],
                      namespaces={"warehouse": {"team": "data"}, "shop": {"team": "web"}})
    server = k8s_server(cluster)
    rules = [{"selector": None, "namespace_selector": {"matchLabels": {"team": "data"}}, "order": 5}]
    result = drain(server, drain_rules=rules)
    assert evicted_in_order(server) == ["b", "a"]
    assert result["api_requests"]["list namespaces"] == 1
    assert [(p["name"], p["tier"]["order"], p["drain_rule"]) for p in result["pods"]] == [("a", 5, 0), ("b", 0, None)]
    plain = k8s_server(Cluster([pod("c")]))
    assert "list namespaces" not in drain(plain)["api_requests"]


def test_bad_drain_rules_fail_before_anything_is_asked_of_the_api():
    def connect():
        raise AssertionError("no client for bad options")

    rules = [{"selector": {"matchExpressions": [{"key": "app", "operator": "in", "values": ["db"]}]},
              "namespace_selector": None, "order": 1}]
    with pytest.raises(ModuleFailure) as failed:
        _drain.drain(params(drain_rules=rules), False, time.monotonic(), connect, None)
    assert failed.value.msg == ("drain_rules[0].selector: matchExpressions[0]: operator 'in' is not one of In, "
                                "NotIn, Exists, DoesNotExist")


def test_a_tier_that_times_out_is_named_with_its_pods_and_the_later_tiers_wait(k8s_server):
    cluster = Cluster([pod("dns", class_name="system-cluster-critical"), pod("web")], linger=True)
    server = k8s_server(cluster)
    stopped = failure(server, timeout=1)
    assert stopped.fields["stopped_by"] == "timeout"
    assert stopped.msg.startswith(
        "drain of node/n1 did not finish within the timeout (1s): tier 1 of 2 (order 0, priority 0) was in "
        "progress, held by shop/web; 1 later tier(s) with 1 pod(s) not started: 2 pod(s) still on the node. "
        "shop/web: evicted ")
    assert ("shop/dns: not evicted: tier 2 (order 0, system-critical, priority 0) starts only when tier 1 "
            "(order 0, priority 0) is gone, which still had shop/web. node/n1 stays cordoned") in stopped.msg
    assert evicted_in_order(server) == ["web"]
    assert [t["state"] for t in stopped.fields["tiers"]] == ["unfinished", "not_started"]
    assert stopped.fields["tiers"][0]["held_by"] == ["shop/web"]


def test_an_unknown_node_raises_the_api_error_for_the_module_to_translate(k8s_server):
    server = k8s_server(Cluster())
    with pytest.raises(Exception) as failed:
        drain(server, name="gone")
    assert getattr(failed.value, "status", None) == 404 and not isinstance(failed.value, ModuleFailure)


# --- the pure parts ---------------------------------------------------------------------------

def test_stop_reason_puts_lost_access_first_then_the_deleted_node_then_the_timeout():
    assert _drain.stop_reason(True, True, "401") == _drain.STOPPED_ACCESS_LOST
    assert _drain.stop_reason(True, True) == _drain.STOPPED_NODE_DELETED
    assert _drain.stop_reason(True) == _drain.STOPPED_TIMEOUT
    assert _drain.stop_reason(False) == _drain.STOPPED_POD_ERRORS
    assert set(_drain.STOPPED_BY) == {"refused", "timeout", "node_deleted", "access_lost", "pod_errors", "volumes_attached",
                                      "uncordoned", "replacement_not_ready"}


def failed_pods(count):
    return [{"namespace": "shop", "name": "p%d" % i, "action": "failed", "reason": "stuck"} for i in range(count)] + [
        {"namespace": "shop", "name": "done", "action": "evicted", "reason": "gone"}]


def test_failure_messages_name_at_most_fifteen_pods():
    many = failed_pods(17)
    timeout = _drain.failure_message("n1", many, True, "timeout", 60)
    assert timeout.startswith("drain of node/n1 did not finish within the timeout (60s): 17 pod(s) still on the "
                              "node. shop/p0: stuck; ")
    assert "shop/p14: stuck; and 2 more (see pods). node/n1 stays cordoned" in timeout and "p15" not in timeout
    lost = _drain.failure_message("n1", many, True, "access_lost", 60, stopped="pods on node/n1: unauthorized (401)")
    assert "17 pod(s) not confirmed gone: shop/p0, " in lost and "shop/p14 and 2 more. node/n1 stays" in lost
    uncordoned = _drain.failure_message("n1", failed_pods(1), False, "pod_errors", 60)
    assert uncordoned == ("drain of node/n1 failed: 1 pod(s) still on the node. shop/p0: stuck. "
                          "node/n1 was not cordoned (cordon: false)")
    deleted = _drain.failure_message("n1", failed_pods(1), True, "node_deleted", 60)
    assert "The 1 pod(s) still bound to it are deleted by the pod garbage collector" in deleted
    assert deleted.endswith("shop/p0: stuck. Find out who deleted the node before it rejoins the cluster")


def test_results_follow_the_pod_list_and_untouched_pods_cost_nothing():
    entries = [{"namespace": "a", "name": "x", "reason": "r"}, {"namespace": "a", "name": "y", "reason": "r"}]
    assert [r["name"] for r in _drain.ordered([dict(entries[1]), dict(entries[0])], entries)] == ["x", "y"]
    out = _drain.static_result(entries[0], "skipped")
    assert out == {"namespace": "a", "name": "x", "reason": "r", "action": "skipped", "attempts": 0, "seconds": 0.0}
    assert _drain.static_result(entries[0], "none", "why")["reason"] == "why" and "action" not in entries[0]


# --- opt-outs and the re-cordon guard (issue #20) -------------------------------------------------

def test_a_pod_protected_by_an_opt_out_refuses_the_drain_and_the_cordon_is_undone(k8s_server):
    protected = pod("db-0", owner="StatefulSet")
    protected["metadata"]["annotations"] = {"karpenter.sh/do-not-disrupt": "true"}
    cluster = Cluster([pod("a"), protected])
    server = k8s_server(cluster)
    refused = failure(server)
    assert refused.fields["stopped_by"] == "refused" and refused.fields["cordoned"] is False
    assert ("pods with annotation karpenter.sh/do-not-disrupt (set ignore_opt_outs: [karpenter] to drain them "
            "anyway): shop/db-0") in refused.msg
    assert cluster.node["spec"]["unschedulable"] is False and sorted(cluster.pods) == ["a", "db-0"]
    result = drain(k8s_server(Cluster([pod("a"), protected])), ignore_opt_outs=["karpenter"])
    assert [p["action"] for p in result["pods"]] == ["evicted", "evicted"]


def test_check_mode_reports_skip_and_wait_completed_and_writes_nothing(k8s_server):
    skipped, waited = pod("agent-x"), pod("job-1", owner="Job")
    skipped["metadata"]["labels"]["cluster.x-k8s.io/drain"] = "skip"
    waited["metadata"]["labels"]["cluster.x-k8s.io/drain"] = "wait-completed"
    cluster = Cluster([pod("a"), skipped, waited])
    server = k8s_server(cluster)
    result = drain(server, check_mode=True)
    assert [(p["name"], p["plan"], p["action"]) for p in result["pods"]] == [
        ("a", "evict", "none"), ("agent-x", "skip", "skipped"), ("job-1", "wait_completed", "none")]
    assert "recordoned" not in result and all(m == "GET" for m, _p in server.calls())


def uncordon_mid_drain(cluster, newcomer=None):
    """A second writer: uncordons the node while a spent budget holds the drain (and, with
    ``newcomer``, the scheduler puts a pod on it meanwhile), then the budget gets room."""
    def uncordon():
        cluster.node["spec"]["unschedulable"] = False
        if newcomer:
            cluster.pods[newcomer["metadata"]["name"]] = newcomer

    def relax():
        cluster.pdbs = [pdb("web", 1)]
    threading.Timer(0.3, uncordon).start()
    threading.Timer(1.0, relax).start()


def test_an_uncordon_mid_drain_is_undone_warned_and_recorded_as_an_event(k8s_server, monkeypatch):
    monkeypatch.setattr(_eviction, "NODE_CHECK_SECONDS", 0.1)
    cluster = Cluster([pod("a")], pdbs=[pdb("web", 0)])
    server = k8s_server(cluster)
    uncordon_mid_drain(cluster)
    warned = []
    result = drain(server, warned=warned)
    assert result["stopped_by"] is None and result["recordoned"] == 1 and result["changed"] is True
    assert cluster.node["spec"]["unschedulable"] is True and cluster.pods == {}
    assert [w for w in warned if "was found schedulable during its drain" in w] == warned and len(warned) == 1
    (event,) = cluster.events
    assert event["reason"] == "MaintenanceRecordoned" and event["type"] == "Warning"
    assert event["involvedObject"]["name"] == "n1" and "cordoned it again" in event["message"]
    patches = [r["body"] for r in server.requests if r["method"] == "PATCH"]
    assert patches == [{"spec": {"unschedulable": True}}] * 2
    assert result["api_requests"]["create event"] == 1


def test_pods_that_landed_while_uncordoned_fail_the_drain_as_uncordoned(k8s_server, monkeypatch):
    monkeypatch.setattr(_eviction, "NODE_CHECK_SECONDS", 0.1)
    cluster = Cluster([pod("a")], pdbs=[pdb("web", 0)])
    server = k8s_server(cluster)
    uncordon_mid_drain(cluster, newcomer=pod("late", labels={"app": "other"}))
    failed = failure(server, warned=[])
    assert failed.fields["stopped_by"] == "uncordoned" and failed.fields["recordoned"] == 1
    assert failed.fields["arrived_while_uncordoned"] == ["shop/late"]
    assert [p["action"] for p in failed.fields["pods"]] == ["evicted"]
    assert "1 pod(s) were scheduled to it meanwhile that this drain did not move: shop/late" in failed.msg
    assert "run the drain again" in failed.msg and cluster.node["spec"]["unschedulable"] is True
    # A second run drains the newcomer.
    again = drain(server)
    assert [p["name"] for p in again["pods"]] == ["late"] and again["recordoned"] == 0 and cluster.pods == {}
