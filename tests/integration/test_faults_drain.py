# -*- coding: utf-8 -*-
"""Fault suite (issue #12): what others do to a node and its pods while we drain it.

- the node object deleted by someone else mid-drain;
- a PodDisruptionBudget swapped for a stricter one mid-drain;
- the drain's credentials revoked while it waits for the pods (401 on its polls): it stops at once;
- a pod stuck terminating behind a finalizer, in a rollout: the drain waits for it, times out
  naming it, the node stays cordoned with its record saying so, and a re-run after the finalizer
  is gone resumes and finishes;
- a pod under two PDBs (the eviction API's 500), in a rollout: a per-pod error naming both, the
  node cordoned and explained.
"""
import json
import os
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.conftest import in_thread, is_ready, register_secret, wait_for as _wait_for


def wait_for(what, predicate, timeout=90, interval=0.2):
    return _wait_for(what, predicate, timeout, interval)


pytestmark = [pytest.mark.integration, pytest.mark.faults]

PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "rolling-maintenance.yml")
STATE_ANNOTATION = "maintenance.kubeops.io/state"
HOLD = "kubeops.test/hold"


def apply(cluster, namespace, *objects):
    items = [dict(obj, metadata=dict(obj["metadata"], namespace=namespace)) for obj in objects]
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def ready_on(cluster, namespace, node, count):
    def check():
        pods = [p for p in cluster.core.list_namespaced_pod(
            namespace, field_selector="spec.nodeName=%s" % node).items if is_ready(p)]
        return pods if len(pods) == count else None
    return wait_for("%d ready pods on %s" % (count, node), check)


def deployment(name, replicas, node_selector, finalizers=None):
    labels = {"app": name}
    meta = {"labels": labels}
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": meta, "spec": {
                         "nodeSelector": node_selector, "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "app", "image": "registry.invalid/%s:1" % name,
                                         "resources": {"requests": {"cpu": "10m"}}}]}}}}


def pdb(name, app, **spec):
    spec["selector"] = {"matchLabels": {"app": app}}
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec}


def pdb_allows(cluster, namespace, name, allowed):
    def check():
        status = cluster.policy.read_namespaced_pod_disruption_budget(name, namespace).status
        return status and status.observed_generation and status.disruptions_allowed == allowed
    wait_for("pdb %s to allow %d" % (name, allowed), check)


def release_all(cluster, namespace):
    for pod in cluster.core.list_namespaced_pod(namespace).items:
        if pod.metadata.finalizers:
            try:
                cluster.core.patch_namespaced_pod(pod.metadata.name, namespace, {"metadata": {"finalizers": None}})
            except Exception:  # noqa: BLE001 - gone meanwhile
                pass


def record(cluster, node):
    return json.loads((cluster.core.read_node(node).metadata.annotations or {}).get(STATE_ANNOTATION, "{}"))


def warning_events(cluster, node):
    events = cluster.core.list_namespaced_event("default", field_selector="involvedObject.name=%s" % node).items
    return [e for e in events if e.type == "Warning"]


# --- module level -----------------------------------------------------------------------------

def test_node_deleted_mid_drain_stops_the_drain_with_a_clear_message(cluster, namespace, make_node, run_module):
    node = make_node()
    apply(cluster, namespace, deployment("db", 2, {"kubernetes.io/hostname": node}), pdb("db", "db", minAvailable=2))
    ready_on(cluster, namespace, node, 2)
    pdb_allows(cluster, namespace, "db", 0)

    drain = in_thread(run_module, "k8s_node_drain", {"name": node, "timeout": 120})
    wait_for("the drain to cordon the node", lambda: cluster.core.read_node(node).spec.unschedulable, timeout=120)
    started = time.monotonic()
    cluster.core.delete_node(node)
    result = drain()

    assert result["failed"]
    assert result["stopped_by"] == "node_deleted" and result["node_deleted"] is True, result
    msg = result["msg"]
    assert "node/%s" % node in msg and "deleted" in msg, msg
    # It says so at once instead of waiting out its timeout for pods of a node that is gone.
    assert time.monotonic() - started < 100, "the drain ran on to its timeout after the node was deleted"
    assert "stays cordoned" not in msg, "there is no node left to stay cordoned: %s" % msg


