"""k8s_node_wait against a scripted API server on 127.0.0.1 (fake_k8s_server): the node's own JSON
(times as the API server writes them) reaches the wait's decisions and its return values. The real
API server is exercised by tests/integration/test_k8s_node_wait.py.
"""
from __future__ import annotations

from tests.unit.fake_k8s_server import (
    generated_classes,
    not_found,
    run_module,
)

NODE_PATH = "/api/v1/nodes/n1"
T0 = "2026-11-30T05:35:33Z"
T1 = "2026-11-30T05:40:00Z"


def node(status="True", transition=T0):
    return {"metadata": {"name": "n1", "uid": "uid-n1"},
            "status": {"nodeInfo": {"bootID": "boot-1"},
                       "conditions": [{"type": "Ready", "status": status, "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status",
                                       "lastHeartbeatTime": T1, "lastTransitionTime": transition}]}}


class Polls:
    """Answers the n-th read of node n1 with the n-th of ``nodes`` (the last one again afterwards);
    None means the node does not exist."""

    def __init__(self, *nodes):
        self.nodes = list(nodes)
        self.reads = 0

    def __call__(self, request):
        assert (request["method"], request["path"]) == ("GET", NODE_PATH)
        self.reads += 1
        current = self.nodes[min(self.reads, len(self.nodes)) - 1]
        return not_found("nodes", "n1") if current is None else (200, current)


def test_a_ready_node_is_met_on_the_first_poll_with_the_api_servers_times(k8s_server, tmp_path):
    server = k8s_server(Polls(node()))
    result, imported = run_module("k8s_node_wait", dict(server.params, name="n1"), tmp_path)
    assert not result.get("failed"), result
    assert result["met"] is True and result["polls"] == 1 and result["ready"] == "True"
    assert result["conditions"] == [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                     "message": "kubelet is posting ready status",
                                     "last_heartbeat_time": T1, "last_transition_time": T0}]
    assert result["boot_id"] == "boot-1" and result["uid"] == "uid-n1"
    assert server.requests[0]["headers"]["user-agent"] == "kubeops.node_maintenance/k8s_node_wait"
    assert generated_classes(imported) == []


def test_a_moved_ready_transition_proves_the_node_went_not_ready_between_polls(k8s_server, tmp_path):
    server = k8s_server(Polls(node(transition=T0), node(transition=T1)))
    result, _imported = run_module("k8s_node_wait", dict(server.params, name="n1", require_not_ready_first=True,
                                                         poll_interval=1, timeout=30), tmp_path)
    assert result["met"] is True and result["polls"] == 2 and result["seen_not_ready"] is True


def test_a_missing_node_times_out_naming_what_it_waited_for(k8s_server, tmp_path):
    server = k8s_server(Polls(None))
    result, _imported = run_module("k8s_node_wait", dict(server.params, name="n1", timeout=0), tmp_path)
    assert result["failed"] is True and result["met"] is False and result["ready"] == "absent"
    assert result["msg"].startswith("node/n1: still waiting after 0s for: the node object to exist. Last seen: "
                                    "node/n1 did not exist on the last poll nor on any before it")
