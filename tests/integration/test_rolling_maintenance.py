"""The rolling maintenance playbook on the real local control plane (kwok nodes, action none).

Node-side actions (reboot, data disks) are exercised on QEMU test hosts elsewhere; here the
cluster half of the rollout: lock, pre-drain checks, drain under PDBs, return, health gate,
resume after a failure, and the report.
"""
import json
import os
import re
import threading
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.test_k8s_workloads_healthy import mirror_pod

pytestmark = pytest.mark.integration

PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "rolling-maintenance.yml")
STATE_ANNOTATION = "maintenance.kubeops.io/state"
LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"


def deployment(name, replicas, pool):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "nodeSelector": {"kubeops.test/pool": pool},
                         "containers": [{"name": name, "image": "registry.invalid/%s:1" % name,
                                         "resources": {"requests": {"cpu": "100m"}}}]}}}}


def pdb(name, **spec):
    spec["selector"] = {"matchLabels": {"app": name}}
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec}


def ready_count(cluster, namespace, app):
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=%s" % app).items
    return sum(1 for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"
               and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []))


def describe_pods(cluster, namespace, app):
    """What a failed wait needs to say why: each pod of ``app`` (node, phase, conditions), the
    Ready condition and taints of the nodes they are on, and the namespace's latest events."""
    lines = []
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=%s" % app).items
    for pod in pods:
        conditions = ",".join("%s=%s" % (c.type, c.status) for c in pod.status.conditions or [])
        deleting = " (deleting)" if pod.metadata.deletion_timestamp else ""
        lines.append("  pod %s on %s: %s%s [%s]" % (pod.metadata.name, pod.spec.node_name, pod.status.phase,
                                                    deleting, conditions))
    for node_name in sorted({pod.spec.node_name for pod in pods if pod.spec.node_name}):
        node = cluster.core.read_node(node_name)
        ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
        lines.append("  node %s: Ready=%s since %s, taints %s" % (
            node_name, ready[0].status if ready else None, ready[0].last_transition_time if ready else None,
            [t.key for t in node.spec.taints or []]))
    for event in cluster.core.list_namespaced_event(namespace).items[-20:]:
        lines.append("  event %s/%s %s: %s" % (event.involved_object.kind, event.involved_object.name,
                                               event.reason, event.message))
    return "\n".join(lines)


def wait_ready(cluster, namespace, app, want, timeout=120):
    deadline = time.monotonic() + timeout
    while ready_count(cluster, namespace, app) < want:
        assert time.monotonic() < deadline, "%s: fewer than %d ready pods after %ss:\n%s" % (
            app, want, timeout, describe_pods(cluster, namespace, app))
        time.sleep(0.5)


class ReadyWatcher(threading.Thread):
    """Samples the ready replicas of a workload during the rollout and keeps the minimum."""

    def __init__(self, cluster, namespace, app):
        super().__init__(daemon=True)
        self.cluster, self.namespace, self.app = cluster, namespace, app
        self.minimum = None
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            count = ready_count(self.cluster, self.namespace, self.app)
            self.minimum = count if self.minimum is None else min(self.minimum, count)
            self.samples += 1
            self._stop_event.wait(0.3)

    def stop(self):
        self._stop_event.set()
        self.join(10)


@pytest.fixture
def rollout(cluster, namespace, make_node, run_playbook, tmp_path):
    """Two kwok nodes to maintain and a third to take their pods; returns a runner (its playbook,
    environment and working directory can be other than the checkout's; ``maintain(names)`` puts
    other nodes in its inventory)."""
    pool = namespace
    nodes = [make_node(labels={"kubeops.test/pool": pool}) for _index in range(3)]
    inventory = tmp_path / "inventory.ini"

    def maintain(names):
        # No real host behind a kwok node: action none never connects; port 1 makes any accidental
        # connection fail instead of reaching this machine.
        inventory.write_text("[k8s_nodes]\n" + "".join(
            "%s ansible_host=127.0.0.1 ansible_port=1\n" % name for name in names))

    maintain(nodes[:2])

    def run(rollout_id, playbook=PLAYBOOK, env=None, cwd=None, **extra):
        extra_vars = {"node_maintenance_rollout_id": rollout_id, "node_maintenance_action": "none",
                      "node_maintenance_lock_namespace": namespace,
                      "node_maintenance_report_dir": str(tmp_path / "reports"),
                      "node_maintenance_drain_timeout": 60, "node_maintenance_health_timeout": 60,
                      "node_maintenance_ready_timeout": 60}
        extra_vars.update(extra)
        return run_playbook(playbook, extra_vars=extra_vars, inventory=str(inventory), env=env, cwd=cwd)

    run.nodes = nodes
    run.pool = pool
    run.inventory = inventory
    run.maintain = maintain  # the nodes of the inventory (the first two by default)
    run.report = lambda rollout_id: json.loads((tmp_path / "reports" / rollout_id / "report.json").read_text())
    return run


