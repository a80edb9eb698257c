"""k8s_workloads_healthy's poll loop and list grouping, with a fake reader and clock.

The real API server is exercised by tests/integration/test_k8s_workloads_healthy.py.
"""
from __future__ import annotations

from ansible_collections.kubeops.node_maintenance.plugins.modules import k8s_workloads_healthy as module


def deployment(name, ready, replicas=3):
    return {"metadata": {"name": name, "namespace": "shop", "generation": 1},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": name}}}},
            "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": ready,
                       "availableReplicas": ready, "updatedReplicas": replicas}}


class FakeReader:
    """Deployments whose ready count grows by one per poll; records every list call."""

    def __init__(self, start_ready, grow=1):
        self.ready = dict(start_ready)
        self.grow = grow
        self.calls = []

    def list(self, kind, namespace, names=None):
        self.calls.append((kind, namespace, None if names is None else tuple(sorted(names))))
        if kind == "Deployment":
            items = [deployment(name, ready) for name, ready in self.ready.items()]
            self.ready = {name: min(3, ready + self.grow) for name, ready in self.ready.items()}
            return [i for i in items if names is None or i["metadata"]["name"] in names]
        if kind == "PodDisruptionBudget":
            return [{"metadata": {"name": "web", "namespace": namespace, "generation": 1},
                     "spec": {"selector": {"matchLabels": {"app": "web"}}},
                     "status": {"observedGeneration": 1, "currentHealthy": 3, "desiredHealthy": 2}}]
        return []


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


REFS = [{"kind": "Deployment", "namespace": "shop", "name": "web"},
        {"kind": "Deployment", "namespace": "shop", "name": "api"}]


def test_one_list_per_kind_and_namespace_per_poll_until_healthy():
    reader = FakeReader({"web": 1, "api": 2})
    clock = Clock()
    result = module.wait_healthy(reader, REFS, [], True, timeout=60, poll_interval=2,
                                 sleep=clock.sleep, clock=clock)
    assert result["healthy"] is True and result["polls"] == 3 and result["seconds"] == 4.0
    deployment_calls = [c for c in reader.calls if c[0] == "Deployment"]
    assert deployment_calls == [("Deployment", "shop", ("api", "web"))] * 3
    # PDBs of the namespace listed once per poll, unfiltered, to match selectors
    assert [c for c in reader.calls if c[0] == "PodDisruptionBudget"] == [("PodDisruptionBudget", "shop", None)] * 3
    assert result["pdbs"][0]["matched_workloads"] == ["deployment shop/web"]


def test_timeout_reports_what_is_missing():
    reader = FakeReader({"web": 2}, grow=0)
    clock = Clock()
    result = module.wait_healthy(reader, REFS[:1], [], False, timeout=5, poll_interval=2,
                                 sleep=clock.sleep, clock=clock)
    assert result["healthy"] is False
    assert result["unhealthy"] == ["deployment shop/web: 2/3 ready, 2/3 available"]
    assert clock.now == 5.0 and result["polls"] == 4
    assert result["pdbs"] == []
    assert not [c for c in reader.calls if c[0] == "PodDisruptionBudget"]


def test_timeout_zero_polls_once():
    reader = FakeReader({"web": 3})
    clock = Clock()
    result = module.wait_healthy(reader, REFS[:1], [], False, timeout=0, poll_interval=2,
                                 sleep=clock.sleep, clock=clock)
    assert result["healthy"] is True and result["polls"] == 1


# ------------------------------------------------------------------------------------------------
# ClusterReader and the module over HTTP (a scripted API server on 127.0.0.1)
# ------------------------------------------------------------------------------------------------

import time  # noqa: E402

import pytest  # noqa: E402

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (  # noqa: E402
    K8sAccessError,
)
from tests.unit.fake_k8s_server import (  # noqa: E402
    STAMPS,
    TOKEN,
    by_path,
    generated_classes,
    item_list,
    run_module,
    status_body,
)


PAGE = ("limit", "500")  # every list is paged, as kubectl pages (--chunk-size 500)


def api_deployment(name, ready, stamp=STAMPS[0], progressing="NewReplicaSetAvailable"):
    obj = deployment(name, ready)
    obj["metadata"].update(creationTimestamp=stamp, uid="uid-" + name)
    obj["status"]["conditions"] = [
        {"type": "Available", "status": "True" if ready == 3 else "False", "reason": "MinimumReplicasAvailable",
         "lastUpdateTime": stamp, "lastTransitionTime": stamp},
        {"type": "Progressing", "status": "False" if progressing == "ProgressDeadlineExceeded" else "True",
         "reason": progressing, "message": 'ReplicaSet "%s-1" has timed out progressing.' % name,
         "lastUpdateTime": stamp, "lastTransitionTime": stamp},
    ]
    return obj


