# -*- coding: utf-8 -*-
"""Fault suite (issue #12): the rolling playbook under concurrency, kills and bad input.

- two rollouts started at once: exactly one proceeds, the other is refused naming the holder;
- a rollout whose holder died (Lease expired, a node left mid-way) is taken over;
- a rollout started while another holds the lock waits (saying for whom) and starts after the
  release; it dies, and a third, waiting, takes over once its Lease runs out; never two at once;
- ``ansible-playbook`` killed with SIGKILL at each phase in turn: every re-run with the same
  rollout id resumes from the node's record and the last one ends with every node done, no pod
  evicted twice and the workload never below its PDB;
- wrong variable types, unknown actions, malformed data disks, unknown nodes, empty inventories:
  refused before anything changes on the node (annotations, labels, taints, cordon) or the lock.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.conftest import _ansible_env, is_ready, kill_process_tree, wait_for as _wait_for


def wait_for(what, predicate, timeout=120, interval=0.3):
    return _wait_for(what, predicate, timeout, interval)


pytestmark = [pytest.mark.integration, pytest.mark.faults]

PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "rolling-maintenance.yml")
STATE_ANNOTATION = "maintenance.kubeops.io/state"
LOCK = "kubeops-node-maintenance"
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
# The phases a node's record goes through with action none and no data disks
# (roles/node_maintenance/vars/main.yml; action none records no phase of its own).
PHASES = ["preflight", "drain", "return", "verify", "done"]


def deployment(name, replicas, pool):
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "nodeSelector": {"kubeops.test/pool": pool}, "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": name, "image": "registry.invalid/%s:1" % name,
                                         "resources": {"requests": {"cpu": "100m"}}}]}}}}


def record(cluster, node):
    return json.loads((cluster.core.read_node(node).metadata.annotations or {}).get(STATE_ANNOTATION, "{}"))


def lease_holder(cluster, namespace):
    from kubernetes.client import ApiException
    try:
        return cluster.coordination.read_namespaced_lease(LOCK, namespace).spec.holder_identity
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


class PodWatcher(threading.Thread):
    """Every pod UID seen (with its node), and the fewest ready pods of the workload seen."""

    def __init__(self, cluster, namespace):
        super().__init__(daemon=True)
        self.cluster, self.namespace = cluster, namespace
        self.seen = {}
        self.minimum = None
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            pods = self.cluster.core.list_namespaced_pod(self.namespace).items
            for pod in pods:
                if pod.spec.node_name:
                    self.seen.setdefault(pod.metadata.uid, pod.spec.node_name)
            ready = sum(1 for p in pods if is_ready(p))
            self.minimum = ready if self.minimum is None else min(self.minimum, ready)
            self.halt.wait(0.2)

    def stop(self):
        self.halt.set()
        self.join(10)


@pytest.fixture
def rollout(cluster, namespace, make_node, tmp_path):
    """Two kwok nodes to maintain and a spare; ``rollout.start(id, **vars)`` starts
    ansible-playbook in its own process group and returns the Popen."""
    pool = namespace
    nodes = [make_node(labels={"kubeops.test/pool": pool}) for _index in range(3)]
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[k8s_nodes]\n" + "".join(
        "%s ansible_host=127.0.0.1 ansible_port=1\n" % name for name in nodes[:2])
        + "[first_only]\n%s\n" % nodes[0])
    procs = []

    def start(rollout_id, **extra):
        extra_vars = {"node_maintenance_rollout_id": rollout_id, "node_maintenance_action": "none",
                      "node_maintenance_lock_namespace": namespace,
                      "node_maintenance_report_dir": str(tmp_path / "reports"),
                      "node_maintenance_drain_timeout": 120, "node_maintenance_health_timeout": 120,
                      "node_maintenance_ready_timeout": 120}
        extra_vars.update(extra)
        out = open(str(tmp_path / ("%s-%d.log" % (rollout_id, len(procs)))), "w+")
        proc = subprocess.Popen([ANSIBLE_PLAYBOOK, "-i", str(inventory), PLAYBOOK, "-e", json.dumps(extra_vars)],
                                stdout=out, stderr=subprocess.STDOUT, env=_ansible_env(cluster),
                                start_new_session=True)
        proc.log = out
        procs.append(proc)
        return proc

    def finish(proc, timeout=900):
        proc.wait(timeout)
        proc.log.seek(0)
        proc.stdout_text = proc.log.read()
        return proc

    handle = types.SimpleNamespace(
        start=start, finish=finish, nodes=nodes, pool=pool,
        report=lambda rollout_id: json.loads((tmp_path / "reports" / rollout_id / "report.json").read_text()))
    yield handle
    for proc in procs:
        if proc.poll() is None:
            kill_process_tree(proc.pid)
            proc.wait()
        proc.log.close()


def test_two_rollouts_at_once_exactly_one_proceeds(cluster, namespace, rollout):
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", 4, rollout.pool))
    wait_for("4 ready pods", lambda: sum(1 for p in cluster.core.list_namespaced_pod(namespace).items
                                         if is_ready(p)) == 4)
    first, second = rollout.start("alpha"), rollout.start("beta")
    results = {"alpha": rollout.finish(first), "beta": rollout.finish(second)}
    winners = [rid for rid, proc in results.items() if proc.returncode == 0]
    assert len(winners) == 1, {rid: proc.stdout_text[-3000:] for rid, proc in results.items()}
    winner = winners[0]
    loser = "beta" if winner == "alpha" else "alpha"
    refused = results[loser].stdout_text
    assert "lock" in refused and winner in refused, refused[-3000:]
    assert "Nothing was changed on the node" in refused
    for node in rollout.nodes[:2]:
        rec = record(cluster, node)
        assert rec["rollout"] == winner and rec["status"] == "done", rec
        assert not cluster.core.read_node(node).spec.unschedulable
    assert lease_holder(cluster, namespace) is None, "the winner released the lock"


def test_a_dead_rollouts_expired_lock_and_half_done_node_are_taken_over(cluster, namespace, rollout, run_module):
    node = rollout.nodes[0]
    taint = {"key": "maintenance.kubeops.io/in-progress", "value": "true", "effect": "NoSchedule"}
    # What a rollout killed in its drain leaves behind: the Lease, the node cordoned and tainted,
    # its record in phase drain.
    taken = run_module("k8s_maintenance_lock", {"name": LOCK, "namespace": namespace, "holder": "dead-rollout",
                                                "duration_seconds": 3, "state": "present", "kured_check": False})
    assert not taken["failed"], taken["msg"]
    cluster.core.patch_node(node, {"spec": {"unschedulable": True, "taints": [taint]}})
    left = run_module("k8s_node_maintenance_state", {"name": node, "state": "present", "rollout": "dead-rollout",
                                                     "phase": "drain", "status": "in_progress",
                                                     "cordoned_before": False, "taints_added": [taint]})
    assert not left["failed"], left["msg"]
    time.sleep(4)  # the dead holder's Lease expires

    proc = rollout.finish(rollout.start("successor", node_maintenance_hosts="first_only"))
    out = proc.stdout_text
    assert proc.returncode == 0, out[-5000:]
    assert "taking over from rollout dead-rollout" in out, out[-5000:]
    assert record(cluster, node)["rollout"] == "successor" and record(cluster, node)["status"] == "done"
    after = cluster.core.read_node(node)
    assert not after.spec.unschedulable, "the dead rollout's record says the node was not cordoned before"
    assert not [t for t in after.spec.taints or [] if t.key == taint["key"]], "the dead rollout's taint is gone"
    assert lease_holder(cluster, namespace) is None


class RecordWatcher(threading.Thread):
    """Samples the maintenance records of ``nodes``; ``overlaps`` keeps every sample in which two
    rollouts had a node in progress at the same time."""

    def __init__(self, cluster, nodes):
        super().__init__(daemon=True)
        self.cluster, self.nodes = cluster, nodes
        self.samples, self.overlaps = 0, []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            records = {node: record(self.cluster, node) for node in self.nodes}
            busy = {rec.get("rollout") for rec in records.values() if rec.get("status") == "in_progress"}
            if len(busy) > 1:
                self.overlaps.append(records)
            self.samples += 1
            self.halt.wait(0.2)

    def stop(self):
        self.halt.set()
        self.join(10)


def rollout_spans(cluster, nodes):
    """{rollout id: (first, last)} over the rollout's Events on ``nodes``, in epoch seconds (the
    Event's name carries the nanoseconds it was made at)."""
    spans = {}
    for node in nodes:
        for event in cluster.core.list_namespaced_event(
                "default", field_selector="involvedObject.name=%s" % node).items:
            words = (event.message or "").split()
            if event.reporting_component != "kubeops-node-maintenance" or words[:2] != ["kubeops", "rollout"]:
                continue
            rollout_id = words[2].rstrip(":")
            made = int(event.metadata.name.rsplit(".", 1)[1], 16) / 1e9
            first, last = spans.get(rollout_id, (made, made))
            spans[rollout_id] = (min(first, made), max(last, made))
    return spans


