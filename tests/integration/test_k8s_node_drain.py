# -*- coding: utf-8 -*-
"""k8s_node_drain against the real local control plane: real eviction API, ReplicaSet and
disruption controllers, scheduler, and kwok nodes whose pods become Ready through kwok stages."""

import json
import threading
import time

import pytest

from tests.integration.conftest import is_ready, wait_for as _wait_for


def wait_for(what, predicate, timeout=60, interval=0.2):
    return _wait_for(what, predicate, timeout, interval)


pytestmark = pytest.mark.integration

HOLD_FINALIZER = "kubeops.test/hold"


# --- helpers ----------------------------------------------------------------------------------

def apply(cluster, *objects):
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                          "items": list(objects)}))


def pods_in(cluster, namespace, node=None):
    kwargs = {"field_selector": "spec.nodeName=%s" % node} if node else {}
    return cluster.core.list_namespaced_pod(namespace, **kwargs).items


def uids(pods):
    return sorted(p.metadata.uid for p in pods)


def container():
    return [{"name": "app", "image": "registry.example/app:1"}]


def deployment(name, replicas, node_selector, labels=None, volumes=None):
    labels = labels or {"app": name}
    spec = {"containers": container(), "nodeSelector": node_selector, "terminationGracePeriodSeconds": 0}
    if volumes:
        spec["volumes"] = volumes
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": spec}}}


def bare_pod(name, node, labels=None, annotations=None, finalizers=None):
    meta = {"name": name, "labels": labels or {}, "annotations": annotations or {}}
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": node, "containers": container(), "terminationGracePeriodSeconds": 0}}


def pdb(name, labels, max_unavailable=None, min_available=None):
    spec = {"selector": {"matchLabels": labels}}
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    if min_available is not None:
        spec["minAvailable"] = min_available
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": spec}


def wait_ready(cluster, namespace, count, node=None, timeout=60):
    def all_ready():
        ready = [p for p in pods_in(cluster, namespace, node) if is_ready(p)]
        return ready if len(ready) == count else None

    return wait_for("%d ready pods in %s" % (count, namespace), all_ready, timeout)


def wait_pdb_settled(cluster, namespace, name, allowed, timeout=30):
    def check():
        status = cluster.policy.read_namespaced_pod_disruption_budget(name, namespace).status
        return status and status.observed_generation and status.disruptions_allowed == allowed
    wait_for("pdb %s/%s to allow %d" % (namespace, name, allowed), check, timeout)


def unschedulable(cluster, node):
    return bool(cluster.core.read_node(node).spec.unschedulable)


def set_unschedulable(cluster, node, value):
    cluster.core.patch_node(node, {"spec": {"unschedulable": value}})


def release(cluster, namespace, name):
    """Drop the test finalizer so the pod (and its namespace) can go."""
    try:
        cluster.core.patch_namespaced_pod(name, namespace, {"metadata": {"finalizers": None}})
    except Exception:  # noqa: BLE001 - already gone
        pass


def by_name(result):
    return dict((p["name"], p) for p in result["pods"])


# --- tests ------------------------------------------------------------------------------------

def test_drain_moves_replicated_pods_and_is_idempotent(cluster, namespace, make_node, run_module):
    group = {"drain-group": namespace}
    node = make_node(labels=group)
    other = make_node(labels=group, unschedulable=True)
    apply(cluster, dict(deployment("web", 6, group), metadata={"name": "web", "namespace": namespace}))
    before = wait_ready(cluster, namespace, 6, node)
    set_unschedulable(cluster, other, False)

    planned = run_module("k8s_node_drain", {"name": node, "timeout": 60}, check=True)
    assert planned["changed"] is True and not planned["failed"] and planned["stopped_by"] is None
    assert [p["plan"] for p in planned["pods"]] == ["evict"] * 6
    assert not unschedulable(cluster, node)
    assert uids(pods_in(cluster, namespace, node)) == uids(before)

    result = run_module("k8s_node_drain", {"name": node, "timeout": 60})
    assert not result["failed"], result["msg"]
    assert result["changed"] is True and result["cordoned"] is True and result["stopped_by"] is None
    assert unschedulable(cluster, node)
    assert result["counts"]["evicted"] == 6 and result["counts"]["total"] == 6
    for pod in result["pods"]:
        assert pod["action"] == "evicted" and pod["attempts"] == 1 and pod["owner_kind"] == "ReplicaSet"
        assert pod["seconds"] >= 0
    assert sorted(p["uid"] for p in result["pods"]) == uids(before)
    assert pods_in(cluster, namespace, node) == []
    moved = wait_ready(cluster, namespace, 6, other)
    assert not set(uids(moved)) & set(uids(before))
    # Waiting costs a list per poll for the whole node, never a GET per pod.
    assert result["api_requests"]["evict"] == 6
    assert "get pod" not in result["api_requests"]

    again_check = run_module("k8s_node_drain", {"name": node}, check=True)
    assert again_check["changed"] is False and again_check["pods"] == []
    again = run_module("k8s_node_drain", {"name": node})
    assert again["changed"] is False and not again["failed"] and again["pods"] == []