def api_replicaset(name, deployment_name, stamp=STAMPS[0]):
    return {"metadata": {"name": name, "namespace": "shop", "creationTimestamp": stamp,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name,
                                              "uid": "uid-" + deployment_name, "controller": True}]},
            "spec": {"replicas": 3}, "status": {"replicas": 3}}


def api_pdb(stamp=STAMPS[0], healthy=3):
    return {"metadata": {"name": "web", "namespace": "shop", "generation": 1, "creationTimestamp": stamp},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "minAvailable": 2},
            "status": {"observedGeneration": 1, "currentHealthy": healthy, "desiredHealthy": 2,
                       "disruptionsAllowed": max(0, healthy - 2), "expectedPods": 3,
                       "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods",
                                       "lastTransitionTime": stamp}]}}


def named(items, query):
    """What the API server does with ``fieldSelector=metadata.name=X``."""
    selector = query.get("fieldSelector")
    if not selector:
        return items
    assert selector.startswith("metadata.name=")
    return [i for i in items if i["metadata"]["name"] == selector[len("metadata.name="):]]


def reader_for(server):
    return module.ClusterReader(server.raw(user_agent=module.USER_AGENT), lambda: time.monotonic() + 10)


DEPLOYMENTS = "/apis/apps/v1/namespaces/shop/deployments"
REPLICASETS = "/apis/apps/v1/namespaces/shop/replicasets"
PDBS = "/apis/policy/v1/namespaces/shop/poddisruptionbudgets"


def test_reader_lists_each_kind_at_its_path_filtered_by_name(k8s_server):
    deployments = [api_deployment("web", 3), api_deployment("api", 3), api_deployment("other", 1)]
    server = k8s_server(by_path({
        DEPLOYMENTS: lambda q: (200, item_list("DeploymentList", named(deployments, q))),
        "/apis/apps/v1/namespaces/shop/statefulsets": lambda q: (200, item_list("StatefulSetList", [])),
        "/apis/apps/v1/namespaces/shop/daemonsets": lambda q: (200, item_list("DaemonSetList", [])),
        REPLICASETS: lambda q: (200, item_list("ReplicaSetList", [])),
        PDBS: lambda q: (200, item_list("PodDisruptionBudgetList", [api_pdb()])),
    }))
    reader = reader_for(server)
    assert [d["metadata"]["name"] for d in reader.list("Deployment", "shop", {"web"})] == ["web"]
    assert [d["metadata"]["name"] for d in reader.list("Deployment", "shop", {"web", "api"})] == ["web", "api"]
    assert len(reader.list("Deployment", "shop")) == 3
    assert reader.list("StatefulSet", "shop", {"db"}) == []
    assert reader.list("DaemonSet", "shop") == [] and reader.list("ReplicaSet", "shop", {"x", "y"}) == []
    assert reader.list("PodDisruptionBudget", "shop") == [api_pdb()]  # the API's JSON as it is
    assert [(r["path"], r["query"]) for r in server.requests] == [
        (DEPLOYMENTS, [("fieldSelector", "metadata.name=web"), PAGE]),
        (DEPLOYMENTS, [PAGE]),
        (DEPLOYMENTS, [PAGE]),
        ("/apis/apps/v1/namespaces/shop/statefulsets", [("fieldSelector", "metadata.name=db"), PAGE]),
        ("/apis/apps/v1/namespaces/shop/daemonsets", [PAGE]),
        (REPLICASETS, [PAGE]),
        (PDBS, [PAGE]),
    ]
    assert reader.calls == 7
    for request in server.requests:
        assert request["headers"]["authorization"] == "Bearer " + TOKEN
        assert request["headers"]["user-agent"] == "kubeops.node_maintenance/k8s_workloads_healthy"


def test_reader_errors_name_the_object_and_keep_the_status(k8s_server):
    message = ('deployments.apps is forbidden: User "x" cannot list resource "deployments" in API group "apps" '
               'in the namespace "shop"')
    server = k8s_server(by_path({DEPLOYMENTS: lambda q: (403, status_body(403, "Forbidden", message))}))
    with pytest.raises(K8sAccessError) as caught:
        reader_for(server).list("Deployment", "shop", {"web"})
    assert caught.value.status == 403
    assert caught.value.message == (
        "deployment shop/web: forbidden (403): %s; the identity in use lacks the RBAC right; grant it with a "
        "(Cluster)Role and binding, and check with `kubectl auth can-i list deployments.apps`" % message)
    assert len(server.requests) == 1