def test_a_rollout_waits_for_the_lock_and_takes_over_from_a_dead_holder(cluster, namespace, rollout):
    """beta waits while alpha holds the lock (alpha maintains the first node) and starts when alpha
    releases it; beta dies on the first node, and gamma, waiting, takes the lock once beta's Lease
    runs out and finishes that node. Never two rollouts at once; the first node, which an operator
    had cordoned, stays cordoned through all three."""
    replicas = 4
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", replicas, rollout.pool))
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"minAvailable": replicas - 1, "selector": {"matchLabels": {"app": "web"}}}})
    wait_for("web ready", lambda: sum(1 for p in cluster.core.list_namespaced_pod(namespace).items
                                      if is_ready(p)) == replicas)
    first, second = rollout.nodes[:2]
    cluster.core.patch_node(first, {"spec": {"unschedulable": True}})  # the operator's, before any rollout
    pods, records = PodWatcher(cluster, namespace), RecordWatcher(cluster, rollout.nodes[:2])
    pods.start()
    records.start()
    try:
        alpha = rollout.start("alpha", node_maintenance_hosts="first_only")
        wait_for("alpha to hold the lock", lambda: alpha.poll() is not None or lease_holder(cluster, namespace) == "alpha")
        # beta's Lease lasts 10 s: once beta is dead, the lock is free 10 s after its last renewal.
        beta = rollout.start("beta", node_maintenance_lock_wait_timeout=600, node_maintenance_lock_duration_seconds=10)
        alpha = rollout.finish(alpha)
        assert alpha.returncode == 0, alpha.stdout_text[-5000:]
        wait_for("beta to take the lock and start on %s" % first,
                 lambda: beta.poll() is not None or record(cluster, first).get("rollout") == "beta",
                 timeout=300, interval=0.05)
        assert beta.poll() is None, rollout.finish(beta).stdout_text[-5000:]
        # beta dies as a controller losing power does: with the module it was running (ansible's
        # workers leave the playbook's process group, so killpg would let that module finish).
        kill_process_tree(beta.pid)
        beta = rollout.finish(beta)
        dead_at = time.time()
        assert lease_holder(cluster, namespace) == "beta"
        gamma = rollout.finish(rollout.start("gamma", node_maintenance_lock_wait_timeout=300,
                                             node_maintenance_hosts="first_only"))
    finally:
        pods.stop()
        records.stop()
    assert gamma.returncode == 0, gamma.stdout_text[-5000:]

    # The waiting rollouts said whom they waited for.
    assert re.search(r"%s: waiting up to 600s for the maintenance lock: lease %s/%s is held by 'alpha'"
                     % (first, namespace, LOCK), beta.stdout_text), beta.stdout_text[-5000:]
    waited = r"waited [0-9.]+s for the maintenance lock: lease %s/%s held by '%s'"
    assert re.search(waited % (namespace, LOCK, "alpha"), beta.stdout_text), beta.stdout_text[-5000:]
    # beta may have read the first node's record while alpha worked on it; it decided again under
    # the lock, so it did not take the node over from alpha, which had finished it.
    decisions = re.findall(r'"msg": "%s: (starting|taking over from rollout \w+)' % re.escape(first), beta.stdout_text)
    assert decisions and decisions[-1] == "starting", (decisions, beta.stdout_text[-5000:])
    # gamma waited for beta's Lease to run out (or, started slowly, found it run out already).
    assert re.search(r"took over lease \S+ from 'beta' \([^)]*\), whose claim had expired", gamma.stdout_text), \
        gamma.stdout_text[-5000:]
    assert "waited" not in gamma.stdout_text or re.search(waited % (namespace, LOCK, "beta"), gamma.stdout_text)
    assert "%s: taking over from rollout beta, which left it in phase" % first in gamma.stdout_text, \
        gamma.stdout_text[-5000:]

    # One rollout at a time: by the Events each one posted on the nodes, and by the sampled records.
    spans = rollout_spans(cluster, rollout.nodes[:2])
    assert set(spans) == {"alpha", "beta", "gamma"}, spans
    assert spans["alpha"][1] < spans["beta"][0], "beta touched a node before alpha finished: %s" % spans
    assert spans["beta"][1] < dead_at < spans["gamma"][0], "gamma started before beta died: %s" % spans
    assert records.samples > 20 and not records.overlaps, records.overlaps[:3]
    assert pods.minimum >= replicas - 1, "web fell to %d ready pods, below its PDB" % pods.minimum

    assert (record(cluster, first)["rollout"], record(cluster, first)["status"]) == ("gamma", "done")
    assert record(cluster, second) == {}, "beta died before the second node, which alpha and gamma did not have"
    assert cluster.core.read_node(first).spec.unschedulable, "the operator's cordon was lifted"
    assert not cluster.core.read_node(second).spec.unschedulable
    for name in (first, second):
        taints = cluster.core.read_node(name).spec.taints or []
        assert not [t for t in taints if t.key.startswith("maintenance.kubeops.io")], (name, taints)
    assert lease_holder(cluster, namespace) is None


