"""k8s_node_taint against the real local control plane."""
import json
import threading
import time
import uuid

import pytest
from kubernetes import client

pytestmark = pytest.mark.integration

MAINT = {"key": "kubeops.io/maintenance", "value": "now", "effect": "NoSchedule"}


def node_taints(cluster, node):
    taints = cluster.api_client.sanitize_for_serialization(cluster.core.read_node(node)).get("spec", {}).get("taints")
    return [(t["key"], t.get("value", ""), t["effect"]) for t in taints or []]


def four_passes(run_module, args, before, after, check_node):
    first_check = run_module("k8s_node_taint", args, check=True, diff=True)
    assert not first_check["failed"], first_check["msg"]
    assert first_check["changed"] is True
    check_node(before)
    real = run_module("k8s_node_taint", args, diff=True)
    assert not real["failed"], real["msg"]
    assert real["changed"] is True
    check_node(after)
    second_check = run_module("k8s_node_taint", args, check=True, diff=True)
    assert second_check["changed"] is False and second_check["added"] == [] and second_check["removed"] == []
    second_real = run_module("k8s_node_taint", args, diff=True)
    assert second_real["changed"] is False
    check_node(after)
    return first_check, real


def test_add_then_remove_four_passes(cluster, make_node, run_module):
    other = {"key": "team", "value": "a", "effect": "NoSchedule"}
    node = make_node(taints=[other])

    def check_node(state):
        assert node_taints(cluster, node) == state

    with_other = [("team", "a", "NoSchedule")]
    with_maint = with_other + [("kubeops.io/maintenance", "now", "NoSchedule")]

    first_check, real = four_passes(run_module, {"name": node, "taints": [MAINT]}, with_other, with_maint,
                                    check_node)
    assert first_check["added"] == [MAINT] and first_check["removed"] == []
    assert first_check["taints"] == [other, MAINT] and first_check["taints_before"] == [other]
    assert first_check["diff"]["before"] == {"spec": {"taints": [other]}}
    assert first_check["diff"]["after"] == {"spec": {"taints": [other, MAINT]}}
    assert real["taints"] == [other, MAINT] and real["added"] == [MAINT]
    assert real["noexecute_evictions"] == [] and real["conflict_retries"] == 0

    first_check, real = four_passes(run_module, {"name": node, "taints": [{"key": MAINT["key"]}], "state": "absent"},
                                    with_maint, with_other, check_node)
    assert first_check["removed"] == [MAINT] and real["removed"] == [MAINT]
    assert real["taints"] == [other]
    assert real["diff"]["after"] == {"spec": {"taints": [other]}}


def test_new_value_replaces_old(cluster, make_node, run_module):
    node = make_node(taints=[MAINT])
    result = run_module("k8s_node_taint", {"name": node, "taints": [dict(MAINT, value="later")]})
    assert result["changed"] is True
    assert result["removed"] == [MAINT] and result["added"] == [dict(MAINT, value="later")]
    assert node_taints(cluster, node) == [(MAINT["key"], "later", "NoSchedule")]


def test_absent_key_without_effect_removes_all_effects(cluster, make_node, run_module):
    taints = [{"key": "k", "effect": "NoSchedule"}, {"key": "k", "value": "v", "effect": "PreferNoSchedule"},
              {"key": "keep", "effect": "NoSchedule"}]
    node = make_node(taints=taints)
    result = run_module("k8s_node_taint", {"name": node, "taints": [{"key": "k"}], "state": "absent"})
    assert result["changed"] is True and len(result["removed"]) == 2
    assert node_taints(cluster, node) == [("keep", "", "NoSchedule")]


