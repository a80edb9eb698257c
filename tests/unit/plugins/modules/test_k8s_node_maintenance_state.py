"""k8s_node_maintenance_state against a scripted API server on 127.0.0.1 (fake_k8s_server): the write
loop (a write that lost a race, 409, is recomputed on a fresh read), the event, the errors, and whole
module runs. The real API server is exercised by tests/integration/test_k8s_node_maintenance_state.py.
"""
from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _maintenance_state as ms
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    describe_api_error,
)
from ansible_collections.kubeops.node_maintenance.plugins.modules import k8s_node_maintenance_state as module
from tests.unit.fake_k8s_server import (
    generated_classes,
    not_found,
    run_module,
    status_body,
)

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
    node, before, after, changed, _warnings = module.write_record(
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

    _node, _before, after, changed, _warnings = module.write_record(server.raw(), "n1", compute,
                                                                    check_mode=True, deadline=10 ** 12)
    assert changed and after == {"rollout": "r1"} and server.calls() == [("GET", NODE_PATH)]


def test_a_missing_node_is_none_and_nothing_is_written(k8s_server):
    server = k8s_server(NodeStore(exists=False))
    assert module.write_record(server.raw(), "n1", compute_for(record_updates(rollout="r1")), False,
                               10 ** 12) == (None, {}, {}, False, [])
    assert server.calls() == [("GET", NODE_PATH)]


def test_transient_errors_are_retried_a_refused_write_is_not(k8s_server):
    store = NodeStore()
    store.fail[("PATCH", 1)] = (503, status_body(503, "ServiceUnavailable", "etcdserver: leader changed"))
    server = k8s_server(store)
    _node, _before, after, changed, _warnings = module.write_record(
        server.raw(), "n1", compute_for(record_updates(rollout="r1")), False, 10 ** 12)
    assert changed and [m for m, _p in server.calls()] == ["GET", "PATCH", "PATCH"]
    assert json.loads(store.node["metadata"]["annotations"][ms.ANNOTATION]) == after

    store = NodeStore()
    forbidden = 'nodes "n1" is forbidden: User "ops" cannot patch resource "nodes" in API group "" at the cluster scope'
    store.fail[("PATCH", 1)] = (403, status_body(403, "Forbidden", forbidden))
    server = k8s_server(store)
    with pytest.raises(ApiException) as refused:
        module.write_record(server.raw(), "n1", compute_for(record_updates(rollout="r1")), False, 10 ** 12)
    assert refused.value.status == 403 and len(server.requests) == 2
    assert describe_api_error(refused.value, "node/n1") == (
        'node/n1: forbidden (403): nodes "n1" is forbidden: User "ops" cannot patch resource "nodes" in API group '
        '"" at the cluster scope; the identity in use lacks the RBAC right; grant it with a (Cluster)Role and '
        'binding, and check with `kubectl auth can-i patch nodes`')


def test_create_event_posts_the_event_and_returns_its_name(k8s_server):
    store = NodeStore()
    server = k8s_server(store)
    node = store.node
    name, message = module.create_event(server.raw(), node, {"reason": "MaintenanceDrainStarted", "msg": "draining",
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


def test_module_records_a_phase_and_writes_the_event_without_generated_classes(k8s_server, tmp_path):
    store = NodeStore()
    server = k8s_server(store)
    args = dict(server.params, name="n1", state="present", rollout="r1", phase="drain",
                event={"reason": "MaintenanceDrainStarted", "msg": "draining"})
    result, imported = run_module("k8s_node_maintenance_state", args, tmp_path, diff=True)
    assert not result.get("failed"), result
    assert result["changed"] is True and result["node_exists"] is True
    assert result["record"]["rollout"] == "r1" and result["record"]["phase"] == "drain"
    assert result["previous"] == {} and result["resume_phase"] == "drain" and result["done_in_rollout"] is False
    assert result["event"]["created"] is True and result["event"]["name"] == store.events[0]["metadata"]["name"]
    assert result["diff"]["after"] == result["record"]
    assert json.loads(store.node["metadata"]["annotations"][ms.ANNOTATION]) == result["record"]
    assert [m for m, _p in server.calls()] == ["GET", "PATCH", "POST"]
    assert all(r["headers"]["user-agent"] == "kubeops.node_maintenance/k8s_node_maintenance_state"
               for r in server.requests)
    assert generated_classes(imported) == []

    # the same again: no change, no write
    again, _imported = run_module("k8s_node_maintenance_state", dict(args, event=None), tmp_path)
    assert again["changed"] is False and again["record"] == result["record"]
    assert [m for m, _p in server.calls()][3:] == ["GET"]


def test_module_query_of_a_missing_node_and_present_fails(k8s_server, tmp_path):
    server = k8s_server(NodeStore(exists=False))
    result, _imported = run_module("k8s_node_maintenance_state", dict(server.params, name="n1"), tmp_path)
    assert result["changed"] is False and result["node_exists"] is False and result["record"] == {}
    failed, _imported = run_module("k8s_node_maintenance_state",
                                   dict(server.params, name="n1", state="present", rollout="r1"), tmp_path)
    assert failed["failed"] is True and failed["node_exists"] is False
    assert failed["msg"].startswith("node/n1: not found (404); cannot record maintenance state")


def test_module_translates_api_errors(k8s_server, tmp_path):
    store = NodeStore()
    store.fail[("GET", 1)] = (401, status_body(401, "Unauthorized", "Unauthorized"))
    server = k8s_server(store)
    result, _imported = run_module("k8s_node_maintenance_state", dict(server.params, name="n1"), tmp_path)
    assert result["failed"] is True and result["status"] == 401 and result["name"] == "n1"
    assert result["msg"].startswith("node/n1: unauthorized (401): Unauthorized; the API server did not accept "
                                    "the credentials")
