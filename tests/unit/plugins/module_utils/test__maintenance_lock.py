"""_maintenance_lock: LockTask with a fake Lease client and clock (a task that waited for the lock says,
once it has it, whom it waited for, since a module prints nothing while it runs; state=query reads and
never writes or fails because the lock is busy), and LockClient and run_lock against a scripted API
server on 127.0.0.1 (fake_k8s_server). Whole module runs: tests/unit/plugins/modules/test_k8s_maintenance_lock.py;
the real API server: tests/integration/test_k8s_maintenance_lock.py and test_faults_rollout.py."""
from __future__ import annotations

import datetime
import json
import time

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _lease
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _maintenance_lock as lock_utils
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    K8sAccessError,
    describe_api_error,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from tests.unit.fake_k8s_server import not_found, status_body

NOW = datetime.datetime(2026, 11, 30, 2, 0, 0, tzinfo=_lease.UTC)
BUSY_FIELDS = ("busy_reason", "busy_holder", "busy_until")


def lease(holder, renewed=NOW, duration=600):
    spec = {"leaseDurationSeconds": duration, "leaseTransitions": 1}
    if holder:
        spec.update(holderIdentity=holder, acquireTime=_lease.format_micro_time(renewed),
                    renewTime=_lease.format_micro_time(renewed))
    return {"metadata": {"name": "lock", "namespace": "ns", "resourceVersion": "1"}, "spec": spec}


def kured_lock(*entries):
    """What LockClient.read_kured returns for kured's DaemonSet with these lock entries."""
    value = json.dumps({"maxOwners": len(entries), "locks": list(entries)})
    return dict(_lease.parse_kured_lock({_lease.KURED_LOCK_ANNOTATION: value}, NOW), daemonset="ns/kured")


def kured_entry(node, created="2026-11-30T01:59:00Z", ttl_seconds=0):
    return {"nodeID": node, "created": created, "TTL": ttl_seconds * 10 ** 9}


class FakeClient:
    """Answers each read with the next Lease of ``leases`` (the last one again when they run out),
    and kured's DaemonSet with ``kured``."""

    ref = "lease ns/lock"

    def __init__(self, leases, kured=None):
        self.leases = list(leases)
        self.kured = kured if kured is not None else dict(_lease.parse_kured_lock({}, NOW), daemonset=None)
        self.reads = 0
        self.kured_reads = 0
        self.written = []

    def read(self):
        self.reads += 1
        current = self.leases[min(self.reads, len(self.leases)) - 1]
        return current, NOW

    def read_kured(self, name, namespace, now):
        assert (name, namespace, now) == ("kured", "ns", NOW)
        self.kured_reads += 1
        return self.kured

    def replace(self, body):
        self.written.append(body)
        return body

    create = replace


PARAMS = {"name": "lock", "namespace": "ns", "state": "present", "duration_seconds": 60, "wait_timeout": 600,
          "poll_interval": 5, "break_expired": True, "force": False, "kured_check": False,
          "kured_daemonset": "kured", "kured_namespace": "ns", "timeout": 60}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def task(leases, kured=None, check_mode=False, **params):
    clock = Clock()
    client = FakeClient(leases, kured)
    return lock_utils.LockTask(dict(PARAMS, **params), client, "beta", check_mode,
                               sleep=clock.sleep, clock=clock), client


class ConflictingClient(FakeClient):
    """Refuses the first ``conflicts`` writes with 409, as the API server does when the Lease changed."""

    def __init__(self, leases, conflicts):
        super().__init__(leases)
        self.conflicts = conflicts

    def replace(self, body):
        if self.conflicts:
            self.conflicts -= 1
            raise ApiException(status=409, reason="Conflict")
        return super().replace(body)

    create = replace