def test_replace_keeps_system_taints(cluster, make_node, run_module):
    system = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    node = make_node(taints=[system, {"key": "old", "effect": "NoSchedule"}])
    args = {"name": node, "taints": [MAINT], "replace": True}
    result = run_module("k8s_node_taint", args, check=True)
    assert result["changed"] is True and result["removed"] == [{"key": "old", "effect": "NoSchedule"}]
    assert len(node_taints(cluster, node)) == 2
    result = run_module("k8s_node_taint", args)
    assert result["changed"] is True
    assert node_taints(cluster, node) == [(system["key"], "", "NoSchedule"), (MAINT["key"], "now", "NoSchedule")]
    assert run_module("k8s_node_taint", args)["changed"] is False


LB = "node.kubernetes.io/exclude-from-external-load-balancers"


def test_load_balancer_label_added_with_the_taints_recorded_and_removed_on_return(cluster, make_node, run_module):
    node = make_node(labels={"zone": "z1"})
    record = {"rollout": "lb-test", "phase": "drain", "msg": "drain started", "taints_added": [], "labels_added": []}
    args = {"name": node, "taints": [MAINT], "exclude_from_load_balancers": True, "record": record}
    planned = run_module("k8s_node_taint", args, check=True, diff=True)
    assert planned["changed"] is True and planned["labels_added"] == [LB]
    assert planned["diff"]["after"]["metadata"] == {"labels": {LB: "true"}}
    assert LB not in (cluster.core.read_node(node).metadata.labels or {})

    result = run_module("k8s_node_taint", args)
    assert not result["failed"], result["msg"]
    assert result["changed"] is True and result["added"] == [MAINT] and result["labels_added"] == [LB]
    assert result["excluded_from_load_balancers"] is True and result["conflict_retries"] == 0
    node_now = cluster.core.read_node(node)
    assert node_now.metadata.labels[LB] == "true" and node_now.metadata.labels["zone"] == "z1"
    # the record kept the label with the taints, as the rollout's return reads it
    assert result["phase_record"]["labels_added"] == [LB]
    stored = json.loads(node_now.metadata.annotations["maintenance.kubeops.io/state"])
    assert stored["labels_added"] == [LB] and stored["taints_added"] == [MAINT]

    again = run_module("k8s_node_taint", dict(args, record=dict(record, labels_added=[LB])))
    assert again["changed"] is False and again["labels_added"] == []
    assert again["phase_record"]["labels_added"] == [LB]  # still recorded: the rollout added it

    # the return: taints off, uncordon, label off, in one write
    back = run_module("k8s_node_taint", {"name": node, "taints": [{"key": MAINT["key"]}], "state": "absent",
                                         "unschedulable": False, "exclude_from_load_balancers": False}, diff=True)
    assert back["changed"] is True and back["labels_removed"] == [LB] and back["removed"] == [MAINT]
    assert back["diff"]["before"]["metadata"] == {"labels": {LB: "true"}}
    labels = cluster.core.read_node(node).metadata.labels
    assert LB not in labels and labels["zone"] == "z1"
    assert run_module("k8s_node_taint", {"name": node, "taints": [], "state": "absent",
                                         "exclude_from_load_balancers": False})["changed"] is False


def test_a_label_already_there_is_kept_and_not_recorded(cluster, make_node, run_module):
    node = make_node(labels={LB: ""})
    record = {"rollout": "lb-test", "phase": "drain", "labels_added": []}
    result = run_module("k8s_node_taint", {"name": node, "taints": [MAINT], "exclude_from_load_balancers": True,
                                           "record": record})
    assert result["changed"] is True and result["labels_added"] == [] and result["excluded_from_load_balancers"]
    assert result["phase_record"]["labels_added"] == []
    assert cluster.core.read_node(node).metadata.labels[LB] == ""


def test_invalid_effect(make_node, run_module):
    node = make_node()
    result = run_module("k8s_node_taint", {"name": node, "taints": [{"key": "a", "effect": "NoSchedul"}]})
    assert result["failed"] is True
    assert "effect" in result["msg"] and "NoSchedule, PreferNoSchedule, NoExecute" in result["msg"], result["msg"]


