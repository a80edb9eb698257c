"""k8s_node_preflight against the real local control plane.

Each test builds its situation for real (the scheduler places the pods, the ReplicaSet controller
makes them, kwok makes them Ready, the disruption controller computes PDB status) on nodes of its
own: they carry a label and a NoSchedule taint named after the test's namespace, and the test's
pods select and tolerate exactly that, so pods of other tests sharing the cluster never land there.
Assertions about findings are scoped to the test's namespace and nodes.
"""
import json
import time

import pytest

pytestmark = pytest.mark.integration

GROUP_KEY = "kubeops.test/preflight-group"
MODULE = "k8s_node_preflight"


def wait_for(what, predicate, timeout=90, interval=0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


class Group:
    """Nodes only this test's pods may use, and helpers to put workloads on them."""

    def __init__(self, cluster, namespace, make_node):
        self.cluster = cluster
        self.namespace = namespace
        self.make_node = make_node
        self.cleanup = []

    def node(self, cpu="8", memory="32Gi", pods="110", unschedulable=False):
        return self.make_node(
            cpu=cpu, memory=memory, pods=pods, unschedulable=unschedulable,
            labels={GROUP_KEY: self.namespace},
            taints=[{"key": GROUP_KEY, "value": self.namespace, "effect": "NoSchedule"}])

    def pod_spec(self, cpu="100m", memory="64Mi", image="registry.invalid/app:1", volumes=None, node=None):
        spec = {
            "containers": [{"name": "app", "image": image,
                            "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
            "nodeSelector": {GROUP_KEY: self.namespace},
            "tolerations": [{"key": GROUP_KEY, "operator": "Equal", "value": self.namespace,
                             "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 0,
        }
        if volumes:
            spec["volumes"] = volumes
            spec["containers"][0]["volumeMounts"] = [
                {"name": v["name"], "mountPath": "/mnt/" + v["name"]} for v in volumes]
        if node:
            spec["nodeSelector"]["kubernetes.io/hostname"] = node
        return spec

    def deployment(self, name, replicas, spread=False, annotations=None, strategy=None, **pod_kwargs):
        spec = self.pod_spec(**pod_kwargs)
        if spread:
            spec["topologySpreadConstraints"] = [{
                "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": name}}}]
        body = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                                  "spec": spec}},
        }
        if strategy:
            body["spec"]["strategy"] = strategy
        self.cluster.apps.create_namespaced_deployment(self.namespace, body)
        return self.wait_ready(name, replicas)

    def bare_pod(self, name, **pod_kwargs):
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                "spec": self.pod_spec(**pod_kwargs)}
        self.cluster.core.create_namespaced_pod(self.namespace, body)
        return self.wait_ready(name, 1)

    def ready_pods(self, app):
        pods = self.cluster.core.list_namespaced_pod(self.namespace, label_selector="app=" + app).items
        return [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]

    def wait_ready(self, app, count):
        """{pod name: node} once ``count`` pods of ``app`` are Ready."""
        def enough():
            ready = self.ready_pods(app)
            return ready if len(ready) >= count else None

        pods = wait_for("%d ready pods of %s" % (count, app), enough)
        return {p.metadata.name: p.spec.node_name for p in pods}

    def pdb(self, name, app, **spec):
        body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
                "spec": dict(spec, selector={"matchLabels": {"app": app}})}
        self.cluster.policy.create_namespaced_pod_disruption_budget(self.namespace, body)

    def wait_pdb(self, name, healthy):
        def settled():
            pdb = self.cluster.policy.read_namespaced_pod_disruption_budget(name, self.namespace)
            status = pdb.status
            if status and status.observed_generation == pdb.metadata.generation \
                    and status.current_healthy == healthy:
                return status
            return None
        return wait_for("PDB %s to count %d healthy pods" % (name, healthy), settled)

    def uncordon(self, node):
        self.cluster.core.patch_node(node, {"spec": {"unschedulable": False}})


@pytest.fixture
def group(cluster, namespace, make_node):
    g = Group(cluster, namespace, make_node)
    yield g
    for kind, name in g.cleanup:
        if kind == "pv":
            cluster.kubectl("delete", "pv", name, "--wait=false", "--ignore-not-found", check=False)


