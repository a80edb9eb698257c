"""Health of controllers and PodDisruptionBudgets, from their API objects (no cluster); the lists
k8s_workloads_healthy reads (over a scripted API server on 127.0.0.1), its polls and its result."""
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _workload_health as wh
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import K8sAccessError
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from tests.unit.fake_k8s_server import STAMPS, TOKEN, by_path, item_list, status_body


def deployment(name="web", namespace="shop", replicas=3, ready=3, available=3, updated=3, total=None,
               generation=2, observed=2, labels=None, conditions=None):
    status = {"observedGeneration": observed, "replicas": replicas if total is None else total,
              "readyReplicas": ready, "availableReplicas": available, "updatedReplicas": updated}
    if conditions:
        status["conditions"] = conditions
    # the API leaves out counters that are zero
    status = {k: v for k, v in status.items() if v}
    return {"metadata": {"name": name, "namespace": namespace, "generation": generation},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": labels or {"app": name}}}},
            "status": status}


def ref(kind, name, namespace="shop"):
    return {"kind": kind, "namespace": namespace, "name": name}


# ------------------------------------------------------------------------------------------------
# refs
# ------------------------------------------------------------------------------------------------

def test_dedupe_and_group():
    refs = wh.dedupe_refs([ref("Deployment", "web"), ref("Deployment", "web"), ref("Deployment", "api"),
                           ref("StatefulSet", "db"), ref("Deployment", "web", "other")])
    assert [r["name"] for r in refs] == ["web", "api", "db", "web"]
    assert wh.group_refs(refs) == {("Deployment", "shop"): {"web", "api"}, ("StatefulSet", "shop"): {"db"},
                                   ("Deployment", "other"): {"web"}}
    assert wh.dedupe_pdb_refs([{"namespace": "a", "name": "b"}] * 2) == [{"namespace": "a", "name": "b"}]
    assert wh.group_pdb_refs([{"namespace": "a", "name": "b"}, {"namespace": "a", "name": "c"}]) == {"a": {"b", "c"}}


def test_refs_from_drain_pod_results():
    pods = [
        {"namespace": "shop", "name": "web-1", "owner_kind": "ReplicaSet", "owner_name": "web-6d4"},
        {"namespace": "shop", "name": "web-2", "owner_kind": "ReplicaSet", "owner_name": "web-6d4"},
        {"namespace": "shop", "name": "job-1", "owner_kind": "Job", "owner_name": "backup"},
        {"namespace": "kube-system", "name": "static", "owner_kind": "Node", "owner_name": "worker-3"},
        {"namespace": "shop", "name": "bare", "owner_kind": None, "owner_name": None},
        {"namespace": "kube-system", "name": "proxy-x", "owner_kind": "DaemonSet", "owner_name": "proxy"},
    ]
    assert wh.refs_from_pods(pods) == [ref("ReplicaSet", "web-6d4"), ref("DaemonSet", "proxy", "kube-system")]


def test_replicasets_resolve_to_their_deployment():
    owned = {"metadata": {"name": "web-6d4", "namespace": "shop", "ownerReferences": [
        {"kind": "Deployment", "name": "web", "controller": True}]}}
    orphan = {"metadata": {"name": "lonely", "namespace": "shop"}}
    refs = [ref("ReplicaSet", "web-6d4"), ref("Deployment", "web"), ref("ReplicaSet", "lonely"),
            ref("ReplicaSet", "gone")]
    resolved = wh.resolve_refs(refs, {("shop", "web-6d4"): owned, ("shop", "lonely"): orphan})
    assert resolved == [
        {"kind": "Deployment", "namespace": "shop", "name": "web", "resolved_from": "ReplicaSet shop/web-6d4"},
        ref("ReplicaSet", "lonely"),
        ref("ReplicaSet", "gone"),
    ]


def test_a_non_controller_owner_is_not_followed():
    rs = {"metadata": {"ownerReferences": [{"kind": "Deployment", "name": "web", "controller": False}]}}
    assert wh.resolve_refs([ref("ReplicaSet", "x")], {("shop", "x"): rs}) == [ref("ReplicaSet", "x")]


# ------------------------------------------------------------------------------------------------
# workloads
# ------------------------------------------------------------------------------------------------