def test_sigkill_at_each_phase_then_resume_ends_with_every_node_done(cluster, namespace, rollout):
    replicas = 6
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", replicas, rollout.pool))
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web"},
        "spec": {"minAvailable": replicas - 1, "selector": {"matchLabels": {"app": "web"}}}})
    wait_for("web ready", lambda: sum(1 for p in cluster.core.list_namespaced_pod(namespace).items
                                      if is_ready(p)) == replicas)
    node = rollout.nodes[0]
    on_maintained = {p.metadata.uid for p in cluster.core.list_namespaced_pod(namespace).items
                     if p.spec.node_name in rollout.nodes[:2]}
    watcher = PodWatcher(cluster, namespace)
    watcher.start()
    killed_at, outputs = [], {}
    try:
        # Each run is killed as the first node enters the next phase; the next run resumes there.
        for phase in PHASES:
            proc = rollout.start("kill-9")

            def entered():
                if proc.poll() is not None:
                    return "exited"
                rec = record(cluster, node)
                return rec.get("rollout") == "kill-9" and rec.get("phase") == phase and "entered"

            how = wait_for("phase %s on %s" % (phase, node), entered, timeout=300, interval=0.05)
            assert how == "entered", "the run ended before phase %s:\n%s" % (
                phase, rollout.finish(proc).stdout_text[-4000:])
            kill_process_tree(proc.pid)
            outputs[phase] = rollout.finish(proc).stdout_text
            killed_at.append(phase)
            rec = record(cluster, node)
            assert rec["phase"] == phase and rec["status"] in ("in_progress", "done"), rec
            assert lease_holder(cluster, namespace) == "kill-9", "a killed rollout keeps the lock"

        final = rollout.finish(rollout.start("kill-9"))
    finally:
        watcher.stop()
    assert final.returncode == 0, final.stdout_text[-5000:]
    assert killed_at == PHASES
    # The run killed at done had resumed at verify: its health gate still knew what the drain
    # (two runs earlier) had moved.
    assert "resuming at phase verify" in outputs["done"]
    assert "verify done" in outputs["done"] and "0 workloads healthy" not in outputs["done"], outputs["done"][-3000:]

    report = {n["node"]: n for n in rollout.report("kill-9")["nodes"]}
    assert report[node]["status"] == "skipped", "done in an earlier (killed) run of this rollout"
    assert report[rollout.nodes[1]]["status"] == "done"
    for name in rollout.nodes[:2]:
        assert record(cluster, name)["status"] == "done"
        after = cluster.core.read_node(name)
        assert not after.spec.unschedulable
        assert not [t for t in after.spec.taints or [] if t.key.startswith("maintenance.kubeops.io")]
    assert lease_holder(cluster, namespace) is None

    # Every pod that sat on the two nodes moved, and only pods on those nodes were evicted. A pod
    # moved off the first node may land on the second and move again with it (that is needed),
    # but the pods that came to the first node after it returned stay: it was not drained twice.
    live = {p.metadata.uid for p in cluster.core.list_namespaced_pod(namespace).items}
    gone = set(watcher.seen) - live
    assert on_maintained <= gone
    assert {watcher.seen[uid] for uid in gone} <= set(rollout.nodes[:2])
    came_back = {uid for uid, where in watcher.seen.items() if where == node and uid not in on_maintained}
    assert not came_back & gone, "the first node was drained again after it returned"
    assert watcher.minimum >= replicas - 1, "web fell to %d ready pods, below its PDB" % watcher.minimum


