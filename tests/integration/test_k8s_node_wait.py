"""k8s_node_wait against the real local control plane and a node whose kubelet (kwok) we stop and start."""
import threading
import time
import uuid

import pytest

from tests.integration.conftest import wait_node_ready

pytestmark = pytest.mark.integration

MODULE = "k8s_node_wait"


def assert_ok(result):
    assert not result["failed"], result.get("msg")


def test_kubelet_stop_then_start(cluster, make_node, run_module):
    node = make_node(own_kubelet=True)
    kubelet = make_node.kubelets[node]

    before = run_module(MODULE, {"name": node, "timeout": 30, "poll_interval": 1})
    assert_ok(before)
    assert before["changed"] is False and before["met"] is True and before["ready"] == "True"
    assert before["polls"] == 1 and before["uid"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in before["conditions"])

    kubelet.stop()
    # Started while the node still looks Ready: it must see Ready go away and come back.
    comeback = {}
    watcher = threading.Thread(target=lambda: comeback.update(result=run_module(
        MODULE, {"name": node, "require_not_ready_first": True, "timeout": 300, "poll_interval": 2})),
        daemon=True)
    watcher.start()
    try:
        gone = run_module(MODULE, {"name": node, "ready": False, "timeout": 180, "poll_interval": 2})
        assert_ok(gone)
        assert gone["ready"] in ("False", "Unknown") and gone["met"] is True
        # under load ansible may start after the node already dropped out; either way it ends there
        assert gone["transitions"][-1]["ready"] == gone["ready"]

        # Still down: a short wait for Ready fails and says what it saw.
        timed_out = run_module(MODULE, {"name": node, "timeout": 4, "poll_interval": 1})
        assert timed_out["failed"] is True
        msg = timed_out["msg"]
        assert "node/%s: still waiting after" % node in msg
        assert "Ready=True (is %s)" % gone["ready"] in msg
        assert "Ready=%s (" % gone["ready"] in msg and "heartbeat" in msg and "since" in msg
        assert "bootID" in msg and "Transitions: " in msg
        assert timed_out["met"] is False and timed_out["unmet"] and timed_out["polls"] >= 1
    finally:
        kubelet.start()
        watcher.join(360)

    result = comeback["result"]
    assert_ok(result)
    assert result["ready"] == "True" and result["seen_not_ready"] is True
    events = [t["event"] for t in result["transitions"]]
    assert events[0] == "first seen"
    assert any(t["ready"] in ("False", "Unknown") for t in result["transitions"])
    assert events[-1].endswith("-> True")
    assert result["waited_seconds"] > 5
    wait_node_ready(cluster, node)


def test_conditions_boot_id_and_check_mode(cluster, make_node, run_module):
    node = make_node()
    first = run_module(MODULE, {"name": node, "timeout": 10})
    assert_ok(first)
    conditions = {c["type"]: c["status"] for c in first["conditions"]}
    # a condition with the status the node reports passes, a missing one never does
    ok = run_module(MODULE, {"name": node, "timeout": 10, "conditions": [
        {"type": t, "status": s} for t, s in conditions.items()]})
    assert_ok(ok)
    missing = run_module(MODULE, {"name": node, "timeout": 2, "poll_interval": 1,
                                  "conditions": [{"type": "example.com/Healthy"}]})
    assert missing["failed"] is True and "example.com/Healthy=True (is missing)" in missing["msg"]

    # the boot ID has not changed: waiting for a reboot times out, saying so
    boot = first["boot_id"] or "boot-id-that-the-node-does-not-report"
    same = run_module(MODULE, {"name": node, "timeout": 2, "poll_interval": 1, "boot_id_changed_from": boot})
    if first["boot_id"]:
        assert same["failed"] is True and "(still the same)" in same["msg"]
    else:
        assert same["failed"] is True and "(the node reports none)" in same["msg"]

    # check mode reads once and reports, without waiting or failing
    started = time.monotonic()
    check = run_module(MODULE, {"name": node, "ready": False, "timeout": 300}, check=True)
    assert_ok(check)
    assert check["met"] is False and check["unmet"] == ["Ready to be False or Unknown (is True)"]
    assert check["changed"] is False and time.monotonic() - started < 120


def test_missing_node_and_bad_arguments(run_module):
    name = "no-such-node-%s" % uuid.uuid4().hex[:6]
    result = run_module(MODULE, {"name": name, "timeout": 2, "poll_interval": 1})
    assert result["failed"] is True
    assert "the node object to exist" in result["msg"] and "kubectl get nodes" in result["msg"]
    assert result["ready"] == "absent"

    bad = run_module(MODULE, {"name": name, "ready": False, "require_not_ready_first": True})
    assert bad["failed"] is True and "needs ready=true" in bad["msg"]
