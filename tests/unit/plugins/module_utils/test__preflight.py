"""Unit tests of the pre-drain checks, on snapshots written as API JSON in Python; the snapshot
k8s_node_preflight reads (over a scripted API server on 127.0.0.1) and its result."""
import gc
import threading
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _preflight as pf
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _quantity as q
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import K8sAccessError
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from tests.unit.fake_k8s_server import STAMPS, TOKEN, by_path, item_list, status_body


# ------------------------------------------------------------------------------------------------
# Builders: API-shaped dicts, as the list calls return them
# ------------------------------------------------------------------------------------------------
def node(name, cpu="4", memory="16Gi", pods="110", labels=None, taints=None, ready=True,
         unschedulable=False, images=()):
    return {
        "metadata": {"name": name, "labels": dict({"kubernetes.io/hostname": name}, **(labels or {}))},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "images": [{"names": [image]} for image in images],
        },
    }


def pod(name, node_name, namespace="default", cpu=None, memory=None, owner=None, labels=None,
        ready=True, phase="Running", volumes=None, tolerations=None, node_selector=None,
        affinity=None, image="registry.example/app:1", annotations=None, deleting=False, **spec_extra):
    requests = {}
    if cpu is not None:
        requests["cpu"] = cpu
    if memory is not None:
        requests["memory"] = memory
    metadata = {"name": name, "namespace": namespace, "labels": labels or {}, "annotations": annotations or {}}
    if owner:
        kind, owner_name = owner
        api_version = "apps/v1" if kind in ("ReplicaSet", "StatefulSet", "DaemonSet", "Deployment") else "v1"
        metadata["ownerReferences"] = [
            {"apiVersion": api_version, "kind": kind, "name": owner_name, "controller": True, "uid": "u"}]
    if deleting:
        metadata["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    spec = {
        "nodeName": node_name,
        "containers": [{"name": "main", "image": image, "resources": {"requests": requests}}],
        "volumes": volumes or [],
    }
    if tolerations:
        spec["tolerations"] = tolerations
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = affinity
    spec.update(spec_extra)
    return {
        "metadata": metadata,
        "spec": spec,
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def replicaset(name, deployment, namespace="default"):
    return {"metadata": {"name": name, "namespace": namespace, "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment, "controller": True}]}}


def pdb(name, selector, allowed, namespace="default", generation=1, observed=1, policy=None):
    spec = {"selector": selector}
    if policy:
        spec["unhealthyPodEvictionPolicy"] = policy
    return {"metadata": {"name": name, "namespace": namespace, "generation": generation},
            "spec": spec, "status": {"disruptionsAllowed": allowed, "observedGeneration": observed}}


def local_pv(name, claim, node_name, namespace="default", kind="local"):
    spec = {
        "claimRef": {"namespace": namespace, "name": claim},
        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}]}]}},
    }
    spec[kind] = {"path": "/mnt/disks/" + name}
    return {"metadata": {"name": name}, "spec": spec}


def snap(**kwargs):
    return pf.Snapshot.from_objects(**kwargs)


def names(findings):
    return sorted(f["name"] for f in findings)


# ------------------------------------------------------------------------------------------------
# Quantities
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("500m", Fraction(1, 2)), ("1", 1), ("1.5", Fraction(3, 2)), ("0.1", Fraction(1, 10)),
    ("1Ki", 1024), ("1Gi", 2 ** 30), ("1.5Gi", 3 * 2 ** 29), ("2k", 2000), ("1M", 10 ** 6),
    ("1e3", 1000), ("1E3", 1000), ("5e-1", Fraction(1, 2)), ("100n", Fraction(1, 10 ** 7)),
    ("+2", 2), ("-1", -1), (".5", Fraction(1, 2)), ("3u", Fraction(3, 10 ** 6)), ("1E", 10 ** 18),
    (4, 4), (0.25, Fraction(1, 4)),
])
def test_parse_quantity(text, value):
    assert q.parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1Kb", "1.2.3", "Gi", "1 Gi", "--1", None, True, "1e"])
def test_parse_quantity_rejects(text):
    with pytest.raises(q.QuantityError):
        q.parse_quantity(text)


def test_cpu_and_memory_round_up_like_the_scheduler():
    assert q.resource_amount("cpu", "0.1") == 100
    assert q.resource_amount("cpu", "1m") == 1
    assert q.resource_amount("cpu", "100u") == 1  # sub-millicore requests count as 1m
    assert q.resource_amount("memory", "1.5") == 2
    assert q.resource_amount("memory", "1Mi") == 2 ** 20


@given(st.integers(min_value=0, max_value=10 ** 7))
def test_millicores_round_trip(millis):
    assert q.to_milli(q.format_milli(millis)) == millis


@given(st.integers(min_value=0, max_value=2 ** 62))
def test_bytes_round_trip(amount):
    text = q.format_bytes(amount)
    assert q.to_units(text) == amount
    assert len(text) <= len(str(amount))


@given(st.integers(min_value=0, max_value=10 ** 9),
       st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "n", "u"]))
def test_suffixes_scale_exactly(number, suffix):
    scale = {"": 1, "m": Fraction(1, 1000), "k": 1000, "M": 10 ** 6, "G": 10 ** 9, "Ki": 1024,
             "Mi": 2 ** 20, "Gi": 2 ** 30, "n": Fraction(1, 10 ** 9), "u": Fraction(1, 10 ** 6)}[suffix]
    assert q.parse_quantity("%d%s" % (number, suffix)) == number * scale


@given(st.decimals(min_value=0, max_value=10 ** 6, places=3, allow_nan=False, allow_infinity=False))
def test_decimal_text_parses_exactly(value):
    assert q.parse_quantity(str(value)) == Fraction(str(value))


# ------------------------------------------------------------------------------------------------
# Requests and matching
# ------------------------------------------------------------------------------------------------
def test_pod_requests_takes_init_peak_sidecars_and_overhead():
    spec = {
        "initContainers": [
            {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "migrate", "resources": {"requests": {"cpu": "2", "memory": "64Mi"}}},
        ],
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}}},
        ],
        "overhead": {"cpu": "10m"},
    }
    requests = pf.pod_requests(spec)
    # init peak: sidecar 100m + migrate 2000m = 2100m > containers 500m + sidecar 100m
    assert requests == {"cpu": 2110, "memory": 128 * 2 ** 20, "pods": 1}


