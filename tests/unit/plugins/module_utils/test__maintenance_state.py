"""The maintenance record: parsing, merging, phase timings, resume decisions, event bodies; and,
against a scripted API server on 127.0.0.1 (fake_k8s_server), the write loop (a write that lost a
race, 409, is recomputed on a fresh read), the event, the errors and the module's steps. Whole module
runs: tests/unit/plugins/modules/test_k8s_node_maintenance_state.py; the real API server:
tests/integration/test_k8s_node_maintenance_state.py.
"""
import copy
import datetime
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _maintenance_state as ms
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    describe_api_error,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from tests.unit.fake_k8s_server import (
    not_found,
    status_body,
)

UTC = datetime.timezone.utc
T0 = datetime.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def merge(current, now=0, **updates):
    full = {key: None for key in ms.UPDATABLE}
    full.update(updates)
    return ms.merge_record(current, full, at(now))


# ------------------------------------------------------------------------------------------------
# time
# ------------------------------------------------------------------------------------------------

def test_format_timestamp_has_milliseconds_and_z():
    assert ms.format_timestamp(T0 + datetime.timedelta(microseconds=123456)) == "2024-05-01T10:00:00.123Z"
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    assert ms.format_timestamp(datetime.datetime(2024, 5, 1, 12, 0, tzinfo=plus2)) == "2024-05-01T10:00:00.000Z"


def test_phase_seconds():
    assert ms.phase_seconds("2024-05-01T10:00:00.000Z", "2024-05-01T10:01:30.250Z") == 90.25
    # a later writer with a clock behind the first one: clamped, never negative
    assert ms.phase_seconds("2024-05-01T10:01:00Z", "2024-05-01T10:00:00Z") == 0.0
    assert ms.phase_seconds("yesterday", "2024-05-01T10:00:00Z") is None
    assert ms.phase_seconds(None, "2024-05-01T10:00:00Z") is None
    # a record written by hand or by another tool with isoformat() (+00:00) times the same way
    assert ms.phase_seconds("2024-05-01T10:00:00+00:00", "2024-05-01T10:01:30.250000+00:00") == 90.25
    assert ms.phase_seconds("2024-05-01T10:00:00.000Z", "2024-05-01T12:01:30.250+02:00") == 90.25


def test_cut():
    assert ms.cut("short", 10) == "short"
    assert ms.cut(None, 10) == ""
    text = ms.cut("x" * 5000, 100)
    assert len(text) == 100 and text.endswith("(cut)")


# ------------------------------------------------------------------------------------------------
# parse / patch
# ------------------------------------------------------------------------------------------------

def test_parse_record():
    assert ms.parse_record(None) == ({}, [])
    assert ms.parse_record('{"rollout": "r1"}') == ({"rollout": "r1"}, [])
    record, warnings = ms.parse_record("not json")
    assert record == {} and "is not JSON" in warnings[0] and ms.ANNOTATION in warnings[0]
    record, warnings = ms.parse_record("[1, 2]")
    assert record == {} and "JSON list, not an object" in warnings[0]


def test_record_patch_touches_only_the_annotation_and_guards_the_version():
    node = {"metadata": {"name": "n1", "resourceVersion": "42", "labels": {"a": "b"},
                         "annotations": {"other": "x"}}, "spec": {"unschedulable": True}}
    record = {"rollout": "r1", "phase": "drain"}
    patch = ms.record_patch(node, record)
    assert patch == {"metadata": {"resourceVersion": "42",
                                  "annotations": {ms.ANNOTATION: ms.render_record(record)}}}
    assert json.loads(patch["metadata"]["annotations"][ms.ANNOTATION]) == record
    assert ms.removal_patch(node) == {"metadata": {"resourceVersion": "42", "annotations": {ms.ANNOTATION: None}}}
    assert ms.removal_patch({"metadata": {}}) == {"metadata": {"annotations": {ms.ANNOTATION: None}}}


def test_render_keeps_non_ascii():
    assert ms.render_record({"message": "Knoten für Wartung"}) == '{"message":"Knoten für Wartung"}'


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------

def test_validate_updates():
    assert ms.validate_updates({"rollout": "r1", "phase": "drain", "status": "done"}) == []
    errors = ms.validate_updates({"rollout": " ", "phase": "", "status": "paused",
                                  "taints_added": [{"key": "k"}]})
    assert errors == ["rollout must not be empty", "phase must not be empty",
                      "status must be one of in_progress, done, failed, not 'paused'",
                      "taints_added[0] needs a key and an effect"]


def test_normalize_taints():
    taints = [{"key": "a", "effect": "NoSchedule"}, {"key": "a", "value": "x", "effect": "NoSchedule"},
              {"key": "a", "value": None, "effect": "NoExecute"}]
    assert ms.normalize_taints(taints) == [{"key": "a", "value": "", "effect": "NoSchedule"},
                                           {"key": "a", "value": "", "effect": "NoExecute"}]


