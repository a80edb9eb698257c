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

pytestmark = pytest.mark.integration

PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "rolling-maintenance.yml")
STATE_ANNOTATION = "maintenance.kubeops.io/state"


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


def wait_ready(cluster, namespace, app, want, timeout=120):
    deadline = time.monotonic() + timeout
    while ready_count(cluster, namespace, app) < want:
        assert time.monotonic() < deadline, "%s: fewer than %d ready pods after %ss" % (app, want, timeout)
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
    """Two kwok nodes to maintain and a third to take their pods; returns a runner."""
    pool = namespace
    nodes = [make_node(labels={"kubeops.test/pool": pool}) for _index in range(3)]
    inventory = tmp_path / "inventory.ini"
    # No real host behind a kwok node: action none never connects; port 1 makes any accidental
    # connection fail instead of reaching this machine.
    inventory.write_text("[k8s_nodes]\n" + "".join(
        "%s ansible_host=127.0.0.1 ansible_port=1\n" % name for name in nodes[:2]))

    def run(rollout_id, **extra):
        extra_vars = {"node_maintenance_rollout_id": rollout_id, "node_maintenance_action": "none",
                      "node_maintenance_lock_namespace": namespace,
                      "node_maintenance_report_dir": str(tmp_path / "reports"),
                      "node_maintenance_drain_timeout": 60, "node_maintenance_health_timeout": 60,
                      "node_maintenance_ready_timeout": 60}
        extra_vars.update(extra)
        return run_playbook(PLAYBOOK, extra_vars=extra_vars, inventory=str(inventory))

    run.nodes = nodes
    run.pool = pool
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
        assert node_record(cluster, name)["status"] == "done"
    events = cluster.core.list_namespaced_event("default", field_selector="involvedObject.name=%s" % rollout.nodes[0])
    assert {"MaintenanceDrain", "MaintenanceDone"} <= {e.reason for e in events.items}
    lease = cluster.coordination.read_namespaced_lease("kubeops-node-maintenance", namespace)
    assert lease.spec.holder_identity is None, "the lock is released after the last node"

    again = rollout("r1")
    assert again.returncode == 0, again.stdout[-4000:]
    assert [n["status"] for n in rollout.report("r1")["nodes"]] == ["skipped", "skipped"]
    for name in rollout.nodes[:2]:
        recap = re.search(r"^%s\s+: (ok=.*)$" % re.escape(name), again.stdout, re.M)
        assert recap and "changed=0 " in recap.group(1), "a re-run of a finished rollout changes nothing"


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