def test_healthy_deployment():
    entry = wh.workload_health(ref("Deployment", "web"), deployment())
    assert entry == {"kind": "Deployment", "namespace": "shop", "name": "web", "exists": True, "healthy": True,
                     "desired": 3, "ready": 3, "available": 3, "updated": 3, "missing": [],
                     "summary": "deployment shop/web: 3/3 ready"}


def test_deployment_short_of_ready():
    entry = wh.workload_health(ref("Deployment", "web"), deployment(ready=2, available=2))
    assert entry["healthy"] is False
    assert entry["summary"] == "deployment shop/web: 2/3 ready, 2/3 available"
    assert wh.unhealthy_lines([entry], []) == ["deployment shop/web: 2/3 ready, 2/3 available"]


def test_deployment_not_observed_yet():
    entry = wh.workload_health(ref("Deployment", "web"), deployment(generation=5, observed=4))
    assert entry["missing"] == ["generation 5 not observed yet (observed 4)"]


def test_deployment_rolling_with_old_replicas_left():
    entry = wh.workload_health(ref("Deployment", "web"), deployment(ready=4, available=4, updated=3, total=4))
    assert entry["missing"] == ["4/3 ready", "4/3 available", "4 replicas where 3 are wanted (old ones not gone yet)"]


def test_deployment_progress_deadline():
    cond = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": 'ReplicaSet "web-1" has timed out progressing.'}]
    entry = wh.workload_health(ref("Deployment", "web"), deployment(ready=0, available=0, conditions=cond))
    assert entry["missing"][-1] == 'progress deadline exceeded: ReplicaSet "web-1" has timed out progressing.'


def test_scaled_to_zero_is_healthy():
    entry = wh.workload_health(ref("Deployment", "web"), deployment(replicas=0, ready=0, available=0, updated=0))
    assert entry["healthy"] is True and entry["summary"] == "deployment shop/web: 0/0 ready"


def test_missing_workload_is_reported_not_unhealthy():
    entry = wh.workload_health(dict(ref("StatefulSet", "db"), resolved_from="x"), None)
    assert entry["exists"] is False and entry["healthy"] is None
    assert entry["summary"].startswith("statefulset shop/db: not found")
    assert wh.unhealthy_lines([entry], []) == []
    assert wh.absent_lines([entry], []) == [entry["summary"]]
    assert entry["resolved_from"] == "x"


def statefulset(replicas=3, ready=3, available=3, updated=3, strategy=None):
    return {"metadata": {"name": "db", "namespace": "shop", "generation": 1},
            "spec": {"replicas": replicas, "updateStrategy": strategy or {"type": "RollingUpdate"}},
            "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": ready,
                       "availableReplicas": available, "updatedReplicas": updated}}


def test_statefulset_rules():
    assert wh.workload_health(ref("StatefulSet", "db"), statefulset())["healthy"] is True
    assert wh.workload_missing("StatefulSet", statefulset(updated=2)) == ["2/3 updated"]
    partitioned = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    assert wh.workload_missing("StatefulSet", statefulset(updated=1, strategy=partitioned)) == []
    assert wh.workload_missing("StatefulSet", statefulset(updated=0, strategy=partitioned)) == ["0/1 updated"]
    assert wh.workload_missing("StatefulSet", statefulset(updated=0, strategy={"type": "OnDelete"})) == []
    assert wh.workload_missing("StatefulSet", statefulset(ready=1, available=1)) == ["1/3 ready", "1/3 available"]