# ------------------------------------------------------------------------------------------------
# merge
# ------------------------------------------------------------------------------------------------

def test_normalize_workloads_keeps_each_controller_once_in_order():
    moved = [{"namespace": "shop", "owner_kind": "ReplicaSet", "owner_name": "web-1", "name": "web-1-a"},
             {"namespace": "shop", "owner_kind": "ReplicaSet", "owner_name": "web-1"},
             {"namespace": "db", "owner_kind": "StatefulSet", "owner_name": "pg"},
             {"namespace": "ops", "owner_kind": None, "owner_name": None},
             {"namespace": "", "owner_kind": "ReplicaSet", "owner_name": "nowhere"}]
    assert ms.normalize_workloads(moved) == [
        {"namespace": "shop", "owner_kind": "ReplicaSet", "owner_name": "web-1"},
        {"namespace": "db", "owner_kind": "StatefulSet", "owner_name": "pg"},
        {"namespace": "ops", "owner_kind": None, "owner_name": None}]


def test_moved_workloads_are_kept_across_phases_until_replaced():
    moved = [{"namespace": "shop", "owner_kind": "ReplicaSet", "owner_name": "web-1"}]
    record = merge(None, rollout="r", phase="drain")
    assert "moved_workloads" not in record  # records written before the field existed stay as they were
    record = merge(record, 5, phase="action", moved_workloads=moved)
    assert record["moved_workloads"] == moved
    record = merge(record, 9, phase="return")
    assert record["moved_workloads"] == moved
    assert merge(record, 9, phase="return", moved_workloads=moved) == record  # the same again is no change
    assert merge(record, 12, moved_workloads=[])["moved_workloads"] == []


def test_static_pods_are_kept_each_once_across_phases_until_replaced():
    before = [{"namespace": "kube-system", "name": "etcd-n1"}, {"namespace": "kube-system", "name": "etcd-n1"},
              {"namespace": "kube-system", "name": ""}, {"namespace": "kube-system", "name": "kube-apiserver-n1"}]
    record = merge(None, rollout="r", phase="drain")
    assert "static_pods" not in record
    record = merge(record, 5, phase="action", static_pods=before)
    assert record["static_pods"] == [{"namespace": "kube-system", "name": "etcd-n1"},
                                     {"namespace": "kube-system", "name": "kube-apiserver-n1"}]
    assert merge(record, 9, phase="return")["static_pods"] == record["static_pods"]
    assert merge(record, 5, static_pods=before) == record  # the same again is no change
    assert merge(record, 12, static_pods=[])["static_pods"] == []


def test_labels_added_are_kept_each_once_across_phases_until_replaced():
    lb = "node.kubernetes.io/exclude-from-external-load-balancers"
    record = merge(None, rollout="r", phase="drain")
    assert "labels_added" not in record  # records written before the field existed stay as they were
    record = merge(record, 5, phase="drain", labels_added=[lb, lb, ""])
    assert record["labels_added"] == [lb]
    assert merge(record, 9, phase="return")["labels_added"] == [lb]
    assert merge(record, 5, labels_added=[lb]) == record  # the same again is no change
    assert merge(record, 12, labels_added=[])["labels_added"] == []
    # another rollout starts a record of its own: it did not add the labels of this one
    assert "labels_added" not in merge(record, 13, rollout="other")


def test_labels_added_must_be_label_keys():
    assert ms.validate_updates({"labels_added": ["ok", " "]}) == ["labels_added[1] must be a label key"]


def test_new_record_for_a_rollout():
    record = merge({}, rollout="r1", phase="drain", cordoned_before=False)
    assert record == {
        "version": 1, "rollout": "r1", "phase": "drain", "status": "in_progress", "message": "",
        "cordoned_before": False, "taints_added": [], "started": "2024-05-01T10:00:00.000Z",
        "updated": "2024-05-01T10:00:00.000Z",
        "phases": {"drain": {"started": "2024-05-01T10:00:00.000Z", "status": "in_progress", "attempts": 1}},
    }


def test_only_a_rollout_gives_a_record_without_phase():
    record = merge({}, rollout="r1")
    assert record["phase"] is None and record["phases"] == {} and record["status"] == "in_progress"
    assert record["cordoned_before"] is None
    assert merge(record, now=5, rollout="r1") == record