def test_a_conflicting_write_is_decided_again_on_a_fresh_read():
    clock = Clock()
    client = ConflictingClient([lease(None)], conflicts=2)
    result = lock_utils.LockTask(dict(PARAMS), client, "beta", sleep=clock.sleep, clock=clock).acquire()
    assert result["acquired"] is True and client.reads == 3 and len(client.written) == 1
    assert 0 < clock.now < 1  # short pauses between the tries, not poll_interval


def test_a_lease_that_keeps_changing_fails_at_the_deadline_with_nothing_written():
    clock = Clock()
    client = ConflictingClient([lease("alpha", renewed=NOW)], conflicts=10 ** 6)
    with pytest.raises(K8sAccessError) as failed:
        lock_utils.LockTask(dict(PARAMS, state="absent", force=True, wait_timeout=0, timeout=5), client, "beta",
                            sleep=clock.sleep, clock=clock).release()
    assert failed.value.status == 409 and clock.now >= 5 and client.written == []
    assert failed.value.message.startswith("lease ns/lock: the Lease kept changing while the lock was written (")


def failure_of(call):
    """The failure result fields (with ``msg``) of ``call()``, which must raise ``ModuleFailure``."""
    with pytest.raises(ModuleFailure) as failed:
        call()
    return dict(failed.value.fields, msg=failed.value.msg)


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
    result = failure_of(lock_task.acquire)
    assert result["waited_for"] == [{"reason": "lease", "holder": "alpha"}] and "'alpha'" in result["msg"]


# ------------------------------------------------------------------------------------------------
# Who keeps the lock busy, as data: in the failure of state=present and in state=query
# ------------------------------------------------------------------------------------------------

def test_a_busy_failure_says_who_holds_the_lease_and_until_when():
    lock_task, client = task([lease("alpha")], wait_timeout=0)
    result = failure_of(lock_task.acquire)
    assert result["msg"].startswith("cannot take the maintenance lock: lease ns/lock is held by 'alpha'")
    assert {key: result[key] for key in BUSY_FIELDS} == {
        "busy_reason": "lease", "busy_holder": "alpha", "busy_until": "2026-11-30T02:10:00Z"}
    assert result["busy_until"] == result["lease"]["expires_at"]
    assert result["holder"] == "beta" and result["previous_holder"] == "alpha" and client.written == []


def test_a_busy_failure_because_of_kured_names_its_nodes_and_their_ttl():
    kured = kured_lock(kured_entry("worker-2", ttl_seconds=1800), kured_entry("worker-5", ttl_seconds=600))
    lock_task, client = task([lease(None)], kured=kured, wait_timeout=0, kured_check=True)
    result = failure_of(lock_task.acquire)
    assert result["busy_reason"] == "kured" and result["busy_holder"] == "worker-2, worker-5"
    assert result["busy_until"] == "2026-11-30T02:29:00Z"  # the later of the two
    assert result["kured"]["holders"] == ["worker-2", "worker-5"] and client.written == []


def test_busy_fields_of_kured_without_ttl_or_unreadable_and_of_a_lease_that_never_expires():
    forever = kured_lock(kured_entry("worker-2", ttl_seconds=1800), kured_entry("worker-5"))
    assert lock_utils.busy_fields("kured", None, forever) == {
        "busy_reason": "kured", "busy_holder": "worker-2, worker-5", "busy_until": None}
    unreadable = dict(_lease.parse_kured_lock({_lease.KURED_LOCK_ANNOTATION: "{not json"}, NOW), daemonset="ns/kured")
    assert unreadable["held"] is True
    assert lock_utils.busy_fields("kured", None, unreadable) == {
        "busy_reason": "kured", "busy_holder": None, "busy_until": None}
    endless = lease("alpha", duration=0)
    assert lock_utils.busy_fields("lease", endless, None) == {
        "busy_reason": "lease", "busy_holder": "alpha", "busy_until": None}
    assert lock_utils.busy_fields(None, lease("alpha"), forever) == dict.fromkeys(BUSY_FIELDS)


