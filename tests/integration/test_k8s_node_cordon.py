"""k8s_node_cordon and the shared access layer against the real local control plane."""
import json
import os
import uuid

import pytest
from kubernetes import client

pytestmark = pytest.mark.integration


UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def user_taints(node):
    return [t for t in (node.get("spec") or {}).get("taints") or [] if t["key"] != UNSCHEDULABLE_TAINT]


def unschedulable(cluster, node):
    return bool(cluster.core.read_node(node).spec.unschedulable)


def four_passes(run_module, args, check_node):
    """check mode -> real -> check mode again -> real again, as kubernetes.core tests its modules."""
    first_check = run_module("k8s_node_cordon", args, check=True, diff=True)
    assert not first_check["failed"], first_check["msg"]
    assert first_check["changed"] is True
    check_node(applied=False)
    real = run_module("k8s_node_cordon", args, diff=True)
    assert not real["failed"], real["msg"]
    assert real["changed"] is True
    check_node(applied=True)
    second_check = run_module("k8s_node_cordon", args, check=True, diff=True)
    assert second_check["changed"] is False
    second_real = run_module("k8s_node_cordon", args, diff=True)
    assert second_real["changed"] is False
    check_node(applied=True)
    return first_check, real, second_check, second_real


def test_cordon_then_uncordon_four_passes(cluster, make_node, run_module):
    node = make_node()

    def cordoned(applied):
        assert unschedulable(cluster, node) is applied

    first_check, real, second_check, second_real = four_passes(run_module, {"name": node}, cordoned)
    assert first_check["unschedulable"] is True
    assert first_check["diff"]["before"] == {"spec": {"unschedulable": False}}
    assert first_check["diff"]["after"] == {"spec": {"unschedulable": True}}
    assert real["diff"] == first_check["diff"]
    assert real["name"] == node and real["unschedulable"] is True
    # kwok keeps updating the node's status, so the version only grows; it is the one the patch returned
    assert int(real["resource_version"]) <= int(cluster.core.read_node(node).metadata.resource_version)
    assert int(second_real["resource_version"]) >= int(real["resource_version"])
    assert second_check["diff"]["before"] == second_check["diff"]["after"]

    def uncordoned(applied):
        assert unschedulable(cluster, node) is (not applied)

    first_check, real = four_passes(run_module, {"name": node, "state": "uncordoned"}, uncordoned)[:2]
    assert first_check["unschedulable"] is False and real["unschedulable"] is False
    assert real["diff"]["before"] == {"spec": {"unschedulable": True}}


def test_cordon_leaves_everything_else_alone(cluster, make_node, run_module):
    taints = [{"key": "team", "value": "a", "effect": "NoSchedule"}]
    node = make_node(labels={"zone": "z1"}, taints=taints, annotations={"owner": "someone"})
    before = cluster.api_client.sanitize_for_serialization(cluster.core.read_node(node))
    result = run_module("k8s_node_cordon", {"node": node})
    assert result["changed"] is True
    assert [t for t in result["taints"] if t["key"] != UNSCHEDULABLE_TAINT] == taints
    after = cluster.api_client.sanitize_for_serialization(cluster.core.read_node(node))
    # (controllers may add labels of their own meanwhile, e.g. beta.kubernetes.io/os)
    assert before["metadata"]["labels"].items() <= after["metadata"]["labels"].items()
    assert after["metadata"]["annotations"].get("owner") == "someone"
    # the node lifecycle controller adds node.kubernetes.io/unschedulable for a cordoned node; that
    # is its doing, not ours, so leave it out of the comparison
    assert user_taints(after) == user_taints(before) == taints
    # spec.unschedulable is the only other spec field that moved
    for spec in (before["spec"], after["spec"]):
        spec.pop("unschedulable", None)
        spec.pop("taints", None)
    assert after["spec"] == before["spec"]
    # only this module's field manager touched it
    managers = [m["manager"] for m in after["metadata"].get("managedFields") or []
                if "f:unschedulable" in json.dumps(m.get("fieldsV1"))]
    assert managers


LB = "node.kubernetes.io/exclude-from-external-load-balancers"


def labels(cluster, node):
    return cluster.core.read_node(node).metadata.labels or {}