def test_replicaset_and_defaults():
    rs = {"metadata": {"name": "x", "namespace": "shop", "generation": 1},
          "spec": {}, "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "availableReplicas": 1}}
    # spec.replicas defaults to 1
    assert wh.workload_health(ref("ReplicaSet", "x"), rs)["healthy"] is True
    rs["status"] = {"observedGeneration": 1}
    assert wh.workload_missing("ReplicaSet", rs) == ["0/1 ready", "0/1 available"]


def test_daemonset_rules():
    ds = {"metadata": {"name": "proxy", "namespace": "kube-system", "generation": 3},
          "status": {"observedGeneration": 3, "desiredNumberScheduled": 5, "currentNumberScheduled": 5,
                     "numberReady": 4, "numberAvailable": 4, "updatedNumberScheduled": 5}}
    entry = wh.workload_health(ref("DaemonSet", "proxy", "kube-system"), ds)
    assert entry["summary"] == "daemonset kube-system/proxy: 4/5 ready, 4/5 available"
    assert (entry["desired"], entry["ready"], entry["available"], entry["updated"]) == (5, 4, 4, 5)
    ds["status"].update(numberReady=5, numberAvailable=5)
    assert wh.workload_health(ref("DaemonSet", "proxy", "kube-system"), ds)["healthy"] is True
    # on no node at all
    assert wh.workload_missing("DaemonSet", {"metadata": {"generation": 1}, "status": {"observedGeneration": 1}}) == []


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(wh.KINDS), st.integers(0, 5), st.integers(0, 6), st.integers(0, 6), st.integers(0, 6),
       st.integers(0, 7), st.integers(1, 3), st.integers(0, 3))
def test_property_healthy_means_every_count_is_met(kind, desired, ready, available, updated, total, gen, observed):
    if kind == "DaemonSet":
        obj = {"metadata": {"generation": gen},
               "status": {"observedGeneration": observed, "desiredNumberScheduled": desired, "numberReady": ready,
                          "numberAvailable": available, "updatedNumberScheduled": updated,
                          "currentNumberScheduled": total}}
    else:
        obj = {"metadata": {"generation": gen}, "spec": {"replicas": desired},
               "status": {"observedGeneration": observed, "readyReplicas": ready, "availableReplicas": available,
                          "updatedReplicas": updated, "replicas": total}}
    entry = wh.workload_health(ref(kind, "w"), obj)
    fully = observed >= gen and ready == desired and available == desired
    if kind != "DaemonSet":
        fully = fully and total == desired
    if kind in ("Deployment", "StatefulSet"):
        fully = fully and updated >= desired if kind == "StatefulSet" else fully and updated == desired
    if kind != "DaemonSet" and total < desired and ready == desired:
        fully = False
    assert entry["healthy"] is fully
    assert entry["healthy"] is (not entry["missing"])
    assert entry["summary"].startswith("%s shop/w: " % kind.lower())


# ------------------------------------------------------------------------------------------------
# PDBs
# ------------------------------------------------------------------------------------------------

def pdb(name="web", namespace="shop", current=3, desired=2, allowed=1, expected=3, generation=1, observed=1,
        selector=None):
    status = {"currentHealthy": current, "desiredHealthy": desired, "disruptionsAllowed": allowed,
              "expectedPods": expected}
    if observed is not None:
        status["observedGeneration"] = observed
    return {"metadata": {"name": name, "namespace": namespace, "generation": generation},
            "spec": {"selector": selector if selector is not None else {"matchLabels": {"app": name}}},
            "status": {k: v for k, v in status.items() if v}}


def test_pdb_health():
    entry = wh.pdb_health(pdb())
    assert entry == {"namespace": "shop", "name": "web", "exists": True, "healthy": True, "current_healthy": 3,
                     "desired_healthy": 2, "disruptions_allowed": 1, "expected_pods": 3, "matched_workloads": [],
                     "missing": [], "summary": "pdb shop/web: 3 healthy of 2 required, 1 disruption allowed"}
    entry = wh.pdb_health(pdb(current=1, allowed=0))
    assert entry["healthy"] is False and entry["summary"] == "pdb shop/web: 1 healthy of 2 required"
    # exactly at the budget is healthy (no disruption allowed, but nothing missing)
    assert wh.pdb_health(pdb(current=2, allowed=0))["healthy"] is True


def test_pdb_status_not_computed_yet():
    entry = wh.pdb_health(pdb(current=0, desired=0, allowed=0, expected=0, observed=None))
    assert entry["healthy"] is False
    assert "status not computed yet for generation 1 (observed none)" in entry["summary"]
    assert "disruption controller" in entry["summary"]


