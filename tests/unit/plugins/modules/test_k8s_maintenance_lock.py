"""k8s_maintenance_lock's LockTask with a fake Lease client and clock: a task that waited for the lock
says, once it has it, whom it waited for (a module prints nothing while it runs). LockClient and whole
module runs against a scripted API server on 127.0.0.1 (fake_k8s_server). The real API server is
exercised by tests/integration/test_k8s_maintenance_lock.py and test_faults_rollout.py."""
from __future__ import annotations

import datetime
import json

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _lease
from ansible_collections.kubeops.node_maintenance.plugins.modules import k8s_maintenance_lock as module
from tests.unit.fake_k8s_server import (
    generated_classes,
    not_found,
    run_module,
    status_body,
    warning_texts,
)

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


# ------------------------------------------------------------------------------------------------
# LockClient and whole module runs against a scripted API server on 127.0.0.1
# ------------------------------------------------------------------------------------------------

LEASES = "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
KURED_PATH = "/apis/apps/v1/namespaces/ns/daemonsets/kured"
SERVER_DATE = "Mon, 30 Nov 2026 02:00:00 GMT"  # == NOW


class LeaseStore:
    """The Lease ``lock`` in ``ns`` with resourceVersion checks, as the API server keeps it; kured's
    DaemonSet answers ``kured`` (status, body); ``fail`` scripts answers by (method, nth call)."""

    def __init__(self, lease=None, kured=None):
        self.lease = lease
        self.kured = kured or not_found("daemonsets.apps", "kured")
        self.version = 1
        self.fail = {}
        self.counts = {}

    def __call__(self, request):
        method, path, body = request["method"], request["path"], request["body"]
        self.counts[method] = self.counts.get(method, 0) + 1
        if (method, self.counts[method]) in self.fail:
            return self.fail[(method, self.counts[method])]
        if path == KURED_PATH:
            return self.kured
        if method == "POST" and path == LEASES:
            if self.lease is not None:
                return 409, status_body(409, "AlreadyExists", 'leases.coordination.k8s.io "lock" already exists')
            return 201, self._store(body)
        if path != LEASES + "/lock":
            return not_found("leases.coordination.k8s.io", path.rsplit("/", 1)[-1])
        if self.lease is None:
            return not_found("leases.coordination.k8s.io", "lock")
        if method == "GET":
            return 200, self.lease
        if method == "PUT":
            if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
                return 409, status_body(409, "Conflict", "the object has been modified")
            return 200, self._store(body)
        return 405, status_body(405, "MethodNotAllowed", "not allowed")

    def _store(self, body):
        self.version += 1
        self.lease = json.loads(json.dumps(body))
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return self.lease


def client_for(server):
    return module.LockClient(server.raw(), "lock", "ns", timeout=30)


def test_lock_client_reads_the_lease_and_the_servers_clock(k8s_server):
    stored = lease("alpha")
    server = k8s_server(LeaseStore(stored), date=SERVER_DATE)
    read, now = client_for(server).read()
    assert read == stored and now == NOW
    assert server.calls() == [("GET", LEASES + "/lock")]
    assert server.requests[0]["headers"]["accept"] == "application/json"


def test_lock_client_a_missing_lease_is_none_with_the_servers_clock_from_the_404(k8s_server):
    server = k8s_server(LeaseStore(), date=SERVER_DATE)
    assert client_for(server).read() == (None, NOW)


def test_lock_client_sends_micro_time_exactly_as_formatted(k8s_server):
    store = LeaseStore()
    server = k8s_server(store, date=SERVER_DATE)
    body = _lease.acquire_body(None, _lease.CREATE, "beta", 60, NOW, "lock", "ns")
    assert body["spec"]["renewTime"] == "2026-11-30T02:00:00.000000Z"  # a whole second keeps its six digits
    created = client_for(server).create(body)
    assert server.calls() == [("POST", LEASES)] and server.requests[0]["body"] == body
    assert created["metadata"]["resourceVersion"] == "2"
    replaced = client_for(server).replace(_lease.release_body(created, NOW))
    assert server.calls()[1] == ("PUT", LEASES + "/lock")
    assert server.requests[1]["body"]["spec"]["renewTime"] == "2026-11-30T02:00:00.000000Z"
    assert "holderIdentity" not in replaced["spec"]


def test_lock_client_retries_transient_errors_and_raises_conflicts(k8s_server):
    store = LeaseStore(lease("alpha"))
    store.fail[("GET", 1)] = (503, status_body(503, "ServiceUnavailable", "etcd is busy"))
    store.fail[("PUT", 1)] = (409, status_body(409, "Conflict", "the object has been modified"))
    server = k8s_server(store, date=SERVER_DATE)
    lock_client = client_for(server)
    current, _now = lock_client.read()
    assert current["spec"]["holderIdentity"] == "alpha" and len(server.requests) == 2
    with pytest.raises(module.ApiException) as conflict:
        lock_client.replace(current)
    assert conflict.value.status == 409 and len(server.requests) == 3
    assert module.describe_api_error(conflict.value, lock_client.ref).startswith(
        "lease ns/lock: conflict (409): the object has been modified; someone else changed it")