# --- bad input --------------------------------------------------------------------------------

BAD_INPUT = {
    "unknown_action": ({"node_maintenance_action": "explode"}, ["node_maintenance_action", "explode"]),
    "timeout_not_a_number": ({"node_maintenance_drain_timeout": "soon"}, ["node_maintenance_drain_timeout"]),
    "bool_not_a_bool": ({"node_maintenance_kured_check": "perhaps"}, ["node_maintenance_kured_check"]),
    "taints_not_a_list_of_dicts": ({"node_maintenance_taints": "maintenance"}, ["node_maintenance_taints"]),
    "checks_not_a_list": ({"node_maintenance_preflight_fail_on": {"capacity": True}},
                          ["node_maintenance_preflight_fail_on"]),
    "rollout_id_not_a_string": ({"node_maintenance_rollout_id": {"id": 1}}, ["node_maintenance_rollout_id"]),
    "rollout_id_a_path": ({"node_maintenance_rollout_id": "../../etc"}, ["node_maintenance_rollout_id"]),
    "data_disk_without_device": ({"node_maintenance_data_disks": [{"path": "/data"}]}, ["device"]),
    "data_disk_unknown_runtime": ({"node_maintenance_data_disks": [
        {"device": "/dev/vdb", "path": "/data", "runtime": "podman"}]}, ["runtime", "podman"]),
}


