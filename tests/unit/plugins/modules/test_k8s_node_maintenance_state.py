"""k8s_node_maintenance_state run as Ansible runs it, against a scripted API server on 127.0.0.1
(fake_k8s_server): whole module runs (the record, the event, the errors). Its steps are tested in
tests/unit/plugins/module_utils/test__maintenance_state.py; the real API server in
tests/integration/test_k8s_node_maintenance_state.py.
"""
from __future__ import annotations

import json

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _maintenance_state as ms
from tests.unit.fake_k8s_server import (
    generated_classes,
    run_module,
    status_body,
)
from tests.unit.plugins.module_utils.test__maintenance_state import NodeStore


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
