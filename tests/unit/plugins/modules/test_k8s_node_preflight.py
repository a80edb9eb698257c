"""k8s_node_preflight's snapshot reader and module run over HTTP (a scripted API server on 127.0.0.1).

The checks themselves are tested in tests/unit/plugins/module_utils/test__preflight.py; a real API
server and the speed target are exercised by tests/integration/test_k8s_node_preflight.py and
benchmarks/bench_preflight.py.
"""
from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _preflight
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    K8sAccessError,
    build_api_client,
)
from ansible_collections.kubeops.node_maintenance.plugins.modules import k8s_node_preflight as module
from tests.unit.fake_k8s_server import (
    STAMPS,
    TOKEN,
    by_path,
    generated_classes,
    item_list,
    run_module,
    status_body,
)

# One name per line: ansible-lint reads files under tests/unit/plugins/modules/ for module docs
# and warns about tuple assignments at module level.
PODS = "/api/v1/pods"
NODES = "/api/v1/nodes"
REPLICASETS = "/apis/apps/v1/replicasets"
PDBS = "/apis/policy/v1/poddisruptionbudgets"
PVS = "/api/v1/persistentvolumes"


def api_node(name, cpu="4", stamp=STAMPS[0]):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}, "creationTimestamp": stamp},
            "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": stamp,
                                       "lastTransitionTime": stamp}]}}