def test_cordon_takes_the_node_out_of_the_load_balancers_in_the_same_write(cluster, make_node, run_module):
    node = make_node(labels={"zone": "z1"})

    def excluded(applied):
        assert unschedulable(cluster, node) is applied
        assert (labels(cluster, node).get(LB) == "true") is applied and labels(cluster, node)["zone"] == "z1"

    args = {"name": node, "exclude_from_load_balancers": True}
    first_check, real, second_check, _second_real = four_passes(run_module, args, excluded)
    assert first_check["labels_added"] == [LB] and first_check["excluded_from_load_balancers"] is True
    assert first_check["diff"]["before"] == {"spec": {"unschedulable": False}, "metadata": {"labels": {LB: None}}}
    assert first_check["diff"]["after"] == {"spec": {"unschedulable": True}, "metadata": {"labels": {LB: "true"}}}
    assert real["labels_added"] == [LB] and real["labels_removed"] == [] and real["excluded_from_load_balancers"]
    assert second_check["labels_added"] == [] and second_check["excluded_from_load_balancers"] is True

    def back(applied):
        assert unschedulable(cluster, node) is (not applied)
        assert (LB in labels(cluster, node)) is (not applied) and labels(cluster, node)["zone"] == "z1"

    first_check, real = four_passes(run_module, {"name": node, "state": "uncordoned",
                                                 "exclude_from_load_balancers": False}, back)[:2]
    assert first_check["labels_removed"] == [LB] and real["labels_removed"] == [LB]
    assert real["excluded_from_load_balancers"] is False and real["labels_added"] == []


def test_a_load_balancer_label_the_node_had_before_is_left_as_it_was(cluster, make_node, run_module):
    node = make_node(labels={LB: "karpenter"})
    result = run_module("k8s_node_cordon", {"name": node, "exclude_from_load_balancers": True}, diff=True)
    assert result["changed"] is True and result["labels_added"] == [] and result["excluded_from_load_balancers"]
    assert "metadata" not in result["diff"]["after"]  # only the cordon changed
    assert labels(cluster, node)[LB] == "karpenter"
    # not given: the label is not looked at, also when the node goes back
    back = run_module("k8s_node_cordon", {"name": node, "state": "uncordoned"})
    assert back["changed"] is True and back["labels_removed"] == [] and labels(cluster, node)[LB] == "karpenter"


def test_unknown_node(run_module):
    name = "no-such-node-%s" % uuid.uuid4().hex[:6]
    result = run_module("k8s_node_cordon", {"name": name})
    assert result["failed"] is True
    assert result["msg"] == "node/%s: not found (404); `kubectl get nodes` lists the names" % name
    result = run_module("k8s_node_cordon", {"name": name}, check=True)
    assert result["failed"] is True and "not found (404)" in result["msg"]


def service_account_token(cluster, namespace, name):
    cluster.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name)))
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=[], expiration_seconds=3600))
    return cluster.core.create_namespaced_service_account_token(name, namespace, request).status.token


def test_token_without_rights_gets_a_clear_403(cluster, namespace, make_node, run_module):
    node = make_node()
    token = service_account_token(cluster, namespace, "nobody")
    result = run_module("k8s_node_cordon",
                        {"name": node, "host": cluster.server, "api_key": token, "validate_certs": False},
                        auth=False)
    assert result["failed"] is True
    msg = result["msg"]
    assert msg.startswith("node/%s: forbidden (403): " % node), msg
    assert "system:serviceaccount:%s:nobody" % namespace in msg
    assert "`kubectl auth can-i get nodes`" in msg
    assert token not in json.dumps(result) and token not in result["_stderr"]
    assert unschedulable(cluster, node) is False


