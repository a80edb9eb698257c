"""k8s_maintenance_lock's LockTask with a fake Lease client and clock: a task that waited for the lock
says, once it has it, whom it waited for (a module prints nothing while it runs). The real API
server is exercised by tests/integration/test_k8s_maintenance_lock.py and test_faults_rollout.py."""
from __future__ import annotations

import datetime

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _lease
from ansible_collections.kubeops.node_maintenance.plugins.modules import k8s_maintenance_lock as module

NOW = datetime.datetime(2026, 11, 30, 2, 0, 0, tzinfo=_lease.UTC)


def lease(holder, renewed=NOW, duration=600):
    spec = {"leaseDurationSeconds": duration, "leaseTransitions": 1}
    if holder:
        spec.update(holderIdentity=holder, acquireTime=_lease.format_micro_time(renewed),
                    renewTime=_lease.format_micro_time(renewed))
    return {"metadata": {"name": "lock", "namespace": "ns", "resourceVersion": "1"}, "spec": spec}


class FakeClient:
    """Answers each read with the next Lease of ``leases`` (the last one again when they run out)."""

    ref = "lease ns/lock"

    def __init__(self, leases):
        self.leases = list(leases)
        self.reads = 0
        self.written = []

    def read(self):
        self.reads += 1
        current = self.leases[min(self.reads, len(self.leases)) - 1]
        return current, NOW

    def replace(self, body):
        self.written.append(body)
        return body

    create = replace


class FakeModule:
    check_mode = False

    def __init__(self, **params):
        self.params = dict({"name": "lock", "namespace": "ns", "state": "present", "duration_seconds": 60,
                            "wait_timeout": 600, "poll_interval": 5, "break_expired": True, "force": False,
                            "kured_check": False}, **params)

    def fail_json(self, **result):
        raise AssertionError(result)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def task(leases, **params):
    clock = Clock()
    client = FakeClient(leases)
    return module.LockTask(FakeModule(**params), client, "beta", sleep=clock.sleep, clock=clock), client


def test_a_task_that_waited_names_each_holder_it_waited_for_once():
    lock_task, client = task([lease("alpha"), lease("alpha"), lease("gamma"), lease(None)])
    result = lock_task.acquire()
    assert result["outcome"] == "acquired" and client.written[0]["spec"]["holderIdentity"] == "beta"
    assert result["waited_for"] == [{"reason": "lease", "holder": "alpha"}, {"reason": "lease", "holder": "gamma"}]
    assert result["waited_seconds"] == 15
    (warning,) = lock_task.warnings
    assert warning.startswith("waited 15.0s for the maintenance lock: lease ns/lock held by 'alpha' (renewed ")
    assert "; then lease ns/lock held by 'gamma'" in warning


def test_a_task_that_did_not_wait_says_nothing_about_waiting():
    lock_task, _client = task([lease(None)])
    result = lock_task.acquire()
    assert result["waited_for"] == [] and not lock_task.warnings


def test_a_dead_holder_waited_for_and_broken_is_named_in_both_warnings():
    stale = NOW - datetime.timedelta(seconds=5)
    older = stale - datetime.timedelta(seconds=20)  # the same claim, looked at later: run out
    lock_task, _client = task([lease("dead", renewed=stale, duration=10), lease("dead", renewed=older, duration=10)])
    result = lock_task.acquire()
    assert result["outcome"] == "broke" and result["waited_for"] == [{"reason": "lease", "holder": "dead"}]
    assert sorted(w.split(" (")[0] for w in lock_task.warnings) == [
        "took over lease ns/lock from 'dead'", "waited 5.0s for the maintenance lock: lease ns/lock held by 'dead'"]


def test_giving_up_returns_whom_it_waited_for():
    lock_task, _client = task([lease("alpha")], wait_timeout=12)
    with pytest.raises(AssertionError) as failed:
        lock_task.acquire()
    result = failed.value.args[0]
    assert result["waited_for"] == [{"reason": "lease", "holder": "alpha"}] and "'alpha'" in result["msg"]