def test_empty_key(cluster, make_node, run_module):
    node = make_node()
    result = run_module("k8s_node_taint", {"name": node, "taints": [{"key": "", "effect": "NoSchedule"}]})
    assert result["failed"] is True
    assert result["msg"] == "invalid taints for node/%s: taints[0]: the taint key is empty" % node
    assert node_taints(cluster, node) == []


def test_present_needs_effect(make_node, run_module):
    node = make_node()
    result = run_module("k8s_node_taint", {"name": node, "taints": [{"key": "a"}]})
    assert result["failed"] is True and "needs an effect" in result["msg"]


def test_replace_with_absent_refused(make_node, run_module):
    node = make_node()
    result = run_module("k8s_node_taint", {"name": node, "taints": [{"key": "a"}], "state": "absent",
                                           "replace": True})
    assert result["failed"] is True and "replace=true applies to state=present only" in result["msg"]


def test_unknown_node(run_module):
    name = "no-such-node-%s" % uuid.uuid4().hex[:6]
    result = run_module("k8s_node_taint", {"name": name, "taints": [MAINT]})
    assert result["failed"] is True
    assert result["msg"] == "node/%s: not found (404); `kubectl get nodes` lists the names" % name


def test_token_without_rights(cluster, namespace, make_node, run_module):
    node = make_node()
    cluster.core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody")))
    token = cluster.core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))).status.token
    result = run_module("k8s_node_taint",
                        {"name": node, "taints": [MAINT], "host": cluster.server, "api_key": token,
                         "validate_certs": False}, auth=False)
    assert result["failed"] is True
    assert result["msg"].startswith("node/%s: forbidden (403): " % node), result["msg"]
    assert "kubectl auth can-i get nodes" in result["msg"]
    assert token not in json.dumps(result)


def make_pod(cluster, namespace, node, name, tolerations=None):
    cluster.core.create_namespaced_pod(namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": node, "tolerations": tolerations or [],
                 "containers": [{"name": "c", "image": "registry.invalid/pause:1"}]}})


