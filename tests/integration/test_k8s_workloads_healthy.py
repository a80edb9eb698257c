"""k8s_workloads_healthy against the real local control plane (pods run on kwok nodes)."""
import json
import os
import threading
import time

import pytest
from kubernetes import client

from tests.integration import conftest as integration

pytestmark = pytest.mark.integration

MODULE = "k8s_workloads_healthy"


def apply(cluster, namespace, *objects):
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def template(name, node_selector):
    return {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}],
                     "nodeSelector": node_selector, "terminationGracePeriodSeconds": 0}}


def deployment(name, replicas, node_selector):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": template(name, node_selector)}}


def statefulset(name, replicas, node_selector):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": {"app": name}},
                     "template": template(name, node_selector)}}


def daemonset(name, node_selector):
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": template(name, node_selector)}}


def pdb(name, app, min_available):
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}}}


def ok(result):
    assert not result["failed"], result.get("msg")
    return result


def host(node):
    return {"kubernetes.io/hostname": node}


def test_healthy_four_passes_with_pdbs_found(cluster, namespace, make_node, run_module):
    node = make_node()
    apply(cluster, namespace, deployment("web", 2, host(node)), pdb("web", "web", 1),
          pdb("unrelated", "something-else", 1))
    args = {"workloads": [{"kind": "Deployment", "namespace": namespace, "name": "web"}],
            "pdbs_from_workloads": True, "timeout": 120, "poll_interval": 1}
    # the module only reads: check mode waits and answers exactly like a real run, four times over
    results = [ok(run_module(MODULE, args, check=check)) for check in (True, False, True, False)]
    for result in results:
        assert result["changed"] is False and result["healthy"] is True and result["unhealthy"] == []
        assert result["seconds"] >= 0 and result["polls"] >= 1
    last = results[-1]
    assert last["workloads"] == [{
        "kind": "Deployment", "namespace": namespace, "name": "web", "exists": True, "healthy": True,
        "desired": 2, "ready": 2, "available": 2, "updated": 2, "missing": [],
        "summary": "deployment %s/web: 2/2 ready" % namespace}]
    assert [(p["name"], p["matched_workloads"], p["healthy"]) for p in last["pdbs"]] == [
        ("web", ["deployment %s/web" % namespace], True)]
    assert last["pdbs"][0]["current_healthy"] == 2 and last["pdbs"][0]["desired_healthy"] == 1
    assert last["pdbs"][0]["disruptions_allowed"] == 1


def test_scaled_and_evicted_deployment_becomes_healthy(cluster, namespace, make_node, run_module):
    node = make_node()
    apply(cluster, namespace, deployment("web", 1, host(node)))
    ok(run_module(MODULE, {"workloads": [{"kind": "Deployment", "namespace": namespace, "name": "web"}],
                           "timeout": 120, "poll_interval": 1}))

    cluster.apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 3}})
    scaled = ok(run_module(MODULE, {"workloads": [{"kind": "Deployment", "namespace": namespace, "name": "web"}],
                                    "timeout": 120, "poll_interval": 1}))
    assert scaled["workloads"][0]["desired"] == 3 and scaled["workloads"][0]["ready"] == 3

    # evict one pod, as a drain does, and wait on its owner as the drain reports it (a ReplicaSet)
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app=web").items
    victim = pods[0]
    owner = [ref for ref in victim.metadata.owner_references if ref.controller][0]
    assert owner.kind == "ReplicaSet"
    cluster.core.create_namespaced_pod_eviction(victim.metadata.name, namespace, client.V1Eviction(
        metadata=client.V1ObjectMeta(name=victim.metadata.name, namespace=namespace)))
    drained = [{"namespace": namespace, "name": victim.metadata.name, "owner_kind": "ReplicaSet",
                "owner_name": owner.name, "plan": "evict", "action": "evicted"},
               {"namespace": namespace, "name": "a-job-pod", "owner_kind": "Job", "owner_name": "backup"}]
    started = time.monotonic()
    result = ok(run_module(MODULE, {"pods": drained, "timeout": 120, "poll_interval": 1}))
    assert time.monotonic() - started < 120
    assert result["workloads"] == [{
        "kind": "Deployment", "namespace": namespace, "name": "web", "exists": True, "healthy": True,
        "desired": 3, "ready": 3, "available": 3, "updated": 3, "missing": [],
        "summary": "deployment %s/web: 3/3 ready" % namespace,
        "resolved_from": "ReplicaSet %s/%s" % (namespace, owner.name)}]
    now = [p for p in cluster.core.list_namespaced_pod(namespace, label_selector="app=web").items
           if not p.metadata.deletion_timestamp]
    assert victim.metadata.uid not in {p.metadata.uid for p in now}