def mine(result, check, namespace, nodes=()):
    """Findings of one check that concern this test: its namespace, or one of its nodes."""
    return [f for f in result["checks"][check]["findings"]
            if f["namespace"] == namespace or (f["namespace"] is None and f["name"] in nodes)]


def test_healthy_group_passes_every_check_in_check_mode_and_real(group, run_module, namespace):
    nodes = [group.node() for _index in range(3)]
    placed = group.deployment("web", 3, spread=True)  # maxSkew 1 over 3 nodes: one pod on each
    assert sorted(placed.values()) == sorted(nodes), placed
    group.pdb("web", "web", maxUnavailable=1)
    group.wait_pdb("web", 3)
    target = placed[sorted(placed)[0]]

    for check_mode in (True, False):
        result = run_module(MODULE, {"name": target, "fail_on": ["all"]}, check=check_mode)
        assert not result["failed"], result.get("msg")
        assert result["ok"] is True and result["changed"] is False
        assert {c: r["status"] for c, r in result["checks"].items()} == {
            c: "pass" for c in ("capacity", "pdb", "single_node_workloads", "local_storage",
                                "unmanaged_pods", "pull_concentration", "opt_outs",
                                "replacement_first")}, json.dumps(result["checks"], indent=1)
        assert result["nodes"] == [target]
        assert result["snapshot"]["list_calls"] >= 5
        assert "preflight passed for node/%s" % target in result["msg"]


def test_capacity_names_the_pods_that_would_stay_pending(group, run_module, namespace):
    nodes = [group.node(cpu="2"), group.node(cpu="2")]
    placed = group.deployment("big", 2, cpu="1500m")
    assert sorted(placed.values()) == sorted(nodes)
    pod_on_first = [name for name, where in placed.items() if where == nodes[0]][0]

    result = run_module(MODULE, {"name": nodes[0], "checks": ["capacity"]})
    assert result["failed"] and result["ok"] is False
    findings = mine(result, "capacity", namespace)
    assert [(f["kind"], f["name"]) for f in findings] == [("Pod", pod_on_first)]
    assert "would stay Pending" in findings[0]["reason"] and "short of cpu" in findings[0]["reason"]
    assert findings[0]["requests"]["cpu"] == "1500m"
    assert "capacity: " in result["msg"] and "node/%s" % nodes[0] in result["msg"]

    # Both nodes at once: the small pods of another workload fit nowhere either.
    result = run_module(MODULE, {"name": nodes, "checks": ["capacity"], "fail_on": []})
    assert not result["failed"] and result["ok"] is True
    assert result["checks"]["capacity"]["status"] == "warn"
    assert sorted(f["name"] for f in mine(result, "capacity", namespace)) == sorted(placed)


def test_pdb_with_zero_disruptions_allowed_blocks(group, run_module, namespace):
    group.node()
    group.node()
    placed = group.deployment("web", 2)
    group.pdb("web", "web", minAvailable=2)
    status = group.wait_pdb("web", 2)
    assert status.disruptions_allowed == 0
    target = sorted(placed.values())[0]

    result = run_module(MODULE, {"name": target})
    assert result["failed"] and result["ok"] is False
    assert result["checks"]["pdb"]["status"] == "fail"
    findings = mine(result, "pdb", namespace)
    assert [(f["kind"], f["name"], f["disruptions_allowed"]) for f in findings] == [
        ("PodDisruptionBudget", "web", 0)]
    assert "allows 0 disruptions" in findings[0]["reason"]
    assert "pdb: 1 finding(s)" in result["msg"] or "pdb: " in result["msg"]


def test_all_replicas_on_one_node(group, run_module, namespace):
    crowded = group.node()
    later = group.node(unschedulable=True)  # joined after the rollout, as happens in real clusters
    placed = group.deployment("web", 3)
    assert set(placed.values()) == {crowded}
    group.uncordon(later)

    result = run_module(MODULE, {"name": crowded, "checks": ["single_node_workloads", "capacity"]})
    assert not result["failed"], result.get("msg")
    assert result["checks"]["capacity"]["status"] == "pass"
    assert result["checks"]["single_node_workloads"]["status"] == "warn"
    findings = mine(result, "single_node_workloads", namespace)
    assert [(f["kind"], f["name"], f["ready_pods"], f["nodes"]) for f in findings] == [
        ("Deployment", "web", 3, [crowded])]
    assert "anti-affinity" in findings[0]["fix"]
    assert any("single_node_workloads" in w for w in result.get("warnings", []))