def test_a_full_rollout_of_one_node_with_timings():
    record = merge({}, 0, rollout="r1", phase="drain", cordoned_before=True,
                   taints_added=[{"key": "m", "effect": "NoSchedule"}])
    record = merge(record, 30, rollout="r1", phase="reboot")
    assert record["phases"]["drain"] == {"started": "2024-05-01T10:00:00.000Z", "status": "done", "attempts": 1,
                                         "finished": "2024-05-01T10:00:30.000Z", "seconds": 30.0}
    record = merge(record, 100.5, rollout="r1", phase="verify", status="done")
    assert record["phases"]["reboot"]["seconds"] == 70.5
    assert record["phases"]["verify"] == {"started": "2024-05-01T10:01:40.500Z", "status": "done", "attempts": 1,
                                          "finished": "2024-05-01T10:01:40.500Z", "seconds": 0.0}
    assert list(record["phases"]) == ["drain", "reboot", "verify"]
    assert record["status"] == "done" and record["phase"] == "verify"
    # prior state survives the phases
    assert record["cordoned_before"] is True
    assert record["taints_added"] == [{"key": "m", "value": "", "effect": "NoSchedule"}]
    assert record["started"] == "2024-05-01T10:00:00.000Z"
    assert record["updated"] == "2024-05-01T10:01:40.500Z"
    assert ms.resume_info(record, "r1") == {"done_in_rollout": True, "resume_phase": None}


def test_same_fields_again_is_no_change_and_keeps_updated():
    record = merge({}, 0, rollout="r1", phase="drain", message="draining")
    again = merge(record, 60, rollout="r1", phase="drain", message="draining")
    assert again == record
    assert again is not record
    assert merge(record, 60, rollout="r1", phase="drain", status="in_progress") == record
    assert merge(record, 60, rollout="r1") == record


def test_status_without_phase_applies_to_the_current_phase():
    record = merge({}, 0, rollout="r1", phase="reboot")
    failed = merge(record, 12, rollout="r1", status="failed", message="host did not come back")
    assert failed["phase"] == "reboot" and failed["status"] == "failed"
    assert failed["message"] == "host did not come back"
    assert failed["phases"]["reboot"]["status"] == "failed"
    assert failed["phases"]["reboot"]["seconds"] == 12.0
    assert ms.resume_info(failed, "r1") == {"done_in_rollout": False, "resume_phase": "reboot"}
    # failing again is no change: the timing is not re-closed
    assert merge(failed, 50, rollout="r1", status="failed", message="host did not come back") == failed


def test_resuming_a_failed_phase_is_a_new_attempt_and_clears_the_error():
    record = merge({}, 0, rollout="r1", phase="reboot")
    record = merge(record, 10, rollout="r1", status="failed", message="timeout")
    resumed = merge(record, 100, rollout="r1", phase="reboot")
    assert resumed["status"] == "in_progress" and resumed["message"] == ""
    assert resumed["phases"]["reboot"] == {"started": "2024-05-01T10:01:40.000Z", "status": "in_progress",
                                           "attempts": 2}


def test_moving_on_from_a_failed_phase_keeps_it_failed():
    record = merge({}, 0, rollout="r1", phase="drain")
    record = merge(record, 10, rollout="r1", status="failed")
    record = merge(record, 20, rollout="r1", phase="reboot")
    assert record["phases"]["drain"]["status"] == "failed"
    assert record["phases"]["drain"]["seconds"] == 10.0


def test_message_is_cleared_on_phase_change_unless_given():
    record = merge({}, 0, rollout="r1", phase="drain", message="evicting 12 pods")
    assert merge(record, 1, rollout="r1", phase="reboot")["message"] == ""
    assert merge(record, 1, rollout="r1", phase="reboot", message="rebooting")["message"] == "rebooting"
    # a message alone changes only the message
    updated = merge(record, 1, rollout="r1", message="evicted 6 of 12")
    assert updated["message"] == "evicted 6 of 12" and updated["phases"] == record["phases"]
    assert len(merge(record, 1, rollout="r1", message="x" * 10000)["message"]) == ms.MESSAGE_LIMIT


def test_a_new_rollout_starts_a_new_record():
    old = merge({}, 0, rollout="r1", phase="verify", status="done", cordoned_before=True)
    new = merge(old, 1000, rollout="r2", phase="drain")
    assert new["rollout"] == "r2" and new["cordoned_before"] is None
    assert list(new["phases"]) == ["drain"] and new["started"] == "2024-05-01T10:16:40.000Z"
    assert ms.resume_info(old, "r2") == {"done_in_rollout": False, "resume_phase": None}


def test_unknown_keys_survive():
    record = dict(merge({}, 0, rollout="r1", phase="drain"), future_field={"a": 1}, version=2)
    updated = merge(record, 5, rollout="r1", phase="reboot")
    assert updated["future_field"] == {"a": 1} and updated["version"] == 2


