# -*- coding: utf-8 -*-
"""Fault suite (issue #12): kube-apiserver stopped for about 20 s in the middle of a drain, a taint
write and a lock renewal, and twice during a whole rolling playbook (mid-drain, at a lock renewal).

The modules retry connection errors until their own timeout, so each must either finish correctly
once the API server is back, or, when its timeout is shorter than the outage, fail with a message
that names the object, the server and the timeout, having written nothing.

These tests stop and start the API server, so they run on a control plane of their own (this
module overrides the session ``cluster`` fixture), never on the one the other tests share. Its
controller-manager gets a node-monitor grace period far longer than the outage: kwok cannot
heartbeat while the API server is down, and on a loaded machine the outage plus the
controller-manager's reconnect can pass any short grace period; nodes (and then their pods and
budgets) flipping NotReady would test the test bed, not the modules.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.conftest import (
    TESTBED,
    Cluster,
    _ansible_env,
    _testbed_paths,
    in_thread,
    is_ready,
    kill_process_tree,
    wait_for as _wait_for,
)


def wait_for(what, predicate, timeout=90, interval=0.3):
    return _wait_for(what, predicate, timeout, interval, tolerate_errors=True)


pytestmark = [pytest.mark.integration, pytest.mark.faults]

OUTAGE_SECONDS = 20
CLUSTER_PY = [sys.executable, os.path.join(TESTBED, "cluster.py")]


@pytest.fixture(scope="module")
def cluster():
    """A control plane for this module alone (its API server is stopped and started)."""
    cache, bin_dir = _testbed_paths()
    os.makedirs(os.path.join(cache, "run"), exist_ok=True)
    state = tempfile.mkdtemp(prefix="faults-%d-" % os.getpid(), dir=os.path.join(cache, "run"))
    subprocess.run(CLUSTER_PY + ["up", "--state", state, "--node-monitor-grace-period", "300s"],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        with open(os.path.join(state, "cluster.json")) as handle:
            env = json.load(handle)
        handle = Cluster(env["kubeconfig"], bin_dir, env["server"])
        handle.state = state
        yield handle
    finally:
        subprocess.run(CLUSTER_PY + ["down", "--state", state], check=False)
        subprocess.run(["rm", "-rf", state], check=False)


class Outage(threading.Thread):
    """Stops the API server after ``begin()`` returns (at once by default), keeps it down for
    ``seconds`` and until ``release()`` (so a run meant to meet the outage does, however slowly
    the machine starts it), then starts it again (same port, certificates and etcd data)."""

    def __init__(self, cluster, seconds=OUTAGE_SECONDS, begin=None):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.seconds = seconds
        self.begin = begin
        self.stopped = threading.Event()
        self.started_again = threading.Event()
        self.released = threading.Event()
        self.error = None

    def release(self):
        self.released.set()

    def run(self):
        try:
            if self.begin is not None:
                self.begin()
            subprocess.run(CLUSTER_PY + ["stop-apiserver", "--state", self.cluster.state], check=True,
                           capture_output=True)
            self.stopped.set()
            time.sleep(self.seconds)
            self.released.wait(240)
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
        finally:
            self.stopped.set()
            subprocess.run(CLUSTER_PY + ["start-apiserver", "--state", self.cluster.state], check=True,
                           capture_output=True)
            self.started_again.set()

    def finish(self):
        self.release()
        self.join(300)
        assert self.started_again.is_set(), "the API server was not started again"
        if self.error:
            raise self.error


def apply(cluster, *objects):
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": list(objects)}))


def ready_pods(cluster, namespace, node=None):
    kwargs = {"field_selector": "spec.nodeName=%s" % node} if node else {}
    return [p for p in cluster.core.list_namespaced_pod(namespace, **kwargs).items if is_ready(p)]


def exactly(count, pods):
    return pods if len(pods) == count else None


class ReadyWatcher(threading.Thread):
    """Keeps the lowest number of ready pods seen (samples fail while the API server is down)."""

    def __init__(self, cluster, namespace):
        super().__init__(daemon=True)
        self.cluster, self.namespace = cluster, namespace
        self.minimum, self.samples = None, 0
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                count = len(ready_pods(self.cluster, self.namespace))
            except Exception:  # noqa: BLE001 - outage
                count = None
            if count is not None:
                self.minimum = count if self.minimum is None else min(self.minimum, count)
                self.samples += 1
            self.halt.wait(0.2)

    def stop(self):
        self.halt.set()
        self.join(10)


def assert_outage_message(result, obj_ref, cluster):
    msg = result["msg"]
    assert result["failed"], result
    assert obj_ref in msg, msg
    assert cluster.server in msg or "127.0.0.1" in msg, "the message names the API server: %s" % msg
    assert "gave up at the timeout" in msg, msg


def test_drain_survives_an_api_server_outage_midway(cluster, namespace, make_node, run_module):
    replicas = 4
    pool = {"kubeops.test/pool": namespace}
    node = make_node(labels=pool)
    spare = make_node(labels=pool, unschedulable=True)
    labels = {"app": "web"}
    apply(cluster,
          {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
           "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {
                        "nodeSelector": pool, "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "app", "image": "registry.invalid/web:1"}]}}}},
          {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": namespace},
           "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}})
    before = {p.metadata.uid for p in wait_for("4 ready pods on the node",
                                               lambda: exactly(replicas, ready_pods(cluster, namespace, node)))}
    wait_for("the PDB to allow one disruption", lambda: (
        cluster.policy.read_namespaced_pod_disruption_budget("web", namespace).status.disruptions_allowed == 1))

    # The spare is cordoned, so after the first eviction the replacement cannot run and the budget
    # holds the drain: the outage hits a drain that is waiting mid-way. The spare opens afterwards.
    def first_eviction():
        wait_for("the first eviction", lambda: len(
            {p.metadata.uid for p in cluster.core.list_namespaced_pod(namespace).items
             if not p.metadata.deletion_timestamp} & before) < replicas, timeout=120, interval=0.1)

    outage = Outage(cluster, begin=first_eviction)
    watcher = ReadyWatcher(cluster, namespace)
    watcher.start()
    outage.start()
    drain = in_thread(run_module, "k8s_node_drain", {"name": node, "timeout": 240})
    short = None
    try:
        outage.stopped.wait(180)
        # Meanwhile a drain with a timeout shorter than the outage must give up clearly.
        short = run_module("k8s_node_drain", {"name": spare, "timeout": 5})
        outage.finish()
        cluster.core.patch_node(spare, {"spec": {"unschedulable": False}})
        result = drain()
    finally:
        watcher.stop()
        outage.release()
        outage.join(300)

    assert not result["failed"], result["msg"]
    assert result["counts"]["evicted"] == replicas
    # Each pod evicted once, by UID: none twice, no replacement evicted.
    assert sorted(p["uid"] for p in result["pods"]) == sorted(before)
    assert all(p["action"] == "evicted" for p in result["pods"])
    after = wait_for("the replicas back on the spare", lambda: exactly(replicas, ready_pods(cluster, namespace, spare)))
    assert not {p.metadata.uid for p in after} & before
    assert watcher.samples > 5 and watcher.minimum >= replicas - 1, \
        "web fell to %s ready pods, below its PDB" % watcher.minimum
    assert cluster.core.read_node(node).spec.unschedulable

    assert_outage_message(short, "node/%s" % spare, cluster)
    assert short["changed"] is False


def test_taint_write_survives_an_api_server_outage_and_keeps_other_taints(cluster, make_node, run_module):
    foreign = {"key": "team.example/gpu", "value": "a100", "effect": "NoSchedule"}
    node = make_node(taints=[foreign])
    ours = {"key": "maintenance.kubeops.io/in-progress", "value": "true", "effect": "NoSchedule"}

    outage = Outage(cluster)
    outage.start()
    outage.stopped.wait(60)
    try:
        patient = in_thread(run_module, "k8s_node_taint", {"name": node, "taints": [ours], "timeout": 120})
        hasty = run_module("k8s_node_taint", {"name": node, "taints": [
            {"key": "other.example/x", "effect": "NoSchedule"}], "timeout": 5})
        outage.finish()
        # Once the API server is back another writer adds a taint while ours may be landing:
        # the resourceVersion-guarded write loses neither.
        late = {"key": "team.example/late", "value": "1", "effect": "PreferNoSchedule"}
        nodes_taints = [t.to_dict() for t in cluster.core.read_node(node).spec.taints or []]
        cluster.core.patch_node(node, {"spec": {"taints": nodes_taints + [late]}})
        result = patient()
    finally:
        outage.release()
        outage.join(300)

    assert not result["failed"], result["msg"]
    taints = {(t.key, t.value, t.effect) for t in cluster.core.read_node(node).spec.taints or []}
    assert (ours["key"], ours["value"], ours["effect"]) in taints
    assert (foreign["key"], foreign["value"], foreign["effect"]) in taints
    assert ("team.example/late", "1", "PreferNoSchedule") in taints
    assert not any(key == "other.example/x" for key, _v, _e in taints), "the failed write wrote nothing"
    assert_outage_message(hasty, "node/%s" % node, cluster)
    assert hasty["changed"] is False

    again = run_module("k8s_node_taint", {"name": node, "taints": [ours]})
    assert again["changed"] is False and not again["failed"]


def test_lock_renewal_survives_an_api_server_outage(cluster, namespace, run_module):
    lock = {"name": "maint-lock", "namespace": namespace, "holder": "rollout-a", "duration_seconds": 600,
            "kured_check": False}
    taken = run_module("k8s_maintenance_lock", dict(lock, state="present"))
    assert not taken["failed"], taken["msg"]
    before = cluster.coordination.read_namespaced_lease("maint-lock", namespace).spec

    outage = Outage(cluster)
    outage.start()
    outage.stopped.wait(60)
    try:
        renewal = in_thread(run_module, "k8s_maintenance_lock", dict(lock, state="present", timeout=120))
        hasty = run_module("k8s_maintenance_lock", dict(lock, state="present", timeout=5))
        # A second rollout trying meanwhile must not get the lock when the server is back.
        rival = in_thread(run_module, "k8s_maintenance_lock",
                          dict(lock, holder="rollout-b", state="present", timeout=120))
        outage.finish()
        renewed = renewal()
        refused = rival()
    finally:
        outage.release()
        outage.join(300)

    assert not renewed["failed"], renewed["msg"]
    after = cluster.coordination.read_namespaced_lease("maint-lock", namespace).spec
    assert after.holder_identity == "rollout-a"
    assert after.renew_time > before.renew_time
    assert after.acquire_time == before.acquire_time, "a renewal keeps the original acquire time"
    assert after.lease_transitions == before.lease_transitions

    assert refused["failed"] and "rollout-a" in refused["msg"], refused["msg"]
    assert_outage_message(hasty, "maint-lock", cluster)


# --- the whole rolling playbook through two outages -------------------------------------------

PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "rolling-maintenance.yml")
STATE_ANNOTATION = "maintenance.kubeops.io/state"
LOCK_TASK = "TASK [kubeops.node_maintenance.node_maintenance : Take or renew the cluster-wide maintenance lock]"
# Every node after the rollout's first renews the lock with the read of its record (issue #19).
RENEWING_READ_TASK = ("TASK [kubeops.node_maintenance.node_maintenance : Read the node's maintenance record "
                      "(and renew the rollout's lock when it holds it)]")


def node_record(cluster, name):
    return json.loads((cluster.core.read_node(name).metadata.annotations or {}).get(STATE_ANNOTATION, "{}"))


def test_rolling_playbook_through_api_server_outages_mid_drain_and_at_a_lock_renewal(
        cluster, namespace, make_node, tmp_path):
    """The API server stops for 20 s while the first node drains, and again for 20 s just as the
    second node renews the lock (with the read of its record, its first task). The
    rollout finishes, or fails saying the API server could not be reached; no workload goes below
    its PDB; each node is done, or cordoned with a failed record that says why; a re-run finishes."""
    replicas = 4
    pool = {"kubeops.test/pool": namespace}
    nodes = [make_node(labels=pool) for _index in range(3)]
    labels = {"app": "web"}
    apply(cluster,
          {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
           "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": {
                        "nodeSelector": pool, "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "app", "image": "registry.invalid/web:1"}]}}}},
          {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": namespace},
           "spec": {"minAvailable": replicas - 1, "selector": {"matchLabels": labels}}})
    wait_for("web ready", lambda: exactly(replicas, ready_pods(cluster, namespace)))
    # Pods on the first node, so its drain is under way (budget-paced) when the API server stops.
    if not ready_pods(cluster, namespace, nodes[0]):
        cluster.core.patch_node(nodes[1], {"spec": {"unschedulable": True}})
        cluster.core.patch_node(nodes[2], {"spec": {"unschedulable": True}})
        victim = ready_pods(cluster, namespace)[0]
        cluster.core.delete_namespaced_pod(victim.metadata.name, namespace, grace_period_seconds=0)
        wait_for("a web pod on %s" % nodes[0], lambda: ready_pods(cluster, namespace, nodes[0]))
        cluster.core.patch_node(nodes[1], {"spec": {"unschedulable": False}})
        cluster.core.patch_node(nodes[2], {"spec": {"unschedulable": False}})
    on_first = {p.metadata.uid for p in ready_pods(cluster, namespace, nodes[0])}

    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[k8s_nodes]\n" + "".join("%s ansible_host=127.0.0.1 ansible_port=1\n" % n for n in nodes[:2]))
    logs = [str(tmp_path / "rollout.log"), str(tmp_path / "rerun.log")]
    extra_vars = {"node_maintenance_rollout_id": "outage", "node_maintenance_action": "none",
                  "node_maintenance_lock_namespace": namespace, "node_maintenance_report_dir": str(tmp_path / "reports"),
                  "node_maintenance_drain_timeout": 300, "node_maintenance_health_timeout": 300,
                  "node_maintenance_ready_timeout": 300}

    def start():
        out = open(logs[0], "w")
        proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i",
                                 str(inventory), PLAYBOOK, "-e", json.dumps(extra_vars)],
                                stdout=out, stderr=subprocess.STDOUT, env=_ansible_env(cluster), start_new_session=True)
        proc.out = out
        return proc

    def log():
        with open(logs[0]) as handle:
            return handle.read()

    marks = {}

    def mid_drain():
        def draining():
            rec = node_record(cluster, nodes[0])
            gone = on_first - {p.metadata.uid for p in cluster.core.list_namespaced_pod(namespace).items
                               if not p.metadata.deletion_timestamp}
            return proc.poll() is not None or (rec.get("phase") == "drain" and gone)
        wait_for("the first node's drain to evict", draining, timeout=300, interval=0.1)
        marks["drain_stopped"] = node_record(cluster, nodes[0]).get("phase")

    def before_lock_renewal():
        # The first node done, the rollout is paused (SIGSTOP) before the second node's first task,
        # so that task, which renews the lock, starts while the API server is down; the loop below
        # lets it go on (SIGCONT) once the API server has stopped.
        wait_for("the first node done",
                 lambda: proc.poll() is not None or node_record(cluster, nodes[0]).get("status") == "done",
                 timeout=600, interval=0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGSTOP)
            marks["paused"] = True
        marks["lock_stop_offset"] = len(log())

    watcher = ReadyWatcher(cluster, namespace)
    watcher.start()
    proc = start()
    try:
        for name, begin in (("drain", mid_drain), ("lock", before_lock_renewal)):
            outage = Outage(cluster, begin=begin)
            outage.release()
            outage.start()
            outage.stopped.wait(600)
            if marks.pop("paused", False):
                os.killpg(proc.pid, signal.SIGCONT)
            outage.join(600)
            assert outage.started_again.is_set(), "the API server was not started again"
            if outage.error:
                raise outage.error
            marks[name + "_restart_offset"] = len(log())
        proc.wait(900)
    finally:
        watcher.stop()
        if marks.pop("paused", False):
            os.killpg(proc.pid, signal.SIGCONT)
        if proc.poll() is None:
            kill_process_tree(proc.pid)
            proc.wait()
        proc.out.close()
    out = log()

    # The outages met what they were meant to: the first node draining, the second node's lock renewal
    # (its task began while the API server was down and ended after it was back). The first node took
    # the lock with the lock task; the second renewed it with the read of its record.
    assert marks["drain_stopped"] == "drain", marks
    assert out.count(LOCK_TASK) == 1, out[-4000:]
    renewing_reads = [i for i in range(len(out)) if out.startswith(RENEWING_READ_TASK, i)]
    assert len(renewing_reads) == 2, out[-4000:]
    assert marks["lock_stop_offset"] < renewing_reads[1] < marks["lock_restart_offset"], (marks, renewing_reads)
    assert watcher.samples > 10 and watcher.minimum >= replicas - 1, \
        "web fell to %s ready pods, below its PDB" % watcher.minimum

    def explained():
        """Each node done and back in service, untouched, or cordoned with a failed record saying why."""
        problems = []
        for name in nodes[:2]:
            node, rec = cluster.core.read_node(name), node_record(cluster, name)
            ours = [t.key for t in node.spec.taints or [] if t.key.startswith("maintenance.kubeops.io")]
            if rec.get("rollout") == "outage" and rec.get("status") == "done" or not rec:
                if node.spec.unschedulable or ours:
                    problems.append("%s: %s but cordoned %s, taints %s"
                                    % (name, rec.get("status", "untouched"), node.spec.unschedulable, ours))
            elif not (rec.get("status") == "failed" and node.spec.unschedulable and rec.get("message")):
                problems.append("%s: unexplained: record %s, cordoned %s" % (name, rec, node.spec.unschedulable))
        return problems

    assert not explained(), explained()
    if proc.returncode != 0:
        assert re.search(r"Rollout outage stopped at node \S+, task", out), out[-5000:]
        assert "gave up at the timeout" in out and cluster.server.split("//")[1] in out, out[-5000:]
    else:
        assert [n["status"] for n in json.loads((tmp_path / "reports" / "outage" / "report.json").read_text())["nodes"]] \
            == ["done", "done"]

    logs.pop(0)
    rerun = start()
    rerun.wait(900)
    rerun.out.close()
    again = log()
    assert rerun.returncode == 0, again[-5000:]
    for name in nodes[:2]:
        assert node_record(cluster, name)["status"] == "done", node_record(cluster, name)
        assert not cluster.core.read_node(name).spec.unschedulable
    assert cluster.coordination.read_namespaced_lease("kubeops-node-maintenance", namespace).spec.holder_identity is None