def test_local_storage_hostpath_emptydir_and_local_pv(group, run_module, namespace, cluster):
    target = group.node()
    group.node()
    pv_name = "%s-local" % namespace
    cluster.core.create_persistent_volume({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
                 "claimRef": {"namespace": namespace, "name": "data"},
                 "local": {"path": "/mnt/disks/data"},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [target]}]}]}}}})
    group.cleanup.append(("pv", pv_name))
    cluster.core.create_namespaced_persistent_volume_claim(namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv_name,
                 "resources": {"requests": {"storage": "1Gi"}}}})
    wait_for("claim data bound", lambda: cluster.core.read_namespaced_persistent_volume_claim(
        "data", namespace).status.phase == "Bound")
    group.deployment("logs", 1, node=target,
                     volumes=[{"name": "varlog", "hostPath": {"path": "/var/log/app"}},
                              {"name": "scratch", "emptyDir": {}}])
    db = group.deployment("db", 1, volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}])
    assert list(db.values()) == [target]  # the scheduler honoured the PV's node affinity

    result = run_module(MODULE, {"name": target, "checks": ["local_storage", "capacity"], "fail_on": []})
    assert not result["failed"], result.get("msg")
    findings = {f["name"].rsplit("-", 2)[0]: f for f in mine(result, "local_storage", namespace)}
    assert sorted(findings) == ["db", "logs"]
    assert "hostPath varlog (/var/log/app)" in findings["logs"]["reason"]
    assert "deleted with the pod: emptyDir scratch" in findings["logs"]["reason"]
    assert "local PersistentVolume %s (claim data)" % pv_name in findings["db"]["reason"]
    # The pod on the local volume cannot start anywhere else, and the capacity check says why.
    pending = mine(result, "capacity", namespace)
    assert len(pending) == 2
    assert any("volume node affinity (%s)" % pv_name in f["reason"] for f in pending)


def test_bare_pod_is_unmanaged(group, run_module, namespace):
    target = group.node()
    group.node()
    group.bare_pod("lonely", node=None)
    group.deployment("web", 1)
    where = group.wait_ready("lonely", 1)
    target = list(where.values())[0]

    result = run_module(MODULE, {"name": target, "checks": ["unmanaged_pods"],
                                 "fail_on": ["unmanaged_pods"]})
    assert result["failed"] and result["ok"] is False
    findings = mine(result, "unmanaged_pods", namespace)
    assert [(f["kind"], f["name"], f["node"]) for f in findings] == [("Pod", "lonely", target)]


def test_many_pods_landing_on_one_node(group, run_module, namespace):
    drained = group.node(cpu="32", memory="64Gi")
    roomy = group.node(cpu="32", memory="64Gi", unschedulable=True)
    small = group.node(cpu="1", memory="2Gi", unschedulable=True)
    for i in range(4):
        group.deployment("app%d" % i, 3, cpu="500m", memory="256Mi", image="registry.invalid/app%d:1" % i)
    group.uncordon(roomy)
    group.uncordon(small)

    result = run_module(MODULE, {"name": drained, "checks": ["pull_concentration"],
                                 "pull_estimate": {"seconds_per_image": 30}})
    assert not result["failed"], result.get("msg")
    assert result["checks"]["pull_concentration"]["status"] == "warn"
    findings = mine(result, "pull_concentration", namespace, nodes=[roomy, small])
    assert [f["name"] for f in findings] == [roomy]
    assert findings[0]["pods"] >= 10 and findings[0]["images_to_pull"] == 4
    assert findings[0]["estimated_seconds"] == 120


def test_unknown_node_and_bad_credentials_fail_clearly(run_module):
    result = run_module(MODULE, {"name": ["no-such-node-preflight"]})
    assert result["failed"]
    assert result["msg"] == "node/no-such-node-preflight: not found; `kubectl get nodes` lists the names"

    # an address nobody listens on is retried as an outage until the timeout: keep it short
    result = run_module(MODULE, {"name": "x", "host": "https://127.0.0.1:1", "validate_certs": False, "timeout": 5},
                        auth=False)
    assert result["failed"] and "cannot reach" in result["msg"] and "preflight of node/x" in result["msg"]


