"""k8s_node_maintenance_state against the real local control plane."""
import json
import uuid

import pytest

pytestmark = pytest.mark.integration

MODULE = "k8s_node_maintenance_state"
ANNOTATION = "maintenance.kubeops.io/state"


def rollout_id():
    return "r-%s" % uuid.uuid4().hex[:8]


def annotations(cluster, node):
    return cluster.core.read_node(node).metadata.annotations or {}


def stored(cluster, node):
    raw = annotations(cluster, node).get(ANNOTATION)
    return json.loads(raw) if raw is not None else None


def ok(result):
    assert not result["failed"], result.get("msg")
    return result


def node_events(cluster, node):
    events = cluster.core.list_namespaced_event(
        "default", field_selector="involvedObject.kind=Node,involvedObject.name=%s" % node).items
    return [e for e in events if e.source and e.source.component == "kubeops-node-maintenance"]


def test_record_four_passes(cluster, make_node, run_module):
    node = make_node()
    rollout = rollout_id()
    args = {"name": node, "state": "present", "rollout": rollout, "phase": "drain", "cordoned_before": False,
            "taints_added": [{"key": "maintenance.kubeops.io/draining", "effect": "NoSchedule"}]}

    first_check = ok(run_module(MODULE, args, check=True, diff=True))
    assert first_check["changed"] is True
    assert stored(cluster, node) is None
    assert first_check["previous"] == {} and first_check["record"]["phase"] == "drain"
    assert first_check["diff"]["before"] == {} and first_check["diff"]["after"] == first_check["record"]

    real = ok(run_module(MODULE, args, diff=True))
    assert real["changed"] is True
    record = stored(cluster, node)
    assert record == real["record"]
    assert record["rollout"] == rollout and record["status"] == "in_progress"
    assert record["cordoned_before"] is False
    assert record["taints_added"] == [{"key": "maintenance.kubeops.io/draining", "value": "",
                                       "effect": "NoSchedule"}]
    assert record["phases"]["drain"]["attempts"] == 1 and "finished" not in record["phases"]["drain"]
    assert real["node_exists"] is True and real["resume_phase"] == "drain" and real["done_in_rollout"] is False

    second_check = ok(run_module(MODULE, args, check=True, diff=True))
    assert second_check["changed"] is False
    assert second_check["diff"]["before"] == second_check["diff"]["after"] == record

    second_real = ok(run_module(MODULE, args, diff=True))
    assert second_real["changed"] is False
    # `updated` did not move, so the stored annotation is byte-for-byte what the first run wrote
    assert stored(cluster, node) == record


def test_phases_failure_and_resume(cluster, make_node, run_module):
    node = make_node()
    rollout = rollout_id()
    base = {"name": node, "state": "present", "rollout": rollout}
    ok(run_module(MODULE, dict(base, phase="drain", cordoned_before=True)))
    ok(run_module(MODULE, dict(base, phase="reboot")))
    failed = ok(run_module(MODULE, dict(base, status="failed", msg="host did not come back in 600s")))
    assert failed["changed"] is True
    record = stored(cluster, node)
    assert record["phase"] == "reboot" and record["status"] == "failed"
    assert record["message"] == "host did not come back in 600s"
    assert record["phases"]["drain"]["status"] == "done" and record["phases"]["drain"]["seconds"] >= 0
    assert record["phases"]["reboot"]["status"] == "failed" and record["phases"]["reboot"]["seconds"] >= 0

    # a re-run asks where to pick the node up
    query = ok(run_module(MODULE, {"name": node, "rollout": rollout}))
    assert query["changed"] is False
    assert query["resume_phase"] == "reboot" and query["done_in_rollout"] is False
    assert query["record"] == record == query["previous"]

    resumed = ok(run_module(MODULE, dict(base, phase="reboot")))
    assert resumed["changed"] is True
    assert resumed["record"]["phases"]["reboot"]["attempts"] == 2
    assert resumed["record"]["message"] == "" and resumed["record"]["cordoned_before"] is True

    done = ok(run_module(MODULE, dict(base, phase="verify", status="done")))
    assert done["done_in_rollout"] is True and done["resume_phase"] is None
    assert list(done["record"]["phases"]) == ["drain", "reboot", "verify"]
    assert all(entry["status"] == "done" and entry["seconds"] >= 0 for entry in done["record"]["phases"].values())

    again = ok(run_module(MODULE, {"name": node, "rollout": rollout}))
    assert again["done_in_rollout"] is True
    # another rollout sees the node as not done and starts a fresh record
    other = rollout_id()
    assert ok(run_module(MODULE, {"name": node, "rollout": other}))["done_in_rollout"] is False
    fresh = ok(run_module(MODULE, dict(base, rollout=other, phase="drain")))
    assert fresh["previous"]["rollout"] == rollout
    assert fresh["record"]["rollout"] == other and list(fresh["record"]["phases"]) == ["drain"]
    assert fresh["record"]["cordoned_before"] is None