def test_pod_level_resources_replace_container_sum():
    spec = {"resources": {"requests": {"cpu": "3"}},
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}
    assert pf.pod_requests(spec) == {"cpu": 3000, "memory": 2 ** 30, "pods": 1}


def test_bad_quantity_in_a_pod_is_ignored_not_fatal():
    spec = {"containers": [{"name": "a", "resources": {"requests": {"cpu": "lots", "memory": "1Gi"}}}]}
    assert pf.pod_requests(spec) == {"memory": 2 ** 30, "pods": 1}


def test_drain_leaves_daemonset_mirror_finished_and_terminating_pods():
    s = snap(nodes=[node("a")], pods=[
        pod("ds", "a", owner=("DaemonSet", "fluentd")),
        pod("static", "a", annotations={"kubernetes.io/config.mirror": "x"}, owner=("Node", "a")),
        pod("done", "a", phase="Succeeded", owner=("Job", "j")),
        pod("going", "a", deleting=True, owner=("ReplicaSet", "r")),
        pod("web", "a", owner=("ReplicaSet", "r")),
    ])
    assert [p.name for p in pf.evicted_pods(s, ["a"])] == ["web"]


# ------------------------------------------------------------------------------------------------
# capacity
# ------------------------------------------------------------------------------------------------
def test_capacity_passes_when_pods_fit():
    s = snap(nodes=[node("a"), node("b", cpu="2")], pods=[
        pod("p1", "a", cpu="1", memory="1Gi", owner=("ReplicaSet", "r")),
        pod("p2", "a", cpu="1", memory="1Gi", owner=("ReplicaSet", "r")),
    ])
    findings, summary = pf.check_capacity(s, ["a"])
    assert findings == []
    assert summary.startswith("2 of 2 evicted pods fit on 1")


def test_capacity_counts_what_is_already_on_the_other_nodes():
    s = snap(nodes=[node("a"), node("b", cpu="2")], pods=[
        pod("existing", "b", cpu="1500m", owner=("ReplicaSet", "x")),
        pod("big", "a", cpu="1", owner=("ReplicaSet", "r")),
        pod("small", "a", cpu="500m", owner=("ReplicaSet", "r")),
    ])
    findings, _summary = pf.check_capacity(s, ["a"])
    assert names(findings) == ["big"]
    assert "short of cpu" in findings[0]["reason"]
    assert findings[0]["requests"]["cpu"] == "1"


def test_capacity_ignores_notready_cordoned_and_drained_nodes():
    s = snap(nodes=[node("a"), node("b", ready=False), node("c", unschedulable=True), node("d")], pods=[
        pod("p", "a", cpu="1", owner=("ReplicaSet", "r"))])
    findings, _summary = pf.check_capacity(s, ["a", "d"])
    assert names(findings) == ["p"]
    assert "1 NotReady" in findings[0]["reason"] and "1 unschedulable" in findings[0]["reason"]


def test_capacity_pod_slots_count():
    s = snap(nodes=[node("a"), node("b", pods="1")], pods=[
        pod("here", "b", owner=("ReplicaSet", "x")),
        pod("p", "a", owner=("ReplicaSet", "r")),
    ])
    findings, _summary = pf.check_capacity(s, ["a"])
    assert names(findings) == ["p"]
    assert "short of pods" in findings[0]["reason"]


def test_capacity_honours_taints_selector_and_affinity():
    s = snap(
        nodes=[node("a"), node("tainted", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
               node("ssd", labels={"disk": "ssd"})],
        pods=[
            pod("needs-hdd", "a", node_selector={"disk": "hdd"}, owner=("ReplicaSet", "r")),
            pod("db", "a", node_selector={"disk": "ssd-db"},
                tolerations=[{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
                owner=("StatefulSet", "db")),
            pod("tolerant", "a", tolerations=[{"operator": "Exists"}],
                affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "dedicated", "operator": "Exists"}]}]}}},
                owner=("ReplicaSet", "r")),
            pod("anywhere", "a", owner=("ReplicaSet", "r")),
        ])
    findings, _summary = pf.check_capacity(s, ["a"])
    assert names(findings) == ["db", "needs-hdd", "tolerant"]
    by_name = {f["name"]: f["reason"] for f in findings}
    assert "nodeSelector" in by_name["needs-hdd"] and "taint" in by_name["needs-hdd"]
    assert "node affinity" in by_name["tolerant"]


def test_capacity_pod_pinned_by_volume_node_affinity():
    s = snap(nodes=[node("a"), node("b")],
             pods=[pod("db-0", "a", owner=("StatefulSet", "db"),
                       volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}])],
             pvs=[local_pv("pv-a", "data-db-0", "a")])
    findings, _summary = pf.check_capacity(s, ["a"])
    assert names(findings) == ["db-0"]
    assert "volume node affinity (pv-a)" in findings[0]["reason"]
    assert findings[0]["fix"] == pf._FIX["capacity_pinned"]


def test_capacity_extended_resources_need_the_node_to_offer_them():
    gpu_node = node("gpu")
    gpu_node["status"]["allocatable"]["nvidia.com/gpu"] = "1"
    s = snap(nodes=[node("a"), node("b"), gpu_node], pods=[
        pod("train", "a", owner=("ReplicaSet", "r"),
            containers=[{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "2"}}}]),
        pod("infer", "a", owner=("ReplicaSet", "r"),
            containers=[{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]),
    ])
    findings, _summary = pf.check_capacity(s, ["a"])
    assert names(findings) == ["train"]


def test_first_fit_decreasing_places_big_pods_first():
    # First fit in arrival order would put the small pods on b and leave the big one without room.
    s = snap(nodes=[node("a", cpu="10"), node("b", cpu="3"), node("c", cpu="1")], pods=[
        pod("s1", "a", cpu="1", owner=("ReplicaSet", "r")),
        pod("s2", "a", cpu="1", owner=("ReplicaSet", "r")),
        pod("big", "a", cpu="3", owner=("ReplicaSet", "r")),
    ])
    placements, pending, _room = pf.pack_first_fit_decreasing(s, ["a"])
    assert [p.name for p, _r, _x in pending] == ["s2"]
    assert placements == {"default/big": "b", "default/s1": "c"}