def test_broken_fields_in_a_stored_record_are_repaired():
    stored = {"rollout": "r1", "phase": "drain", "status": "weird", "phases": "not a dict"}
    updated = merge(stored, 5, rollout="r1", phase="reboot")
    assert updated["phases"]["reboot"]["attempts"] == 1
    assert updated["status"] == "in_progress"
    stored = {"rollout": "r1", "phase": "drain", "status": "in_progress",
              "phases": {"drain": {"started": "garbage", "attempts": "x"}}}
    updated = merge(stored, 5, rollout="r1", phase="reboot")
    assert updated["phases"]["drain"]["seconds"] is None


def test_merge_does_not_modify_its_input():
    record = merge({}, 0, rollout="r1", phase="drain")
    snapshot = json.loads(json.dumps(record))
    merge(record, 5, rollout="r1", phase="reboot", taints_added=[{"key": "k", "effect": "NoSchedule"}])
    assert record == snapshot


def test_resume_info_without_rollout():
    record = merge({}, 0, rollout="r1", phase="verify", status="done")
    assert ms.resume_info(record, None) == {"done_in_rollout": False, "resume_phase": None}
    assert ms.resume_info({}, "r1") == {"done_in_rollout": False, "resume_phase": None}


def test_same_record_ignores_only_updated():
    assert ms.same_record({"a": 1, "updated": "x"}, {"a": 1, "updated": "y"})
    assert not ms.same_record({"a": 1}, {"a": 2})
    assert ms.same_record({}, None)


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------

PHASES = st.sampled_from(["lock", "drain", "reboot", "data_disk", "verify"])
STEP = st.fixed_dictionaries({
    "phase": st.one_of(st.none(), PHASES),
    "status": st.one_of(st.none(), st.sampled_from(ms.STATUSES)),
    "message": st.one_of(st.none(), st.text(max_size=20)),
    "cordoned_before": st.one_of(st.none(), st.booleans()),
    "taints_added": st.one_of(st.none(), st.lists(st.fixed_dictionaries({
        "key": st.sampled_from(["a", "b"]), "value": st.one_of(st.none(), st.text(max_size=3)),
        "effect": st.sampled_from(["NoSchedule", "NoExecute"])}), max_size=3)),
    # time may go backwards: the next task can run on a host whose clock is behind
    "dt": st.floats(min_value=-120, max_value=3600, allow_nan=False),
})


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=12))
def test_property_sequences_keep_the_record_consistent(steps):
    record = {}
    clock = 0.0
    for step in steps:
        clock += step.pop("dt")
        before = json.loads(json.dumps(record))
        updates = dict(step, rollout="r1")
        after = ms.merge_record(record, updates, at(clock))
        assert record == before  # input untouched
        # idempotent: the same report again changes nothing
        assert ms.merge_record(after, updates, at(clock + 10)) == after
        # updated moves only with a change
        if ms.same_record(record, after):
            assert after.get("updated") == record.get("updated")
        # JSON round trip
        assert json.loads(ms.render_record(after)) == after
        assert after["status"] in ms.STATUSES
        for name, entry in after["phases"].items():
            assert entry["attempts"] >= 1
            if "finished" in entry:
                assert entry["seconds"] is None or entry["seconds"] >= 0.0
                assert entry["status"] in ms.TERMINAL
            else:
                assert entry["status"] == "in_progress"
        # at most one phase is open, and it is the current one
        open_phases = [name for name, entry in after["phases"].items() if "finished" not in entry]
        assert open_phases in ([], [after["phase"]])
        if after["status"] in ms.TERMINAL and after["phase"] is not None:
            assert open_phases == []
        if after["phase"] is not None:
            assert after["phase"] in after["phases"]
        keys = {(t["key"], t["effect"]) for t in after["taints_added"]}
        assert len(keys) == len(after["taints_added"])
        record = after


@given(st.text(max_size=200))
def test_property_parse_never_raises(text):
    record, warnings = ms.parse_record(text)
    assert isinstance(record, dict)
    assert bool(warnings) or isinstance(json.loads(text), dict)


# ------------------------------------------------------------------------------------------------
# events
# ------------------------------------------------------------------------------------------------

def test_event_body():
    node = {"metadata": {"name": "worker-3", "uid": "1234-abcd"}}
    body = ms.event_body(node, {"reason": "MaintenanceFailed", "msg": "m" * 2000, "type": "Warning"},
                         T0, "ctl-1")
    assert body["metadata"]["namespace"] == "default"
    assert body["metadata"]["name"].startswith("worker-3.")
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "worker-3", "uid": "1234-abcd"}
    assert body["source"] == {"component": "kubeops-node-maintenance", "host": "ctl-1"}
    assert body["type"] == "Warning" and body["reason"] == "MaintenanceFailed"
    assert len(body["message"]) == ms.EVENT_MESSAGE_LIMIT
    assert body["firstTimestamp"] == body["lastTimestamp"] == "2024-05-01T10:00:00Z"
    assert body["count"] == 1