def test_reader_retries_a_transient_answer(k8s_server):
    answers = [(429, status_body(429, "TooManyRequests", "slow down")),
               (200, item_list("DeploymentList", [api_deployment("web", 3)]))]
    server = k8s_server(by_path({DEPLOYMENTS: lambda q: answers.pop(0)}))
    assert len(reader_for(server).list("Deployment", "shop")) == 1
    assert len(server.requests) == 2


@pytest.mark.parametrize("stamp", STAMPS)
def test_health_over_http_does_not_depend_on_the_timestamp_form(k8s_server, stamp):
    deployments = [api_deployment("web", 3, stamp), api_deployment("api", 2, stamp, "ProgressDeadlineExceeded")]
    server = k8s_server(by_path({
        DEPLOYMENTS: lambda q: (200, item_list("DeploymentList", named(deployments, q))),
        PDBS: lambda q: (200, item_list("PodDisruptionBudgetList", [api_pdb(stamp)])),
    }))
    clock = Clock()
    result = module.wait_healthy(reader_for(server), REFS, [], True, timeout=0, poll_interval=2,
                                 sleep=clock.sleep, clock=clock)
    assert result["healthy"] is False
    assert result["unhealthy"] == [
        'deployment shop/api: 2/3 ready, 2/3 available, progress deadline exceeded: ReplicaSet "api-1" has timed '
        'out progressing.']
    assert result["pdbs"][0]["summary"] == "pdb shop/web: 3 healthy of 2 required, 1 disruption allowed"


def test_module_run_reads_the_api_without_the_generated_classes(k8s_server, tmp_path):
    deployments = [api_deployment("web", 3), api_deployment("api", 3, STAMPS[1])]
    server = k8s_server(by_path({
        DEPLOYMENTS: lambda q: (200, item_list("DeploymentList", named(deployments, q))),
        REPLICASETS: lambda q: (200, item_list("ReplicaSetList", named([api_replicaset("web-6d4b", "web")], q))),
        PDBS: lambda q: (200, item_list("PodDisruptionBudgetList", [api_pdb()])),
    }))
    args = dict(server.params, pods=[{"namespace": "shop", "owner_kind": "ReplicaSet", "owner_name": "web-6d4b"},
                                     {"namespace": "shop", "owner_kind": "Job", "owner_name": "batch"}],
                workloads=[{"kind": "Deployment", "namespace": "shop", "name": "api"}],
                pdbs_from_workloads=True, timeout=0)
    result, imported = run_module("k8s_workloads_healthy", args, tmp_path)
    assert generated_classes(imported) == []
    assert result["changed"] is False and result["healthy"] is True and result["polls"] == 1, result
    assert [(w["name"], w["summary"], w.get("resolved_from")) for w in result["workloads"]] == [
        ("api", "deployment shop/api: 3/3 ready", None),
        ("web", "deployment shop/web: 3/3 ready", "ReplicaSet shop/web-6d4b")]
    assert [(p["name"], p["matched_workloads"]) for p in result["pdbs"]] == [("web", ["deployment shop/web"])]
    assert [(r["path"], r["query"]) for r in server.requests] == [
        (REPLICASETS, [("fieldSelector", "metadata.name=web-6d4b"), PAGE]),
        (DEPLOYMENTS, [PAGE]),
        (PDBS, [PAGE]),
    ]


def test_module_run_fails_at_the_timeout_with_what_is_missing(k8s_server, tmp_path):
    server = k8s_server(by_path({DEPLOYMENTS: lambda q: (200, item_list("DeploymentList", [api_deployment("web", 2)]))}))
    args = dict(server.params, workloads=[{"kind": "Deployment", "namespace": "shop", "name": "web"}],
                timeout=0)
    result, _imported = run_module("k8s_workloads_healthy", args, tmp_path)
    assert result["failed"] is True and result["healthy"] is False
    assert result["msg"] == "not healthy after 0s: deployment shop/web: 2/3 ready, 2/3 available"


def test_module_run_fails_with_the_translated_error(k8s_server, tmp_path):
    server = k8s_server(by_path({DEPLOYMENTS: lambda q: (401, status_body(401, "Unauthorized", "Unauthorized"))}))
    args = dict(server.params, workloads=[{"kind": "Deployment", "namespace": "shop", "name": "web"}], timeout=0)
    result, _imported = run_module("k8s_workloads_healthy", args, tmp_path)
    assert result["failed"] is True and result["status"] == 401
    assert result["msg"] == (
        "deployment shop/web: unauthorized (401): Unauthorized; the API server did not accept the credentials; "
        "check api_key / client_cert / client_key or the kubeconfig user (an expired token or certificate does "
        "this too)")