def pod_gone(cluster, namespace, name):
    try:
        pod = cluster.core.read_namespaced_pod(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return pod.metadata.deletion_timestamp is not None


def test_noexecute_reports_and_warns(cluster, namespace, make_node, run_module):
    node = make_node()
    make_pod(cluster, namespace, node, "plain")
    make_pod(cluster, namespace, node, "tolerant", [{"key": "maint", "operator": "Exists", "effect": "NoExecute"}])
    make_pod(cluster, namespace, node, "patient",
             [{"key": "maint", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3600}])
    taint = {"key": "maint", "value": "now", "effect": "NoExecute"}
    args = {"name": node, "taints": [taint]}

    check = run_module("k8s_node_taint", args, check=True)
    assert check["changed"] is True
    got = [(e["namespace"], e["name"], e["after_seconds"], e["taints"]) for e in check["noexecute_evictions"]]
    assert got == [(namespace, "plain", 0, ["maint=now:NoExecute"]),
                   (namespace, "patient", 3600, ["maint=now:NoExecute"])]
    assert any("would delete 1 pod(s) at once" in w and "PodDisruptionBudget" in w
               for w in check.get("warnings", [])), check.get("warnings")
    assert not pod_gone(cluster, namespace, "plain")

    real = run_module("k8s_node_taint", args)
    assert real["changed"] is True and [e["name"] for e in real["noexecute_evictions"]] == ["plain", "patient"]
    assert any("deletes 1 pod(s) at once" in w for w in real.get("warnings", []))
    time_added = [t for t in real["taints"] if t["key"] == "maint"][0].get("timeAdded")
    assert time_added  # the API server stamps NoExecute taints

    deadline = time.monotonic() + 60
    while not pod_gone(cluster, namespace, "plain"):
        assert time.monotonic() < deadline, "the taint eviction controller did not delete the pod"
        time.sleep(0.5)
    assert not pod_gone(cluster, namespace, "tolerant")
    assert not pod_gone(cluster, namespace, "patient")

    again = run_module("k8s_node_taint", args)
    assert again["changed"] is False and again["noexecute_evictions"] == [] and not again.get("warnings")


def test_conflicting_write_is_redone_not_lost(cluster, make_node):
    """A second writer changes the taints between the module's read and its write, every time at first."""
    from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import RawApi, build_api_client
    from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _node_api

    node = make_node(taints=[{"key": "base", "effect": "NoSchedule"}])
    interleaved = []

    class RacedNodeTaints(_node_api.NodeTaints):
        def read(self):
            seen = super(RacedNodeTaints, self).read()
            if len(interleaved) < 3:  # the other writer slips in right after each of our first reads
                key = "other-%d" % len(interleaved)
                cluster.core.patch_node(node, [{"op": "add", "path": "/spec/taints/-",
                                                "value": {"key": key, "effect": "NoSchedule"}}],
                                        _content_type="application/json-patch+json")
                interleaved.append(key)
            return seen

    deadline = time.monotonic() + 60
    nodes = RacedNodeTaints(RawApi(build_api_client({"kubeconfig": cluster.kubeconfig})), node, deadline)
    before, after, change, conflicts = _node_api.converge_taints(
        nodes, [MAINT], "present", False, False, deadline)
    assert conflicts == 3
    assert change["changed"] is True
    assert node_taints(cluster, node) == [("base", "", "NoSchedule"), ("other-0", "", "NoSchedule"),
                                          ("other-1", "", "NoSchedule"), ("other-2", "", "NoSchedule"),
                                          (MAINT["key"], "now", "NoSchedule")]
    # the decision that was written rests on the read after the last interference
    assert [t["key"] for t in before["spec"]["taints"]] == ["base", "other-0", "other-1", "other-2"]


def test_concurrent_writer_thread_loses_nothing(cluster, make_node, run_module):
    """Black box: the module runs while another client keeps adding taints and bumping the node.

    Whether the writer lands between one run's read and its write is up to the scheduler (the window
    is a few milliseconds; test_conflicting_write_is_redone_not_lost forces it): the module runs
    until the race has happened at least twice, within a bound, and no run may lose a taint."""
    node = make_node(taints=[{"key": "base", "effect": "NoSchedule"}])
    stop = threading.Event()
    written, errors = [], []

    def writer():
        from kubernetes import config
        core = client.CoreV1Api(config.new_client_from_config(config_file=cluster.kubeconfig))
        i = 0
        while not stop.is_set():  # as fast as the API server takes it: the window is narrow
            i += 1
            try:
                if i <= 40:
                    key = "writer-%d" % i
                    core.patch_node(node, [{"op": "add", "path": "/spec/taints/-",
                                            "value": {"key": key, "effect": "PreferNoSchedule"}}],
                                    _content_type="application/json-patch+json")
                    written.append(key)
                else:  # keep the resourceVersion moving without growing the list
                    core.patch_node(node, {"metadata": {"annotations": {"kubeops.test/writer": str(i)}}})
            except Exception as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
                return

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    conflicts, runs, max_runs = 0, 0, 40
    try:
        while runs < max_runs and (runs < 8 or conflicts < 2):
            state = ("present", "absent")[runs % 2]
            result = run_module("k8s_node_taint", {"name": node, "taints": [MAINT], "state": state})
            runs += 1
            assert not result["failed"], result["msg"]
            assert result["changed"] is True
            conflicts += result["conflict_retries"]
            have = node_taints(cluster, node)
            assert ((MAINT["key"], "now", "NoSchedule") in have) is (state == "present")
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    have = [taint[0] for taint in node_taints(cluster, node)]
    missing = [key for key in ["base"] + written if key not in have]
    assert not missing, "taints of the other writer were lost: %s" % missing
    print("conflict retries seen across %d module runs: %d, writer taints: %d" % (runs, conflicts, len(written)))
    assert conflicts > 0, "in %d runs the writer never got between a read and a write; the race was not exercised" % runs