def api_pod(name, node, app="web", cpu="500m", deleting=None, stamp=STAMPS[0], owner="web-1"):
    metadata = {"name": name, "namespace": "shop", "labels": {"app": app}, "creationTimestamp": stamp,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                     "uid": "u-" + owner, "controller": True}]}
    if deleting:
        metadata["deletionTimestamp"] = deleting
    return {"metadata": metadata,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx:1",
                                                       "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]},
            "status": {"phase": "Running", "startTime": stamp,
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": stamp}]}}


def api_replicaset(name, deployment):
    return {"metadata": {"name": name, "namespace": "shop",
                         "ownerReferences": [{"kind": "Deployment", "name": deployment, "controller": True}]}}


def api_pdb(allowed):
    return {"metadata": {"name": "web", "namespace": "shop", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 1},
            "status": {"observedGeneration": 1, "disruptionsAllowed": allowed, "currentHealthy": 2,
                       "desiredHealthy": 1, "expectedPods": 2}}


class Pager:
    """A list route that pages like the API server: ``limit``, ``continue`` tokens (in the list's
    metadata, before the items), a 410 for a token named in ``expire``."""

    def __init__(self, kind, items, expire=(), times=1):
        self.kind = kind
        self.items = list(items)
        self.expire = {token: times for token in expire}
        self.queries = []
        self.lock = threading.Lock()

    def __call__(self, query):
        with self.lock:
            self.queries.append(query)
        token = query.get("continue")
        if self.expire.get(token):
            self.expire[token] -= 1
            return 410, status_body(410, "Expired",
                                    "The provided continue parameter is too old to display a consistent list result.")
        start = int(token[1:]) if token else 0
        limit = int(query.get("limit") or len(self.items) or 1)
        end = start + limit
        return 200, item_list(self.kind, self.items[start:end], "p%d" % end if end < len(self.items) else None)


def cluster(pods_pager=None, **overrides):
    routes = {
        PODS: pods_pager or Pager("PodList", [api_pod("web-a", "n1"), api_pod("web-b", "n2"),
                                              api_pod("api-a", "n1", app="api", owner="api-1"),
                                              api_pod("old", "n1", deleting=STAMPS[0])]),
        NODES: Pager("NodeList", [api_node("n1"), api_node("n2"), api_node("n3")]),
        REPLICASETS: Pager("ReplicaSetList", [api_replicaset("web-1", "web"), api_replicaset("api-1", "api")]),
        PDBS: Pager("PodDisruptionBudgetList", [api_pdb(1)]),
        PVS: Pager("PersistentVolumeList", []),
    }
    routes.update(overrides)
    return routes


def snapshot_of(server, page_size=2, focus=("n1",), timeout=10):
    return module.read_snapshot(build_api_client(server.params), list(focus), page_size, time.monotonic() + timeout)


def test_every_list_is_read_page_by_page_with_its_query(k8s_server):
    routes = cluster()
    server = k8s_server(by_path(routes))
    snapshot, calls = snapshot_of(server, page_size=2)
    assert sorted(p.name for p in snapshot.pods) == ["api-a", "old", "web-a", "web-b"]
    assert sorted(snapshot.nodes) == ["n1", "n2", "n3"]
    assert snapshot.replicaset_owners == {("shop", "web-1"): ("Deployment", "web"), ("shop", "api-1"): ("Deployment", "api")}
    assert [p.name for p in snapshot.pdbs] == ["web"]
    # pods: 2 pages, nodes: 2, replicasets: 1, pdbs: 1, pvs: 1
    assert calls == 7 == len(server.requests)
    assert routes[PODS].queries == [
        {"fieldSelector": module.UNFINISHED_PODS, "limit": "2"},
        {"fieldSelector": module.UNFINISHED_PODS, "limit": "2", "continue": "p2"},
    ]
    assert routes[NODES].queries == [{"limit": "2"}, {"limit": "2", "continue": "p2"}]
    assert routes[PVS].queries == [{"limit": "2"}]
    for request in server.requests:
        assert request["headers"]["authorization"] == "Bearer " + TOKEN
        assert request["headers"]["user-agent"] == "kubeops.node_maintenance/k8s_node_preflight"
        assert request["headers"]["accept"] == "application/json"


def test_an_expired_continue_token_starts_that_list_over_once(k8s_server):
    pods = Pager("PodList", [api_pod("p%d" % i, "n1") for i in range(5)], expire=["p2"])
    server = k8s_server(by_path(cluster(pods)))
    snapshot, calls = snapshot_of(server, page_size=2)
    assert sorted(p.name for p in snapshot.pods) == ["p%d" % i for i in range(5)]  # none twice
    assert [q.get("continue") for q in pods.queries] == [None, "p2", None, "p2", "p4"]
    assert calls == len(server.requests) - 1  # the 410 is not a page


def test_a_second_expiry_is_an_error(k8s_server):
    pods = Pager("PodList", [api_pod("p%d" % i, "n1") for i in range(5)], expire=["p2"], times=2)
    server = k8s_server(by_path(cluster(pods)))
    with pytest.raises(K8sAccessError) as caught:
        snapshot_of(server, page_size=2)
    assert caught.value.status == 410
    assert caught.value.message.startswith("pods in all namespaces: gone (410): The provided continue parameter")


def test_forbidden_list_names_the_list_and_the_rbac_fix(k8s_server):
    message = ('poddisruptionbudgets.policy is forbidden: User "x" cannot list resource "poddisruptionbudgets" '
               'in API group "policy" at the cluster scope')
    server = k8s_server(by_path(cluster(**{PDBS: lambda q: (403, status_body(403, "Forbidden", message))})))
    with pytest.raises(K8sAccessError) as caught:
        snapshot_of(server)
    assert caught.value.status == 403
    assert caught.value.message == (
        "pdb in all namespaces: forbidden (403): %s; the identity in use lacks the RBAC right; grant it with a "
        "(Cluster)Role and binding, and check with `kubectl auth can-i list poddisruptionbudgets.policy`" % message)


def test_transient_answers_are_retried_and_not_counted_as_pages(k8s_server):
    answers = [(503, status_body(503, "ServiceUnavailable", "busy"))]
    nodes = Pager("NodeList", [api_node("n1"), api_node("n2")])
    server = k8s_server(by_path(cluster(**{NODES: lambda q: answers.pop(0) if answers else nodes(q)})))
    snapshot, calls = snapshot_of(server, page_size=500)
    assert sorted(snapshot.nodes) == ["n1", "n2"]
    assert calls == 5 and len(server.requests) == 6


def test_a_page_that_is_not_json_is_an_access_error(k8s_server):
    server = k8s_server(by_path(cluster(**{PVS: lambda q: (200, b"<html>proxy login</html>")})))
    with pytest.raises(K8sAccessError) as caught:
        snapshot_of(server)
    assert caught.value.message.startswith("persistentvolumes: JSONDecodeError: ")


@pytest.mark.parametrize("stamp", STAMPS)
def test_timestamps_in_either_form_read_the_same(k8s_server, stamp):
    """A pod with a deletionTimestamp is terminating (not evicted, holds no room to move), whichever
    way the timestamp is written, on the drained node and elsewhere."""
    pods = Pager("PodList", [api_pod("web-a", "n1", stamp=stamp), api_pod("gone", "n1", deleting=stamp, stamp=stamp),
                             api_pod("gone-2", "n2", deleting=stamp, stamp=stamp)])
    server = k8s_server(by_path(cluster(pods, **{NODES: Pager("NodeList", [api_node(n, stamp=stamp) for n in ("n1", "n2")])})))
    snapshot, _calls = snapshot_of(server)
    deleting = {p.name: p.deleting for p in snapshot.pods}
    assert deleting == {"web-a": False, "gone": True, "gone-2": True}
    assert all(node.ready for node in snapshot.nodes.values())
    ok, results = _preflight.run_checks(snapshot, ["n1"], checks=["capacity"], fail_on=["capacity"])
    assert ok and results["capacity"]["summary"].startswith("1 of 1 evicted pods fit")


def test_module_run_reads_the_api_without_the_generated_classes(k8s_server, tmp_path):
    pods = Pager("PodList", [api_pod("web-%d" % i, "n1" if i % 2 else "n2") for i in range(7)]
                 + [api_pod("solo", "n1", app="solo", owner="solo-1")])
    routes = cluster(pods, **{
        REPLICASETS: Pager("ReplicaSetList", [api_replicaset("web-1", "web"), api_replicaset("solo-1", "solo")]),
        PDBS: Pager("PodDisruptionBudgetList", [api_pdb(0)]),
    })
    server = k8s_server(by_path(routes))
    result, imported = run_module("k8s_node_preflight", dict(server.params, name=["n1"], page_size=3), tmp_path)
    assert generated_classes(imported) == []
    assert result["failed"] is True and result["ok"] is False and result["changed"] is False
    assert result["checks"]["pdb"]["status"] == "fail" and result["checks"]["capacity"]["status"] == "pass"
    assert result["checks"]["single_node_workloads"]["status"] == "warn"
    assert result["msg"].startswith("preflight refuses to drain node/n1: pdb: 1 finding(s), e.g. "
                                    "poddisruptionbudget/shop/web allows 0 disruptions now")
    assert result["snapshot"]["pods"] == 8 and result["snapshot"]["nodes"] == 3 and result["snapshot"]["pdbs"] == 1
    assert result["snapshot"]["list_calls"] == 3 + 1 + 1 + 1 + 1 == len(server.requests)


def test_module_run_names_a_missing_node(k8s_server, tmp_path):
    server = k8s_server(by_path(cluster()))
    result, _imported = run_module("k8s_node_preflight", dict(server.params, name=["n9"]), tmp_path)
    assert result["failed"] is True
    assert result["msg"] == "node/n9: not found; `kubectl get nodes` lists the names"


def test_module_run_fails_with_the_translated_error(k8s_server, tmp_path):
    server = k8s_server(by_path(cluster(**{PODS: lambda q: (401, status_body(401, "Unauthorized", "Unauthorized"))})))
    result, _imported = run_module("k8s_node_preflight", dict(server.params, name=["n1"]), tmp_path)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("preflight of node/n1: pods in all namespaces: unauthorized (401): Unauthorized; "
                                    "the API server did not accept the credentials")
