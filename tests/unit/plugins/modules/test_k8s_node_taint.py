"""k8s_node_taint run end to end as Ansible runs it, against the scripted API server of
test__node_api.py. Its logic is tested in tests/unit/plugins/module_utils/test__node_api.py, the
real API server in tests/integration/test_k8s_node_taint.py.
"""
from __future__ import annotations

import copy
import json
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._lease import parse_time
from tests.unit.fake_k8s_server import generated_classes, run_module, warning_texts
from tests.unit.plugins.module_utils.test__node_api import MAINT, NODE_PATH, OLD, PODS_PATH, TaintStore, pod


def test_module_adds_a_noexecute_taint_and_names_the_pods_it_evicts(k8s_server, tmp_path):
    tolerant = pod("patient", [{"key": "maint", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}])
    store = TaintStore(pods=[pod("web"), tolerant])
    server = k8s_server(store)
    started = time.time()
    result, imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[MAINT]), tmp_path,
                                  diff=True)
    assert not result.get("failed"), result
    assert result["changed"] is True and result["conflict_retries"] == 0
    (added,) = result["added"]
    stamp = added.pop("timeAdded")
    assert added == MAINT and stamp.endswith("Z") and abs(parse_time(stamp).timestamp() - started) < 60
    assert result["taints"] == [OLD, dict(MAINT, timeAdded=stamp)] and result["taints_before"] == [OLD]
    assert result["diff"]["before"] == {"spec": {"taints": [OLD]}}
    assert result["resource_version"] == "6" and store.node["spec"]["taints"] == result["taints"]
    assert result["noexecute_evictions"] == [
        {"namespace": "shop", "name": "web", "uid": "uid-web", "taints": ["maint=now:NoExecute"], "after_seconds": 0},
        {"namespace": "shop", "name": "patient", "uid": "uid-patient", "taints": ["maint=now:NoExecute"],
         "after_seconds": 30}]
    (warning,) = warning_texts(result)
    assert warning.startswith("The added NoExecute taint maint=now:NoExecute on node/n1 deletes 1 pod(s) at once "
                              "and 1 more after their tolerationSeconds")
    # pods first (the eviction controller acts right after the write), then read and patch
    assert [p for _m, p in server.calls()] == [PODS_PATH, PODS_PATH, NODE_PATH, NODE_PATH]
    assert generated_classes(imported) == []

    again, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[MAINT]), tmp_path)
    assert again["changed"] is False and again["noexecute_evictions"] == [] and again["taints"] == result["taints"]
    assert [m for m, _p in server.calls()][4:] == ["GET", "GET", "GET"]  # two pod pages and the node; no patch


def test_module_check_mode_and_missing_node(k8s_server, tmp_path):
    store = TaintStore()
    server = k8s_server(store)
    args = dict(server.params, name="n1", taints=[{"key": "old"}], state="absent")
    result, _imported = run_module("k8s_node_taint", args, tmp_path, check_mode=True)
    assert result["changed"] is True and result["removed"] == [OLD] and result["taints"] == []
    assert store.node["spec"]["taints"] == [OLD] and [m for m, _p in server.calls()] == ["GET"]
    missing, _imported = run_module("k8s_node_taint", dict(args, name="gone"), tmp_path)
    assert missing["failed"] is True and missing["status"] == 404
    assert missing["msg"] == "node/gone: not found (404); `kubectl get nodes` lists the names"


def test_failures_have_the_shared_shape(k8s_server, tmp_path):
    server = k8s_server(TaintStore())
    missing, _imported = run_module("k8s_node_taint", dict(server.params, name="gone", taints=[MAINT]), tmp_path)
    assert missing["failed"] is True and missing["status"] == 404
    assert missing["name"] == "gone" and missing["object"] == "node/gone" and isinstance(missing["seconds"], float)
    refused, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[{"key": "old"}],
                                                           state="absent", replace=True), tmp_path)
    assert refused["failed"] is True and refused["msg"] == "replace=true applies to state=present only"
    assert refused["name"] == "n1" and refused["object"] == "node/n1" and refused["status"] is None
    invalid, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[{"key": "no effect"}]),
                                    tmp_path)
    assert invalid["failed"] is True and invalid["msg"].startswith("invalid taints for node/n1: ")
    # the NoExecute taint: its pods listed first; then bad options ask nothing of the API
    assert [p for _m, p in server.calls()] == [PODS_PATH, "/api/v1/nodes/gone"]