def test_lock_client_kured_missing_held_and_forbidden(k8s_server):
    server = k8s_server(LeaseStore(), date=SERVER_DATE)
    assert client_for(server).read_kured("kured", "ns", NOW)["daemonset"] is None
    held = {"metadata": {"name": "kured", "annotations": {_lease.KURED_LOCK_ANNOTATION: json.dumps(
        {"nodeID": "worker-2", "created": "2026-11-30T01:59:00Z", "TTL": 0})}}}
    server = k8s_server(LeaseStore(kured=(200, held)), date=SERVER_DATE)
    kured = client_for(server).read_kured("kured", "ns", NOW)
    assert kured["held"] is True and kured["holders"] == ["worker-2"] and kured["daemonset"] == "ns/kured"
    forbidden = status_body(403, "Forbidden", 'daemonsets.apps "kured" is forbidden: User "ops" cannot get '
                                              'resource "daemonsets" in API group "apps" in the namespace "ns"')
    server = k8s_server(LeaseStore(kured=(403, forbidden)), date=SERVER_DATE)
    with pytest.raises(module.K8sAccessError) as refused:
        client_for(server).read_kured("kured", "ns", NOW)
    assert refused.value.status == 403
    assert refused.value.message.startswith('daemonset ns/kured: forbidden (403): daemonsets.apps "kured" is forbidden')
    assert refused.value.message.endswith("; or set kured_check=false if kured is not used in this cluster")


def test_module_acquires_renews_and_releases_without_generated_classes(k8s_server, tmp_path):
    store = LeaseStore()
    server = k8s_server(store, date=SERVER_DATE)
    args = dict(server.params, name="lock", namespace="ns", kured_namespace="ns", holder="beta",
                duration_seconds=60)
    first, imported = run_module("k8s_maintenance_lock", args, tmp_path)
    assert not first.get("failed"), first
    assert first["changed"] is True and first["outcome"] == "created" and first["acquired"] is True
    assert first["lease"]["holder_identity"] == "beta" and first["lease"]["expires_in_seconds"] == 60
    assert first["lease"]["renew_time"] == "2026-11-30T02:00:00.000000Z"  # the server's clock, from Date
    assert store.lease["spec"]["holderIdentity"] == "beta"
    assert generated_classes(imported) == []
    assert server.calls() == [("GET", LEASES + "/lock"), ("GET", KURED_PATH), ("POST", LEASES)]
    assert all(r["headers"]["user-agent"] == "kubeops.node_maintenance/k8s_maintenance_lock" for r in server.requests)

    renewed, _imported = run_module("k8s_maintenance_lock", args, tmp_path)
    assert renewed["outcome"] == "renewed" and renewed["lease"]["resource_version"] == "3"
    other, _imported = run_module("k8s_maintenance_lock", dict(args, holder="gamma"), tmp_path)
    assert other["failed"] is True and other["busy_reason"] == "lease" and other["previous_holder"] == "beta"
    released, _imported = run_module("k8s_maintenance_lock", dict(args, state="absent"), tmp_path)
    assert released["outcome"] == "released" and store.lease["spec"].get("holderIdentity") is None


@pytest.mark.parametrize("renewed", ["2026-11-30T01:58:00.000000Z", "2026-11-30T01:58:00Z",
                                     "2026-11-30T01:58:00+00:00", "2026-11-30T01:58:00.000000+00:00",
                                     "2026-11-30T02:58:00+01:00"])
def test_module_breaks_an_expired_claim_whatever_form_its_renew_time_has(k8s_server, tmp_path, renewed):
    """The API server writes MicroTime as ``...Z``; what an older client wrote with isoformat()
    (``+00:00``), or another tool with an offset, is the same instant and expires the same way."""
    stale = lease("dead", duration=60)
    stale["spec"]["renewTime"] = stale["spec"]["acquireTime"] = renewed
    store = LeaseStore(stale)
    server = k8s_server(store, date=SERVER_DATE)
    args = dict(server.params, name="lock", namespace="ns", kured_check=False, holder="beta")
    result, _imported = run_module("k8s_maintenance_lock", args, tmp_path)
    assert result["outcome"] == "broke" and result["previous_holder"] == "dead", result
    assert warning_texts(result) == ["took over lease ns/lock from 'dead' (renewed 2026-11-30T01:58:00Z, expired "
                                     "2026-11-30T01:59:00Z, 60s ago), whose claim had expired"]
    # one second less old: still held by its holder
    stale["spec"]["renewTime"] = stale["spec"]["acquireTime"] = renewed.replace(":58:00", ":59:01")
    store = LeaseStore(stale)
    server = k8s_server(store, date=SERVER_DATE)
    busy, _imported = run_module("k8s_maintenance_lock", dict(args, **server.params), tmp_path)
    assert busy["failed"] is True and busy["busy_reason"] == "lease"
    assert "expires 2026-11-30T02:00:01Z, in 1s" in busy["msg"], busy["msg"]


def test_module_translates_api_errors(k8s_server, tmp_path):
    store = LeaseStore()
    forbidden = ('leases.coordination.k8s.io "lock" is forbidden: User "ops" cannot get resource "leases" in API '
                 'group "coordination.k8s.io" in the namespace "ns"')
    store.fail[("GET", 1)] = (403, status_body(403, "Forbidden", forbidden))
    server = k8s_server(store, date=SERVER_DATE)
    result, _imported = run_module("k8s_maintenance_lock", dict(server.params, name="lock", namespace="ns",
                                                                holder="beta"), tmp_path)
    assert result["failed"] is True and result["status"] == 403
    assert result["msg"].startswith('lease ns/lock: forbidden (403): leases.coordination.k8s.io "lock" is forbidden')
    assert result["msg"].endswith("`kubectl auth can-i get leases.coordination.k8s.io`")