def test_credentials_revoked_while_waiting_stop_the_drain_at_once(cluster, namespace, make_node, run_module):
    """A bound ServiceAccount token that stops being valid mid-drain (here: its ServiceAccount is
    deleted, as when a short-lived token expires) ends the drain within seconds with the 401 named,
    not at the timeout with "still on the node"."""
    node = make_node()
    # The finalizer keeps the evicted pods Terminating, so the drain is still waiting when the token dies.
    apply(cluster, namespace, deployment("held", 2, {"kubernetes.io/hostname": node}, finalizers=[HOLD]))
    ready_on(cluster, namespace, node, 2)
    account = "drainer"
    cluster.kubectl("-n", namespace, "create", "serviceaccount", account)
    binding = "kubeops-test-drainer-%s" % namespace
    cluster.kubectl("create", "clusterrolebinding", binding, "--clusterrole=cluster-admin",
                    "--serviceaccount=%s:%s" % (namespace, account))
    try:
        token = register_secret(cluster.kubectl("-n", namespace, "create", "token", account, "--duration=1h")
                                .stdout.strip(), "the drainer's token")
        drain = in_thread(run_module, "k8s_node_drain", {
            "name": node, "timeout": 240, "host": cluster.server, "api_key": token, "validate_certs": False}, auth=False)
        wait_for("both pods evicted (terminating)", lambda: len([
            p for p in cluster.core.list_namespaced_pod(namespace, field_selector="spec.nodeName=%s" % node).items
            if p.metadata.deletion_timestamp]) == 2, timeout=120)
        cluster.kubectl("-n", namespace, "delete", "serviceaccount", account)
        revoked = time.monotonic()
        result = drain()
        waited = time.monotonic() - revoked
    finally:
        cluster.kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found")
        release_all(cluster, namespace)

    assert result["failed"], result
    assert result["stopped_by"] == "access_lost", result
    msg = result["msg"]
    assert "drain of node/%s stopped before its timeout" % node in msg, msg
    assert "unauthorized (401)" in msg and "pods on node/%s" % node in msg, msg
    assert "2 pod(s) not confirmed gone" in msg and "stays cordoned" in msg, msg
    assert waited < 60, "the drain took %.0f s after its token was revoked (timeout 240 s)" % waited
    assert [p["action"] for p in result["pods"]] == ["failed", "failed"]
    assert cluster.core.read_node(node).spec.unschedulable is True


def test_pdb_swapped_for_a_stricter_one_mid_drain_times_out_naming_it(cluster, namespace, make_node, run_module):
    pool = {"kubeops.test/pool": namespace}
    node = make_node(labels=pool)
    spare = make_node(labels=pool, unschedulable=True)
    apply(cluster, namespace, deployment("web", 3, pool), pdb("web", "web", maxUnavailable=1))
    before = {p.metadata.uid for p in ready_on(cluster, namespace, node, 3)}
    pdb_allows(cluster, namespace, "web", 1)

    drain = in_thread(run_module, "k8s_node_drain", {"name": node, "timeout": 25})
    # One pod evicted; its replacement cannot run (the spare is cordoned), so the drain waits.
    wait_for("the first eviction", lambda: len(
        {p.metadata.uid for p in cluster.core.list_namespaced_pod(namespace).items
         if not p.metadata.deletion_timestamp} & before) == 2, timeout=120, interval=0.1)
    # Someone replaces the budget with one that allows no disruption, then the spare opens.
    cluster.policy.delete_namespaced_pod_disruption_budget("web", namespace)
    apply(cluster, namespace, pdb("web-freeze", "web", minAvailable="100%"))
    cluster.core.patch_node(spare, {"spec": {"unschedulable": False}})
    result = drain()

    assert result["failed"]
    assert result["stopped_by"] == "timeout", result
    msg = result["msg"]
    assert "did not finish within the timeout" in msg, msg
    assert "pdb %s/web-freeze" % namespace in msg, msg
    assert "node/%s stays cordoned" % node in msg
    evicted = [p for p in result["pods"] if p["action"] == "evicted"]
    failed = [p for p in result["pods"] if p["action"] == "failed"]
    assert len(evicted) == 1 and len(failed) == 2
    assert all(p["pdb"] and p["pdb"][0]["name"] == "web-freeze" for p in failed), failed
    assert cluster.core.read_node(node).spec.unschedulable
    # The workload never went below the new budget: both held pods still run on the node.
    assert len(ready_on(cluster, namespace, node, 2)) == 2


# --- rollout level ----------------------------------------------------------------------------