def node_record(cluster, name):
    annotations = cluster.core.read_node(name).metadata.annotations or {}
    return json.loads(annotations.get(STATE_ANNOTATION, "{}"))


def test_rollout_keeps_workloads_within_their_pdbs_and_a_second_run_does_nothing(cluster, namespace, rollout):
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", 6, rollout.pool))
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, pdb("web", minAvailable=5))
    wait_ready(cluster, namespace, "web", 6)
    watcher = ReadyWatcher(cluster, namespace, "web")
    watcher.start()
    try:
        res = rollout("r1")
    finally:
        watcher.stop()
    assert res.returncode == 0, res.stdout[-6000:]
    assert watcher.samples > 10
    assert watcher.minimum >= 5, "web dropped to %d ready pods, below its PDB (5)" % watcher.minimum

    report = rollout.report("r1")
    assert [n["status"] for n in report["nodes"]] == ["done", "done"]
    assert sum(n["pods_evicted"] for n in report["nodes"]) >= 1
    for name in rollout.nodes[:2]:
        node = cluster.core.read_node(name)
        assert not node.spec.unschedulable
        assert not [t for t in node.spec.taints or [] if t.key.startswith("maintenance.kubeops.io")]
        assert LB_LABEL not in (node.metadata.labels or {}), "back in the load balancers after the return"
        assert node_record(cluster, name)["status"] == "done" and node_record(cluster, name)["labels_added"] == []
    events = cluster.core.list_namespaced_event("default", field_selector="involvedObject.name=%s" % rollout.nodes[0])
    assert {"MaintenanceDrain", "MaintenanceDone"} <= {e.reason for e in events.items}
    assert "MaintenanceUncordonedDuringAction" not in {e.reason for e in events.items}, "nobody uncordoned it"
    lease = cluster.coordination.read_namespaced_lease("kubeops-node-maintenance", namespace)
    assert lease.spec.holder_identity is None, "the lock is released after the last node"

    again = rollout("r1")
    assert again.returncode == 0, again.stdout[-4000:]
    assert [n["status"] for n in rollout.report("r1")["nodes"]] == ["skipped", "skipped"]
    for name in rollout.nodes[:2]:
        recap = re.search(r"^%s\s+: (ok=.*)$" % re.escape(name), again.stdout, re.M)
        assert recap and "changed=0 " in recap.group(1), "a re-run of a finished rollout changes nothing"


