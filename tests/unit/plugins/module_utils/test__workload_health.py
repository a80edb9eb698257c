"""Health of controllers and PodDisruptionBudgets, from their API objects (no cluster)."""
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _workload_health as wh


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