resources_st = st.fixed_dictionaries({
    "cpu": st.integers(min_value=0, max_value=4000),
    "memory": st.integers(min_value=0, max_value=8 * 2 ** 30),
})


@settings(max_examples=150, deadline=None)
@given(
    nodes=st.lists(st.fixed_dictionaries({
        "cpu": st.integers(min_value=0, max_value=16000),
        "memory": st.integers(min_value=0, max_value=64 * 2 ** 30),
        "pods": st.integers(min_value=0, max_value=8),
        "tainted": st.booleans(),
    }), min_size=1, max_size=6),
    existing=st.lists(st.tuples(st.integers(min_value=0, max_value=5), resources_st), max_size=10),
    evicted=st.lists(st.tuples(resources_st, st.booleans()), max_size=25),
)
def test_packing_never_overcommits_a_node(nodes, existing, evicted):
    node_objs = [node("drained", cpu="64", memory="256Gi")]
    for i, spec in enumerate(nodes):
        node_objs.append(node(
            "n%d" % i, cpu="%dm" % spec["cpu"], memory=str(spec["memory"]), pods=str(spec["pods"]),
            taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}] if spec["tainted"] else []))
    pods = []
    for i, (where, req) in enumerate(existing):
        pods.append(pod("e%d" % i, "n%d" % (where % len(nodes)), cpu="%dm" % req["cpu"], memory=str(req["memory"]),
                        owner=("ReplicaSet", "x")))
    for i, (req, tolerates) in enumerate(evicted):
        pods.append(pod("v%d" % i, "drained", cpu="%dm" % req["cpu"], memory=str(req["memory"]),
                        owner=("ReplicaSet", "r"),
                        tolerations=[{"key": "k", "operator": "Exists"}] if tolerates else None))
    s = snap(nodes=node_objs, pods=pods)
    placements, pending, room = pf.pack_first_fit_decreasing(s, ["drained"])
    assert len(placements) + len(pending) == len(evicted)
    # Recompute every node's load from scratch: a placement may only use room that was free.
    by_ref = {p.ref: p for p in s.pods}
    for n in node_objs[1:]:
        info = s.nodes[n["metadata"]["name"]]
        incoming = [by_ref[ref] for ref, target in placements.items() if target == info.name]
        for r in ("cpu", "memory", "pods"):
            before = sum(p.requests.get(r, 0) for p in s.pods if p.node == info.name)
            added = sum(p.requests.get(r, 0) for p in incoming)
            if incoming:
                assert before + added <= info.allocatable.get(r, 0) or added == 0
        for p in incoming:
            assert pf.placement_obstacle(p.constraints, info) is None
    # A pending pod really fits on no eligible node given what was placed.
    for p, _reason, _pinned in pending:
        for name in room.free:
            assert pf.placement_obstacle(p.constraints, s.nodes[name]) is not None or not room.fits(p, name)


# ------------------------------------------------------------------------------------------------
# pdb
# ------------------------------------------------------------------------------------------------
def test_pdb_zero_allowed_blocks():
    s = snap(nodes=[node("a"), node("b")],
             pods=[pod("web-1", "a", labels={"app": "web"}, owner=("ReplicaSet", "web-1a")),
                   pod("web-2", "b", labels={"app": "web"}, owner=("ReplicaSet", "web-1a"))],
             pdbs=[pdb("web", {"matchLabels": {"app": "web"}}, 0)])
    findings, summary = pf.check_pdb(s, ["a"])
    assert [(f["kind"], f["name"]) for f in findings] == [("PodDisruptionBudget", "web")]
    assert "allows 0 disruptions" in findings[0]["reason"] and findings[0]["pods"] == 1
    assert summary.startswith("1 PodDisruptionBudget")


def test_pdb_allows_fewer_than_pods_on_node():
    s = snap(nodes=[node("a")],
             pods=[pod("w%d" % i, "a", labels={"app": "web"}, owner=("ReplicaSet", "w")) for i in range(3)],
             pdbs=[pdb("web", {"matchLabels": {"app": "web"}}, 1),
                   pdb("enough", {"matchLabels": {"app": "web"}}, 5, namespace="other")])
    findings, _summary = pf.check_pdb(s, ["a"])
    assert len(findings) == 1 and "allows 1 disruption(s) but 3" in findings[0]["reason"]


def test_pdb_enough_budget_and_other_namespace_pass():
    s = snap(nodes=[node("a")],
             pods=[pod("w", "a", labels={"app": "web"}, owner=("ReplicaSet", "w"))],
             pdbs=[pdb("web", {"matchLabels": {"app": "web"}}, 1),
                   pdb("elsewhere", {"matchLabels": {"app": "web"}}, 0, namespace="other"),
                   pdb("none", None, 0)])
    assert pf.check_pdb(s, ["a"])[0] == []


def test_pdb_always_allow_ignores_unready_pods_and_stale_status_is_said():
    s = snap(nodes=[node("a")],
             pods=[pod("w", "a", labels={"app": "web"}, ready=False, owner=("ReplicaSet", "w")),
                   pod("x", "a", labels={"app": "x"}, owner=("ReplicaSet", "x"))],
             pdbs=[pdb("web", {"matchLabels": {"app": "web"}}, 0, policy="AlwaysAllow"),
                   pdb("x", {"matchLabels": {"app": "x"}}, 0, generation=2, observed=1)])
    findings, _summary = pf.check_pdb(s, ["a"])
    assert names(findings) == ["x"]
    assert "status is older" in findings[0]["reason"]


def test_pod_covered_by_two_pdbs():
    s = snap(nodes=[node("a")],
             pods=[pod("w", "a", labels={"app": "web", "tier": "f"}, owner=("ReplicaSet", "w"))],
             pdbs=[pdb("by-app", {"matchLabels": {"app": "web"}}, 3),
                   pdb("by-tier", {"matchLabels": {"tier": "f"}}, 3)])
    findings, _summary = pf.check_pdb(s, ["a"])
    assert [(f["kind"], f["name"]) for f in findings] == [("Pod", "w")]
    assert "by-app, by-tier" in findings[0]["reason"]