def test_pods_that_block_are_refused_before_anything_moves(cluster, namespace, make_node, run_module):
    node = make_node()
    host = {"kubernetes.io/hostname": node}
    apply(cluster,
          dict(bare_pod("standalone", node), metadata={"name": "standalone", "namespace": namespace}),
          dict(deployment("cache", 1, host, volumes=[{"name": "scratch", "emptyDir": {}}]),
               metadata={"name": "cache", "namespace": namespace}),
          {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": namespace},
           "spec": {"selector": {"matchLabels": {"app": "agent"}},
                    "template": {"metadata": {"labels": {"app": "agent"}},
                                 "spec": {"containers": container(), "nodeSelector": host}}}})
    before = wait_ready(cluster, namespace, 3, node)

    result = run_module("k8s_node_drain", {"name": node, "timeout": 30})
    assert result["failed"]
    msg = result["msg"]
    assert "nothing was evicted" in msg and "3 pod(s) block it" in msg
    assert "set force: true" in msg and "%s/standalone" % namespace in msg
    assert "set delete_emptydir_data: true" in msg and "%s/cache-" % namespace in msg
    assert "set ignore_daemonsets: true" in msg and "%s/agent-" % namespace in msg
    assert result["changed"] is False and result["counts"]["none"] == 3
    assert result["stopped_by"] == "refused"
    blockers = dict((p["name"].split("-")[0], [b["option"] for b in p["blockers"]]) for p in result["pods"])
    assert blockers == {"standalone": ["force"], "cache": ["delete_emptydir_data"], "agent": ["ignore_daemonsets"]}
    # Nothing moved, and the cordon this task made was undone.
    assert uids(pods_in(cluster, namespace, node)) == uids(before)
    assert not unschedulable(cluster, node)


def test_each_rule_when_the_drain_is_allowed(cluster, namespace, make_node, run_module):
    group = {"drain-group": namespace}
    node = make_node(labels=group)
    spare = make_node(labels=group, unschedulable=True)
    host = {"kubernetes.io/hostname": node}
    mirror = {"kubernetes.io/config.mirror": "abc", "kubernetes.io/config.source": "file"}
    apply(cluster,
          dict(bare_pod("standalone", node), metadata={"name": "standalone", "namespace": namespace}),
          dict(bare_pod("static-web", node), metadata={"name": "static-web", "namespace": namespace,
                                                       "annotations": mirror}),
          dict(deployment("cache", 1, group, volumes=[{"name": "scratch", "emptyDir": {}}]),
               metadata={"name": "cache", "namespace": namespace}),
          {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": namespace},
           "spec": {"selector": {"matchLabels": {"app": "agent"}},
                    "template": {"metadata": {"labels": {"app": "agent"}},
                                 "spec": {"containers": container(), "nodeSelector": host}}}},
          {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once", "namespace": namespace},
           "spec": {"template": {"spec": {"containers": container(), "restartPolicy": "Never",
                                          "nodeSelector": host}}}})
    wait_for("the job's pod to finish", lambda: [p for p in pods_in(cluster, namespace, node)
                                                 if p.status.phase == "Succeeded"])
    wait_for("cache, agent, standalone and static pods", lambda: len(
        [p for p in pods_in(cluster, namespace, node) if is_ready(p)]) == 4)
    set_unschedulable(cluster, spare, False)

    result = run_module("k8s_node_drain", {"name": node, "ignore_daemonsets": True, "delete_emptydir_data": True,
                                           "force": True, "timeout": 60})
    assert not result["failed"], result["msg"]
    pods = dict((p["name"].split("-")[0], p) for p in result["pods"])
    assert pods["static"]["plan"] == "skip" and pods["static"]["action"] == "skipped"
    assert pods["agent"]["action"] == "skipped" and pods["agent"]["owner_kind"] == "DaemonSet"
    assert pods["once"]["plan"] == "delete" and pods["once"]["action"] == "deleted"
    assert pods["cache"]["action"] == "evicted" and any("emptyDir" in w for w in pods["cache"]["warnings"])
    assert pods["standalone"]["action"] == "evicted" and pods["standalone"]["owner_kind"] is None
    left = sorted(p.metadata.name.split("-")[0] for p in pods_in(cluster, namespace, node))
    assert left == ["agent", "static"]
    wait_ready(cluster, namespace, 1, spare)  # the cache pod came back elsewhere


def test_terminating_pods_are_waited_for_and_skip_wait_for_delete_timeout(cluster, namespace, make_node,
                                                                          run_module):
    node = make_node()
    apply(cluster, dict(bare_pod("stuck", node, finalizers=[HOLD_FINALIZER]),
                        metadata={"name": "stuck", "namespace": namespace, "finalizers": [HOLD_FINALIZER]}))
    wait_ready(cluster, namespace, 1, node)
    cluster.core.delete_namespaced_pod("stuck", namespace)
    try:
        # Still terminating at the timeout: reported, not evicted a second time.
        result = run_module("k8s_node_drain", {"name": node, "timeout": 3})
        assert result["failed"]
        stuck = by_name(result)["stuck"]
        assert stuck["plan"] == "wait" and stuck["action"] == "failed" and stuck["attempts"] == 0
        assert result["stopped_by"] == "timeout"
        assert "%s/stuck: was already terminating" % namespace in result["msg"]
        assert "stays cordoned" in result["msg"] and unschedulable(cluster, node)

        time.sleep(2)
        skipped = run_module("k8s_node_drain", {"name": node, "skip_wait_for_delete_timeout": 1, "timeout": 10})
        assert not skipped["failed"] and by_name(skipped)["stuck"]["action"] == "skipped"
        assert skipped["stopped_by"] is None

        # Released while the drain waits: the drain sees it go. The eviction of a second pod tells
        # the test that the drain has listed the node's pods.
        apply(cluster, dict(bare_pod("signal", node), metadata={"name": "signal", "namespace": namespace}))
        signal = wait_ready(cluster, namespace, 1, node)[0].metadata.uid

        def release_when_drain_started():
            wait_for("the drain to evict the signal pod", lambda: signal not in uids(pods_in(cluster, namespace)))
            release(cluster, namespace, "stuck")
        releaser = threading.Thread(target=release_when_drain_started)
        releaser.start()
        waited = run_module("k8s_node_drain", {"name": node, "force": True, "timeout": 60})
        releaser.join()
        assert not waited["failed"], waited["msg"]
        assert by_name(waited)["stuck"]["action"] == "waited"
        assert by_name(waited)["stuck"]["attempts"] == 0
        assert by_name(waited)["signal"]["action"] == "evicted"
    finally:
        release(cluster, namespace, "stuck")