@pytest.mark.faults  # also in the fault suite (make faults)
def test_a_pdb_that_never_allows_eviction_stops_the_rollout_and_a_rerun_resumes(cluster, namespace, rollout):
    spare = rollout.nodes[2]
    # A single replica behind a PDB that allows no disruption, on one of the two nodes the
    # rollout maintains (the spare is cordoned while it is scheduled).
    cluster.core.patch_node(spare, {"spec": {"unschedulable": True}})
    cluster.apps.create_namespaced_deployment(namespace, deployment("db", 1, rollout.pool))
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, pdb("db", minAvailable=1))
    wait_ready(cluster, namespace, "db", 1)
    cluster.core.patch_node(spare, {"spec": {"unschedulable": False}})
    db_node = cluster.core.list_namespaced_pod(namespace, label_selector="app=db").items[0].spec.node_name
    assert db_node in rollout.nodes[:2]

    # The pre-drain checks see that all of db's ready pods sit on the node and refuse before
    # anything changes.
    refused = rollout("r2")
    assert refused.returncode != 0
    assert "single_node_workloads" in refused.stdout and "Nothing was changed on the node" in refused.stdout
    assert not cluster.core.read_node(db_node).spec.unschedulable

    # The operator accepts that finding; now the drain meets a PDB that allows no eviction.
    res = rollout("r2", node_maintenance_drain_timeout=15, node_maintenance_preflight_fail_on=["capacity"])
    assert res.returncode != 0
    assert "db" in res.stdout and "stopped" in res.stdout
    stuck = db_node
    record = node_record(cluster, stuck)
    assert record["status"] == "failed" and record["phase"] == "drain" and record["rollout"] == "r2"
    assert cluster.core.read_node(stuck).spec.unschedulable, "the node stays cordoned after a failed drain"
    events = cluster.core.list_namespaced_event("default", field_selector="involvedObject.name=%s" % stuck)
    assert "MaintenanceFailed" in {e.reason for e in events.items}
    assert cluster.coordination.read_namespaced_lease("kubeops-node-maintenance", namespace).spec.holder_identity == "r2"

    # Another rollout is refused while r2 holds the lock, and says who holds it.
    other = rollout("r-other")
    assert other.returncode != 0
    assert "r2" in other.stdout and "lock" in other.stdout
    assert node_record(cluster, stuck)["rollout"] == "r2", "a refused rollout leaves the record alone"

    # The operator fixes the cause (here: relaxes the budget) and re-runs r2: it resumes.
    cluster.policy.delete_namespaced_pod_disruption_budget("db", namespace)
    resumed = rollout("r2", node_maintenance_preflight_fail_on=["capacity"])
    assert resumed.returncode == 0, resumed.stdout[-6000:]
    nodes = {n["node"]: n for n in rollout.report("r2")["nodes"]}
    assert nodes[stuck]["status"] == "done" and nodes[stuck]["resumed_from"] == "drain"
    assert "preflight" not in nodes[stuck]["phases"], "a resumed node does not redo the phases before its own"
    assert not cluster.core.read_node(stuck).spec.unschedulable


@pytest.mark.faults  # also in the fault suite (make faults)
def test_an_unreachable_host_fails_after_the_drain_and_the_resumed_health_gate_checks_what_was_moved(
        cluster, namespace, rollout):
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", 4, rollout.pool))
    wait_ready(cluster, namespace, "web", 4)
    first, second = rollout.nodes[:2]
    on_first = [p for p in cluster.core.list_namespaced_pod(namespace).items if p.spec.node_name == first]
    assert on_first, "the scheduler spread web over the pool"
    static = mirror_pod(cluster, namespace, "static-" + first, first)  # a static pod of the node's kubelet

    # The inventory's hosts listen nowhere (port 1): the reboot cannot reach the host.
    res = rollout("unreachable", node_maintenance_action="reboot", node_maintenance_connect_timeout=5)
    assert res.returncode != 0
    assert re.search(r'stopped at node %s, task \\?"Reach the host before the reboot' % first, res.stdout), \
        res.stdout[-4000:]
    record = node_record(cluster, first)
    assert (record["phase"], record["status"]) == ("action", "failed"), record
    assert record["message"].startswith("Reach the host before the reboot: "), record["message"]
    assert {(w["namespace"], w["owner_kind"]) for w in record["moved_workloads"]} == {(namespace, "ReplicaSet")}
    assert cluster.core.read_node(first).spec.unschedulable, "a node whose maintenance failed stays cordoned"
    # out of the load balancers since the drain's first write, and recorded so: the resumed run's return takes it off
    assert cluster.core.read_node(first).metadata.labels[LB_LABEL] == "true"
    assert record["labels_added"] == [LB_LABEL], record
    # the static pods the drain saw are in the record too: the resumed gate waits for them to be back
    assert record["static_pods"] == [{"namespace": namespace, "name": static}], record
    assert node_record(cluster, second) == {}, "the rollout stopped before the next node"
    assert not cluster.core.read_node(second).spec.unschedulable

    # Resumed (the operator rebooted it by hand, say) at the action, with nothing left to do there:
    # the health gate still waits for the workloads the first run's drain moved, and for the static
    # pod, which the kubelet has not recreated yet: the gate names it.
    cluster.core.delete_namespaced_pod(static, namespace, grace_period_seconds=0)
    res = rollout("unreachable", node_maintenance_health_timeout=5)
    assert res.returncode != 0
    assert "static pod %s/%s: waiting for its mirror pod to be back on node/%s" % (namespace, static, first) \
        in res.stdout, res.stdout[-4000:]
    assert rollout.report("unreachable")["nodes"][0]["resumed_from"] == "action"
    assert (node_record(cluster, first)["phase"], node_record(cluster, first)["status"]) == ("verify", "failed")
    mirror_pod(cluster, namespace, static, first)  # back (kwok makes it Ready, as the kubelet would)
    res = rollout("unreachable")
    assert res.returncode == 0, res.stdout[-6000:]
    first_report = rollout.report("unreachable")["nodes"][0]
    assert first_report["resumed_from"] == "verify"
    assert first_report["workloads_checked"] == 1, first_report
    assert first_report["pods_evicted"] == 0  # nothing drained twice
    assert not cluster.core.read_node(first).spec.unschedulable
    assert LB_LABEL not in cluster.core.read_node(first).metadata.labels


