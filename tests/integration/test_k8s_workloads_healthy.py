"""k8s_workloads_healthy against the real local control plane (pods run on kwok nodes)."""
import json
import time

import pytest
from kubernetes import client

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
