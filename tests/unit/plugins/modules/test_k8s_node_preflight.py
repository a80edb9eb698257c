"""k8s_node_preflight run as Ansible runs it, over HTTP (a scripted API server on 127.0.0.1).

The snapshot reader and the checks are tested in tests/unit/plugins/module_utils/test__preflight.py;
a real API server and the speed target are exercised by tests/integration/test_k8s_node_preflight.py
and benchmarks/bench_preflight.py.
"""
from __future__ import annotations

import json

from tests.unit.fake_k8s_server import (
    by_path,
    generated_classes,
    not_found,
    run_module,
    status_body,
)
from tests.unit.plugins.module_utils.test__preflight import (
    PDBS,
    PODS,
    REPLICASETS,
    Pager,
    api_node,
    api_pdb,
    api_pod,
    api_replicaset,
    cluster,
)


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
    assert result["nodes"] == ["n1"] and result["object"] == "node/n1" and result["status"] is None
    assert {r["headers"]["user-agent"] for r in server.requests} == {"kubeops.node_maintenance/k8s_node_preflight"}


def test_module_run_names_a_missing_node(k8s_server, tmp_path):
    server = k8s_server(by_path(cluster()))
    result, _imported = run_module("k8s_node_preflight", dict(server.params, name=["n9"]), tmp_path)
    assert result["failed"] is True
    assert result["msg"] == "node/n9: not found; `kubectl get nodes` lists the names"
    assert result["nodes"] == ["n9"] and result["changed"] is False and result["object"] == "node/n9"


def test_module_run_fails_with_the_translated_error(k8s_server, tmp_path):
    server = k8s_server(by_path(cluster(**{PODS: lambda q: (401, status_body(401, "Unauthorized", "Unauthorized"))})))
    result, _imported = run_module("k8s_node_preflight", dict(server.params, name=["n1"]), tmp_path)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith("preflight of node/n1: pods in all namespaces: unauthorized (401): Unauthorized; "
                                    "the API server did not accept the credentials")
    assert result["status"] == 401 and result["nodes"] == ["n1"] and isinstance(result["seconds"], float)


def test_module_run_checks_each_node_once_and_passes(k8s_server, tmp_path):
    server = k8s_server(by_path(cluster()))
    result, _imported = run_module("k8s_node_preflight", dict(server.params, nodes=["n2", "n2"], fail_on=[]), tmp_path)
    assert "failed" not in result and result["ok"] is True and result["nodes"] == ["n2"]
    assert result["msg"].startswith("preflight passed for node/n2 (capacity: pass, ")


def test_module_run_refuses_a_bad_page_size_before_connecting(tmp_path):
    args = {"host": "https://127.0.0.1:1", "api_key": "x", "name": ["n1"], "page_size": 0}
    result, _imported = run_module("k8s_node_preflight", args, tmp_path)
    assert result["failed"] is True and result["msg"] == "page_size must be at least 1, got 0"
    assert result["nodes"] == ["n1"] and result["object"] == "node/n1" and result["status"] is None


class RecordingCluster:
    """The preflight's lists (``cluster()``), and the nodes' records (GET and merge PATCH of
    /api/v1/nodes/<name>) and Events, for the ``records`` option."""

    def __init__(self, node_names, **routes):
        self.lists = by_path(cluster(**routes))
        self.nodes = {name: api_node(name) for name in node_names}
        for node in self.nodes.values():
            node["metadata"].update(annotations={}, resourceVersion="1")
        self.events = []

    def __call__(self, request):
        method, path = request["method"], request["path"]
        if path == "/api/v1/namespaces/default/events" and method == "POST":
            self.events.append(request["body"])
            return 201, request["body"]
        name = path[len("/api/v1/nodes/"):] if path.startswith("/api/v1/nodes/") else None
        if name is not None:
            node = self.nodes.get(name)
            if node is None:
                return not_found("nodes", name)
            if method == "PATCH":
                node["metadata"]["annotations"].update(request["body"]["metadata"]["annotations"])
            return 200, node
        return self.lists(request)

    def record(self, name):
        return json.loads(self.nodes[name]["metadata"]["annotations"].get("maintenance.kubeops.io/state", "{}"))


def batch_records(*names):
    return [{"node": name, "rollout": "r1", "phase": "preflight", "msg": "preflight started",
             "event": {"reason": "MaintenancePreflight", "msg": "kubeops rollout r1: preflight started"}}
            for name in names]