@pytest.fixture
def one_node_rollout(cluster, namespace, make_node, run_playbook, tmp_path):
    pool = {"kubeops.test/pool": namespace}
    node = make_node(labels=pool)
    spare = make_node(labels=pool, unschedulable=True)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[k8s_nodes]\n%s ansible_host=127.0.0.1 ansible_port=1\n" % node)

    def run(rollout_id, **extra):
        extra_vars = {"node_maintenance_rollout_id": rollout_id, "node_maintenance_action": "none",
                      "node_maintenance_lock_namespace": namespace,
                      "node_maintenance_report_dir": str(tmp_path / "reports"),
                      "node_maintenance_preflight_fail_on": ["capacity"],
                      "node_maintenance_drain_timeout": 60, "node_maintenance_health_timeout": 60,
                      "node_maintenance_ready_timeout": 60}
        extra_vars.update(extra)
        return run_playbook(PLAYBOOK, extra_vars=extra_vars, inventory=str(inventory))

    run.node, run.spare, run.pool = node, spare, pool
    run.report = lambda rollout_id: json.loads((tmp_path / "reports" / rollout_id / "report.json").read_text())
    yield run
    release_all(cluster, namespace)


def assert_left_cordoned_and_explained(cluster, node, rollout_id, phase, res):
    assert res.returncode != 0
    assert "Rollout %s stopped at node %s" % (rollout_id, node) in res.stdout
    assert "re-run the same command with the same" in res.stdout, "the message says what to do next"
    assert cluster.core.read_node(node).spec.unschedulable, "a node that failed after the drain stays cordoned"
    rec = record(cluster, node)
    assert rec["status"] == "failed" and rec["phase"] == phase and rec["rollout"] == rollout_id, rec
    assert any(rollout_id in e.message for e in warning_events(cluster, node))


def test_pod_stuck_terminating_stops_the_rollout_naming_it_and_a_rerun_resumes(cluster, namespace, one_node_rollout):
    run = one_node_rollout
    apply(cluster, namespace, deployment("web", 2, run.pool, finalizers=[HOLD]))
    ready_on(cluster, namespace, run.node, 2)
    cluster.core.patch_node(run.spare, {"spec": {"unschedulable": False}})

    res = run("stuck-1", node_maintenance_drain_timeout=10)
    assert_left_cordoned_and_explained(cluster, run.node, "stuck-1", "drain", res)
    # Named: each pod still terminating on the node, and why the drain could not finish.
    stuck = [p.metadata.name for p in cluster.core.list_namespaced_pod(namespace).items
             if p.metadata.deletion_timestamp and p.spec.node_name == run.node]
    assert len(stuck) == 2
    for name in stuck:
        assert "%s/%s" % (namespace, name) in res.stdout, res.stdout[-3000:]
    assert "did not finish within the timeout" in res.stdout
    assert run.report("stuck-1")["nodes"][0]["status"] == "failed"

    # The operator finds the finalizer's controller (here: removes the finalizer) and re-runs.
    release_all(cluster, namespace)
    again = run("stuck-1")
    assert again.returncode == 0, again.stdout[-4000:]
    node_report = run.report("stuck-1")["nodes"][0]
    assert node_report["status"] == "done" and node_report["resumed_from"] == "drain"
    assert not cluster.core.read_node(run.node).spec.unschedulable
    assert record(cluster, run.node)["status"] == "done"


def test_pod_under_two_pdbs_stops_the_rollout_with_both_named(cluster, namespace, one_node_rollout):
    run = one_node_rollout
    apply(cluster, namespace, deployment("twice", 2, run.pool))
    ready_on(cluster, namespace, run.node, 2)
    # After the pods are Ready: the disruption controller re-syncs only one budget per pod update.
    apply(cluster, namespace, pdb("first", "twice", maxUnavailable=1), pdb("second", "twice", maxUnavailable=1))
    pdb_allows(cluster, namespace, "first", 1)
    pdb_allows(cluster, namespace, "second", 1)
    cluster.core.patch_node(run.spare, {"spec": {"unschedulable": False}})

    res = run("twice-1", node_maintenance_drain_timeout=20)
    assert_left_cordoned_and_explained(cluster, run.node, "twice-1", "drain", res)
    assert "more than one PodDisruptionBudget (%s/first, %s/second)" % (namespace, namespace) in res.stdout
    # Nothing was evicted: every pod still runs on the node.
    assert len(ready_on(cluster, namespace, run.node, 2)) == 2