# ------------------------------------------------------------------------------------------------
# single_node_workloads
# ------------------------------------------------------------------------------------------------
def test_deployment_with_all_ready_pods_on_the_node():
    s = snap(nodes=[node("a"), node("b")],
             pods=[pod("web-1", "a", owner=("ReplicaSet", "web-5d8")),
                   pod("web-2", "a", owner=("ReplicaSet", "web-5d8")),
                   pod("web-3", "b", owner=("ReplicaSet", "web-5d8"), ready=False),
                   pod("api-1", "a", owner=("ReplicaSet", "api-77")),
                   pod("api-2", "b", owner=("ReplicaSet", "api-77")),
                   pod("db-0", "a", owner=("StatefulSet", "db")),
                   pod("ds", "a", owner=("DaemonSet", "agent")),
                   pod("job", "a", owner=("Job", "once"))],
             replicasets=[replicaset("web-5d8", "web"), replicaset("api-77", "api")])
    findings, _summary = pf.check_single_node_workloads(s, ["a"])
    assert [(f["kind"], f["name"]) for f in findings] == [("Deployment", "web"), ("StatefulSet", "db")]
    assert "all 2 of its ready pods run on a" in findings[0]["reason"]
    assert "only ready pod (db-0)" in findings[1]["reason"]
    assert "anti-affinity" in findings[0]["fix"]


def test_rollout_in_progress_counts_both_replicasets_of_a_deployment():
    s = snap(nodes=[node("a"), node("b")],
             pods=[pod("web-old", "a", owner=("ReplicaSet", "web-1")),
                   pod("web-new", "b", owner=("ReplicaSet", "web-2"))],
             replicasets=[replicaset("web-1", "web"), replicaset("web-2", "web")])
    assert pf.check_single_node_workloads(s, ["a"])[0] == []


def test_bare_replicaset_and_multi_node_drain():
    s = snap(nodes=[node("a"), node("b"), node("c")],
             pods=[pod("r-1", "a", owner=("ReplicaSet", "lonely")),
                   pod("r-2", "b", owner=("ReplicaSet", "lonely"))])
    findings, _summary = pf.check_single_node_workloads(s, ["a", "b"])
    assert [(f["kind"], f["name"], f["nodes"]) for f in findings] == [("ReplicaSet", "lonely", ["a", "b"])]


# ------------------------------------------------------------------------------------------------
# local_storage, unmanaged_pods
# ------------------------------------------------------------------------------------------------
def test_local_storage_kinds():
    s = snap(nodes=[node("a")],
             pods=[pod("hp", "a", owner=("ReplicaSet", "r"),
                       volumes=[{"name": "logs", "hostPath": {"path": "/var/log/app"}}]),
                   pod("ed", "a", owner=("ReplicaSet", "r"),
                       volumes=[{"name": "cache", "emptyDir": {"medium": "Memory"}}]),
                   pod("lpv", "a", owner=("StatefulSet", "db"),
                       volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data-lpv"}}]),
                   pod("net", "a", owner=("StatefulSet", "db"),
                       volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data-net"}},
                                {"name": "cfg", "configMap": {"name": "c"}}]),
                   pod("eph", "a", owner=("ReplicaSet", "r"),
                       volumes=[{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}}])],
             pvs=[local_pv("pv-l", "data-lpv", "a"),
                  {"metadata": {"name": "pv-net"}, "spec": {"claimRef": {"namespace": "default", "name": "data-net"},
                                                            "csi": {"driver": "x"}}},
                  local_pv("pv-e", "eph-scratch", "a")])
    findings, _summary = pf.check_local_storage(s, ["a"])
    by_name = {f["name"]: f["reason"] for f in findings}
    assert sorted(by_name) == ["ed", "eph", "hp", "lpv"]
    assert by_name["hp"].startswith("data stays on a: hostPath logs (/var/log/app)")
    assert "deleted with the pod: emptyDir cache (memory)" in by_name["ed"]
    assert "local PersistentVolume pv-l (claim data-lpv)" in by_name["lpv"]
    assert "deleted with the pod: local PersistentVolume pv-e" in by_name["eph"]


def test_unmanaged_pods():
    s = snap(nodes=[node("a"), node("b")],
             pods=[pod("bare", "a"), pod("managed", "a", owner=("ReplicaSet", "r")), pod("bare-b", "b"),
                   pod("static", "a", annotations={"kubernetes.io/config.mirror": "x"})])
    findings, _summary = pf.check_unmanaged_pods(s, ["a"])
    assert names(findings) == ["bare"]
    assert "nothing re-creates it" in findings[0]["reason"]


# ------------------------------------------------------------------------------------------------
# pull_concentration
# ------------------------------------------------------------------------------------------------
def test_pull_concentration_warns_when_most_pods_land_on_one_node():
    nodes = [node("a", cpu="64"), node("big", cpu="64", memory="256Gi", images=["registry.example/app-0:1"]),
             node("small1", cpu="1", memory="1Gi"), node("small2", cpu="1", memory="1Gi")]
    pods = [pod("p%d" % i, "a", cpu="500m", memory="512Mi", owner=("ReplicaSet", "r"),
                image="registry.example/app-%d:1" % (i % 4)) for i in range(20)]
    s = snap(nodes=nodes, pods=pods)
    findings, _summary = pf.check_pull_concentration(s, ["a"], seconds_per_image=15)
    assert [f["name"] for f in findings] == ["big"]
    assert findings[0]["images_to_pull"] == 3 and findings[0]["estimated_seconds"] == 45
    assert findings[0]["pods"] >= 16


def test_pull_concentration_quiet_when_pods_spread_or_few():
    nodes = [node("a", cpu="64")] + [node("n%d" % i, cpu="8") for i in range(8)]
    pods = [pod("p%d" % i, "a", cpu="500m", owner=("ReplicaSet", "r")) for i in range(24)]
    s = snap(nodes=nodes, pods=pods)
    assert pf.check_pull_concentration(s, ["a"])[0] == []
    s = snap(nodes=[node("a"), node("b")], pods=pods[:5])
    assert pf.check_pull_concentration(s, ["a"])[0] == []


def test_spread_prefers_least_allocated():
    s = snap(nodes=[node("a"), node("busy", cpu="4"), node("idle", cpu="4")],
             pods=[pod("existing", "busy", cpu="3", owner=("ReplicaSet", "x")),
                   pod("p", "a", cpu="500m", owner=("ReplicaSet", "r"))])
    assert list(pf.spread_least_allocated(s, ["a"])) == ["idle"]