def test_query_of_a_busy_lease_neither_fails_waits_nor_writes():
    lock_task, client = task([lease("alpha"), lease(None)], wait_timeout=600)
    result = lock_task.query()
    assert result["available"] is False and result["outcome"] == "busy" and result["changed"] is False
    assert {key: result[key] for key in BUSY_FIELDS} == {
        "busy_reason": "lease", "busy_holder": "alpha", "busy_until": "2026-11-30T02:10:00Z"}
    assert result["previous_holder"] == "alpha" and result["lease"]["holder_identity"] == "alpha"
    assert result["acquired"] is False and result["renewed"] is False and result["released"] is False
    assert result["waited_seconds"] == 0 and result["waited_for"] == [] and lock_task.warnings == []
    assert client.reads == 1 and client.written == [] and "kured" not in result


@pytest.mark.parametrize("current, outcome", [
    (None, "created"),
    (lease(None), "acquired"),
    (lease("beta"), "renewed"),
    (lease("dead", renewed=NOW - datetime.timedelta(hours=1), duration=60), "broke"),
])
def test_query_of_a_lock_the_holder_could_take_says_what_present_would_do(current, outcome):
    lock_task, client = task([current], check_mode=False)
    result = lock_task.query()
    assert result["available"] is True and result["outcome"] == outcome and result["changed"] is False
    assert {key: result[key] for key in BUSY_FIELDS} == dict.fromkeys(BUSY_FIELDS)
    assert result["acquired"] is False and result["renewed"] is False
    assert result["previous_holder"] == _lease.lease_holder(current)
    assert result["lease"] == _lease.lease_summary(current, NOW)  # as read, not as present would write it
    assert client.written == [] and lock_task.warnings == []


def test_query_of_an_expired_lease_without_break_expired_is_busy_until_the_past():
    dead = lease("dead", renewed=NOW - datetime.timedelta(hours=1), duration=60)
    lock_task, client = task([dead], break_expired=False)
    result = lock_task.query()
    assert result["available"] is False and result["busy_reason"] == "lease" and result["busy_holder"] == "dead"
    assert result["busy_until"] == "2026-11-30T01:01:00Z" and result["lease"]["expires_in_seconds"] == -3540
    assert client.written == []


def test_query_reads_kured_when_asked_and_a_renewal_is_not_kept_from_its_holder():
    held = kured_lock(kured_entry("worker-7"))
    lock_task, client = task([lease(None)], kured=held, kured_check=True)
    result = lock_task.query()
    assert result["available"] is False and result["outcome"] == "busy"
    assert result["busy_reason"] == "kured" and result["busy_holder"] == "worker-7" and result["busy_until"] is None
    assert result["previous_holder"] is None and result["kured"]["holders"] == ["worker-7"]
    assert client.kured_reads == 1 and client.written == []
    # the holder itself may renew while kured holds its lock (state=present warns then): available
    lock_task, client = task([lease("beta")], kured=held, kured_check=True)
    result = lock_task.query()
    assert result["available"] is True and result["outcome"] == "renewed" and result["busy_reason"] is None
    assert lock_task.warnings == [] and client.written == []
    # without kured_check kured's DaemonSet is not read
    lock_task, client = task([lease(None)], kured=held)
    assert lock_task.query()["available"] is True and client.kured_reads == 0