def test_pdb_drain_keeps_at_most_one_replica_unavailable(cluster, namespace, make_node, run_module):
    replicas = 20
    group = {"drain-group": namespace}
    node = make_node(labels=group)
    others = [make_node(labels=group) for _index in range(2)]
    for other in others:
        set_unschedulable(cluster, other, True)
    labels = {"app": "web"}
    apply(cluster, dict(deployment("web", replicas, group, labels), metadata={"name": "web", "namespace": namespace}),
          dict(pdb("web", labels, max_unavailable=1), metadata={"name": "web", "namespace": namespace}))
    wait_ready(cluster, namespace, replicas, node)
    wait_pdb_settled(cluster, namespace, "web", 1)
    for other in others:
        set_unschedulable(cluster, other, False)

    worst = {"unavailable": 0, "samples": 0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            ready = [p for p in pods_in(cluster, namespace) if is_ready(p)]
            worst["unavailable"] = max(worst["unavailable"], replicas - len(ready))
            worst["samples"] += 1
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run_module("k8s_node_drain", {"name": node, "timeout": 120})
    finally:
        stop.set()
        watcher.join()
    assert not result["failed"], result["msg"]
    assert result["counts"]["evicted"] == replicas
    assert worst["samples"] > 20
    assert worst["unavailable"] <= 1, worst
    assert pods_in(cluster, namespace, node) == []
    back = wait_ready(cluster, namespace, replicas)
    assert set(p.spec.node_name for p in back) <= set(others)
    # Budgets are read before evicting, so pods wait for room instead of collecting 429s.
    assert result["api_requests"]["evict"] < 2 * replicas
    assert all(p["pdb"] and p["pdb"][0]["name"] == "web" for p in result["pods"])


def test_unsatisfiable_pdb_times_out_naming_it_and_node_stays_cordoned(cluster, namespace, make_node,
                                                                       run_module):
    node = make_node()
    labels = {"app": "db"}
    apply(cluster, dict(deployment("db", 2, {"kubernetes.io/hostname": node}, labels),
                        metadata={"name": "db", "namespace": namespace}),
          dict(pdb("db", labels, min_available=2), metadata={"name": "db", "namespace": namespace}))
    before = wait_ready(cluster, namespace, 2, node)
    wait_pdb_settled(cluster, namespace, "db", 0)

    started = time.monotonic()
    result = run_module("k8s_node_drain", {"name": node, "timeout": 7})
    assert time.monotonic() - started < 30
    assert result["failed"] and result["changed"] is True
    assert result["stopped_by"] == "timeout" and result["node_deleted"] is False
    msg = result["msg"]
    assert "did not finish within the timeout (7s)" in msg
    assert "pdb %s/db (disruptionsAllowed 0, healthy 2/2)" % namespace in msg
    assert "node/%s stays cordoned" % node in msg
    assert unschedulable(cluster, node)
    assert uids(pods_in(cluster, namespace, node)) == uids(before)
    for pod in result["pods"]:
        assert pod["action"] == "failed"
        assert pod["pdb"][0]["disruptions_allowed"] == 0 and pod["pdb"][0]["desired_healthy"] == 2
        # The budget was spent all along: the pods were held back rather than sent to collect 429s.
        assert pod["attempts"] == 0 and "held back until the timeout" in pod["reason"]


def test_check_mode_and_server_dry_run_change_nothing(cluster, namespace, make_node, run_module):
    node = make_node()
    labels = {"app": "api"}
    apply(cluster, dict(deployment("api", 2, {"kubernetes.io/hostname": node}, labels),
                        metadata={"name": "api", "namespace": namespace}),
          dict(pdb("api", labels, min_available=2), metadata={"name": "api", "namespace": namespace}))
    before = wait_ready(cluster, namespace, 2, node)
    wait_pdb_settled(cluster, namespace, "api", 0)

    checked = run_module("k8s_node_drain", {"name": node}, check=True)
    assert checked["changed"] is True and not checked["failed"] and checked["cordoned"] is True
    assert all(p["plan"] == "evict" and p["action"] == "none" for p in checked["pods"])
    assert all("disruptionsAllowed 0" in p["reason"] for p in checked["pods"])
    assert "evict" not in checked["api_requests"] and "patch node" not in checked["api_requests"]

    assert checked["stopped_by"] is None
    dry = run_module("k8s_node_drain", {"name": node, "dry_run": "server"})
    assert not dry["failed"] and dry["stopped_by"] is None
    assert dry["api_requests"]["evict"] == 2
    for pod in dry["pods"]:
        assert pod["action"] == "none"
        assert "would be refused" in pod["reason"] and "disruption budget" in pod["reason"]

    assert not unschedulable(cluster, node)
    assert uids(pods_in(cluster, namespace, node)) == uids(before)
    budget = cluster.policy.read_namespaced_pod_disruption_budget("api", namespace).status
    assert not budget.disrupted_pods


def test_pod_under_two_pdbs_fails_with_both_named(cluster, namespace, make_node, run_module):
    node = make_node()
    labels = {"app": "twice"}
    apply(cluster, dict(deployment("twice", 1, {"kubernetes.io/hostname": node}, labels),
                        metadata={"name": "twice", "namespace": namespace}))
    wait_ready(cluster, namespace, 1, node)
    # The budgets come after the pod is Ready: a pod update re-syncs only one of the budgets that
    # select it (the disruption controller picks one), so the other would keep a stale status.
    apply(cluster, dict(pdb("first", labels, max_unavailable=1), metadata={"name": "first", "namespace": namespace}),
          dict(pdb("second", labels, max_unavailable=1), metadata={"name": "second", "namespace": namespace}))
    wait_pdb_settled(cluster, namespace, "first", 1)
    wait_pdb_settled(cluster, namespace, "second", 1)
    result = run_module("k8s_node_drain", {"name": node, "timeout": 20})
    assert result["failed"]
    pod = result["pods"][0]
    assert pod["action"] == "failed" and pod["attempts"] == 1
    assert "more than one PodDisruptionBudget (%s/first, %s/second)" % (namespace, namespace) in pod["reason"]
    assert "disable_eviction" in result["msg"]
    # Refused for good before the timeout: not something waiting fixes.
    assert result["stopped_by"] == "pod_errors"


def test_disable_eviction_deletes_past_a_budget(cluster, namespace, make_node, run_module):
    node = make_node()
    labels = {"app": "db"}
    apply(cluster, dict(deployment("db", 2, {"kubernetes.io/hostname": node}, labels),
                        metadata={"name": "db", "namespace": namespace}),
          dict(pdb("db", labels, min_available=2), metadata={"name": "db", "namespace": namespace}))
    wait_ready(cluster, namespace, 2, node)
    wait_pdb_settled(cluster, namespace, "db", 0)
    result = run_module("k8s_node_drain", {"name": node, "disable_eviction": True, "grace_period": 0,
                                           "timeout": 30})
    assert not result["failed"], result["msg"]
    assert [p["action"] for p in result["pods"]] == ["deleted", "deleted"]
    assert "evict" not in result["api_requests"] and result["api_requests"]["delete"] == 2
    assert pods_in(cluster, namespace, node) == []


def test_pod_selector_without_cordon(cluster, namespace, make_node, run_module):
    node = make_node()
    host = {"kubernetes.io/hostname": node}
    apply(cluster, dict(deployment("keep", 1, host), metadata={"name": "keep", "namespace": namespace}),
          dict(deployment("move", 2, host), metadata={"name": "move", "namespace": namespace}))
    wait_ready(cluster, namespace, 3, node)
    result = run_module("k8s_node_drain", {"name": node, "pod_selector": "app=move", "cordon": False,
                                           "timeout": 30})
    assert not result["failed"], result["msg"]
    assert result["cordoned"] is False and not unschedulable(cluster, node)
    assert sorted(p["name"].split("-")[0] for p in result["pods"]) == ["move", "move"]
    assert all(p["action"] == "evicted" for p in result["pods"])
    names = [p.metadata.name for p in pods_in(cluster, namespace, node) if not p.metadata.deletion_timestamp]
    assert any(n.startswith("keep-") for n in names)


def test_unknown_node_fails_with_a_clear_message(run_module):
    result = run_module("k8s_node_drain", {"name": "no-such-node-x1", "timeout": 10})
    assert result["failed"]
    assert "node/no-such-node-x1: not found (404)" in result["msg"]
    assert result["status"] == 404 and result["object"] == "node/no-such-node-x1"
    assert result["node"] == "no-such-node-x1"
    assert "stopped_by" not in result


# --- volumes detached before the node goes down (wait_for_volume_detach) -----------------------

FAKE_DRIVER = "fake.csi.kubeops.test"


class Storage:
    """Real PersistentVolumes, claims and VolumeAttachments for one node: no CSI driver runs, so
    nothing detaches them but ``detach`` (a second writer, as the attach/detach controller and the
    external attacher would); cluster-scoped objects are deleted by ``cleanup``."""

    def __init__(self, cluster, namespace, node):
        from kubernetes import client
        self.cluster, self.namespace, self.node = cluster, namespace, node
        self.storage = client.StorageV1Api(cluster.api_client)
        self.pvs, self.attachments = [], []

    def volume(self, claim):
        """A CSI PersistentVolume bound to claim ``claim`` (made too), attached to the node: its
        VolumeAttachment (attached, in its status) and its entry in the node's status.volumesAttached."""
        pv_name = "pv-%s-%s" % (self.namespace, claim)
        handle = "h-%s-%s" % (self.namespace, claim)
        self.cluster.core.create_persistent_volume({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                     "persistentVolumeReclaimPolicy": "Retain",
                     "csi": {"driver": FAKE_DRIVER, "volumeHandle": handle},
                     "claimRef": {"kind": "PersistentVolumeClaim", "namespace": self.namespace, "name": claim}}})
        self.pvs.append(pv_name)
        self.cluster.core.create_namespaced_persistent_volume_claim(self.namespace, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": pv_name,
                     "resources": {"requests": {"storage": "1Gi"}}}})
        va_name = "va-%s-%s" % (self.namespace, claim)
        self.storage.create_volume_attachment({
            "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment", "metadata": {"name": va_name},
            "spec": {"attacher": FAKE_DRIVER, "nodeName": self.node, "source": {"persistentVolumeName": pv_name}}})
        self.storage.patch_volume_attachment_status(va_name, {"status": {"attached": True}})
        self.attachments.append(va_name)
        self.set_attached(self.attached() + ["kubernetes.io/csi/%s^%s" % (FAKE_DRIVER, handle)])
        wait_for("claim %s bound" % claim, lambda: self.cluster.core.read_namespaced_persistent_volume_claim(
            claim, self.namespace).status.phase == "Bound", 30)
        return pv_name, va_name, "kubernetes.io/csi/%s^%s" % (FAKE_DRIVER, handle)

    def attached(self):
        return [v.name for v in self.cluster.core.read_node_status(self.node).status.volumes_attached or []]

    def set_attached(self, names):
        self.cluster.core.patch_node_status(self.node, {"status": {"volumesAttached": [
            {"name": name, "devicePath": ""} for name in names]}})

    def detach(self, va_name, volume_name):
        self.storage.delete_volume_attachment(va_name)
        self.set_attached([n for n in self.attached() if n != volume_name])

    def cleanup(self):
        for name in self.attachments:
            try:
                self.storage.delete_volume_attachment(name)
            except Exception:  # noqa: BLE001 - detached by the test already
                pass
        for name in self.pvs:
            try:
                self.cluster.core.delete_persistent_volume(name)
            except Exception:  # noqa: BLE001 - best effort
                pass