# ------------------------------------------------------------------------------------------------
# run_checks, snapshot plumbing
# ------------------------------------------------------------------------------------------------
def test_run_checks_status_follows_fail_on():
    s = snap(nodes=[node("a"), node("b")], pods=[pod("bare", "a")])
    ok, results = pf.run_checks(s, ["a"], fail_on=("capacity", "pdb"))
    assert ok
    assert results["unmanaged_pods"]["status"] == "warn"
    assert results["capacity"]["status"] == "pass"
    assert list(results) == list(pf.CHECKS)
    ok, results = pf.run_checks(s, ["a"], checks=("unmanaged_pods",), fail_on=("unmanaged_pods",))
    assert not ok and list(results) == ["unmanaged_pods"] and results["unmanaged_pods"]["status"] == "fail"


def test_healthy_cluster_passes_everything():
    s = snap(nodes=[node("a"), node("b"), node("c")],
             pods=[pod("web-%d" % i, n, cpu="100m", memory="64Mi", labels={"app": "web"},
                       owner=("ReplicaSet", "web-1")) for i, n in enumerate("abc")],
             replicasets=[replicaset("web-1", "web")],
             pdbs=[pdb("web", {"matchLabels": {"app": "web"}}, 1)])
    ok, results = pf.run_checks(s, ["a"], fail_on=pf.CHECKS)
    assert ok, results
    assert {r["status"] for r in results.values()} == {"pass"}


def test_snapshot_clear_and_missing_nodes():
    s = snap(nodes=[node("a")], pods=[pod("x", "a")], replicasets=[replicaset("r", "d")],
             pvs=[local_pv("p", "c", "a")])
    assert pf.missing_nodes(s, ["a", "zz"]) == ["zz"]
    for what in ("nodes", "pods", "pdbs", "replicasets", "pvs"):
        s.clear(what)
    assert not s.nodes and not s.pods and not s.replicaset_owners and not s.pvs_by_claim


def test_focus_keeps_light_records_off_the_drained_nodes():
    pods = [pod("here", "a", cpu="1", labels={"app": "x"}, owner=("ReplicaSet", "r"),
                volumes=[{"name": "v", "emptyDir": {}}]),
            pod("there", "b", cpu="1", labels={"app": "x"}, owner=("ReplicaSet", "r"),
                volumes=[{"name": "v", "emptyDir": {}}])]
    full = snap(nodes=[node("a"), node("b")], pods=pods)
    light = snap(nodes=[node("a"), node("b")], pods=pods, focus=["a"])
    there = [p for p in light.pods if p.name == "there"][0]
    assert there.requests == {"cpu": 1000, "pods": 1} and there.owner == ("ReplicaSet", "r")
    assert there.labels == {} and there.volumes == ()
    assert pf.run_checks(full, ["a"]) == pf.run_checks(light, ["a"])
    with pytest.raises(ValueError):
        pf.run_checks(light, ["b"])


# ------------------------------------------------------------------------------------------------
# Paged lists
# ------------------------------------------------------------------------------------------------
def _pages(count, per_page=3, token_in_head=True):
    """A fake API: fetch(token) returns the raw JSON of one page, like a list call."""
    import json

    calls = []

    def fetch(token):
        calls.append(token)
        index = int(token or 0)
        cont = str(index + 1) if index + 1 < count else ""
        items = [{"metadata": {"name": "p%d-%d" % (index, i)}} for i in range(per_page)]
        if token_in_head:
            doc = '{"kind":"PodList","metadata":{"resourceVersion":"9","continue":%s},"items":%s}' % (
                json.dumps(cont), json.dumps(items))
        else:
            doc = '{"kind":"PodList","items":%s,"metadata":{"continue":%s}}' % (json.dumps(items), json.dumps(cont))
        return doc.encode()

    return fetch, calls


@pytest.mark.parametrize("prefetch", [True, False])
@pytest.mark.parametrize("token_in_head", [True, False])
@pytest.mark.parametrize("count", [1, 2, 7])
def test_iter_pages_reads_every_page_once_in_order(prefetch, token_in_head, count):
    fetch, calls = _pages(count, token_in_head=token_in_head)
    names = [item["metadata"]["name"] for page in pf.iter_pages(fetch, prefetch=prefetch)
             for item in page["items"]]
    assert names == ["p%d-%d" % (p, i) for p in range(count) for i in range(3)]
    assert calls == [None] + [str(i) for i in range(1, count)]


def test_iter_pages_hands_fetch_errors_to_the_caller():
    fetch, _calls = _pages(5)

    def failing(token):
        if token == "2":
            raise RuntimeError("boom")
        return fetch(token)

    seen = []
    with pytest.raises(RuntimeError, match="boom"):
        for page in pf.iter_pages(failing):
            seen.append(page)
    assert len(seen) == 2


def test_iter_pages_stops_its_thread_when_the_caller_stops_early():
    import threading

    fetch, _calls = _pages(50)
    before = threading.active_count()
    for _page in pf.iter_pages(fetch):
        break
    assert threading.active_count() == before


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=", max_size=200))
def test_peek_continue_finds_the_token_before_the_items(token):
    raw = ('{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1","continue":"%s",'
           '"remainingItemCount":5},"items":[{"metadata":{"continue":"not-this"}}]}' % token).encode()
    assert (pf._peek_continue(raw) or None) == (token or None)


# ------------------------------------------------------------------------------------------------
# read_snapshot over HTTP (a scripted API server on 127.0.0.1); a real API server and the speed
# target are exercised by tests/integration/test_k8s_node_preflight.py and benchmarks/bench_preflight.py
# ------------------------------------------------------------------------------------------------


# The list paths (one name per line, as in tests/unit/plugins/modules/, where ansible-lint warns
# about tuple assignments at module level).
PODS = "/api/v1/pods"
NODES = "/api/v1/nodes"
REPLICASETS = "/apis/apps/v1/replicasets"
PDBS = "/apis/policy/v1/poddisruptionbudgets"
PVS = "/api/v1/persistentvolumes"
USER_AGENT = "kubeops.node_maintenance/k8s_node_preflight"


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
    return pf.read_snapshot(server.raw(user_agent=USER_AGENT), list(focus), page_size, time.monotonic() + timeout)


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
        {"fieldSelector": pf.UNFINISHED_PODS, "limit": "2"},
        {"fieldSelector": pf.UNFINISHED_PODS, "limit": "2", "continue": "p2"},
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
    ok, results = pf.run_checks(snapshot, ["n1"], checks=["capacity"], fail_on=["capacity"])
    assert ok and results["capacity"]["summary"].startswith("1 of 1 evicted pods fit")