def test_awx_style_environment_with_rights(cluster, namespace, make_node, run_module, tmp_path):
    """K8S_AUTH_HOST / _API_KEY / _SSL_CA_CERT, as AWX's Kubernetes credential sets them."""
    node = make_node()
    token = service_account_token(cluster, namespace, "cordoner")
    role = "kubeops-test-cordoner-%s" % uuid.uuid4().hex[:6]
    cluster.rbac.create_cluster_role(client.V1ClusterRole(
        metadata=client.V1ObjectMeta(name=role),
        rules=[client.V1PolicyRule(api_groups=[""], resources=["nodes"], verbs=["get", "patch"])]))
    cluster.rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=role),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="cordoner", namespace=namespace)]))
    try:
        ca = tmp_path / "ca.crt"
        with open(cluster.kubeconfig) as handle:
            import base64
            ca.write_bytes(base64.b64decode(
                json.load(handle)["clusters"][0]["cluster"]["certificate-authority-data"]))
        env = {"K8S_AUTH_HOST": cluster.server, "K8S_AUTH_API_KEY": token,
               "K8S_AUTH_VERIFY_SSL": "True", "K8S_AUTH_SSL_CA_CERT": str(ca),
               "HOME": str(tmp_path), "KUBECONFIG": ""}
        result = run_module("k8s_node_cordon", {"name": node}, env=env, auth=False)
        assert not result["failed"], result["msg"]
        assert result["changed"] is True and unschedulable(cluster, node) is True
        assert token not in json.dumps(result)
    finally:
        for delete in (cluster.rbac.delete_cluster_role_binding, cluster.rbac.delete_cluster_role):
            try:
                delete(role)
            except client.ApiException:
                pass


def test_kubeconfig_as_dictionary(cluster, make_node, run_module, tmp_path):
    node = make_node()
    with open(cluster.kubeconfig) as handle:
        kubeconfig = json.load(handle)
    result = run_module("k8s_node_cordon", {"name": node, "kubeconfig": kubeconfig},
                        env={"HOME": str(tmp_path), "KUBECONFIG": ""}, auth=False)
    assert not result["failed"], result["msg"]
    assert result["changed"] is True and unschedulable(cluster, node) is True


def test_wrong_ca_is_explained(cluster, make_node, run_module, tmp_path):
    node = make_node()
    token = "not-needed-tls-fails-first"
    wrong_ca = tmp_path / "wrong-ca.crt"
    import subprocess
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(tmp_path / "k"), "-out", str(wrong_ca), "-subj", "/CN=wrong"],
                   check=True, capture_output=True)
    result = run_module("k8s_node_cordon", {"name": node, "host": cluster.server, "api_key": token,
                                            "ca_cert": str(wrong_ca), "timeout": 5},
                        env={"HOME": str(tmp_path)}, auth=False)
    assert result["failed"] is True
    assert "certificate verify failed" in result["msg"] and "ca_cert" in result["msg"], result["msg"]


def test_api_server_down_is_retried_then_explained(run_module, tmp_path):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_module("k8s_node_cordon", {"name": "n1", "host": "https://127.0.0.1:%d" % port,
                                            "validate_certs": False, "timeout": 3},
                        env={"HOME": str(tmp_path)}, auth=False)
    assert result["failed"] is True
    msg = result["msg"]
    assert msg.startswith("node/n1: cannot reach https://127.0.0.1:%d" % port), msg
    assert "gave up at the timeout" in msg


def test_no_configuration_at_all(run_module, tmp_path):
    result = run_module("k8s_node_cordon", {"name": "n1"},
                        env={"HOME": str(tmp_path), "KUBECONFIG": ""}, auth=False)
    assert result["failed"] is True
    assert "no Kubernetes API to talk to" in result["msg"]


def test_module_defaults_group_sets_auth(cluster, make_node, run_playbook, tmp_path):
    node = make_node()
    playbook = tmp_path / "play.yml"
    playbook.write_text("""
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/kubeops.node_maintenance.k8s:
      kubeconfig: %s
  tasks:
    - kubeops.node_maintenance.k8s_node_cordon:
        name: %s
    - kubeops.node_maintenance.k8s_node_taint:
        name: %s
        taints: [{key: via-group, effect: NoSchedule}]
""" % (cluster.kubeconfig, node, node))
    # the environment points at nothing usable: only module_defaults can make this work
    res = run_playbook(str(playbook), env={"K8S_AUTH_KUBECONFIG": os.path.join(str(tmp_path), "absent"),
                                           "HOME": str(tmp_path)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    read = cluster.core.read_node(node)
    assert read.spec.unschedulable is True
    assert [(t.key, t.effect) for t in read.spec.taints if t.key != UNSCHEDULABLE_TAINT] == \
        [("via-group", "NoSchedule")]