def test_statefulset_daemonset_and_replicaset(cluster, namespace, make_node, run_module):
    node = make_node()
    standalone_rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "plain"},
                     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "plain"}},
                              "template": template("plain", host(node))}}
    apply(cluster, namespace, statefulset("db", 2, host(node)), daemonset("agent", host(node)), standalone_rs,
          pdb("db", "db", 1))
    refs = [{"kind": "StatefulSet", "namespace": namespace, "name": "db"},
            {"kind": "DaemonSet", "namespace": namespace, "name": "agent"},
            {"kind": "ReplicaSet", "namespace": namespace, "name": "plain"}]
    result = ok(run_module(MODULE, {"workloads": refs, "pdbs": [{"namespace": namespace, "name": "db"}],
                                    "timeout": 180, "poll_interval": 1}))
    by_kind = {w["kind"]: w for w in result["workloads"]}
    assert (by_kind["StatefulSet"]["desired"], by_kind["StatefulSet"]["ready"]) == (2, 2)
    assert (by_kind["DaemonSet"]["desired"], by_kind["DaemonSet"]["ready"]) == (1, 1)
    # a ReplicaSet no Deployment controls is checked as itself
    assert by_kind["ReplicaSet"]["name"] == "plain" and "resolved_from" not in by_kind["ReplicaSet"]
    assert all(w["healthy"] for w in result["workloads"])
    assert [p["name"] for p in result["pdbs"]] == ["db"] and result["pdbs"][0]["healthy"] is True


def test_unsatisfiable_deployment_times_out_with_a_clear_message(cluster, namespace, make_node, run_module):
    make_node()
    apply(cluster, namespace, deployment("stuck", 2, {"kubeops.test/no-such-label": "anywhere"}),
          pdb("stuck", "stuck", 2))
    args = {"workloads": [{"kind": "Deployment", "namespace": namespace, "name": "stuck"}],
            "pdbs_from_workloads": True, "timeout": 6, "poll_interval": 1}
    for check in (True, False):
        started = time.monotonic()
        result = run_module(MODULE, args, check=check)
        assert result["failed"] is True
        assert time.monotonic() - started < 60
        msg = result["msg"]
        assert msg.startswith("not healthy after ")
        assert "deployment %s/stuck: 0/2 ready, 0/2 available" % namespace in msg
        assert "pdb %s/stuck: 0 healthy of 2 required" % namespace in msg
        assert result["healthy"] is False and result["polls"] >= 2
        assert result["unhealthy"][0].startswith("deployment %s/stuck: 0/2 ready" % namespace)
        assert result["workloads"][0]["ready"] == 0 and result["workloads"][0]["desired"] == 2


def test_workloads_and_pdbs_that_do_not_exist_are_reported(cluster, namespace, run_module):
    result = ok(run_module(MODULE, {
        "workloads": [{"kind": "Deployment", "namespace": namespace, "name": "gone"},
                      {"kind": "ReplicaSet", "namespace": namespace, "name": "gone-6d4b"}],
        "pdbs": [{"namespace": namespace, "name": "gone"}], "pdbs_from_workloads": True, "timeout": 5}))
    assert result["healthy"] is True and result["polls"] == 1
    assert [(w["kind"], w["exists"], w["healthy"]) for w in result["workloads"]] == [
        ("Deployment", False, None), ("ReplicaSet", False, None)]
    assert result["pdbs"][0]["exists"] is False
    warnings = json.dumps(result.get("warnings"))
    assert "deployment %s/gone: not found, not waited for" % namespace in warnings
    assert "pdb %s/gone: not found" % namespace in warnings


def test_forbidden_list_names_the_namespace(cluster, namespace, run_module):
    cluster.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody")))
    token = cluster.core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600))).status.token
    result = run_module(MODULE, {"workloads": [{"kind": "Deployment", "namespace": namespace, "name": "web"}],
                                 "host": cluster.server, "api_key": token, "validate_certs": False,
                                 "timeout": 5}, auth=False)
    assert result["failed"] is True
    assert result["msg"].startswith("deployment %s/web: forbidden (403): " % namespace), result["msg"]
    assert "`kubectl auth can-i list deployments.apps`" in result["msg"]
    assert token not in json.dumps(result)