def test_two_clusters_in_one_inventory_go_cluster_by_cluster(cluster, namespace, make_node, run_playbook, tmp_path):
    from tests.integration.conftest import node_manifest, own_cluster

    pool = namespace
    first_nodes = [make_node(labels={"kubeops.test/pool": pool}) for _index in range(2)]
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", 2, pool))
    wait_ready(cluster, namespace, "web", 2)
    with own_cluster("second") as other:
        other_node = "b-" + first_nodes[0]
        other.core.create_node(node_manifest(other_node))

        def inventory(path, groups):
            # a group per cluster, listed one after the other under k8s_nodes (YAML keeps the order)
            children = {group: {"hosts": {m: {"ansible_host": "127.0.0.1", "ansible_port": 1} for m in members},
                                "vars": {"node_maintenance_cluster": name,
                                         "node_maintenance_k8s_auth": {"kubeconfig": kubeconfig}}}
                        for group, (name, members, kubeconfig) in groups}
            path.write_text(json.dumps({"all": {"children": {"k8s_nodes": {"children": children}}}}))
            return str(path)

        extra = {"node_maintenance_rollout_id": "two-clusters", "node_maintenance_action": "none",
                 "node_maintenance_lock_namespace": "default", "node_maintenance_lock_name": "lock-" + namespace,
                 "node_maintenance_report_dir": str(tmp_path / "reports"),
                 "node_maintenance_drain_timeout": 60, "node_maintenance_health_timeout": 60,
                 "node_maintenance_ready_timeout": 60,
                 # web's two replicas may share a node of this small pool: not what this test is about
                 "node_maintenance_preflight_fail_on": ["capacity"]}
        cluster_a = ("cluster-a", first_nodes, cluster.kubeconfig)
        cluster_b = ("cluster-b", [other_node], other.kubeconfig)

        # interleaved: refused before anything is touched
        mixed = inventory(tmp_path / "mixed.yml", [("a1", ("cluster-a", first_nodes[:1], cluster.kubeconfig)),
                                                   ("b", cluster_b),
                                                   ("a2", ("cluster-a", first_nodes[1:], cluster.kubeconfig))])
        res = run_playbook(PLAYBOOK, extra_vars=extra, inventory=mixed)
        assert res.returncode != 0
        assert "cluster-a -> cluster-b -> cluster-a" in res.stdout, res.stdout[-3000:]
        assert all(node_record(cluster, name) == {} for name in first_nodes)
        assert node_record(other, other_node) == {}

        res = run_playbook(PLAYBOOK, extra_vars=extra,
                           inventory=inventory(tmp_path / "two.yml", [("a", cluster_a), ("b", cluster_b)]))
        assert res.returncode == 0, res.stdout[-6000:]
        order = [m.group(1) for m in re.finditer(r'"msg": "([^"\s]+): done in \d', res.stdout)]
        assert order == first_nodes + [other_node], order
        between = res.stdout.index("cluster cluster-a finished")
        assert res.stdout.index('"%s: done in' % first_nodes[-1]) < between < res.stdout.index(
            '"%s: done in' % other_node)
        for client_cluster, names in ((cluster, first_nodes), (other, [other_node])):
            for name in names:
                assert node_record(client_cluster, name)["status"] == "done"
                assert not client_cluster.core.read_node(name).spec.unschedulable
            lease = client_cluster.coordination.read_namespaced_lease("lock-" + namespace, "default")
            assert lease.spec.holder_identity is None, "each cluster's lock is released"