# ------------------------------------------------------------------------------------------------
# preflight: the whole module run, in process
# ------------------------------------------------------------------------------------------------


def preflight_params(**overrides):
    values = {"checks": ["all"], "fail_on": list(pf.DEFAULT_FAIL_ON), "page_size": 500, "timeout": 10,
              "pull_estimate": {"share": 0.5, "min_pods": 10, "seconds_per_image": 10}}
    values.update(overrides)
    return values


def run_preflight(server, names, **overrides):
    warnings = []
    result = pf.preflight(lambda: server.raw(user_agent=USER_AGENT), names, preflight_params(**overrides),
                          warnings.append)
    return result, warnings


def test_names_are_checked_once_each_and_named_as_nodes():
    assert pf.node_names(["n2", "n1", "n2"]) == ["n2", "n1"]
    assert pf.nodes_ref(["n2", "n1"]) == "node/n2, node/n1"


def test_a_pass_returns_every_check_the_snapshot_and_the_warnings(k8s_server):
    server = k8s_server(by_path(cluster()))
    result, warnings = run_preflight(server, ["n1"], fail_on=[])
    assert result["changed"] is False and result["ok"] is True and result["nodes"] == ["n1"]
    assert list(result["checks"]) == list(pf.CHECKS)
    assert result["msg"] == "preflight passed for node/n1 (%s)" % ", ".join(
        "%s: %s" % (check, r["status"]) for check, r in result["checks"].items())
    warned = [check for check, r in result["checks"].items() if r["status"] == "warn"]
    assert warned and [w.split(":")[0] for w in warnings] == warned
    assert result["snapshot"]["nodes"] == 3 and result["snapshot"]["list_calls"] == 5
    assert isinstance(result["snapshot"]["seconds"], float)
    assert gc.isenabled()


def test_findings_in_fail_on_fail_with_the_whole_result(k8s_server):
    server = k8s_server(by_path(cluster(**{PDBS: Pager("PodDisruptionBudgetList", [api_pdb(0)])})))
    with pytest.raises(ModuleFailure) as caught:
        run_preflight(server, ["n1"], checks=["pdb"], fail_on=["all"])
    failure = caught.value
    assert failure.msg.startswith("preflight refuses to drain node/n1: pdb: 1 finding(s), e.g. "
                                  "poddisruptionbudget/shop/web allows 0 disruptions now")
    assert failure.fields["changed"] is False and failure.fields["ok"] is False
    assert set(failure.fields) == {"changed", "ok", "nodes", "checks", "snapshot"} and "msg" not in failure.fields
    assert gc.isenabled()


def test_a_missing_node_and_an_access_error_fail_naming_the_nodes(k8s_server):
    server = k8s_server(by_path(cluster()))
    with pytest.raises(ModuleFailure) as caught:
        run_preflight(server, ["n1", "n9", "n8"])
    assert caught.value.msg == "node/n9, node/n8: not found; `kubectl get nodes` lists the names"
    assert caught.value.fields == {"changed": False}
    assert gc.isenabled()

    server = k8s_server(by_path(cluster(**{PODS: lambda q: (401, status_body(401, "Unauthorized", "Unauthorized"))})))
    with pytest.raises(ModuleFailure) as caught:
        run_preflight(server, ["n1", "n2"])
    assert caught.value.msg.startswith("preflight of node/n1, node/n2: pods in all namespaces: unauthorized (401)")
    assert caught.value.fields == {"changed": False, "status": 401}
    assert gc.isenabled()


def test_a_bad_page_size_fails_before_any_connection():
    connected = []
    with pytest.raises(ModuleFailure) as caught:
        pf.preflight(lambda: connected.append(1), ["n1"], preflight_params(page_size=0), [].append)
    assert caught.value.msg == "page_size must be at least 1, got 0" and caught.value.fields == {}
    assert connected == [] and gc.isenabled()


# ------------------------------------------------------------------------------------------------
# opt_outs (issue #20): the drain's rule (_pod_rules.opt_outs), reported before the drain
# ------------------------------------------------------------------------------------------------
def opt_out_snapshot():
    return snap(nodes=[node("a"), node("b", cpu="2")], pods=[
        pod("db-0", "a", cpu="1", owner=("StatefulSet", "db"), annotations={"karpenter.sh/do-not-disrupt": "true"}),
        pod("batch", "a", cpu="1", owner=("ReplicaSet", "r"),
            annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}),
        pod("stay", "a", cpu="4", owner=("ReplicaSet", "r"), labels={"cluster.x-k8s.io/drain": "skip"}),
        pod("job", "a", cpu="4", owner=("Job", "j"), labels={"cluster.x-k8s.io/drain": "WaitCompleted"}),
        pod("odd", "a", owner=("ReplicaSet", "r"), labels={"cluster.x-k8s.io/drain": "later"}),
        pod("elsewhere", "b", annotations={"karpenter.sh/do-not-disrupt": "true"}),
        pod("plain", "a", owner=("ReplicaSet", "r")),
    ], focus=["a"])


def test_opt_outs_names_each_marked_pod_with_what_the_drain_does_and_the_fix():
    findings, summary = pf.check_opt_outs(opt_out_snapshot(), ["a"])
    by_name = dict((f["name"], f) for f in findings)
    assert sorted(by_name) == ["batch", "db-0", "job", "odd", "stay"]
    assert [by_name[n]["effect"] for n in ("db-0", "batch", "stay", "job", "odd")] == [
        "block", "block", "skip", "wait_completed", "ignored"]
    assert by_name["db-0"]["reason"].startswith(
        "annotation karpenter.sh/do-not-disrupt=true (karpenter): protects the pod: the drain of a refuses to start")
    assert "ignore_opt_outs: [karpenter]" in by_name["db-0"]["fix"]
    assert "node_maintenance_drain_ignore_opt_outs" in by_name["db-0"]["fix"]
    assert "ignore_opt_outs: [cluster-autoscaler]" in by_name["batch"]["fix"]
    assert "leaves the pod on the node" in by_name["stay"]["reason"] and "down for the action" in by_name["stay"]["fix"]
    assert "waits until it finishes" in by_name["job"]["reason"] and "timeout" in by_name["job"]["fix"]
    assert "unknown value" in by_name["odd"]["reason"]
    assert by_name["db-0"]["vocabulary"] == "karpenter" and by_name["db-0"]["node"] == "a"
    assert summary == "5 opt-out mark(s) on pods of the node(s), 2 of them refusing the drain"