# ------------------------------------------------------------------------------------------------
# The node's own pods (node, static_pods): its DaemonSet pods and static (mirror) pods
# ------------------------------------------------------------------------------------------------

OWN = "kubeops.test/own-pods"
INFRA = {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}


def placed_daemonset(name, node_selector=None, tolerations=None, affinity=None):
    ds = daemonset(name, node_selector or {})
    spec = ds["spec"]["template"]["spec"]
    if tolerations:
        spec["tolerations"] = tolerations
    if affinity:
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": affinity}}}
    return ds


def mirror_pod(cluster, namespace, name, node):
    """A pod as the kubelet mirrors a static pod: the mirror annotation, the Node as its controller
    owner, bound to the node (kwok makes it Ready as the kubelet would)."""
    uid = cluster.core.read_node(node).metadata.uid
    cluster.core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": {"kubernetes.io/config.mirror": "hash-" + name},
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid,
                                          "controller": True}]},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.example/app:1"}],
                 "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0}})
    return name


def pods_on(cluster, namespace, node):
    return [p for p in cluster.core.list_namespaced_pod(namespace, field_selector="spec.nodeName=" + node).items
            if not p.metadata.deletion_timestamp]


def pod_ready(pod):
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def wait_ready_pods(cluster, namespace, node, names, timeout=60):
    """{DaemonSet or pod name: pod} once a Ready pod of each is on the node."""
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for pod in pods_on(cluster, namespace, node):
            owner = [ref.name for ref in pod.metadata.owner_references or [] if ref.kind == "DaemonSet"]
            if pod_ready(pod):
                found[owner[0] if owner else pod.metadata.name] = pod
        if set(names) <= set(found):
            return found
        assert time.monotonic() < deadline, "not Ready on %s after %ss: %s" % (node, timeout, set(names) - set(found))
        time.sleep(0.5)


def module_process_started(module, timeout=300):
    """Wait until a process below this test's (its ansible run) runs ``module``: ansible writes
    the module as AnsiballZ_<module>.py and runs it by that path. No time-based guess of how long
    ansible takes to start on a loaded machine."""
    marker = ("AnsiballZ_%s.py" % module).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in integration.process_tree(os.getpid()):
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as handle:
                    if marker in handle.read():
                        return pid
            except OSError:
                continue
        time.sleep(0.2)
    raise AssertionError("%s did not start within %ds" % (module, timeout))


def make_unready(cluster, namespace, pod_name):
    cluster.core.patch_namespaced_pod_status(pod_name, namespace, {"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "KeptUnready", "message": "by the test"}]}})


def mine(entries, namespace):
    return [e for e in entries if e["namespace"] == namespace]


def test_node_pods_wait_for_a_deleted_daemonset_pod_until_it_is_back_and_ready(
        cluster, namespace, make_node, run_module):
    # cordoned (the DaemonSet controller tolerates that) and tainted (only some DaemonSets tolerate that)
    node = make_node(labels={OWN: namespace}, taints=[INFRA], unschedulable=True)
    infra = [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]
    apply(cluster, namespace,
          placed_daemonset("agent", {OWN: namespace}, infra),
          placed_daemonset("affine", tolerations=[{"operator": "Exists"}],
                           affinity=[{"matchExpressions": [{"key": OWN, "operator": "In", "values": [namespace]}]},
                                     {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["x"]}]}]),
          placed_daemonset("picky", {OWN: namespace}),  # does not tolerate dedicated=infra
          placed_daemonset("elsewhere", {OWN: "another-" + namespace}, infra))
    static = mirror_pod(cluster, namespace, "static-web-" + node, node)
    before = wait_ready_pods(cluster, namespace, node, ["agent", "affine", static])
    time.sleep(2)  # the controller has had its chance to place picky and elsewhere too
    on_node = {ref.name for p in pods_on(cluster, namespace, node)
               for ref in p.metadata.owner_references or [] if ref.kind == "DaemonSet"}
    assert on_node == {"agent", "affine"}  # what the real DaemonSet controller did...

    # a reboot made the agent's pod unready; the DaemonSet controller replaces it once it is deleted
    old = before["agent"].metadata.name
    make_unready(cluster, namespace, old)
    # deleted once the module runs and has had time for its first polls (1 s apart), which see the
    # pod unready, however slowly ansible starts on a loaded machine

    def delete_when_the_module_runs():
        module_process_started(MODULE)
        time.sleep(5)
        cluster.core.delete_namespaced_pod(old, namespace)

    deleter = threading.Thread(target=delete_when_the_module_runs)
    deleter.start()
    try:
        started = time.monotonic()
        result = ok(run_module(MODULE, {"node": node, "timeout": 120, "poll_interval": 1,
                                        "static_pods": [{"namespace": namespace, "name": static,
                                                         "owner_kind": "Node", "owner_name": node}]}))
        waited = time.monotonic() - started
    finally:
        deleter.join()
    assert result["changed"] is False and result["healthy"] is True and result["not_ready"] == []
    assert waited >= 5 and result["polls"] >= 2, (waited, result["polls"])
    own = mine(result["node_pods"], namespace)
    # ...is what the gate expects: the DaemonSets that run there, and the static pod
    assert [(e["kind"], e["name"], e["ready"]) for e in own] == [
        ("DaemonSet", "affine", True), ("DaemonSet", "agent", True), ("StaticPod", static, True)]
    agent = own[1]
    assert agent["pod"] != old and agent["pod"].startswith("agent-") and agent["waiting_for"] is None
    assert agent["summary"] == "daemonset %s/agent: pod %s Ready on node/%s" % (namespace, agent["pod"], node)
    assert [p.metadata.name for p in pods_on(cluster, namespace, node) if p.metadata.name == agent["pod"]]
    assert {e["name"]: e["reason"] for e in mine(result["node_pods_excluded"], namespace)} == {
        "elsewhere": "nodeSelector %s=another-%s does not match the node's labels" % (OWN, namespace),
        "picky": "it does not tolerate the node's taint dedicated=infra:NoSchedule"}