def snapshot(cluster, node):
    obj = cluster.core.read_node(node)
    return (obj.metadata.annotations, obj.metadata.labels, obj.spec.unschedulable,
            [t.to_dict() for t in obj.spec.taints or []])


def lock_name(tmp_path, case):
    """A Lease name of this case and this test run (the cluster may be reused across runs)."""
    return "lock-%s-%s" % (case.replace("_", "-"), abs(hash(str(tmp_path))) % 10 ** 8)


def run_bad(cluster, tmp_path, name, extra, inventory_text):
    inventory = tmp_path / ("%s.ini" % name)
    inventory.write_text(inventory_text)
    extra_vars = {"node_maintenance_rollout_id": "bad-input", "node_maintenance_action": "none",
                  "node_maintenance_lock_namespace": "default",
                  "node_maintenance_lock_name": lock_name(tmp_path, name),
                  "node_maintenance_report_dir": str(tmp_path / "reports")}
    extra_vars.update(extra)
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), PLAYBOOK, "-e", json.dumps(extra_vars)],
                          capture_output=True, text=True, env=_ansible_env(cluster), timeout=600, check=False)


def test_bad_input_is_refused_before_any_change(cluster, make_node, tmp_path):
    node = make_node()
    before = snapshot(cluster, node)
    host_line = "[k8s_nodes]\n%s ansible_host=127.0.0.1 ansible_port=1\n" % node
    cases = {name: (extra, words, host_line) for name, (extra, words) in BAD_INPUT.items()}
    cases["unknown_node"] = ({}, ["no-such-node-f4ult", "not found in the cluster"],
                             "[k8s_nodes]\nno-such-node-f4ult ansible_host=127.0.0.1 ansible_port=1\n")
    cases["empty_inventory"] = ({}, ["no hosts in inventory group k8s_nodes"], "[k8s_nodes]\n")
    cases["wrong_group"] = ({"node_maintenance_hosts": "workers"}, ["no hosts in inventory group workers"], host_line)
    # Independent runs that each stop early: in parallel, to keep the suite short.
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_bad, cluster, tmp_path, name, extra, text)
                   for name, (extra, _words, text) in cases.items()}
        results = {name: future.result() for name, future in futures.items()}

    problems = []
    for name, (_extra, words, _text) in cases.items():
        res = results[name]
        out = res.stdout + res.stderr
        if res.returncode == 0:
            problems.append("%s: accepted (rc 0)" % name)
            continue
        missing = [w for w in words if w not in out]
        if missing:
            problems.append("%s: message lacks %s:\n%s" % (name, missing, out[-1500:]))
        try:
            cluster.coordination.read_namespaced_lease(lock_name(tmp_path, name), "default")
            problems.append("%s: the lock was taken" % name)
        except Exception:  # noqa: BLE001 - not found is what we want
            pass
    assert not problems, "\n".join(problems)
    assert snapshot(cluster, node) == before, "the node was changed by a refused run"
    events = cluster.core.list_namespaced_event("default", field_selector="involvedObject.name=%s" % node).items
    assert not [e for e in events if "bad-input" in (e.message or "")], "a refused run posted events on the node"