def with_claim(obj, claim):
    obj["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return obj


def test_volumes_are_waited_for_until_detached_and_a_timeout_names_them(cluster, namespace, make_node, run_module):
    group = {"volume-group": namespace}
    node = make_node(labels=group)
    storage = Storage(cluster, namespace, node)
    try:
        db_pv, db_va, db_volume = storage.volume("data-db")
        agent_pv, agent_va, agent_volume = storage.volume("agent-state")
        agent = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": namespace},
                 "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
                     "metadata": {"labels": {"app": "agent"}},
                     "spec": {"containers": container(), "nodeSelector": group, "terminationGracePeriodSeconds": 0}}}}
        apply(cluster, with_claim(dict(deployment("db", 1, group), metadata={"name": "db", "namespace": namespace}),
                                  "data-db"), with_claim(agent, "agent-state"))
        wait_ready(cluster, namespace, 2, node)
        time.sleep(1)
        # kwok's node stages leave status.volumesAttached alone (they write conditions, addresses, ...)
        assert sorted(storage.attached()) == sorted([db_volume, agent_volume])
        args = {"name": node, "ignore_daemonsets": True, "timeout": 60, "wait_for_volume_detach": True}

        # check mode: what is attached, at one look, without waiting or failing
        planned = run_module("k8s_node_drain", dict(args, volume_detach_timeout=60), check=True)
        assert not planned["failed"], planned["msg"]
        assert planned["stopped_by"] is None and planned["volumes"]["polls"] == 1
        assert planned["seconds"] < 30 and not unschedulable(cluster, node)
        assert {(v["kind"], v["name"]) for v in planned["volumes"]["pending"]} == {
            ("VolumeAttachment", db_va), ("volumesAttached", db_volume)}

        # never detached: the timeout names the attachment, its PV and attacher; the pods are gone
        failed = run_module("k8s_node_drain", dict(args, volume_detach_timeout=3))
        assert failed["failed"] and failed["stopped_by"] == "volumes_attached", failed["msg"]
        assert "volumeattachment/%s (pv/%s, attacher %s, attached)" % (db_va, db_pv, FAKE_DRIVER) in failed["msg"]
        assert "status.volumesAttached %s (pv/%s)" % (db_volume, db_pv) in failed["msg"]
        assert agent_va not in failed["msg"], "the DaemonSet pod stays, and so does its volume"
        assert 3 <= failed["volumes"]["seconds"] < 10 and failed["volumes"]["detached"] is False
        assert unschedulable(cluster, node), "the node stays cordoned"
        assert [p["owner_kind"] for p in failed["pods"] if p["action"] == "evicted"] == ["ReplicaSet"]
        # the DaemonSet pod's volume is kept, named with its pod
        kept = dict(((v["kind"], v["name"]), v) for v in failed["volumes"]["kept"])
        assert set(kept) == {("VolumeAttachment", agent_va), ("volumesAttached", agent_volume)}
        assert [p.split("/")[0] for p in kept[("VolumeAttachment", agent_va)]["pods"]] == [namespace]

        # detached by a second writer a few seconds after this run's eviction (so while it waits):
        # the wait ends then, and the run succeeds
        cluster.core.create_namespaced_pod(namespace, bare_pod("sleeper", node))
        wait_ready(cluster, namespace, 2, node)
        errors = []

        def detach_once_evicted():
            try:
                wait_for("sleeper evicted", lambda: "sleeper" not in [
                    p.metadata.name for p in pods_in(cluster, namespace, node)], 120, 0.1)
                time.sleep(4)
                storage.detach(db_va, db_volume)
            except Exception as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)

        writer = threading.Thread(target=detach_once_evicted, daemon=True)
        writer.start()
        try:
            result = run_module("k8s_node_drain", dict(args, force=True, volume_detach_timeout=60))
        finally:
            writer.join(130)
        assert not errors, errors
        assert not result["failed"], result["msg"]
        assert result["stopped_by"] is None and [p["name"] for p in result["pods"] if p["action"] == "evicted"] == [
            "sleeper"]
        assert result["volumes"]["detached"] is True and result["volumes"]["pending"] == []
        assert 1 <= result["volumes"]["seconds"] < 30 and result["volumes"]["polls"] >= 2
        assert {(v["kind"], v["name"]) for v in result["volumes"]["kept"]} == {
            ("VolumeAttachment", agent_va), ("volumesAttached", agent_volume)}
        assert result["api_requests"]["list volumeattachments"] == result["volumes"]["polls"]
    finally:
        storage.cleanup()