def test_node_pods_time_out_naming_an_unready_daemonset_pod_and_a_static_pod_not_back(
        cluster, namespace, make_node, run_module):
    node = make_node(labels={OWN: namespace})
    apply(cluster, namespace, placed_daemonset("agent", {OWN: namespace}),
          placed_daemonset("elsewhere", {OWN: "another-" + namespace}))
    static = mirror_pod(cluster, namespace, "static-db-" + node, node)
    pods = wait_ready_pods(cluster, namespace, node, ["agent", static])
    unready = pods["agent"].metadata.name
    make_unready(cluster, namespace, unready)
    gone = "static-gone-" + node  # was there before the maintenance, not recreated
    args = {"node": node, "timeout": 5, "poll_interval": 1,
            "static_pods": [{"namespace": namespace, "name": static}, {"namespace": namespace, "name": gone}]}
    started = time.monotonic()
    result = run_module(MODULE, args)
    assert result["failed"] is True and time.monotonic() - started < 60
    where = "node/%s" % node
    agent_line = ("daemonset %s/agent: waiting for pod %s on %s to be Ready (Running; KeptUnready: by the test)"
                  % (namespace, unready, where))
    gone_line = ("static pod %s/%s: waiting for its mirror pod to be back on %s (the kubelet recreates it "
                 "from the manifest in its static pod directory; is the manifest still there?)"
                 % (namespace, gone, where))
    assert result["msg"].startswith("not healthy after ")
    assert agent_line in result["msg"] and gone_line in result["msg"], result["msg"]
    assert agent_line in result["unhealthy"] and gone_line in result["unhealthy"]
    assert [(e["kind"], e["name"], e["pod"], e["ready"]) for e in mine(result["not_ready"], namespace)] == [
        ("DaemonSet", "agent", unready, False), ("StaticPod", gone, None, False)]
    assert [(e["kind"], e["name"], e["ready"]) for e in mine(result["node_pods"], namespace)] == [
        ("DaemonSet", "agent", False), ("StaticPod", static, True), ("StaticPod", gone, False)]
    # the DaemonSet that excludes the node is not waited for, and says why
    assert [e["name"] for e in mine(result["node_pods_excluded"], namespace)] == ["elsewhere"]
    assert "elsewhere" not in result["msg"] and static + ":" not in result["msg"]
    # without node (the role's node_maintenance_health_node_pods: false) they are not looked at
    off = ok(run_module(MODULE, {"timeout": 0, "static_pods": args["static_pods"]}))
    assert off["healthy"] is True and off["node_pods"] == [] and off["polls"] == 1