def test_records_write_each_node_of_the_batch_before_the_checks(k8s_server, tmp_path):
    store = RecordingCluster(["n1", "n2"])
    server = k8s_server(store)
    result, _imported = run_module("k8s_node_preflight", dict(server.params, name=["n1", "n2"], fail_on=[],
                                                              records=batch_records("n1", "n2")), tmp_path)
    assert not result.get("failed"), result
    assert result["nodes"] == ["n1", "n2"] and sorted(result["phase_records"]) == ["n1", "n2"]
    for name in ("n1", "n2"):
        record = store.record(name)
        assert (record["rollout"], record["phase"], record["status"]) == ("r1", "preflight", "in_progress")
        assert result["phase_records"][name] == record
    assert [e["involvedObject"]["name"] for e in store.events] == ["n1", "n2"]
    assert {e["reason"] for e in store.events} == {"MaintenancePreflight"}
    # the records first, then the lists
    calls = server.calls()
    assert [m for m, _p in calls[:6]] == ["GET", "PATCH", "POST", "GET", "PATCH", "POST"]
    assert all(p.startswith("/api/v1/nodes/") or "events" in p for _m, p in calls[:6])
    assert "/api/v1/pods" in [p for _m, p in calls[6:]]


def test_records_in_check_mode_write_nothing_and_a_missing_node_stops_before_the_checks(k8s_server, tmp_path):
    store = RecordingCluster(["n1"])
    server = k8s_server(store)
    result, _imported = run_module("k8s_node_preflight", dict(server.params, name=["n1"], fail_on=[],
                                                              records=batch_records("n1")), tmp_path, check_mode=True)
    assert result["phase_records"]["n1"]["phase"] == "preflight" and store.record("n1") == {} and store.events == []
    assert "PATCH" not in [m for m, _p in server.calls()]
    before = len(server.calls())
    missing, _imported = run_module("k8s_node_preflight", dict(server.params, name=["n1", "n2"],
                                                               records=batch_records("n1", "n2")), tmp_path)
    assert missing["failed"] is True and missing["status"] == 404 and "node/n2: not found" in missing["msg"]
    written_first = ["/api/v1/nodes/n1", "/api/v1/nodes/n1", "/api/v1/namespaces/default/events", "/api/v1/nodes/n2"]
    assert [p for _m, p in server.calls()[before:]] == written_first
    args = dict(server.params, name=["n1"], records=batch_records("n1"), record=batch_records("n1")[0])
    both, _imported = run_module("k8s_node_preflight", args, tmp_path)
    assert both["failed"] is True and "mutually exclusive" in both["msg"]


def test_replacement_first_reads_only_the_deployments_of_opted_in_pods_by_name(k8s_server, tmp_path):
    deployments = "/apis/apps/v1/namespaces/shop/deployments"
    web = {"metadata": {"name": "web", "namespace": "shop"},
           "spec": {"replicas": 2, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}},
           "status": {"readyReplicas": 2}}
    seen = []

    def deployment_list(query):
        seen.append(query)
        wanted = query.get("fieldSelector", "").split("=", 1)[-1]
        items = [web] if wanted == "web" else []
        return 200, {"kind": "DeploymentList", "metadata": {"resourceVersion": "7"}, "items": items}

    pods = Pager("PodList", [api_pod("web-a", "n1"), api_pod("web-b", "n1"),
                             api_pod("api-a", "n2", app="api", owner="api-1")])
    server = k8s_server(by_path(cluster(pods, **{deployments: deployment_list})))
    # off for the run and no pod annotated: no Deployment is read, the check passes
    result, _imported = run_module("k8s_node_preflight", dict(server.params, name=["n1"], fail_on=[]), tmp_path)
    assert result["checks"]["replacement_first"]["status"] == "pass" and seen == []
    # on: the one Deployment with pods on n1 is read by name, and would be restarted first
    result, _imported = run_module("k8s_node_preflight", dict(server.params, name=["n1"], fail_on=[],
                                                              replacement_first=True), tmp_path)
    assert not result.get("failed"), result
    check = result["checks"]["replacement_first"]
    (finding,) = check["findings"]
    assert check["status"] == "warn" and (finding["name"], finding["state"]) == ("web", "would_replace")
    assert finding["pods"] == ["web-a", "web-b"] and "every ready replica (2) is on the node" in finding["reason"]
    assert [q.get("fieldSelector") for q in seen] == ["metadata.name=web"]
    assert result["snapshot"]["list_calls"] == 5 + 1