def test_renew_renews_only_a_lock_its_holder_holds_and_never_takes_one():
    # held by the holder (an old claim): renewed, acquireTime kept, renewTime now
    earlier = NOW - datetime.timedelta(minutes=5)
    lock_task, client = task([lease("beta", renewed=earlier)])
    result = lock_task.renew()
    assert result["renewed"] is True and result["acquired"] is False and result["changed"] is True
    (written,) = client.written
    assert written["spec"]["holderIdentity"] == "beta" and written["spec"]["leaseDurationSeconds"] == 60
    assert written["spec"]["renewTime"] == _lease.format_micro_time(NOW)
    assert written["spec"]["acquireTime"] == _lease.format_micro_time(earlier)
    # free, missing, or another holder's (expired or not): nothing written, nothing waited for
    for leases in ([lease(None)], [None], [lease("alpha")], [lease("alpha", renewed=NOW - datetime.timedelta(days=1))]):
        lock_task, client = task(leases)
        result = lock_task.renew()
        assert result["renewed"] is False and result["changed"] is False and result["acquired"] is False, leases
        assert client.written == [] and client.reads == 1 and lock_task.waited() == 0
    # check mode: renewed as it would be, nothing written
    lock_task, client = task([lease("beta")], check_mode=True)
    assert lock_task.renew()["renewed"] is True and client.written == []


def test_renew_warns_when_kured_holds_its_lock_and_redoes_a_conflicting_write():
    lock_task, client = task([lease("beta")], kured=kured_lock(kured_entry("worker-7")), kured_check=True)
    assert lock_task.renew()["renewed"] is True and len(client.written) == 1
    (warning,) = lock_task.warnings
    assert warning.startswith("renewing the lock although ") and "worker-7" in warning

    class Conflicting(FakeClient):
        def replace(self, body):
            if not self.written:
                self.written.append(None)
                raise ApiException(status=409, reason="Conflict")
            return FakeClient.replace(self, body)

    clock = Clock()
    conflicting = Conflicting([lease("beta")])
    lock_task = lock_utils.LockTask(dict(PARAMS), conflicting, "beta", sleep=clock.sleep, clock=clock)
    assert lock_task.renew()["renewed"] is True and conflicting.reads == 2 and len(conflicting.written) == 2


# ------------------------------------------------------------------------------------------------
# Options and the default holder
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"duration_seconds": 0}, "duration_seconds must be at least 1, not 0"),
    ({"poll_interval": -1}, "poll_interval must be at least 1, not -1"),
    ({"duration_seconds": 2 ** 31}, "duration_seconds must fit in 32 bits (leaseDurationSeconds is an int32)"),
])
def test_bad_options_are_module_failures(changes, message):
    with pytest.raises(ModuleFailure) as failed:
        lock_utils.check_options(dict(PARAMS, **changes), "beta")
    assert failed.value.msg == message
    lock_utils.check_options(dict(PARAMS, duration_seconds=2 ** 31 - 1), "beta")  # the largest int32 passes


def test_an_empty_holder_is_refused_and_a_missing_one_defaulted_with_a_warning():
    with pytest.raises(ModuleFailure) as failed:
        lock_utils.check_options(PARAMS, "  ")
    assert failed.value.msg == "holder must not be empty"
    warnings = []
    assert lock_utils.holder_identity("rollout-1", warnings.append) == "rollout-1" and warnings == []
    holder = lock_utils.holder_identity(None, warnings.append)
    assert "@" in holder and "/ansible-" in holder
    (warning,) = warnings
    assert warning.startswith("holder not given; using %r, which a later run cannot renew or release" % holder)


def test_the_deadline_is_the_start_plus_wait_timeout_plus_timeout():
    assert lock_utils.lock_deadline(100.0, 600, 60) == 760.0
    assert lock_utils.lock_deadline(100.0, 0, 60) == 160.0
    assert lock_utils.lock_deadline(100.0, -5, 0) == 101.0  # no negative wait, at least 1 s of API work


# ------------------------------------------------------------------------------------------------
# LockClient and run_lock against a scripted API server on 127.0.0.1
# ------------------------------------------------------------------------------------------------

LEASES = "/apis/coordination.k8s.io/v1/namespaces/ns/leases"
KURED_PATH = "/apis/apps/v1/namespaces/ns/daemonsets/kured"
SERVER_DATE = "Mon, 30 Nov 2026 02:00:00 GMT"  # == NOW
UNAVAILABLE = (503, status_body(503, "ServiceUnavailable", "etcd is busy"))


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