def test_pods_the_drain_skips_or_waits_for_by_label_need_no_room_elsewhere():
    s = opt_out_snapshot()
    assert sorted(p.name for p in pf.evicted_pods(s, ["a"])) == ["batch", "db-0", "odd", "plain"]
    # Node b's 2 cpu hold the evicted pods, not the 4-cpu ones that stay or finish on node a.
    assert pf.check_capacity(s, ["a"])[0] == []
    ok, results = pf.run_checks(s, ["a"], fail_on=("opt_outs",))
    assert not ok and results["opt_outs"]["status"] == "fail"


def test_ignore_opt_outs_shows_the_pods_as_the_drain_will_treat_them():
    s = opt_out_snapshot()
    _ok, results = pf.run_checks(s, ["a"], checks=("opt_outs", "capacity"), ignore_opt_outs=["cluster-api"])
    effects = dict((f["name"], f["effect"]) for f in results["opt_outs"]["findings"])
    assert effects == {"db-0": "block", "batch": "block", "stay": "ignored", "job": "ignored", "odd": "ignored"}
    # Now evicted, the two 4-cpu pods need room, and node b (1 cpu) has none.
    assert sorted(f["name"] for f in results["capacity"]["findings"]) == ["job", "stay"]
    _ok, results = pf.run_checks(s, ["a"], checks=("opt_outs",), ignore_opt_outs=["all"])
    assert set(f["effect"] for f in results["opt_outs"]["findings"]) == {"ignored"}
    assert results["opt_outs"]["summary"].endswith("0 of them refusing the drain")


# A batch judged as a whole (the nodes of one batch of a rolling maintenance)
# ------------------------------------------------------------------------------------------------
BATCH = ["a", "b", "c"]


def test_a_batch_that_each_node_alone_passes_fails_together():
    # each batch node is full but for one core: its 3-core pod fits on the spare (4 cores) while the
    # others stay; four replicas of web, one per batch node and one on the spare, under a PDB that
    # allows two disruptions; a Deployment whose two ready pods sit on a and b
    s = snap(nodes=[node(n) for n in BATCH] + [node("spare")],
             pods=[pod("big-" + n, n, cpu="3") for n in BATCH]
             + [pod("web-" + n, n, labels={"app": "web"}, owner=("ReplicaSet", "web-1")) for n in BATCH]
             + [pod("api-a", "a", owner=("ReplicaSet", "api-1")), pod("api-b", "b", owner=("ReplicaSet", "api-1"))]
             + [pod("web-spare", "spare", labels={"app": "web"}, owner=("ReplicaSet", "web-1"))],
             replicasets=[replicaset("web-1", "web"), replicaset("api-1", "api")],
             pdbs=[pdb("web", {"matchLabels": {"app": "web"}}, 2)])
    checks = ["capacity", "pdb", "single_node_workloads"]
    for name in BATCH:
        ok, results = pf.run_checks(s, [name], checks=checks, fail_on=checks)
        assert ok, (name, results)
    ok, results = pf.run_checks(s, BATCH, checks=checks, fail_on=checks)
    assert not ok
    # capacity with all three removed: the spare takes one 3-core pod, two stay Pending
    assert len(results["capacity"]["findings"]) == 2
    assert results["capacity"]["summary"] == "6 of 8 evicted pods fit on 1 Ready schedulable nodes"
    # the budget counted over the batch: 3 pods on it, 2 disruptions allowed
    (short,) = results["pdb"]["findings"]
    assert (short["name"], short["pods"], short["disruptions_allowed"]) == ("web", 3, 2)
    # api's ready pods all sit on the batch (a and b)
    api = [f for f in results["single_node_workloads"]["findings"] if f["name"] == "api"]
    assert api and api[0]["nodes"] == ["a", "b"]


def test_max_unavailable_counts_the_nodes_already_out_of_service():
    s = snap(nodes=[node("a"), node("b"), node("c"), node("d", unschedulable=True), node("e", ready=False),
                    node("f")])
    # 5 Ready nodes (d is Ready, cordoned); out: d, e and the batch
    assert pf.check_max_unavailable(s, ["a", "b"], 4) == (
        [], "4 node(s) out of service with these, at most 4 allowed (max_unavailable 4 of 5 Ready nodes)")
    findings, _summary = pf.check_max_unavailable(s, ["a", "b"], 3)
    (finding,) = findings
    assert finding["reason"] == (
        "taking node/a, node/b out makes 4 node(s) unavailable, more than max_unavailable 3 allows (3 of 5 "
        "Ready nodes); already out of service: d (cordoned), e (NotReady)")
    assert finding["unavailable"] == ["d", "e"] and finding["nodes"] == ["a", "b"] and finding["allowed"] == 3
    # a node of the batch that is cordoned already (it resumes) is counted once
    assert pf.check_max_unavailable(s, ["a", "d"], "60%")[0] == []  # 60% of 5 = 3: a, d, e
    assert pf.check_max_unavailable(s, ["a", "b", "d"], "60%")[0] != []