# ------------------------------------------------------------------------------------------------
# record (the phase's record written by the phase's first module) and unschedulable (one write)
# ------------------------------------------------------------------------------------------------

DRAINING = {"key": "maintenance.kubeops.io/draining", "value": "", "effect": "NoSchedule"}
EVENTS_PATH = "/api/v1/namespaces/default/events"
RECORD = {"rollout": "r1", "phase": "drain", "cordoned_before": False, "taints_added": [],
          "event": {"reason": "MaintenanceDrain", "msg": "kubeops rollout r1: drain started"}}


class RecordingTaintStore(TaintStore):
    """TaintStore that also keeps the record annotation (merge patches), Events, and a cordon op
    in the taints' JSON patch."""

    def __init__(self, unschedulable=False, **kwargs):
        super().__init__(**kwargs)
        self.node["spec"]["unschedulable"] = unschedulable
        self.node["metadata"]["annotations"] = {}
        self.events = []
        self.patches = []
        self.record_at_patch = []  # the record as each patch found it

    def __call__(self, request):
        method, path = request["method"], request["path"]
        if path == EVENTS_PATH and method == "POST":
            self.events.append(request["body"])
            return 201, dict(request["body"], metadata=dict(request["body"]["metadata"], uid="uid-event"))
        if path == NODE_PATH and method == "PATCH":
            self.patches.append(request["body"])
            self.record_at_patch.append(self.record())
            if request["headers"]["content-type"] == "application/merge-patch+json":
                self.node["metadata"]["annotations"].update(request["body"]["metadata"]["annotations"])
                self._bump()
                return 200, copy.deepcopy(self.node)
            cordon = [op for op in request["body"] if op["path"] == "/spec/unschedulable"]
            request = dict(request, body=[op for op in request["body"] if op not in cordon])
            answer = super().__call__(request)
            if cordon and answer[0] == 200:
                self.node["spec"]["unschedulable"] = cordon[0]["value"]
                answer = (200, copy.deepcopy(self.node))
            return answer
        return super().__call__(request)

    def record(self):
        return json.loads(self.node["metadata"]["annotations"].get("maintenance.kubeops.io/state", "{}"))


def test_record_is_written_before_the_taint_naming_the_taints_it_is_about_to_add(k8s_server, tmp_path):
    store = RecordingTaintStore()
    server = k8s_server(store)
    result, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[DRAINING], record=RECORD),
                                   tmp_path)
    assert not result.get("failed"), result
    # (an empty value is left out of the taint, as kubectl taint writes it; the record spells it out)
    assert result["changed"] is True and result["added"] == [{"key": DRAINING["key"], "effect": "NoSchedule"}]
    phase_record = result["phase_record"]
    assert (phase_record["rollout"], phase_record["phase"], phase_record["status"]) == ("r1", "drain", "in_progress")
    assert phase_record["taints_added"] == [DRAINING] and phase_record["cordoned_before"] is False
    assert store.record() == phase_record
    (event,) = store.events
    assert event["reason"] == "MaintenanceDrain" and event["involvedObject"]["name"] == "n1"
    # the record (and its Event) first, already naming the taint, then the taint; nothing after it:
    # a run killed once the taint is on the node leaves a record that says it added it
    kinds = [("json" if isinstance(p, list) else "merge") for p in store.patches]
    assert kinds == ["merge", "json"]
    assert store.record_at_patch[1]["taints_added"] == [DRAINING] and store.record_at_patch[1]["phase"] == "drain"
    assert [m for m, _p in server.calls()] == ["GET", "PATCH", "POST", "GET", "PATCH"]

    # the run that resumes (the record's taints passed on, as the role does): the taint is there,
    # nothing to add or write, and the record still names it, so the return removes it
    again, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[DRAINING],
                                                         record=dict(RECORD, taints_added=store.record()["taints_added"])),
                                  tmp_path)
    assert again["changed"] is False and again["added"] == [] and again["phase_record"]["taints_added"] == [DRAINING]
    assert len(store.patches) == 2 and store.record()["taints_added"] == [DRAINING]