def client_for(server, seconds=30):
    return lock_utils.LockClient(server.raw(), "lock", "ns", deadline=time.monotonic() + seconds)


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
    store.fail[("GET", 1)] = UNAVAILABLE
    store.fail[("PUT", 1)] = (409, status_body(409, "Conflict", "the object has been modified"))
    server = k8s_server(store, date=SERVER_DATE)
    lock_client = client_for(server)
    current, _now = lock_client.read()
    assert current["spec"]["holderIdentity"] == "alpha" and len(server.requests) == 2
    with pytest.raises(ApiException) as conflict:
        lock_client.replace(current)
    assert conflict.value.status == 409 and len(server.requests) == 3
    assert describe_api_error(conflict.value, lock_client.ref).startswith(
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
    with pytest.raises(K8sAccessError) as refused:
        client_for(server).read_kured("kured", "ns", NOW)
    assert refused.value.status == 403
    assert refused.value.message.startswith('daemonset ns/kured: forbidden (403): daemonsets.apps "kured" is forbidden')
    assert refused.value.message.endswith("; or set kured_check=false if kured is not used in this cluster")


def test_lock_client_requests_share_one_deadline(k8s_server):
    """Retries of a later request do not get a budget of their own: once the deadline is spent, a
    transient error fails after one attempt."""
    server = k8s_server(lambda request: UNAVAILABLE, date=SERVER_DATE)
    lock_client = client_for(server, seconds=1.5)
    with pytest.raises(K8sAccessError) as first:
        lock_client.read()
    assert len(server.requests) > 1 and "gave up at the timeout" in first.value.message
    before = len(server.requests)
    with pytest.raises(K8sAccessError) as second:
        lock_client.read_kured("kured", "ns", NOW)
    assert len(server.requests) == before + 1
    assert "daemonset ns/kured" in second.value.message and "after 1 attempt in" in second.value.message


def run_lock(server, warnings, started=None, **params):
    return lock_utils.run_lock(server.raw(), dict(PARAMS, **params), "beta", False, warnings.append,
                               time.monotonic() if started is None else started)


def test_run_lock_takes_queries_and_releases_and_hands_over_its_warnings(k8s_server):
    store = LeaseStore(lease("dead", renewed=NOW - datetime.timedelta(hours=1), duration=60))
    server = k8s_server(store, date=SERVER_DATE)
    warnings = []
    query = run_lock(server, warnings, state="query")
    assert query["outcome"] == "broke" and query["available"] is True and query["changed"] is False
    assert store.lease["spec"]["holderIdentity"] == "dead" and warnings == []
    assert server.calls() == [("GET", LEASES + "/lock")]
    taken = run_lock(server, warnings, state="present")
    assert taken["outcome"] == "broke" and taken["acquired"] is True and store.lease["spec"]["holderIdentity"] == "beta"
    (warning,) = warnings
    assert warning.startswith("took over lease ns/lock from 'dead'")
    released = run_lock(server, warnings, state="absent")
    assert released["outcome"] == "released" and "holderIdentity" not in store.lease["spec"]


def test_run_lock_counts_wait_timeout_and_timeout_from_the_modules_start(k8s_server):
    """A run whose start lies wait_timeout + timeout seconds back has no time left for retries;
    one whose start is recent retries."""
    server = k8s_server(lambda request: UNAVAILABLE, date=SERVER_DATE)
    with pytest.raises(K8sAccessError) as late:
        run_lock(server, [], started=time.monotonic() - 100, wait_timeout=60, timeout=40)
    assert len(server.requests) == 1 and "after 1 attempt in" in late.value.message
    with pytest.raises(K8sAccessError) as early:
        run_lock(server, [], started=time.monotonic() - 100, wait_timeout=60, timeout=41.5)
    assert len(server.requests) > 2 and "gave up at the timeout" in early.value.message