def test_only_the_annotation_is_written(cluster, make_node, run_module):
    taints = [{"key": "team", "value": "a", "effect": "NoSchedule"}]
    node = make_node(labels={"zone": "z1"}, taints=taints, annotations={"owner": "someone"})
    before = cluster.api_client.sanitize_for_serialization(cluster.core.read_node(node))
    ok(run_module(MODULE, {"name": node, "state": "present", "rollout": rollout_id(), "phase": "drain"}))
    after = cluster.api_client.sanitize_for_serialization(cluster.core.read_node(node))

    # kube-controller-manager may add beta.kubernetes.io/* labels (node controller) and the
    # node.alpha.kubernetes.io/ttl annotation (TTL controller) to a new node at any time; not ours
    def not_controllers(mapping):
        return {k: v for k, v in mapping.items()
                if not k.startswith("beta.kubernetes.io/") and k != "node.alpha.kubernetes.io/ttl"}
    assert not_controllers(after["metadata"]["labels"]) == not_controllers(before["metadata"]["labels"])
    extra = set(not_controllers(after["metadata"]["annotations"])) - set(before["metadata"]["annotations"])
    assert extra == {ANNOTATION}
    assert after["metadata"]["annotations"]["owner"] == "someone"
    assert after["spec"] == before["spec"]

    removed = ok(run_module(MODULE, {"name": node, "state": "absent"}, diff=True))
    assert removed["changed"] is True and removed["record"] == {}
    assert removed["diff"]["after"] == {} and removed["diff"]["before"]["phase"] == "drain"
    left = annotations(cluster, node)
    assert ANNOTATION not in left and left["owner"] == "someone"


def test_absent_four_passes(cluster, make_node, run_module):
    node = make_node()
    ok(run_module(MODULE, {"name": node, "state": "present", "rollout": rollout_id()}))
    args = {"name": node, "state": "absent"}
    assert ok(run_module(MODULE, args, check=True))["changed"] is True
    assert stored(cluster, node) is not None
    assert ok(run_module(MODULE, args))["changed"] is True
    assert stored(cluster, node) is None
    assert ok(run_module(MODULE, args, check=True))["changed"] is False
    assert ok(run_module(MODULE, args))["changed"] is False


def test_events_are_written_every_time_but_not_in_check_mode(cluster, make_node, run_module):
    node = make_node()
    uid = cluster.core.read_node(node).metadata.uid
    event = {"reason": "MaintenanceDrainStarted", "msg": "draining %s" % node}

    check = ok(run_module(MODULE, {"name": node, "event": event}, check=True))
    assert check["event"]["created"] is False and check["changed"] is False
    assert node_events(cluster, node) == []

    first = ok(run_module(MODULE, {"name": node, "event": event}))
    assert first["changed"] is False  # an event is a log line, not a change of the record
    assert first["event"]["created"] is True and first["event"]["namespace"] == "default"
    ok(run_module(MODULE, {"name": node, "state": "present", "rollout": rollout_id(), "phase": "reboot",
                           "event": {"reason": "MaintenanceFailed", "msg": "x" * 3000, "type": "Warning"}}))

    events = sorted(node_events(cluster, node), key=lambda e: e.metadata.creation_timestamp)
    assert [(e.reason, e.type) for e in events] == [("MaintenanceDrainStarted", "Normal"),
                                                    ("MaintenanceFailed", "Warning")]
    assert events[0].metadata.name == first["event"]["name"]
    assert events[0].message == "draining %s" % node
    assert events[0].involved_object.kind == "Node" and events[0].involved_object.uid == uid
    assert len(events[1].message) == 1024
    # what a person sees
    described = cluster.kubectl("describe", "node", node).stdout
    assert "MaintenanceDrainStarted" in described and "kubeops-node-maintenance" in described
    for e in events:
        cluster.core.delete_namespaced_event(e.metadata.name, "default")


def test_missing_node(cluster, run_module):
    name = "no-such-node-%s" % uuid.uuid4().hex[:6]
    query = ok(run_module(MODULE, {"name": name, "rollout": "r1",
                                   "event": {"reason": "Test", "msg": "m"}}))
    assert query["node_exists"] is False and query["record"] == {} and query["changed"] is False
    assert query["done_in_rollout"] is False and query["event"]["created"] is False
    assert "does not exist; the Test event was not written" in query["_stderr"] + json.dumps(query.get("warnings"))

    present = run_module(MODULE, {"name": name, "state": "present", "rollout": "r1", "phase": "drain"})
    assert present["failed"] is True
    assert present["msg"].startswith("node/%s: not found (404)" % name)
    assert "`kubectl get nodes`" in present["msg"] and "re-joined" in present["msg"]

    absent = ok(run_module(MODULE, {"name": name, "state": "absent"}))
    assert absent["changed"] is False and absent["node_exists"] is False


def test_unreadable_annotation_is_replaced_with_a_warning(cluster, make_node, run_module):
    node = make_node(annotations={ANNOTATION: "draining since tuesday"})
    query = ok(run_module(MODULE, {"name": node}))
    assert query["record"] == {} and "is not JSON" in json.dumps(query.get("warnings"))
    rollout = rollout_id()
    args = {"name": node, "state": "present", "rollout": rollout}
    assert ok(run_module(MODULE, args))["changed"] is True
    assert stored(cluster, node)["rollout"] == rollout
    assert ok(run_module(MODULE, args))["changed"] is False


def test_argument_errors(make_node, run_module):
    node = make_node()
    result = run_module(MODULE, {"name": node, "state": "present"})
    assert result["failed"] is True and "rollout" in result["msg"]
    result = run_module(MODULE, {"name": node, "state": "present", "rollout": "r", "phase": " "})
    assert result["failed"] is True and result["msg"] == "phase must not be empty"