def test_pdbs_named_and_found_from_workloads():
    objects = [pdb("web"), pdb("db", current=1, desired=2, allowed=0),
               pdb("all", selector={}), pdb("none", selector={"matchLabels": {"app": "nothing"}}),
               pdb("other-ns", namespace="elsewhere", selector={})]
    workloads = {("Deployment", "shop", "web"): deployment("web")}
    entries = wh.pdbs_health([{"namespace": "shop", "name": "db"}, {"namespace": "shop", "name": "gone"}],
                             objects, workloads)
    assert [(e["name"], e["exists"], e["healthy"]) for e in entries] == [
        ("db", True, False), ("gone", False, None), ("all", True, True), ("web", True, True)]
    assert entries[2]["matched_workloads"] == ["deployment shop/web"]
    assert entries[1]["summary"] == "pdb shop/gone: not found, not waited for"
    # without workloads, only the named ones
    assert [e["name"] for e in wh.pdbs_health([{"namespace": "shop", "name": "web"}], objects)] == ["web"]


def test_pdb_match_expressions():
    sel = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}
    objects = [pdb("front", selector=sel)]
    front = deployment("web", labels={"app": "web", "tier": "front"})
    back = deployment("api", labels={"app": "api", "tier": "back"})
    entries = wh.pdbs_health([], objects, {("Deployment", "shop", "web"): front, ("Deployment", "shop", "api"): back})
    assert [(e["name"], e["matched_workloads"]) for e in entries] == [("front", ["deployment shop/web"])]


def test_timeout_message():
    lines = ["deployment shop/web: 2/3 ready", "pdb shop/web: 1 healthy of 2 required"]
    assert wh.timeout_message(lines, 30.4) == (
        "not healthy after 30s: deployment shop/web: 2/3 ready; pdb shop/web: 1 healthy of 2 required")


# ------------------------------------------------------------------------------------------------
# wait_healthy: the poll loop and list grouping, with a fake reader and clock (the real API server
# is exercised by tests/integration/test_k8s_workloads_healthy.py)
# ------------------------------------------------------------------------------------------------