def test_opt_outs_are_reported_with_what_the_drain_does_and_the_fix(group, run_module, namespace, cluster):
    target = group.node(cpu="4")
    spare = group.node(cpu="2", unschedulable=True)

    def marked(name, cpu, annotations=None, labels=None):
        spec = group.pod_spec(cpu=cpu)  # the spare is cordoned until all are placed: they land on the target
        template_labels = dict({"app": name}, **(labels or {}))
        cluster.apps.create_namespaced_deployment(namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": template_labels, "annotations": annotations or {}},
                                  "spec": spec}}})
        return list(group.wait_ready(name, 1))[0]

    guarded = marked("guarded", "500m", annotations={"karpenter.sh/do-not-disrupt": "true"})
    stay = marked("stay", "3", labels={"cluster.x-k8s.io/drain": "skip"})
    plain = marked("plain", "500m")
    group.uncordon(spare)

    for check_mode in (True, False):
        result = run_module(MODULE, {"name": target, "checks": ["opt_outs", "capacity"]}, check=check_mode)
        assert not result["failed"], result.get("msg")
        assert result["checks"]["opt_outs"]["status"] == "warn"
        findings = dict((f["name"], f) for f in mine(result, "opt_outs", namespace))
        assert sorted(findings) == sorted([guarded, stay]) and plain not in findings
        assert findings[guarded]["effect"] == "block" and findings[guarded]["vocabulary"] == "karpenter"
        assert "the drain of %s refuses to start" % target in findings[guarded]["reason"]
        assert "ignore_opt_outs: [karpenter]" in findings[guarded]["fix"]
        assert findings[stay]["effect"] == "skip" and findings[stay]["node"] == target
        # The 3-cpu pod stays on the node: the 2-cpu spare has room for what the drain moves.
        assert result["checks"]["capacity"]["status"] == "pass"

    # As the drain will see it when it disregards Cluster API: the big pod now needs room elsewhere.
    result = run_module(MODULE, {"name": target, "checks": ["opt_outs", "capacity"], "fail_on": ["opt_outs"],
                                 "ignore_opt_outs": ["cluster-api"]})
    assert result["failed"] and result["ok"] is False and "opt_outs: " in result["msg"]
    assert dict((f["name"], f["effect"]) for f in mine(result, "opt_outs", namespace)) == {
        guarded: "block", stay: "ignored"}
    assert [f["name"] for f in mine(result, "capacity", namespace)] == [stay]


def test_replacement_first_names_the_deployments_the_drain_restarts_first_and_those_it_cannot(
        group, run_module, namespace):
    crowded = group.node()
    later = group.node(unschedulable=True)  # every replica lands on the crowded node
    opted_in = {"node-maintenance.kubeops.io/replacement-first": "true"}
    group.deployment("web", 2, annotations=opted_in)
    group.deployment("batch", 1, annotations=opted_in, strategy={"type": "Recreate"})
    group.deployment("quiet", 2)  # no annotation: only the run's option opts it in
    group.deployment("declined", 2, annotations={"node-maintenance.kubeops.io/replacement-first": "false"})
    group.uncordon(later)

    def by_name(result):
        return {f["name"]: f for f in mine(result, "replacement_first", namespace)}

    result = run_module(MODULE, {"name": crowded, "checks": ["replacement_first"]})
    assert not result["failed"], result.get("msg")
    assert result["checks"]["replacement_first"]["status"] == "warn"
    found = by_name(result)
    assert sorted(found) == ["batch", "web"], json.dumps(result["checks"], indent=1)
    assert found["web"]["state"] == "would_replace" and found["web"]["nodes"] == [crowded]
    assert len(found["web"]["pods"]) == 2 and all(p.startswith("web-") for p in found["web"]["pods"])
    assert found["batch"]["state"] == "not_replaced" and "Recreate" in found["batch"]["reason"]
    assert "maxSurge" in found["batch"]["fix"]

    # The run's option opts in the pods without an annotation; "false" still declines.
    result = run_module(MODULE, {"name": crowded, "checks": ["replacement_first"], "replacement_first": True,
                                 "fail_on": ["replacement_first"]})
    assert result["failed"] and result["ok"] is False
    assert sorted(by_name(result)) == ["batch", "quiet", "web"]
    assert "replacement_first: " in result["msg"]

    # Not asked for: no Deployment read, nothing found.
    result = run_module(MODULE, {"name": crowded, "checks": ["capacity"]})
    assert "replacement_first" not in result["checks"]