def test_a_node_uncordoned_during_the_action_is_reported_on_return(cluster, namespace, rollout, tmp_path):
    # One node: the second writer is a hook after the drain that uncordons it, as an operator's
    # script or another tool would while the node is maintained.
    rollout.inventory.write_text("[k8s_nodes]\n%s ansible_host=127.0.0.1 ansible_port=1\n" % rollout.nodes[0])
    hook = tmp_path / "uncordon.yml"
    hook.write_text(
        "- name: Someone else uncordons the node\n"
        "  kubeops.node_maintenance.k8s_node_cordon:\n"
        "    name: \"{{ node_maintenance_node_name }}\"\n"
        "    state: uncordoned\n"
        "  delegate_to: localhost\n")
    res = rollout("uncordoned-mid-action", node_maintenance_hook_after_drain=str(hook))
    assert res.returncode == 0, res.stdout[-6000:]
    assert "was found schedulable after the action none: someone uncordoned it after the drain" in res.stdout
    events = cluster.core.list_namespaced_event("default", field_selector="involvedObject.name=%s" % rollout.nodes[0])
    warned = [e for e in events.items if e.reason == "MaintenanceUncordonedDuringAction"]
    assert len(warned) == 1 and warned[0].type == "Warning"
    assert "uncordoned by someone else after the drain" in warned[0].message
    assert node_record(cluster, rollout.nodes[0])["status"] == "done"
    # (a rollout where nobody touches the cordon writes no such Event: test_rollout_keeps_workloads_...)


# ------------------------------------------------------------------------------------------------
# Batches (node_maintenance_serial above 1) judged as a whole, max_unavailable, max_nodes
# ------------------------------------------------------------------------------------------------

def task_results(stdout, task):
    """The result lines (``ok: [host -> localhost]`` & co.) the default callback printed for ``task``."""
    section = stdout.split("TASK [kubeops.node_maintenance.node_maintenance : %s" % task, 1)[1].split("\nTASK [", 1)[0]
    return re.findall(r"^(?:ok|changed|fatal|failed|skipping): \[[^\]]+\]", section, re.M)


def out_of_service(cluster):
    """Nodes of the cluster that are NotReady or cordoned now."""
    return sorted(n.metadata.name for n in cluster.core.list_node().items
                  if n.spec.unschedulable or not any(c.type == "Ready" and c.status == "True"
                                                     for c in n.status.conditions or []))