def polled_deployment(name, ready, replicas=3):
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
            items = [polled_deployment(name, ready) for name, ready in self.ready.items()]
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
    result = wh.wait_healthy(reader, REFS, [], True, timeout=60, poll_interval=2,
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
    result = wh.wait_healthy(reader, REFS[:1], [], False, timeout=5, poll_interval=2,
                             sleep=clock.sleep, clock=clock)
    assert result["healthy"] is False
    assert result["unhealthy"] == ["deployment shop/web: 2/3 ready, 2/3 available"]
    assert clock.now == 5.0 and result["polls"] == 4
    assert result["pdbs"] == []
    assert not [c for c in reader.calls if c[0] == "PodDisruptionBudget"]


def test_timeout_zero_polls_once():
    reader = FakeReader({"web": 3})
    clock = Clock()
    result = wh.wait_healthy(reader, REFS[:1], [], False, timeout=0, poll_interval=2,
                             sleep=clock.sleep, clock=clock)
    assert result["healthy"] is True and result["polls"] == 1


# ------------------------------------------------------------------------------------------------
# ClusterReader and the module over HTTP (a scripted API server on 127.0.0.1)
# ------------------------------------------------------------------------------------------------


PAGE = ("limit", "500")  # every list is paged, as kubectl pages (--chunk-size 500)
USER_AGENT = "kubeops.node_maintenance/k8s_workloads_healthy"


def api_deployment(name, ready, stamp=STAMPS[0], progressing="NewReplicaSetAvailable"):
    obj = polled_deployment(name, ready)
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
    return wh.ClusterReader(server.raw(user_agent=USER_AGENT), lambda: time.monotonic() + 10)


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
    result = wh.wait_healthy(reader_for(server), REFS, [], True, timeout=0, poll_interval=2,
                             sleep=clock.sleep, clock=clock)
    assert result["healthy"] is False
    assert result["unhealthy"] == [
        'deployment shop/api: 2/3 ready, 2/3 available, progress deadline exceeded: ReplicaSet "api-1" has timed '
        'out progressing.']
    assert result["pdbs"][0]["summary"] == "pdb shop/web: 3 healthy of 2 required, 1 disruption allowed"


# ------------------------------------------------------------------------------------------------
# health_gate: the whole module run (options, ReplicaSets resolved, warnings, the failure)
# ------------------------------------------------------------------------------------------------


def gate_params(**overrides):
    values = {"workloads": [], "pdbs": [], "pods": [], "pdbs_from_workloads": False, "timeout": 5,
              "poll_interval": 2.0}
    values.update(overrides)
    return values


class GateReader(FakeReader):
    """A FakeReader that also answers ReplicaSets: web-1 is web's."""

    def list(self, kind, namespace, names=None):
        if kind == "ReplicaSet":
            self.calls.append((kind, namespace, None if names is None else tuple(sorted(names))))
            return [{"metadata": {"name": "web-1", "namespace": namespace,
                                  "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}]}}]
        return super(GateReader, self).list(kind, namespace, names)


RAW = object()  # what connect() gives: the gate builds its ClusterReader over it


def run_gate(monkeypatch, reader, clock, **overrides):
    """health_gate with ``reader`` in place of the ClusterReader it builds; (result, warnings, deadline_fn)."""
    built = []

    def cluster_reader(raw, deadline_fn):
        assert raw is RAW
        built.append(deadline_fn)
        return reader

    monkeypatch.setattr(wh, "ClusterReader", cluster_reader)
    warnings = []
    result = wh.health_gate(lambda: RAW, gate_params(**overrides), warnings.append, sleep=clock.sleep, clock=clock)
    assert len(built) == 1
    return result, warnings, built[0]


def test_the_gate_resolves_replicasets_then_polls_and_warns_of_what_does_not_exist(monkeypatch):
    reader = GateReader({"web": 2})
    clock = Clock()
    pods = [{"namespace": "shop", "owner_kind": "ReplicaSet", "owner_name": "web-1"},
            {"namespace": "shop", "owner_kind": "Job", "owner_name": "batch"}]
    gone = {"kind": "Deployment", "namespace": "shop", "name": "gone"}
    result, warnings, _deadline_fn = run_gate(monkeypatch, reader, clock, pods=pods, workloads=[gone])
    assert result["changed"] is False and result["healthy"] is True and result["polls"] == 2
    assert result["seconds"] == 2.0 and clock.now == 2.0
    assert [(w["name"], w["exists"], w.get("resolved_from")) for w in result["workloads"]] == [
        ("gone", False, None), ("web", True, "ReplicaSet shop/web-1")]
    assert reader.calls[0] == ("ReplicaSet", "shop", ("web-1",))
    assert warnings == ["deployment shop/gone: not found, not waited for (deleted or renamed since the drain?)"]


def test_the_gate_fails_at_the_timeout_with_every_result_field(monkeypatch):
    clock = Clock()
    with pytest.raises(ModuleFailure) as caught:
        run_gate(monkeypatch, GateReader({"web": 1}, grow=0), clock, workloads=[REFS[0]], timeout=3)
    failure = caught.value
    assert failure.msg == "not healthy after 3s: deployment shop/web: 1/3 ready, 1/3 available"
    assert failure.fields["healthy"] is False and failure.fields["polls"] == 3 and failure.fields["seconds"] == 3.0
    assert failure.fields["unhealthy"] == ["deployment shop/web: 1/3 ready, 1/3 available"]
    assert set(failure.fields) == {"healthy", "unhealthy", "workloads", "pdbs", "polls", "seconds",
                                   "node_pods", "not_ready", "node_pods_excluded"}
    assert failure.fields["node_pods"] == [] and failure.fields["not_ready"] == []  # no node given


def test_each_list_call_retries_until_the_timeout_and_for_ten_seconds_at_least(monkeypatch):
    clock = Clock()
    _result, _warnings, deadline_fn = run_gate(monkeypatch, GateReader({"web": 3}), clock,
                                               workloads=[REFS[0]], timeout=30)
    assert deadline_fn() == 30
    clock.now = 25.0
    assert deadline_fn() == 35


@pytest.mark.parametrize("overrides, message", [
    ({"timeout": -1}, "timeout must not be negative"),
    ({"poll_interval": 0}, "poll_interval must be more than 0"),
    ({"timeout": -1, "poll_interval": -2.0}, "timeout must not be negative; poll_interval must be more than 0"),
])
def test_bad_options_fail_before_any_connection(overrides, message):
    connected = []
    with pytest.raises(ModuleFailure) as caught:
        wh.health_gate(lambda: connected.append(1), gate_params(**overrides), [].append)
    assert caught.value.msg == message and caught.value.fields == {}
    assert connected == []


# ------------------------------------------------------------------------------------------------
# The node's own pods: DaemonSet pods and static (mirror) pods
# ------------------------------------------------------------------------------------------------

NODE = {"metadata": {"name": "n1", "labels": {"role": "worker"}},
        "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}


def api_daemonset(name, namespace="kube-system", node_selector=None):
    return {"metadata": {"name": name, "namespace": namespace, "uid": "uid-" + name},
            "spec": {"template": {"spec": {"nodeSelector": node_selector or {}}}}}


def api_pod(name, namespace="kube-system", node="n1", ready=True, ds=None, mirror=False, deleting=False,
            phase=None, waiting=None):
    metadata = {"name": name, "namespace": namespace, "uid": "pod-" + name}
    if ds:
        metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds,
                                        "uid": "uid-" + ds, "controller": True}]
    if mirror:
        metadata["annotations"] = {"kubernetes.io/config.mirror": "hash-" + name}
        metadata["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "controller": True}]
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = {"phase": phase or ("Running" if ready else "Pending"),
              "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if waiting:
        status["conditions"][0].update(reason="ContainersNotReady", message="containers with unready status: [app]")
        status["containerStatuses"] = [{"name": "app", "ready": False, "state": {"waiting": {"reason": waiting}}}]
    return {"metadata": metadata, "spec": {"nodeName": node}, "status": status}


def test_each_daemonset_that_runs_on_the_node_needs_a_ready_pod_there():
    daemonsets = [api_daemonset("proxy"), api_daemonset("gpu", node_selector={"gpu": "true"}),
                  api_daemonset("logs", namespace="logging"), api_daemonset("cni")]
    pods = [api_pod("proxy-a", ds="proxy"), api_pod("logs-b", namespace="logging", ds="logs", ready=False,
                                                    waiting="CrashLoopBackOff"),
            api_pod("cni-old", ds="cni", ready=True, deleting=True)]
    entries, excluded, lines = wh.node_pods_health("n1", NODE, daemonsets, pods, [])
    assert [(e["kind"], e["namespace"], e["name"], e["pod"], e["ready"]) for e in entries] == [
        ("DaemonSet", "kube-system", "cni", "cni-old", False),
        ("DaemonSet", "kube-system", "proxy", "proxy-a", True),
        ("DaemonSet", "logging", "logs", "logs-b", False)]
    # the cordon's taint does not keep DaemonSets off (the controller tolerates it); gpu's selector does
    assert excluded == [{"namespace": "kube-system", "name": "gpu",
                         "reason": "nodeSelector gpu=true does not match the node's labels"}]
    assert lines == [
        "daemonset kube-system/cni: waiting for a new pod on node/n1 (pod cni-old is terminating)",
        "daemonset logging/logs: waiting for pod logs-b on node/n1 to be Ready (Pending; ContainersNotReady: "
        "containers with unready status: [app]; container app: CrashLoopBackOff)"]
    assert entries[1]["summary"] == "daemonset kube-system/proxy: pod proxy-a Ready on node/n1"
    assert entries[1]["waiting_for"] is None


def test_a_daemonset_pod_not_there_yet_and_one_of_another_node_or_daemonset_do_not_count():
    pods = [api_pod("proxy-x", ds="proxy", node="n2"), api_pod("other-y", ds="other")]
    entries, _excluded, lines = wh.node_pods_health("n1", NODE, [api_daemonset("proxy")], pods, [])
    assert entries[0]["pod"] is None and entries[0]["ready"] is False
    assert lines == ["daemonset kube-system/proxy: waiting for its pod on node/n1 (none yet; the DaemonSet "
                     "controller creates it)"]
    # a Ready pod beside a terminating one: the Ready one is looked at
    pods = [api_pod("proxy-old", ds="proxy", deleting=True, ready=False), api_pod("proxy-new", ds="proxy")]
    entries, _excluded, lines = wh.node_pods_health("n1", NODE, [api_daemonset("proxy")], pods, [])
    assert (entries[0]["pod"], entries[0]["ready"], lines) == ("proxy-new", True, [])


def test_static_pods_from_before_must_be_back_and_those_there_now_ready():
    before = [{"namespace": "kube-system", "name": "etcd-n1"}, {"namespace": "kube-system", "name": "gone-n1"},
              {"namespace": "kube-system", "name": "etcd-n1"}]
    pods = [api_pod("etcd-n1", mirror=True), api_pod("new-n1", mirror=True, ready=False),
            api_pod("gone-n1"),  # same name, but not a mirror pod: not the static pod
            api_pod("elsewhere-n2", mirror=True, node="n2")]
    entries, _excluded, lines = wh.node_pods_health("n1", NODE, [], pods, before)
    assert [(e["kind"], e["name"], e["pod"], e["ready"]) for e in entries] == [
        ("StaticPod", "etcd-n1", "etcd-n1", True), ("StaticPod", "gone-n1", None, False),
        ("StaticPod", "new-n1", "new-n1", False)]
    assert lines == [
        "static pod kube-system/gone-n1: waiting for its mirror pod to be back on node/n1 (the kubelet recreates "
        "it from the manifest in its static pod directory; is the manifest still there?)",
        "static pod kube-system/new-n1: waiting for it to be Ready on node/n1 (Pending)"]
    # a mirror pod being replaced by the kubelet (the old one terminating) is not back yet
    entries, _excluded, lines = wh.node_pods_health("n1", NODE, [], [api_pod("etcd-n1", mirror=True, deleting=True)],
                                                    before[:1])
    assert lines == ["static pod kube-system/etcd-n1: waiting for the kubelet to recreate its mirror pod on "
                     "node/n1 (the old one is terminating)"]


def test_static_pod_refs_take_the_drains_mirror_pods_or_plain_names():
    drained = [{"namespace": "kube-system", "name": "etcd-n1", "owner_kind": "Node", "owner_name": "n1",
                "action": "skipped"},
               {"namespace": "kube-system", "name": "proxy-a", "owner_kind": "DaemonSet", "owner_name": "proxy"},
               {"namespace": "shop", "name": "web-1", "owner_kind": "ReplicaSet", "owner_name": "web-6d"},
               {"namespace": "kube-system", "name": "api-n1"}, {"namespace": "kube-system"},
               {"namespace": "kube-system", "name": "etcd-n1"}]
    assert wh.static_pod_refs(drained) == [{"namespace": "kube-system", "name": "etcd-n1"},
                                           {"namespace": "kube-system", "name": "api-n1"}]


def test_a_node_that_does_not_exist_is_waited_for():
    assert wh.node_pods_health("n1", None, [api_daemonset("proxy")], [], [{"namespace": "a", "name": "b"}]) == (
        [], [], ["node/n1: not found (waiting for it to register)"])


class NodeReader(GateReader):
    """A GateReader that also has a node, its DaemonSets and its pods: the DaemonSet pod turns Ready
    on the ``ready_at`` poll of the node's pods."""

    def __init__(self, ready_at=2):
        super(NodeReader, self).__init__({})
        self.node_polls = 0
        self.ready_at = ready_at
        self.paths = []

    def node(self, name):
        self.calls.append(("Node", name))
        return dict(NODE, metadata=dict(NODE["metadata"], name=name))

    def list_path(self, path, query, ref):
        self.paths.append((path, list(query), ref))
        if path == "/apis/apps/v1/daemonsets":
            return [api_daemonset("proxy"), api_daemonset("gpu", node_selector={"gpu": "true"})]
        self.node_polls += 1
        return [api_pod("proxy-a", ds="proxy", ready=self.node_polls >= self.ready_at),
                api_pod("etcd-n1", mirror=True)]


def test_the_gate_with_a_node_waits_for_its_own_pods(monkeypatch):
    reader = NodeReader(ready_at=3)
    clock = Clock()
    drained = [{"namespace": "kube-system", "name": "etcd-n1", "owner_kind": "Node", "owner_name": "n1"}]
    result, _warnings, _deadline_fn = run_gate(monkeypatch, reader, clock, node="n1", static_pods=drained,
                                               timeout=30)
    assert result["healthy"] is True and result["polls"] == 3 and result["not_ready"] == []
    assert [(e["kind"], e["name"], e["ready"]) for e in result["node_pods"]] == [
        ("DaemonSet", "proxy", True), ("StaticPod", "etcd-n1", True)]
    assert [e["name"] for e in result["node_pods_excluded"]] == ["gpu"]
    assert reader.paths[:2] == [("/apis/apps/v1/daemonsets", [], "daemonsets"),
                                ("/api/v1/pods", [("fieldSelector", "spec.nodeName=n1")], "pods on node/n1")]
    assert reader.calls.count(("Node", "n1")) == 3


def test_the_gate_times_out_naming_each_node_pod_not_ready(monkeypatch):
    clock = Clock()
    with pytest.raises(ModuleFailure) as caught:
        run_gate(monkeypatch, NodeReader(ready_at=99), clock, node="n1", timeout=4,
                 static_pods=[{"namespace": "kube-system", "name": "gone-n1"}])
    failure = caught.value
    assert failure.msg == (
        "not healthy after 4s: daemonset kube-system/proxy: waiting for pod proxy-a on node/n1 to be Ready "
        "(Pending); static pod kube-system/gone-n1: waiting for its mirror pod to be back on node/n1 (the kubelet "
        "recreates it from the manifest in its static pod directory; is the manifest still there?)")
    assert [(e["kind"], e["name"], e["pod"]) for e in failure.fields["not_ready"]] == [
        ("DaemonSet", "proxy", "proxy-a"), ("StaticPod", "gone-n1", None)]
    assert [e["name"] for e in failure.fields["node_pods"]] == ["proxy", "gone-n1", "etcd-n1"]


def test_without_a_node_its_pods_are_not_read(monkeypatch):
    reader = NodeReader()
    result, _warnings, _deadline_fn = run_gate(monkeypatch, reader, Clock(), workloads=[REFS[0]],
                                               static_pods=[{"namespace": "a", "name": "b"}])
    assert reader.paths == [] and ("Node", "n1") not in reader.calls
    assert result["node_pods"] == [] and result["node_pods_excluded"] == []


NODE_PATH = "/api/v1/nodes/n1"


def test_reader_reads_the_node_and_lists_daemonsets_and_the_nodes_pods(k8s_server):
    server = k8s_server(by_path({
        NODE_PATH: lambda q: (200, NODE),
        "/apis/apps/v1/daemonsets": lambda q: (200, item_list("DaemonSetList", [api_daemonset("proxy")])),
        "/api/v1/pods": lambda q: (200, item_list("PodList", [api_pod("proxy-a", ds="proxy")])),
    }))
    entries, excluded, lines = wh.observe_node_pods(reader_for(server), "n1", [])
    assert [(e["name"], e["ready"]) for e in entries] == [("proxy", True)] and excluded == [] and lines == []
    assert [(r["path"], r["query"]) for r in server.requests] == [
        (NODE_PATH, []), ("/apis/apps/v1/daemonsets", [PAGE]),
        ("/api/v1/pods", [("fieldSelector", "spec.nodeName=n1"), PAGE])]


def test_reader_a_missing_node_is_none_and_a_forbidden_list_is_named(k8s_server):
    server = k8s_server(by_path({NODE_PATH: lambda q: (404, status_body(404, "NotFound", "nodes \"n1\" not found"))}))
    assert wh.observe_node_pods(reader_for(server), "n1", [])[2] == ["node/n1: not found (waiting for it to register)"]
    assert len(server.requests) == 1
    message = 'daemonsets.apps is forbidden: User "x" cannot list resource "daemonsets" in API group "apps"'
    server = k8s_server(by_path({
        NODE_PATH: lambda q: (200, NODE),
        "/apis/apps/v1/daemonsets": lambda q: (403, status_body(403, "Forbidden", message))}))
    with pytest.raises(K8sAccessError) as caught:
        wh.observe_node_pods(reader_for(server), "n1", [])
    assert caught.value.status == 403 and caught.value.message.startswith("daemonsets: forbidden (403): ")
    assert "`kubectl auth can-i list daemonsets.apps`" in caught.value.message