def test_a_taint_already_on_the_node_is_never_recorded_as_added(k8s_server, tmp_path):
    # an operator's taint with the maintenance key, there before the rollout: the return must leave it
    store = RecordingTaintStore()
    store.node["spec"]["taints"].append(dict(DRAINING))
    server = k8s_server(store)
    result, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[DRAINING], record=RECORD),
                                   tmp_path)
    assert result["changed"] is False and result["added"] == []
    assert result["phase_record"]["taints_added"] == [] and store.record()["taints_added"] == []
    assert [("json" if isinstance(p, list) else "merge") for p in store.patches] == ["merge"]


def test_record_in_check_mode_writes_nothing_and_a_missing_node_fails_before_the_work(k8s_server, tmp_path):
    store = RecordingTaintStore()
    server = k8s_server(store)
    result, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[DRAINING], record=RECORD),
                                   tmp_path, check_mode=True)
    assert result["changed"] is True and result["phase_record"]["taints_added"] == [DRAINING]
    assert result["phase_record"]["phase"] == "drain"
    assert store.patches == [] and store.events == [] and store.record() == {}
    missing, _imported = run_module("k8s_node_taint", dict(server.params, name="gone", taints=[DRAINING],
                                                           record=RECORD), tmp_path)
    assert missing["failed"] is True and missing["status"] == 404 and missing["node_exists"] is False
    assert "cannot record maintenance state on a node that does not exist" in missing["msg"]
    assert [m for m, p in server.calls()][-1:] == ["GET"], "nothing after the failed read"


def test_unschedulable_is_set_with_the_taints_in_one_guarded_write(k8s_server, tmp_path):
    store = RecordingTaintStore(unschedulable=True, taints=(OLD, DRAINING))
    server = k8s_server(store)
    args = dict(server.params, name="n1", taints=[DRAINING], state="absent", unschedulable=False)
    result, _imported = run_module("k8s_node_taint", args, tmp_path, diff=True)
    assert result["changed"] is True and result["removed"] == [DRAINING] and result["unschedulable"] is False
    (patch,) = store.patches
    assert patch[0]["op"] == "test" and patch[-1] == {"op": "add", "path": "/spec/unschedulable", "value": False}
    assert store.node["spec"] == {"taints": [OLD], "unschedulable": False}
    assert result["diff"]["before"]["spec"] == {"taints": [OLD, DRAINING], "unschedulable": True}
    assert result["diff"]["after"]["spec"] == {"taints": [OLD], "unschedulable": False}
    # nothing left to do: no write
    again, _imported = run_module("k8s_node_taint", args, tmp_path)
    assert again["changed"] is False and len(store.patches) == 1
    # only the cordon differs: it alone makes the task changed (taints: [] allowed then)
    store.node["spec"]["unschedulable"] = True
    uncordon, _imported = run_module("k8s_node_taint", dict(args, taints=[]), tmp_path)
    assert uncordon["changed"] is True and uncordon["removed"] == [] and store.node["spec"]["unschedulable"] is False
    # without unschedulable, spec.unschedulable is never sent
    store.node["spec"]["unschedulable"] = True
    plain, _imported = run_module("k8s_node_taint", dict(server.params, name="n1", taints=[DRAINING]), tmp_path)
    assert plain["unschedulable"] is True and all(op["path"] != "/spec/unschedulable" for op in store.patches[-1])