def test_drain_order_evicts_a_tier_only_when_the_tiers_before_it_are_gone(cluster, namespace, make_node,
                                                                          run_module):
    """Real PriorityClasses (the Priority admission plugin writes spec.priority), the built-in
    system-cluster-critical class, a drain rule with a namespace selector and a DaemonSet pod. Every
    pod carries a finalizer, so an evicted pod stays terminating until the test releases it: each
    tier must be evicted, and the next one not, until the test lets the tier's pods go."""
    node = make_node()
    low, high = "%s-low" % namespace, "%s-high" % namespace
    for name, value in ((low, 10), (high, 1000)):
        cluster.kubectl("create", "priorityclass", name, "--value=%d" % value)

    def held_pod(name, labels=None, priority_class=None):
        spec = {"nodeName": node, "containers": container(), "terminationGracePeriodSeconds": 0}
        if priority_class:
            spec["priorityClassName"] = priority_class
        return {"apiVersion": "v1", "kind": "Pod", "spec": spec,
                "metadata": {"name": name, "namespace": namespace, "labels": labels or {},
                             "finalizers": [HOLD_FINALIZER]}}

    tiers = [["client-1", "client-2"], ["api"], ["db"], ["dns"]]
    names = [name for tier in tiers for name in tier]
    agent = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": namespace},
             "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
                 "metadata": {"labels": {"app": "agent"}},
                 "spec": {"containers": container(), "nodeSelector": {"kubernetes.io/hostname": node}}}}}
    try:
        apply(cluster, held_pod("client-1", {"app": "client"}, low), held_pod("client-2", {"app": "client"}, low),
              held_pod("api", {"app": "api"}, high), held_pod("db", {"app": "db"}, low),
              held_pod("dns", {"app": "dns"}, "system-cluster-critical"), agent)
        wait_ready(cluster, namespace, 6, node)
        rules = [{"selector": {"matchLabels": {"app": "db"}},
                  "namespace_selector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}, "order": 10}]
        args = {"name": node, "force": True, "ignore_daemonsets": True, "drain_rules": rules, "timeout": 90}

        expected = {"client-1": 1, "client-2": 1, "api": 2, "db": 3, "dns": 4}
        outcome = {}
        drainer = threading.Thread(target=lambda: outcome.update(run_module("k8s_node_drain", args)))
        drainer.start()

        def terminating():
            return set(p.metadata.name for p in pods_in(cluster, namespace, node) if p.metadata.deletion_timestamp)

        released = []
        for index, tier in enumerate(tiers):
            wait_for("tier %d (%s) evicted" % (index + 1, ", ".join(tier)), lambda tier=tier: set(tier) <= terminating(),
                     timeout=30)
            later = set(names[names.index(tier[-1]) + 1:])
            assert not terminating() & later, "a later tier was evicted before this one was gone"
            time.sleep(0.5)   # had the drain not waited for the tier, it would have evicted the next at once
            assert not terminating() & later, "a later tier was evicted before this one was gone"
            stamps = [p.metadata.deletion_timestamp for p in pods_in(cluster, namespace, node)
                      if p.metadata.name in tier]
            # evicted (to the second) no earlier than the test released the tier before
            assert not released or min(stamps).timestamp() >= int(released[-1])
            for name in tier:
                release(cluster, namespace, name)
            released.append(time.time())
        drainer.join(120)
        assert not drainer.is_alive()
        assert not outcome["failed"], outcome["msg"]
        # spec.priority as the Priority admission plugin wrote it from the classes; the rule's order 10
        # puts the low-priority db after the high-priority api; system-cluster-critical last
        assert [(t["index"], t["order"], t["critical"], t["priority"], t["pods"], t["state"])
                for t in outcome["tiers"]] == [(1, 0, False, 10, 2, "drained"), (2, 0, False, 1000, 1, "drained"),
                                               (3, 10, False, 10, 1, "drained"),
                                               (4, 0, True, 2000000000, 1, "drained")]
        assert all(t["seconds"] >= 0.5 for t in outcome["tiers"])
        result = by_name(outcome)
        assert dict((n, result[n]["tier"]["index"]) for n in names) == expected
        assert all(result[n]["action"] == "evicted" for n in names)
        assert result["db"]["drain_rule"] == 0 and result["api"]["drain_rule"] is None
        agent_pod = [n for n in result if n.startswith("agent-")]
        assert len(agent_pod) == 1 and result[agent_pod[0]]["action"] == "skipped"
        assert result[agent_pod[0]]["tier"] is None
        assert outcome["api_requests"]["list namespaces"] == 1
        assert [p.metadata.name for p in pods_in(cluster, namespace, node)] == agent_pod
    finally:
        for name in names:
            release(cluster, namespace, name)
        cluster.kubectl("delete", "priorityclass", low, high, "--ignore-not-found", check=False)


# --- opt-outs of other tools and the re-cordon guard (issue #20) ---------------------------------

def marked_deployment(name, node_selector, annotations=None, labels=None):
    body = deployment(name, 1, node_selector)
    template = body["spec"]["template"]["metadata"]
    template["labels"].update(labels or {})
    template["annotations"] = annotations or {}
    return body


def test_opt_outs_refuse_skip_and_wait_for_completion(cluster, namespace, make_node, run_module):
    group = {"drain-group": namespace}
    node = make_node(labels=group)
    spare = make_node(labels=group, unschedulable=True)
    host = {"kubernetes.io/hostname": node}
    ns = {"namespace": namespace}
    apply(cluster,
          dict(marked_deployment("guarded", host, {"karpenter.sh/do-not-disrupt": "true"}),
               metadata=dict(ns, name="guarded")),
          dict(marked_deployment("batch", host, {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}),
               metadata=dict(ns, name="batch")),
          dict(marked_deployment("stay", host, labels={"cluster.x-k8s.io/drain": "skip"}),
               metadata=dict(ns, name="stay")),
          dict(bare_pod("job", node, labels={"cluster.x-k8s.io/drain": "wait-completed"}),
               metadata=dict(ns, name="job", labels={"cluster.x-k8s.io/drain": "wait-completed"})),
          dict(deployment("web", 1, group), metadata=dict(ns, name="web")))
    before = wait_ready(cluster, namespace, 5, node)
    set_unschedulable(cluster, spare, False)
    stay_uid = [p.metadata.uid for p in before if p.metadata.name.startswith("stay-")]

    # Check mode and a real run decide the same, and neither moves anything: nothing evicted, no cordon left.
    for check in (True, False):
        refused = run_module("k8s_node_drain", {"name": node, "force": True, "timeout": 30}, check=check)
        assert refused["failed"] and refused["stopped_by"] == "refused" and refused["changed"] is False
        msg = refused["msg"]
        assert "2 pod(s) block it" in msg
        assert ("pods with annotation karpenter.sh/do-not-disrupt (set ignore_opt_outs: [karpenter] to drain "
                "them anyway): %s/guarded-" % namespace) in msg
        assert ("pods with annotation cluster-autoscaler.kubernetes.io/safe-to-evict (set ignore_opt_outs: "
                "[cluster-autoscaler] to drain them anyway): %s/batch-" % namespace) in msg
        plans = dict((p["name"].split("-")[0], p["plan"]) for p in refused["pods"])
        assert plans == {"guarded": "refuse", "batch": "refuse", "stay": "skip", "job": "wait_completed",
                         "web": "evict"}
        assert all(p["action"] in ("none", "skipped") for p in refused["pods"])
        assert uids(pods_in(cluster, namespace, node)) == uids(before) and not unschedulable(cluster, node)

    overrides = {"name": node, "force": True, "ignore_opt_outs": ["karpenter", "cluster-autoscaler"]}
    # The wait-completed pod is not evicted: still running at the timeout, the drain names it.
    timed_out = run_module("k8s_node_drain", dict(overrides, timeout=5))
    assert timed_out["failed"] and timed_out["stopped_by"] == "timeout"
    job = by_name(timed_out)["job"]
    assert job["action"] == "failed" and job["attempts"] == 0
    assert "%s/job: labelled cluster.x-k8s.io/drain=wait-completed: not evicted, and still running" % namespace \
        in timed_out["msg"]
    moved = dict((p["name"].split("-")[0], p) for p in timed_out["pods"])
    assert moved["guarded"]["action"] == "evicted" and moved["batch"]["action"] == "evicted"
    assert any("disregarded (ignore_opt_outs)" in w for w in moved["guarded"]["warnings"])
    assert moved["stay"]["action"] == "skipped" and "cluster.x-k8s.io/drain=skip" in moved["stay"]["reason"]

    # It finishes while the drain waits (its phase as the kubelet would write it): the drain ends. The
    # eviction of a second pod tells the test that the drain has listed the node's pods.
    apply(cluster, dict(bare_pod("signal", node), metadata={"name": "signal", "namespace": namespace}))
    signal = wait_for("the signal pod", lambda: [p.metadata.uid for p in pods_in(cluster, namespace, node)
                                                 if p.metadata.name == "signal" and is_ready(p)])[0]

    def finish_job():
        wait_for("the drain to evict the signal pod", lambda: signal not in uids(pods_in(cluster, namespace)))
        cluster.core.patch_namespaced_pod_status("job", namespace, {"status": {"phase": "Succeeded"}})
    finisher = threading.Thread(target=finish_job)
    finisher.start()
    done = run_module("k8s_node_drain", dict(overrides, timeout=60))
    finisher.join()
    assert not done["failed"], done["msg"]
    assert by_name(done)["job"]["action"] == "waited" and by_name(done)["job"]["attempts"] == 0
    assert "wait-completed" in by_name(done)["job"]["reason"]
    left = dict((p.metadata.name.split("-")[0], p) for p in pods_in(cluster, namespace, node))
    assert sorted(left) == ["job", "stay"] and left["job"].status.phase == "Succeeded"
    assert [left["stay"].metadata.uid] == stay_uid, "the skipped pod was left alone"


def recordon_events(cluster, node):
    return [e for e in cluster.core.list_namespaced_event(
        "default", field_selector="involvedObject.kind=Node,involvedObject.name=%s" % node).items
        if e.reason == "MaintenanceRecordoned"]


def uncordon_while_held(cluster, namespace, node, budget, signal, newcomer=None):
    """A second writer: once the drain has listed the node's pods (it evicted the ``signal`` pod)
    and a spent budget holds it, uncordon the node (and, with ``newcomer``, put a pod on it
    meanwhile), wait for the guard to cordon it again, then give the budget room."""
    seen = {}

    def write():
        wait_for("the drain to evict the signal pod", lambda: signal not in uids(pods_in(cluster, namespace)),
                 timeout=30)
        assert unschedulable(cluster, node), "the drain cordons before it lists the pods"
        set_unschedulable(cluster, node, False)
        seen["uncordoned_at"] = time.monotonic()
        if newcomer:
            apply(cluster, dict(bare_pod(newcomer, node), metadata={"name": newcomer, "namespace": namespace}))
        wait_for("the guard to cordon it again", lambda: unschedulable(cluster, node), timeout=30, interval=0.1)
        seen["recordoned_after"] = time.monotonic() - seen["uncordoned_at"]
        cluster.policy.patch_namespaced_pod_disruption_budget(budget, namespace, {"spec": {"minAvailable": 0}})

    writer = threading.Thread(target=write)
    writer.start()
    return writer, seen


def held_drain_setup(cluster, namespace, make_node):
    group = {"drain-group": namespace}
    node = make_node(labels=group)
    spare = make_node(labels=group, unschedulable=True)
    labels = {"app": "db"}
    apply(cluster, dict(deployment("db", 1, group, labels), metadata={"name": "db", "namespace": namespace}),
          dict(pdb("db", labels, min_available=1), metadata={"name": "db", "namespace": namespace}))
    apply(cluster, dict(bare_pod("signal", node), metadata={"name": "signal", "namespace": namespace}))
    signal = [p.metadata.uid for p in wait_ready(cluster, namespace, 2, node) if p.metadata.name == "signal"][0]
    wait_pdb_settled(cluster, namespace, "db", 0)
    set_unschedulable(cluster, spare, False)
    return node, signal


def test_an_uncordon_mid_drain_is_undone_warned_recorded_and_what_landed_meanwhile_named(
        cluster, namespace, make_node, run_module):
    # (the same guard without a pod landing meanwhile, which then succeeds: test__drain.py)
    node, signal = held_drain_setup(cluster, namespace, make_node)
    writer, seen = uncordon_while_held(cluster, namespace, node, "db", signal, newcomer="late")
    result = run_module("k8s_node_drain", {"name": node, "force": True, "timeout": 90})
    writer.join()
    # Cordoned again within the drain's node check (every 5 s), from the read it makes anyway.
    assert seen["recordoned_after"] < 8
    assert result["failed"] and result["stopped_by"] == "uncordoned" and result["recordoned"] == 1
    assert result["changed"] is True and unschedulable(cluster, node)
    warnings = [str(w) for w in result.get("warnings") or ()]
    assert any("node/%s was found schedulable during its drain" % node in w for w in warnings), warnings
    (event,) = recordon_events(cluster, node)
    assert event.type == "Warning" and "cordoned it again" in event.message
    # Every pod it listed was moved; the one the second writer put there meanwhile is named.
    assert [p["action"] for p in result["pods"]] == ["evicted", "evicted"]
    assert result["arrived_while_uncordoned"] == ["%s/late" % namespace]
    assert "scheduled to it meanwhile that this drain did not move: %s/late" % namespace in result["msg"]

    again = run_module("k8s_node_drain", {"name": node, "force": True, "timeout": 60})
    assert not again["failed"], again["msg"]
    assert [p["name"] for p in again["pods"]] == ["late"] and again["recordoned"] == 0
    assert pods_in(cluster, namespace, node) == []


# --- replacement first ------------------------------------------------------------------------

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def ready_by_app(cluster, namespace):
    counts = {}
    for pod in pods_in(cluster, namespace):
        if is_ready(pod):
            app = (pod.metadata.labels or {}).get("app")
            counts[app] = counts.get(app, 0) + 1
    return counts


def test_replacement_first_keeps_the_service_up_and_gets_past_a_spent_budget(cluster, namespace, make_node,
                                                                             run_module):
    """Deployments whose ready replicas are all on the node, or whose budget allows nothing, get their
    replacements on the spare node before their pods leave; a Recreate Deployment and one whose pods
    opt out are evicted as usual. Ready replicas are sampled throughout and never drop."""
    group = {"drain-group": namespace}
    node = make_node(labels=group)
    spare = make_node(labels=group, unschedulable=True)
    single = dict(deployment("single", 1, group), metadata={"name": "single", "namespace": namespace})
    budget = dict(deployment("budget", 2, group), metadata={"name": "budget", "namespace": namespace})
    recreate = dict(deployment("recreate", 1, group), metadata={"name": "recreate", "namespace": namespace})
    recreate["spec"]["strategy"] = {"type": "Recreate"}
    optout = dict(marked_deployment("optout", group, {"node-maintenance.kubeops.io/replacement-first": "false"}),
                  metadata={"name": "optout", "namespace": namespace})
    apply(cluster, single, budget, recreate, optout,
          dict(pdb("budget", {"app": "budget"}, min_available=2), metadata={"name": "budget", "namespace": namespace}))
    before = wait_ready(cluster, namespace, 5, node)
    wait_pdb_settled(cluster, namespace, "budget", 0)
    set_unschedulable(cluster, spare, False)
    generations = {name: cluster.apps.read_namespaced_deployment(name, namespace).metadata.generation
                   for name in ("single", "budget", "recreate", "optout")}

    args = {"name": node, "replacement_first": True, "timeout": 120}
    planned = run_module("k8s_node_drain", args, check=True)
    assert not planned["failed"], planned["msg"]
    states = {item["name"]: item for item in planned["replacement_first"]}
    assert {name: item["state"] for name, item in states.items()} == {
        "single": "would_replace", "budget": "would_replace", "recreate": "not_replaced"}, states
    assert states["single"]["reason"] == "every ready replica (1) is on the node"
    assert "pdb %s/budget allows no disruption now" % namespace in states["budget"]["reason"]
    assert "Recreate" in states["recreate"]["detail"]
    assert {name: cluster.apps.read_namespaced_deployment(name, namespace).metadata.generation
            for name in generations} == generations, "check mode restarted a Deployment"
    assert not unschedulable(cluster, node)

    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(ready_by_app(cluster, namespace))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_module("k8s_node_drain", args)
    finally:
        stop.set()
        sampler.join(10)
    assert not result["failed"], result["msg"]
    assert result["changed"] is True and result["stopped_by"] is None
    actions = {pod["name"].rsplit("-", 2)[0]: [] for pod in result["pods"]}
    for pod in result["pods"]:
        actions[pod["name"].rsplit("-", 2)[0]].append(pod["action"])
    assert actions == {"single": ["replaced"], "budget": ["replaced", "replaced"], "recreate": ["evicted"],
                       "optout": ["evicted"]}, actions
    states = {item["name"]: item["state"] for item in result["replacement_first"]}
    assert states == {"single": "replaced", "budget": "replaced", "recreate": "not_replaced"}, states
    assert any("recreate" in warning for warning in result.get("warnings", [])), result.get("warnings")
    # The service of the two replaced Deployments never went below its ready replicas.
    assert samples and min(s.get("single", 0) for s in samples) >= 1, samples[:20]
    assert min(s.get("budget", 0) for s in samples) >= 2, samples[:20]
    for name in ("single", "budget"):
        template = cluster.apps.read_namespaced_deployment(name, namespace).spec.template
        assert RESTARTED_AT in (template.metadata.annotations or {}), name
    for name in ("recreate", "optout"):
        assert cluster.apps.read_namespaced_deployment(name, namespace).metadata.generation == generations[name]
    assert unschedulable(cluster, node)
    assert not set(uids(before)) & set(uids(pods_in(cluster, namespace)))
    wait_ready(cluster, namespace, 5, spare)

    again = run_module("k8s_node_drain", args)
    assert not again["failed"], again["msg"]
    assert again["changed"] is False and again["replacement_first"] == [] and again["pods"] == []
