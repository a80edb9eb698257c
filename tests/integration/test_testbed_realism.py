"""The test bed is a real cluster: real scheduler, controllers, disruption budgets and node lifecycle.

Each test depends on behaviour a stub API would not have: pods that nobody created but the
ReplicaSet controller, placed by the scheduler, made Ready by kwok; a PDB status only the
disruption controller computes; 429 from the eviction subresource; taints only the node
lifecycle controller adds.
"""
import time

import pytest
from kubernetes import client

from tests.integration.conftest import wait_node_ready

pytestmark = pytest.mark.integration


def deployment(name, replicas, node_label_value=None, labels=None):
    labels = labels or {"app": name}
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "containers": [{"name": "app", "image": "registry.invalid/app:1",
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
                "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            },
        },
    }
    if node_label_value:
        spec["template"]["spec"]["nodeSelector"] = {"kubeops.test/pool": node_label_value}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def wait_for(what, predicate, timeout=60, interval=0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def ready_pods(cluster, namespace, selector):
    pods = cluster.core.list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def test_deployment_pods_are_scheduled_onto_kwok_nodes_and_become_ready(cluster, namespace, make_node):
    pool = namespace
    nodes = {make_node(labels={"kubeops.test/pool": pool}) for _index in range(2)}
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", 4, pool))

    def four_ready_pods():
        ready = ready_pods(cluster, namespace, "app=web")
        return ready if len(ready) == 4 else None

    pods = wait_for("4 ready pods", four_ready_pods)
    # The scheduler placed them (nobody set nodeName) on the pool's nodes only, and the
    # ReplicaSet controller created them: their owner is a ReplicaSet owned by the Deployment.
    assert {p.spec.node_name for p in pods} <= nodes
    assert all(p.status.pod_ip for p in pods)
    owners = {ref.kind for p in pods for ref in p.metadata.owner_references}
    assert owners == {"ReplicaSet"}

    def deployment_ready():
        current = cluster.apps.read_namespaced_deployment("web", namespace)
        return current if current.status.ready_replicas == 4 else None

    dep = wait_for("deployment status", deployment_ready)
    assert dep.status.available_replicas == 4


def test_pdb_status_comes_from_the_disruption_controller_and_eviction_honours_it(
        cluster, namespace, make_node):
    pool = namespace
    node = make_node(labels={"kubeops.test/pool": pool})
    cluster.apps.create_namespaced_deployment(namespace, deployment("db", 3, pool))
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "db"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}}})
    wait_for("3 ready pods", lambda: len(ready_pods(cluster, namespace, "app=db")) == 3)

    def pdb_settled():
        status = cluster.policy.read_namespaced_pod_disruption_budget("db", namespace).status
        if status and status.current_healthy == 3 and status.disruptions_allowed == 1:
            return status
        return None

    status = wait_for("PDB status computed", pdb_settled)
    assert status.desired_healthy == 2 and status.expected_pods == 3

    victims = ready_pods(cluster, namespace, "app=db")
    # The pool's only node cordoned: the replacement of the evicted pod stays Pending, so the
    # budget stays spent for as long as the test needs (kwok makes a scheduled replacement Ready
    # within a second, which on a busy machine can come before the second eviction below).
    cluster.core.patch_node(node, {"spec": {"unschedulable": True}})
    first = client.V1Eviction(metadata=client.V1ObjectMeta(name=victims[0].metadata.name, namespace=namespace))
    cluster.core.create_namespaced_pod_eviction(victims[0].metadata.name, namespace, first)

    # The budget is now spent: the disruption controller records the eviction and the next
    # eviction is refused with 429 until a replacement pod is Ready again.
    second = client.V1Eviction(metadata=client.V1ObjectMeta(name=victims[1].metadata.name, namespace=namespace))
    with pytest.raises(client.ApiException) as refused:
        cluster.core.create_namespaced_pod_eviction(victims[1].metadata.name, namespace, second)
    assert refused.value.status == 429
    assert "disruption budget" in refused.value.body.lower()

    # The ReplicaSet controller replaces the evicted pod; once it can be scheduled and is Ready,
    # the same eviction succeeds.
    cluster.core.patch_node(node, {"spec": {"unschedulable": False}})
    wait_for("replacement ready and budget restored", pdb_settled, timeout=90)
    cluster.core.create_namespaced_pod_eviction(victims[1].metadata.name, namespace, second)
    remaining = {p.metadata.name for p in cluster.core.list_namespaced_pod(namespace).items
                 if p.metadata.deletion_timestamp is None}
    assert victims[0].metadata.name not in remaining


def test_node_that_stops_heartbeating_turns_unknown_and_gets_the_unreachable_taint(cluster, make_node):
    # A healthy neighbour: with every node down the controller enters "full disruption" mode
    # and deliberately taints nothing, as it would in a real cluster.
    make_node()
    name = make_node(own_kubelet=True)
    # Stop the node's kubelet (a kwok process of its own): its Lease and status stop being
    # renewed, exactly like a kubelet that died.
    make_node.kubelets[name].stop()

    def unreachable():
        node = cluster.core.read_node(name)
        ready = [c for c in node.status.conditions or [] if c.type == "Ready"]
        taints = {(t.key, t.effect) for t in node.spec.taints or []}
        # Two controller paths add the two taints in separate writes (NoExecute for taint-based
        # eviction, NoSchedule for the condition): either may come first.
        both = {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")}
        if ready and ready[0].status == "Unknown" and both <= taints:
            return node
        return None

    wait_for("node lifecycle controller marks the node unreachable with both taints", unreachable,
             timeout=120, interval=1)

    # The kubelet comes back: the controller marks the node Ready and removes the taints.
    make_node.kubelets[name].start()
    wait_node_ready(cluster, name, timeout=120)
    wait_for("unreachable taints removed", lambda: not any(
        t.key == "node.kubernetes.io/unreachable" for t in cluster.core.read_node(name).spec.taints or []),
        timeout=60, interval=1)


def test_kubectl_is_the_built_version(cluster):
    out = cluster.kubectl("version", "-o", "json").stdout
    import json

    versions = json.loads(out)
    assert versions["clientVersion"]["gitVersion"] == versions["serverVersion"]["gitVersion"]
    assert versions["serverVersion"]["gitVersion"].startswith("v1.36.")