@given(st.integers(min_value=0, max_value=2000), st.integers(min_value=1, max_value=100))
def test_a_percentage_of_ready_nodes_rounds_down_and_allows_at_least_one(ready, percent):
    allowed = pf.allowed_unavailable("%d%%" % percent, ready)
    assert allowed == max(1, ready * percent // 100)
    assert allowed >= 1 and (allowed <= ready or allowed == 1)


@pytest.mark.parametrize("value", [0, "0", "0%", "-1", "x", "101%", True, None, "1.5"])
def test_max_unavailable_refuses_what_is_not_a_limit(value):
    with pytest.raises(ValueError, match="max_unavailable"):
        pf.allowed_unavailable(value, 10)


def test_max_unavailable_in_the_module_run_fails_first_and_whatever_fail_on_says(k8s_server):
    nodes = Pager("NodeList", [api_node("n1"), api_node("n2"), dict(api_node("n3"), spec={"unschedulable": True})])
    server = k8s_server(by_path(cluster(**{NODES: nodes})))
    with pytest.raises(ModuleFailure) as caught:
        run_preflight(server, ["n1", "n2"], max_unavailable=2, fail_on=[])
    assert caught.value.msg.startswith(
        "preflight refuses to drain node/n1, node/n2: max_unavailable: taking node/n1, node/n2 out makes 3 node(s) "
        "unavailable, more than max_unavailable 2 allows (2 of 3 Ready nodes); already out of service: n3 (cordoned)")
    results = caught.value.fields["checks"]
    assert list(results)[0] == "max_unavailable" and results["max_unavailable"]["status"] == "fail"
    result, _warnings = run_preflight(server, ["n1"], max_unavailable="100%", fail_on=[])
    assert result["ok"] is True and result["checks"]["max_unavailable"]["status"] == "pass"
    # not given: no such check
    assert "max_unavailable" not in run_preflight(server, ["n1"], fail_on=[])[0]["checks"]


def test_a_bad_max_unavailable_fails_before_any_connection():
    connected = []
    with pytest.raises(ModuleFailure) as caught:
        pf.preflight(lambda: connected.append(1), ["n1"], preflight_params(max_unavailable="ten"), [].append)
    assert caught.value.msg == "max_unavailable must be a number or a percentage such as 50%, not 'ten'"
    assert connected == []


# --------------------------------------------------------------------------------------------
# replacement_first: the Deployments the drain would restart before evicting (its own rule)
# --------------------------------------------------------------------------------------------
OPT_IN = {"node-maintenance.kubeops.io/replacement-first": "true"}
OPT_OUT = {"node-maintenance.kubeops.io/replacement-first": "false"}


def deployment(name, ready, namespace="default", strategy=None, paused=False):
    spec = {"replicas": ready, "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}
    if paused:
        spec["paused"] = True
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec, "status": {"readyReplicas": ready}}


def replacement_snapshot():
    s = snap(nodes=[node("a"), node("b")],
             pods=[pod("web-1", "a", owner=("ReplicaSet", "web-5d8"), annotations=OPT_IN, labels={"app": "web"}),
                   pod("web-2", "a", owner=("ReplicaSet", "web-5d8"), annotations=OPT_IN, labels={"app": "web"}),
                   # every ready replica on a, but Recreate: wanted, not possible
                   pod("old-1", "a", owner=("ReplicaSet", "old-9"), annotations=OPT_IN),
                   # a replica elsewhere and a budget that allows a disruption: nothing to do
                   pod("api-1", "a", owner=("ReplicaSet", "api-77"), annotations=OPT_IN, labels={"app": "api"}),
                   pod("api-2", "b", owner=("ReplicaSet", "api-77"), annotations=OPT_IN, labels={"app": "api"}),
                   # a replica elsewhere, but its budget allows no disruption now: restarted first
                   pod("pay-1", "a", owner=("ReplicaSet", "pay-3"), labels={"app": "pay"}),
                   pod("pay-2", "b", owner=("ReplicaSet", "pay-3"), labels={"app": "pay"}),
                   # opted out by its annotation, whatever the run says
                   pod("cache-1", "a", owner=("ReplicaSet", "cache-1"), annotations=OPT_OUT),
                   pod("db-0", "a", owner=("StatefulSet", "db"), annotations=OPT_IN)],
             replicasets=[replicaset("web-5d8", "web"), replicaset("old-9", "old"), replicaset("api-77", "api"),
                          replicaset("pay-3", "pay"), replicaset("cache-1", "cache")],
             pdbs=[pdb("api", {"matchLabels": {"app": "api"}}, 1), pdb("pay", {"matchLabels": {"app": "pay"}}, 0)])
    s.deployments = {("default", "web"): deployment("web", 2), ("default", "api"): deployment("api", 2),
                     ("default", "old"): deployment("old", 1, strategy={"type": "Recreate"}),
                     ("default", "pay"): deployment("pay", 2), ("default", "cache"): deployment("cache", 1)}
    return s


def test_replacement_first_lists_what_the_drain_would_restart_and_what_it_cannot():
    s = replacement_snapshot()
    # the run's option off: only the pods that opt in by their annotation (never a StatefulSet)
    groups = pf.replacement_candidates(s, ["a"], False)
    assert sorted(groups) == [("default", "api"), ("default", "old"), ("default", "web")]
    findings, summary = pf.check_replacement_first(s, ["a"], False)
    assert [(f["name"], f["state"]) for f in findings] == [("old", "not_replaced"), ("web", "would_replace")]
    web = findings[1]
    assert web["kind"] == "Deployment" and web["pods"] == ["web-1", "web-2"] and web["nodes"] == ["a"]
    assert "every ready replica (2) is on the node" in web["reason"] and "restarts it before evicting" in web["reason"]
    assert "Recreate" in findings[0]["reason"] and "maxSurge" in findings[0]["fix"]
    assert summary == "3 Deployment(s) with opted-in pods on the node(s); the drain would restart 1 first"
    # the run's option on: pay (its budget allows no disruption) joins; cache stays out by its annotation
    findings, _summary = pf.check_replacement_first(s, ["a"], True)
    assert [(f["name"], f["state"]) for f in findings] == [
        ("old", "not_replaced"), ("pay", "would_replace"), ("web", "would_replace")]
    assert "pdb default/pay allows no disruption now" in findings[1]["reason"]
    # a batch of both nodes: api's ready replicas are all on it now
    findings, _summary = pf.check_replacement_first(s, ["a", "b"], False)
    assert [(f["name"], f["nodes"]) for f in findings] == [("api", ["a", "b"]), ("old", ["a"]), ("web", ["a"])]


def test_replacement_first_finds_nothing_without_the_deployments_and_only_warns():
    s = replacement_snapshot()
    s.deployments = {}
    assert pf.check_replacement_first(s, ["a"], True)[0] == []
    ok, results = pf.run_checks(replacement_snapshot(), ["a"], checks=["replacement_first"], replacement_first=True)
    assert ok and results["replacement_first"]["status"] == "warn"
    assert "replacement_first" not in pf.DEFAULT_FAIL_ON