def test_a_batch_whose_nodes_each_fit_alone_is_refused_together_before_any_is_touched(
        cluster, namespace, make_node, rollout, run_module):
    batch = rollout.nodes[:2] + [make_node(labels={"kubeops.test/pool": rollout.pool})]
    spare = rollout.nodes[2]
    # web: one replica per node of the batch (required anti-affinity, the spare cordoned meanwhile)
    cluster.core.patch_node(spare, {"spec": {"unschedulable": True}})
    web = deployment("web", 3, rollout.pool)
    web["spec"]["template"]["spec"]["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    cluster.apps.create_namespaced_deployment(namespace, web)
    wait_ready(cluster, namespace, "web", 3)
    cluster.core.patch_node(spare, {"spec": {"unschedulable": False}})
    assert sorted(p.spec.node_name for p in cluster.core.list_namespaced_pod(namespace).items) == sorted(batch)

    # each node alone fits (web keeps two ready replicas elsewhere)
    for name in batch:
        alone = run_module("k8s_node_preflight", {"name": [name], "fail_on": ["capacity", "single_node_workloads"]})
        assert not alone.get("failed") and alone["checks"]["single_node_workloads"]["status"] == "pass", alone

    rollout.maintain(batch)
    refused = rollout("batch", node_maintenance_serial=3)
    assert refused.returncode != 0
    out = refused.stdout
    assert "preflight refuses to drain %s: single_node_workloads: 1 finding(s), e.g. deployment/%s/web all 3 of " \
           "its ready pods run on %s" % (", ".join("node/%s" % n for n in batch), namespace, ", ".join(sorted(batch))) \
        in out, out[-6000:]
    # judged once for the whole batch, every node refused with it and left as it was
    assert len(task_results(out, "Pre-drain checks of the batch")) == 1
    assert len(task_results(out, "Refuse the batch when it does not fit")) == 3
    for name in batch:
        assert re.search(r'stopped at node %s, task \\?"Refuse the batch when it does not fit' % name, out), out[-6000:]
    assert "Nothing was changed on the node: it failed before the drain (phase preflight)" in out
    for name in batch:
        node = cluster.core.read_node(name)
        assert not node.spec.unschedulable and not [t for t in node.spec.taints or []
                                                    if t.key.startswith("maintenance.kubeops.io")]
        record = node_record(cluster, name)
        assert (record["rollout"], record["phase"], record["status"]) == ("batch", "preflight", "failed"), record
        reasons = [e.reason for e in cluster.core.list_namespaced_event(
            "default", field_selector="involvedObject.name=%s" % name).items]
        assert "MaintenancePreflight" in reasons and "MaintenanceFailed" in reasons, reasons
    assert ready_count(cluster, namespace, "web") == 3


def test_max_unavailable_counts_nodes_already_out_and_max_nodes_holds_within_a_batch(
        cluster, namespace, make_node, rollout, run_module):
    nodes = rollout.nodes  # n1..n3 in the inventory
    make_node(labels={"kubeops.test/pool": rollout.pool}, unschedulable=True)  # out already, not in this rollout
    already = out_of_service(cluster)
    rollout.maintain(nodes)

    # the guard of a node counts the rest of its batch as gone (the role passes it as with_nodes): each
    # of n1 and n2 alone leaves enough nodes Ready and schedulable, the two together one too few
    in_service = len(cluster.core.list_node().items) - len(already)
    guard = {"name": nodes[0], "min_ready_nodes": in_service - 1, "etcd_quorum": False}
    assert not run_module("k8s_cluster_guard", guard).get("failed")
    guarded = run_module("k8s_cluster_guard", dict(guard, with_nodes=[nodes[1]]))
    assert guarded["failed"] and "taking node/%s (with node/%s of its batch) out leaves %d of" % (
        nodes[0], nodes[1], in_service - 2) in guarded["msg"], guarded

    # batches of two, at most len(already) + 1 out: the first batch would make it len(already) + 2
    started = time.monotonic()
    refused = rollout("fleet", node_maintenance_serial=2, node_maintenance_max_unavailable=len(already) + 1)
    refused_seconds = time.monotonic() - started
    assert refused.returncode != 0
    assert ("max_unavailable: taking node/%s, node/%s out makes %d node(s) unavailable, more than max_unavailable %d"
            % (nodes[0], nodes[1], len(already) + 2, len(already) + 1)) in refused.stdout, refused.stdout[-6000:]
    assert "already out of service: %s" % ", ".join("%s (cordoned)" % n for n in already) in refused.stdout
    assert all(not cluster.core.read_node(n).spec.unschedulable for n in nodes)
    assert node_record(cluster, nodes[2]) == {}

    # n2 now resumes past its pre-drain checks (left cordoned mid-drain, say): it is not judged again
    # and counts as out of service. At most two nodes in this run, in a batch of three: n3 is left.
    cluster.core.patch_node(nodes[1], {"spec": {"unschedulable": True}, "metadata": {"annotations": {
        STATE_ANNOTATION: json.dumps({"version": 1, "rollout": "fleet", "phase": "drain", "status": "failed",
                                      "cordoned_before": False, "taints_added": [], "phases": {}})}}})
    started = time.monotonic()
    res = rollout("fleet", node_maintenance_serial=3, node_maintenance_max_nodes=2,
                  node_maintenance_max_unavailable=len(already) + 2)
    done_seconds = time.monotonic() - started
    assert res.returncode == 0, res.stdout[-6000:]
    report = {n["node"]: n for n in rollout.report("fleet")["nodes"]}
    assert [report[n]["status"] for n in nodes] == ["done", "done", "deferred"]
    assert report[nodes[0]]["resumed_from"] == "preflight" and "preflight" in report[nodes[0]]["phases"]
    assert report[nodes[1]]["resumed_from"] == "drain" and "preflight" not in report[nodes[1]]["phases"]
    assert "node_maintenance_max_nodes (2) reached" in rollout.report("fleet")["stopped_reason"]
    assert node_record(cluster, nodes[2]) == {} and not cluster.core.read_node(nodes[2]).spec.unschedulable
    for name in nodes[:2]:
        assert node_record(cluster, name)["status"] == "done"
        assert not cluster.core.read_node(name).spec.unschedulable
    print("refused batch: %.1f s, two nodes of a batch of three: %.1f s" % (refused_seconds, done_seconds))