@pytest.mark.parametrize("name", ["n", "x" * 253])
def test_event_name_is_a_valid_length(name):
    body = ms.event_body({"metadata": {"name": name}}, {"reason": "R", "msg": "m"}, T0, "h")
    assert len(body["metadata"]["name"]) <= 253
    assert body["type"] == "Normal"


# ------------------------------------------------------------------------------------------------
# against the API: the write loop, the event
# ------------------------------------------------------------------------------------------------

NODE_PATH = "/api/v1/nodes/n1"
EVENTS_PATH = "/api/v1/namespaces/default/events"
MERGE_PATCH = "application/merge-patch+json"


def merge_patch(target, patch):
    """RFC 7386, as the API server applies ``application/merge-patch+json``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class NodeStore:
    """One node n1 with resourceVersion checks on merge patches; ``race`` lets another writer change
    the annotation right after the first read; ``fail`` scripts error answers by (method, nth call)."""

    def __init__(self, annotations=None, exists=True, race=False):
        self.node = {"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": "n1", "uid": "uid-n1", "resourceVersion": "1",
                                  "creationTimestamp": "2026-11-30T05:35:33Z", "annotations": dict(annotations or {})},
                     "status": {"conditions": [{"type": "Ready", "status": "True",
                                                "lastTransitionTime": "2026-11-30T05:35:33Z"}]}} if exists else None
        self.race = race
        self.fail = {}
        self.counts = {}
        self.events = []

    def __call__(self, request):
        method, path = request["method"], request["path"]
        self.counts[method] = self.counts.get(method, 0) + 1
        scripted = self.fail.get((method, self.counts[method]))
        if scripted:
            return scripted
        if path == EVENTS_PATH and method == "POST":
            created = dict(request["body"], metadata=dict(request["body"]["metadata"], uid="uid-event",
                                                          resourceVersion="9"))
            self.events.append(created)
            return 201, created
        if path != NODE_PATH:
            return 404, status_body(404, "NotFound", "the server could not find the requested resource")
        if self.node is None:
            return not_found("nodes", "n1")
        if method == "GET":
            answer = copy.deepcopy(self.node)
            if self.race and self.counts["GET"] == 1:  # someone else writes between our read and our patch
                other = ms.merge_record({}, {"rollout": "r1", "phase": "drain"}, ms.utc_now())
                self.node["metadata"]["annotations"][ms.ANNOTATION] = ms.render_record(other)
                self.node["metadata"]["resourceVersion"] = "2"
            return 200, answer
        if method == "PATCH":
            assert request["headers"]["content-type"] == MERGE_PATCH
            version = (request["body"].get("metadata") or {}).get("resourceVersion")
            if version and version != self.node["metadata"]["resourceVersion"]:
                return 409, status_body(409, "Conflict", 'Operation cannot be fulfilled on nodes "n1": the object '
                                                         'has been modified; please apply your changes to the latest '
                                                         'version and try again')
            self.node = merge_patch(self.node, request["body"])
            self.node["metadata"]["resourceVersion"] = str(int(self.node["metadata"]["resourceVersion"]) + 1)
            return 200, copy.deepcopy(self.node)
        return 405, status_body(405, "MethodNotAllowed", "not allowed")


def record_updates(**given):
    updates = {key: None for key in ms.UPDATABLE}
    updates.update(given)
    return updates


def compute_for(updates):
    def compute(node):
        before, warnings = ms.parse_record((node["metadata"].get("annotations") or {}).get(ms.ANNOTATION))
        after = ms.merge_record(before, updates, ms.utc_now())
        return before, after, ms.record_patch(node, after), warnings
    return compute


def test_conflict_is_recomputed_on_a_fresh_read(k8s_server):
    store = NodeStore(race=True)
    server = k8s_server(store)
    node, before, after, changed, _warnings = ms.write_record(
        server.raw(), "n1", compute_for(record_updates(rollout="r1", message="from us")), check_mode=False,
        deadline=10 ** 12, sleep=lambda s: None)
    assert changed
    assert server.calls() == [("GET", NODE_PATH), ("PATCH", NODE_PATH), ("GET", NODE_PATH), ("PATCH", NODE_PATH)]
    patches = [r["body"] for r in server.requests if r["method"] == "PATCH"]
    assert [p["metadata"]["resourceVersion"] for p in patches] == ["1", "2"]
    # the other writer's phase survived, our message was added on top of it
    assert before["phase"] == "drain"
    assert after["phase"] == "drain" and after["message"] == "from us"
    assert json.loads(store.node["metadata"]["annotations"][ms.ANNOTATION]) == after
    assert node["metadata"]["resourceVersion"] == "2"
    assert all(r["headers"]["authorization"] == "Bearer fake-k8s-server-token" for r in server.requests)


def test_check_mode_reads_but_never_patches(k8s_server):
    server = k8s_server(NodeStore())

    def compute(node):
        return {}, {"rollout": "r1"}, {"metadata": {}}, []

    _node, _before, after, changed, _warnings = ms.write_record(server.raw(), "n1", compute,
                                                                check_mode=True, deadline=10 ** 12)
    assert changed and after == {"rollout": "r1"} and server.calls() == [("GET", NODE_PATH)]


def test_a_missing_node_is_none_and_nothing_is_written(k8s_server):
    server = k8s_server(NodeStore(exists=False))
    assert ms.write_record(server.raw(), "n1", compute_for(record_updates(rollout="r1")), False,
                           10 ** 12) == (None, {}, {}, False, [])
    assert server.calls() == [("GET", NODE_PATH)]


def test_transient_errors_are_retried_a_refused_write_is_not(k8s_server):
    store = NodeStore()
    store.fail[("PATCH", 1)] = (503, status_body(503, "ServiceUnavailable", "etcdserver: leader changed"))
    server = k8s_server(store)
    _node, _before, after, changed, _warnings = ms.write_record(
        server.raw(), "n1", compute_for(record_updates(rollout="r1")), False, 10 ** 12)
    assert changed and [m for m, _p in server.calls()] == ["GET", "PATCH", "PATCH"]
    assert json.loads(store.node["metadata"]["annotations"][ms.ANNOTATION]) == after

    store = NodeStore()
    forbidden = 'nodes "n1" is forbidden: User "ops" cannot patch resource "nodes" in API group "" at the cluster scope'
    store.fail[("PATCH", 1)] = (403, status_body(403, "Forbidden", forbidden))
    server = k8s_server(store)
    with pytest.raises(ApiException) as refused:
        ms.write_record(server.raw(), "n1", compute_for(record_updates(rollout="r1")), False, 10 ** 12)
    assert refused.value.status == 403 and len(server.requests) == 2
    assert describe_api_error(refused.value, "node/n1") == (
        'node/n1: forbidden (403): nodes "n1" is forbidden: User "ops" cannot patch resource "nodes" in API group '
        '"" at the cluster scope; the identity in use lacks the RBAC right; grant it with a (Cluster)Role and '
        'binding, and check with `kubectl auth can-i patch nodes`')


def test_create_event_posts_the_event_and_returns_its_name(k8s_server):
    store = NodeStore()
    server = k8s_server(store)
    node = store.node
    name, message = ms.create_event(server.raw(), node, {"reason": "MaintenanceDrainStarted", "msg": "draining",
                                                         "type": "Normal"}, 10 ** 12)
    (request,) = server.requests
    assert (request["method"], request["path"]) == ("POST", EVENTS_PATH)
    assert request["headers"]["content-type"] == "application/json"
    body = request["body"]
    assert name == body["metadata"]["name"] == store.events[0]["metadata"]["name"] and message == "draining"
    assert name.startswith("n1.")
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "uid-n1"}
    # event times go out as the API server writes them (RFC 3339, Z), not isoformat()'s +00:00
    assert body["firstTimestamp"] == body["lastTimestamp"] and body["firstTimestamp"].endswith("Z")
    assert ms.parse_time(body["firstTimestamp"]) is not None


# ------------------------------------------------------------------------------------------------
# the module's steps: options, compute, event, result, and their composition
# ------------------------------------------------------------------------------------------------

def options(**given):
    params = {"name": "n1", "state": "present", "rollout": "r1", "phase": None, "status": None, "msg": None,
              "cordoned_before": None, "taints_added": None, "moved_workloads": None, "static_pods": None,
              "labels_added": None, "event": None, "timeout": 60}
    params.update(given)
    return params


def test_requested_updates_maps_msg_to_message_and_refuses_bad_options():
    assert ms.requested_updates(options(msg="boom", phase="drain")) == record_updates(
        rollout="r1", message="boom", phase="drain")
    with pytest.raises(ModuleFailure) as refused:
        ms.requested_updates(options(phase=" ", timeout=0))
    assert refused.value.msg == "phase must not be empty; timeout must be at least 1" and refused.value.fields == {}
    # the record's fields are only checked when they are to be written
    assert ms.requested_updates(options(state="query", phase=" "))["phase"] == " "


def node_with(record=None, text=None):
    annotations = {} if record is None and text is None else {ms.ANNOTATION: text or ms.render_record(record)}
    return {"metadata": {"name": "n1", "resourceVersion": "5", "annotations": annotations}}


def test_compute_record_for_each_state():
    now = datetime.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)
    recorded = ms.merge_record({}, record_updates(rollout="r1", phase="drain"), now)
    node = node_with(recorded)
    assert ms.compute_record(node, "query", record_updates(phase="x"), now) == (recorded, recorded, None, [])
    assert ms.compute_record(node, "absent", record_updates(), now) == (
        recorded, {}, ms.removal_patch(node), [])
    assert ms.compute_record(node_with(), "absent", record_updates(), now) == ({}, {}, None, [])
    # the same again is no write
    assert ms.compute_record(node, "present", record_updates(rollout="r1", phase="drain"), now) == (
        recorded, recorded, None, [])
    later = now + datetime.timedelta(seconds=5)
    before, after, patch, warnings = ms.compute_record(node, "present", record_updates(rollout="r1", status="done"),
                                                       later)
    assert before == recorded and after["status"] == "done" and after["updated"] == "2024-05-01T10:00:05.000Z"
    assert patch == ms.record_patch(node, after) and warnings == []


def test_compute_record_over_an_unreadable_record_writes_a_new_one_and_warns():
    node = node_with(text="{not json")
    before, after, patch, warnings = ms.compute_record(node, "present", record_updates(rollout="r1"))
    assert before == {} and after["rollout"] == "r1" and after["phase"] is None
    assert patch == ms.record_patch(node, after)
    assert len(warnings) == 1 and "is not JSON" in warnings[0]


def test_record_event_skips_a_missing_node_with_a_warning_and_only_shows_it_in_check_mode(k8s_server):
    server = k8s_server(NodeStore())
    event = {"reason": "MaintenanceFailed", "msg": "x" * 2000, "type": "Warning"}
    warnings = []
    shown = {"created": False, "namespace": "default", "reason": "MaintenanceFailed", "type": "Warning",
             "message": ms.cut("x" * 2000, ms.EVENT_MESSAGE_LIMIT)}
    assert ms.record_event(server.raw(), "n1", None, event, False, 10 ** 12, warnings.append) == shown
    assert warnings == ["node/n1 does not exist; the MaintenanceFailed event was not written"]
    assert ms.record_event(server.raw(), "n1", {"metadata": {"name": "n1"}}, event, True, 10 ** 12,
                           warnings.append) == shown
    assert server.requests == [] and len(warnings) == 1


def test_state_result_with_resume_info_event_and_diff():
    record = {"rollout": "r1", "phase": "reboot", "status": "in_progress"}
    result = ms.state_result("n1", {"metadata": {}}, {}, record, True, "r1", event={"created": True}, diff=True)
    assert result == {
        "changed": True, "name": "n1", "node_exists": True, "annotation": ms.ANNOTATION, "record": record,
        "previous": {}, "done_in_rollout": False, "resume_phase": "reboot", "event": {"created": True},
        "node": {"unschedulable": False, "boot_id": "", "taints": []},
        "diff": {"before_header": "node/n1 annotation " + ms.ANNOTATION,
                 "after_header": "node/n1 annotation " + ms.ANNOTATION, "before": {}, "after": record}}
    assert ms.state_result("n1", None, {}, {}, False, None) == {
        "changed": False, "name": "n1", "node_exists": False, "annotation": ms.ANNOTATION, "record": {},
        "previous": {}, "done_in_rollout": False, "resume_phase": None, "node": None}


def test_maintain_records_and_writes_the_event_in_one_call(k8s_server):
    store = NodeStore(annotations={ms.ANNOTATION: "[]"})
    server = k8s_server(store)
    warnings = []
    params = options(phase="drain", event={"reason": "MaintenanceDrainStarted", "msg": "draining", "type": "Normal"})
    result = ms.maintain(server.raw(), params, ms.requested_updates(params), False, False, 10 ** 12, warnings.append)
    assert result["changed"] is True and result["record"]["phase"] == "drain" and result["resume_phase"] == "drain"
    assert result["event"]["created"] is True and result["event"]["name"] == store.events[0]["metadata"]["name"]
    assert json.loads(store.node["metadata"]["annotations"][ms.ANNOTATION]) == result["record"]
    assert [m for m, _p in server.calls()] == ["GET", "PATCH", "POST"]
    assert warnings == ["node/n1: annotation %s holds a JSON list, not an object; it is treated as no record and "
                        "replaced on the next write" % ms.ANNOTATION]


def test_maintain_present_on_a_missing_node_fails_before_any_event(k8s_server):
    server = k8s_server(NodeStore(exists=False))
    params = options(event={"reason": "MaintenanceDrainStarted", "msg": "draining", "type": "Normal"})
    with pytest.raises(ModuleFailure) as failed:
        ms.maintain(server.raw(), params, ms.requested_updates(params), False, False, 10 ** 12, pytest.fail)
    assert failed.value.msg.startswith("node/n1: not found (404); cannot record maintenance state")
    assert failed.value.fields == {"status": 404, "node_exists": False}
    assert server.calls() == [("GET", NODE_PATH)]


# ------------------------------------------------------------------------------------------------
# The record option of the phase modules, and the node read with the record
# ------------------------------------------------------------------------------------------------

PHASE_RECORD = {"rollout": "r1", "phase": "drain", "status": "in_progress", "msg": None, "cordoned_before": True,
                "taints_added": [{"key": "maint", "value": None, "effect": "NoSchedule"}], "moved_workloads": None,
                "event": {"reason": "MaintenanceDrain", "msg": "drain started", "type": "Normal"}}


def test_record_phase_enters_the_phase_posts_the_event_and_record_fields_adds_to_it(k8s_server):
    store = NodeStore()
    server = k8s_server(store)
    warnings = []
    record = ms.record_phase(server.raw(), "n1", PHASE_RECORD, False, time.monotonic() + 30, warnings.append)
    assert (record["rollout"], record["phase"], record["status"], record["cordoned_before"]) == ("r1", "drain", "in_progress", True)
    assert record["taints_added"] == [{"key": "maint", "value": "", "effect": "NoSchedule"}]
    assert record["phases"]["drain"]["attempts"] == 1 and "moved_workloads" not in record
    stored = json.loads(store.node["metadata"]["annotations"][ms.ANNOTATION])
    assert stored == record and [e["reason"] for e in store.events] == ["MaintenanceDrain"]
    more = ms.record_fields(server.raw(), "n1", "r1", record, {"taints_added": record["taints_added"] + [
        {"key": "other", "effect": "NoExecute"}]}, False, time.monotonic() + 30, warnings.append)
    assert [t["key"] for t in more["taints_added"]] == ["maint", "other"] and more["phase"] == "drain"
    assert json.loads(store.node["metadata"]["annotations"][ms.ANNOTATION]) == more and len(store.events) == 1
    assert warnings == []


def test_record_phase_in_check_mode_writes_nothing_and_fails_on_a_missing_node(k8s_server):
    store = NodeStore()
    server = k8s_server(store)
    record = ms.record_phase(server.raw(), "n1", PHASE_RECORD, True, time.monotonic() + 30, [].append)
    assert record["phase"] == "drain" and ms.ANNOTATION not in store.node["metadata"]["annotations"]
    more = ms.record_fields(server.raw(), "n1", "r1", record, {"taints_added": []}, True, time.monotonic() + 30,
                            [].append)
    assert more["taints_added"] == [] and more["phase"] == "drain" and store.events == []
    assert store.counts == {"GET": 1}, "check mode: one read, the fields merged without reading again"
    gone = k8s_server(NodeStore(exists=False))
    with pytest.raises(ModuleFailure) as failed:
        ms.record_phase(gone.raw(), "n1", PHASE_RECORD, False, time.monotonic() + 30, [].append)
    assert failed.value.fields["status"] == 404 and "does not exist" in failed.value.msg


def test_record_phase_joins_the_intent_read_from_the_same_node_in_the_same_write(k8s_server):
    store = NodeStore()
    server = k8s_server(store)
    seen = []

    def intent(node):
        seen.append(node["metadata"]["resourceVersion"])
        return {"taints_added": [{"key": "other", "effect": "NoExecute"}], "labels_added": []}

    record = ms.record_phase(server.raw(), "n1", PHASE_RECORD, False, time.monotonic() + 30, [].append, intent=intent)
    assert [(t["key"], t["effect"]) for t in record["taints_added"]] == [("maint", "NoSchedule"), ("other", "NoExecute")]
    assert "labels_added" not in record or record["labels_added"] == []
    assert json.loads(store.node["metadata"]["annotations"][ms.ANNOTATION]) == record
    assert seen == ["1"] and store.counts["PATCH"] == 1, "one read, one write: the intent is part of the record's write"


def test_with_intent_appends_to_the_lists_given_and_refuses_other_fields():
    updates = {"phase": "drain", "taints_added": [{"key": "a"}], "labels_added": None}
    assert ms.with_intent(updates, None) is updates and ms.with_intent(updates, {"taints_added": []}) is updates
    joined = ms.with_intent(updates, {"taints_added": [{"key": "b"}], "labels_added": ["x/y"]})
    assert joined == {"phase": "drain", "taints_added": [{"key": "a"}, {"key": "b"}], "labels_added": ["x/y"]}
    assert updates["taints_added"] == [{"key": "a"}], "the updates given are not modified"
    with pytest.raises(ValueError):
        ms.with_intent(updates, {"phase": "return"})


def test_node_state_is_what_a_rollout_reads_of_the_node():
    assert ms.node_state(None) is None
    assert ms.node_state({"metadata": {}}) == {"unschedulable": False, "boot_id": "", "taints": []}
    taint = {"key": "k", "effect": "NoSchedule"}
    node = {"spec": {"unschedulable": True, "taints": [taint]}, "status": {"nodeInfo": {"bootID": "b-1"}}}
    assert ms.node_state(node) == {"unschedulable": True, "boot_id": "b-1", "taints": [taint]}
