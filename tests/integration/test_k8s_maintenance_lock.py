"""k8s_maintenance_lock against the real local control plane.

Every test uses a Lease of its own name in its own namespace, and points the kured check at that
namespace too, so tests of other engineers on the shared cluster cannot interfere.
"""
import datetime
import json
import threading
import time
import uuid

import pytest
from kubernetes import client

pytestmark = pytest.mark.integration

MODULE = "k8s_maintenance_lock"
KURED = "weave.works/kured-node-lock"


@pytest.fixture
def lock(namespace):
    """Base arguments: a unique Lease in the test namespace, kured looked for there too."""
    name = "lock-%s" % uuid.uuid4().hex[:6]

    def _args(**extra):
        args = {"name": name, "namespace": namespace, "kured_namespace": namespace}
        args.update(extra)
        return args

    _args.name = name
    _args.namespace = namespace
    return _args


def read_lease(cluster, args):
    try:
        return cluster.api_client.sanitize_for_serialization(
            cluster.coordination.read_namespaced_lease(args.name, args.namespace))
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def micro(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def put_lease(cluster, args, holder, renew, duration):
    """Create the Lease directly, as another tool (or a dead rollout) would have left it."""
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": args.name, "namespace": args.namespace},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                     "acquireTime": micro(renew), "renewTime": micro(renew), "leaseTransitions": 5}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))


def assert_ok(result):
    assert not result["failed"], result.get("msg")


def test_acquire_check_mode_renew_release(cluster, run_module, lock):
    args = lock(holder="rollout-1", duration_seconds=120)

    check = run_module(MODULE, args, check=True)
    assert_ok(check)
    assert check["changed"] is True and check["outcome"] == "created" and check["acquired"] is True
    assert read_lease(cluster, lock) is None, "check mode must not create the Lease"

    first = run_module(MODULE, args)
    assert_ok(first)
    assert first["changed"] is True and first["outcome"] == "created"
    assert first["holder"] == "rollout-1" and first["previous_holder"] is None
    stored = read_lease(cluster, lock)
    assert stored["spec"]["holderIdentity"] == "rollout-1"
    assert stored["spec"]["leaseDurationSeconds"] == 120
    assert stored["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubeops.node_maintenance"
    assert first["lease"]["expires_in_seconds"] in (119, 120)
    assert first["lease"]["resource_version"] == stored["metadata"]["resourceVersion"]
    assert first["kured"]["held"] is False and first["kured"]["daemonset"] is None

    time.sleep(1.1)  # the API server's clock (Date header) has one-second resolution
    check_again = run_module(MODULE, args, check=True)
    assert_ok(check_again)
    assert check_again["outcome"] == "renewed"
    assert read_lease(cluster, lock)["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]

    renew = run_module(MODULE, dict(args, duration_seconds=300))
    assert_ok(renew)
    assert renew["changed"] is True and renew["renewed"] is True and renew["acquired"] is False
    assert renew["previous_holder"] == "rollout-1"
    after = read_lease(cluster, lock)
    assert after["spec"]["acquireTime"] == stored["spec"]["acquireTime"]
    assert after["spec"]["renewTime"] > stored["spec"]["renewTime"]
    assert after["spec"]["leaseDurationSeconds"] == 300
    assert after["spec"]["leaseTransitions"] == 0

    release_check = run_module(MODULE, dict(args, state="absent"), check=True)
    assert_ok(release_check)
    assert release_check["changed"] is True and release_check["outcome"] == "released"
    assert read_lease(cluster, lock)["spec"]["holderIdentity"] == "rollout-1"

    release = run_module(MODULE, dict(args, state="absent"))
    assert_ok(release)
    assert release["changed"] is True and release["released"] is True
    assert release["lease"]["holder_identity"] is None
    assert not read_lease(cluster, lock)["spec"].get("holderIdentity")

    again = run_module(MODULE, dict(args, state="absent"))
    assert_ok(again)
    assert again["changed"] is False and again["outcome"] == "none"

    # a released Lease is taken again, counting the change of holder
    second = run_module(MODULE, lock(holder="rollout-2"))
    assert_ok(second)
    assert second["outcome"] == "acquired" and second["lease"]["lease_transitions"] == 1


def test_release_of_a_missing_lease_is_no_change(run_module, lock):
    result = run_module(MODULE, lock(holder="x", state="absent"))
    assert_ok(result)
    assert result["changed"] is False and result["lease"] is None


def test_second_holder_is_refused_with_the_holder_named(cluster, run_module, lock):
    assert_ok(run_module(MODULE, lock(holder="rollout-first", duration_seconds=600)))
    refused = run_module(MODULE, lock(holder="rollout-second"))
    assert refused["failed"] is True
    assert "'rollout-first'" in refused["msg"]
    assert "expires" in refused["msg"] and "wait_timeout" in refused["msg"]
    assert refused["busy_reason"] == "lease"
    assert refused["busy_holder"] == "rollout-first"
    assert refused["busy_until"] is not None and refused["busy_until"] == refused["lease"]["expires_at"]
    assert refused["object"] == "lease %s/%s" % (lock.namespace, lock.name) and refused["holder"] == "rollout-second"
    assert refused["previous_holder"] == "rollout-first"
    assert refused["lease"]["holder_identity"] == "rollout-first"
    assert read_lease(cluster, lock)["spec"]["holderIdentity"] == "rollout-first"


def test_release_by_someone_else_is_refused_unless_forced(cluster, run_module, lock):
    assert_ok(run_module(MODULE, lock(holder="owner")))
    refused = run_module(MODULE, lock(holder="intruder", state="absent"))
    assert refused["failed"] is True
    assert "'owner'" in refused["msg"] and "force=true" in refused["msg"]
    assert read_lease(cluster, lock)["spec"]["holderIdentity"] == "owner"

    forced = run_module(MODULE, lock(holder="intruder", state="absent", force=True))
    assert_ok(forced)
    assert forced["outcome"] == "force_released" and forced["previous_holder"] == "owner"
    assert any("force=true" in w for w in forced.get("warnings", []))
    assert not read_lease(cluster, lock)["spec"].get("holderIdentity")


def test_wait_timeout_gets_the_lock_after_release(cluster, run_module, lock):
    assert_ok(run_module(MODULE, lock(holder="slow-rollout")))
    released = {}

    def release_later():
        time.sleep(10)  # past the waiter's start-up, however loaded the machine
        released["result"] = run_module(MODULE, lock(holder="slow-rollout", state="absent"))

    thread = threading.Thread(target=release_later)
    thread.start()
    waiting = run_module(MODULE, lock(holder="patient-rollout", wait_timeout=90, poll_interval=1))
    thread.join()
    assert_ok(released["result"])
    assert_ok(waiting)
    assert waiting["acquired"] is True and waiting["outcome"] == "acquired"
    # How long it waited depends on how late its own start was (ansible's start-up on a loaded
    # machine takes seconds); that it waited, and for whom, does not.
    assert 0 < waiting["waited_seconds"] < 90
    assert [(w["reason"], w["holder"]) for w in waiting["waited_for"]] == [("lease", "slow-rollout")], waiting["waited_for"]
    assert read_lease(cluster, lock)["spec"]["holderIdentity"] == "patient-rollout"


def test_wait_timeout_runs_out(run_module, lock):
    assert_ok(run_module(MODULE, lock(holder="keeper")))
    result = run_module(MODULE, lock(holder="waiter", wait_timeout=3, poll_interval=1))
    assert result["failed"] is True
    assert "'keeper'" in result["msg"] and "waited" in result["msg"]
    # gives up once wait_timeout is spent (plus the last look, slow on a loaded machine)
    assert 3 <= result["waited_seconds"] < 20


def test_expired_lock_is_broken_and_taken_over(cluster, run_module, lock):
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    put_lease(cluster, lock, "dead-rollout", long_ago, 60)

    kept = run_module(MODULE, lock(holder="new-rollout", break_expired=False))
    assert kept["failed"] is True
    assert "'dead-rollout'" in kept["msg"] and "expired" in kept["msg"]
    assert "break_expired=true" in kept["msg"]

    check = run_module(MODULE, lock(holder="new-rollout"), check=True)
    assert_ok(check)
    assert check["outcome"] == "broke"
    assert read_lease(cluster, lock)["spec"]["holderIdentity"] == "dead-rollout"

    taken = run_module(MODULE, lock(holder="new-rollout"))
    assert_ok(taken)
    assert taken["outcome"] == "broke" and taken["acquired"] is True
    assert taken["previous_holder"] == "dead-rollout"
    assert any("expired" in w for w in taken.get("warnings", []))
    stored = read_lease(cluster, lock)
    assert stored["spec"]["holderIdentity"] == "new-rollout"
    assert stored["spec"]["leaseTransitions"] == 6


def test_live_lock_of_another_tool_is_not_broken(cluster, run_module, lock):
    put_lease(cluster, lock, "other-tool", datetime.datetime.now(datetime.timezone.utc), 3600)
    result = run_module(MODULE, lock(holder="rollout"))
    assert result["failed"] is True and "'other-tool'" in result["msg"]


def kured_daemonset(cluster, namespace, value, name="kured"):
    """A DaemonSet named like kured's, annotated as kured annotates it; it selects no node."""
    annotations = {KURED: value} if value is not None else {}
    body = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "nodeSelector": {"kubeops.test/no-such-node": "true"},
                "containers": [{"name": "kured", "image": "example.invalid/kured:1"}]}},
        },
    }
    cluster.apps.create_namespaced_daemon_set(namespace, body)


def test_kured_lock_refuses(cluster, run_module, lock):
    now = datetime.datetime.now(datetime.timezone.utc)
    held = json.dumps({"nodeID": "worker-7", "metadata": {"unschedulable": False},
                       "created": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "TTL": 0})
    kured_daemonset(cluster, lock.namespace, held)

    refused = run_module(MODULE, lock(holder="rollout"))
    assert refused["failed"] is True
    assert refused["busy_reason"] == "kured"
    assert refused["busy_holder"] == "worker-7" and refused["busy_until"] is None  # TTL 0: until kured releases it
    assert "kured holds its reboot lock" in refused["msg"] and "'worker-7'" in refused["msg"]
    assert refused["kured"]["holders"] == ["worker-7"]
    assert read_lease(cluster, lock) is None

    assert_ok(run_module(MODULE, lock(holder="rollout", kured_check=False)))

    # kured took its lock while we hold ours: renewing warns instead of failing
    renew = run_module(MODULE, lock(holder="rollout"))
    assert_ok(renew)
    assert renew["renewed"] is True
    assert any("kured holds" in w for w in renew.get("warnings", []))


def test_kured_lock_expired_or_released_passes(cluster, run_module, lock):
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    expired = json.dumps({"nodeID": "worker-7", "metadata": {"unschedulable": True},
                          "created": old.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "TTL": 3600 * 10 ** 9})
    kured_daemonset(cluster, lock.namespace, expired, name="kured-custom")
    result = run_module(MODULE, lock(holder="rollout", kured_daemonset="kured-custom"))
    assert_ok(result)
    assert result["kured"]["daemonset"] == "%s/kured-custom" % lock.namespace
    assert result["kured"]["held"] is False and result["kured"]["locks"][0]["expired"] is True


def resource_version(cluster, args):
    stored = read_lease(cluster, args)
    return stored and stored["metadata"]["resourceVersion"]


def assert_query(result, available, outcome, busy=(None, None, None)):
    assert_ok(result)
    assert result["changed"] is False and result["available"] is available and result["outcome"] == outcome
    assert (result["busy_reason"], result["busy_holder"], result["busy_until"]) == busy
    assert result["acquired"] is False and result["renewed"] is False and result["released"] is False
    assert result["waited_seconds"] == 0 and result["waited_for"] == []


def test_query_of_a_missing_free_and_own_lease_writes_nothing(cluster, run_module, lock):
    missing = run_module(MODULE, lock(holder="rollout-1", state="query"))
    assert_query(missing, True, "created")
    assert missing["lease"] is None and missing["previous_holder"] is None and missing["holder"] == "rollout-1"
    assert read_lease(cluster, lock) is None, "query must not create the Lease"

    assert_ok(run_module(MODULE, lock(holder="rollout-1", duration_seconds=120)))
    own_version = resource_version(cluster, lock)
    time.sleep(1.1)  # a renewal would write a later renewTime
    own = run_module(MODULE, lock(holder="rollout-1", state="query"))
    assert_query(own, True, "renewed")
    assert own["previous_holder"] == "rollout-1" and own["lease"]["resource_version"] == own_version
    assert resource_version(cluster, lock) == own_version

    assert_ok(run_module(MODULE, lock(holder="rollout-1", state="absent")))
    free_version = resource_version(cluster, lock)
    for check in (False, True):
        free = run_module(MODULE, lock(holder="rollout-2", state="query"), check=check)
        assert_query(free, True, "acquired")
        assert free["previous_holder"] is None and free["lease"]["holder_identity"] is None
        assert free["kured"]["held"] is False
    assert resource_version(cluster, lock) == free_version
    assert not read_lease(cluster, lock)["spec"].get("holderIdentity")


def test_query_of_a_lease_held_by_another_holder_says_who_and_until_when(cluster, run_module, lock):
    renewed = time.monotonic()
    put_lease(cluster, lock, "other-tool", datetime.datetime.now(datetime.timezone.utc), 3600)
    before = read_lease(cluster, lock)
    started = time.monotonic()
    busy = run_module(MODULE, lock(holder="rollout", state="query", wait_timeout=60))
    assert time.monotonic() - started < 60, "a query does not wait"
    assert_query(busy, False, "busy", ("lease", "other-tool", busy["lease"]["expires_at"]))
    # renewTime has microseconds; the module's reading came between the write and now
    elapsed = time.monotonic() - renewed
    assert busy["busy_until"] is not None and 3600 - elapsed - 1 <= busy["lease"]["expires_in_seconds"] <= 3600
    assert busy["previous_holder"] == "other-tool"
    assert read_lease(cluster, lock) == before

    # what present reports when it cannot take the lock is the same data
    refused = run_module(MODULE, lock(holder="rollout"))
    assert refused["failed"] is True
    assert (refused["busy_reason"], refused["busy_holder"], refused["busy_until"]) == (
        busy["busy_reason"], busy["busy_holder"], busy["busy_until"])
    assert read_lease(cluster, lock) == before


def test_query_of_an_expired_lease(cluster, run_module, lock):
    long_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    put_lease(cluster, lock, "dead-rollout", long_ago, 60)
    version = resource_version(cluster, lock)
    expired_at = (long_ago + datetime.timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")

    breakable = run_module(MODULE, lock(holder="new-rollout", state="query"))
    assert_query(breakable, True, "broke")
    assert breakable["previous_holder"] == "dead-rollout" and breakable["lease"]["expires_at"] == expired_at
    assert breakable["lease"]["expires_in_seconds"] < -3500

    kept = run_module(MODULE, lock(holder="new-rollout", state="query", break_expired=False))
    assert_query(kept, False, "busy", ("lease", "dead-rollout", expired_at))

    assert resource_version(cluster, lock) == version
    assert read_lease(cluster, lock)["spec"]["holderIdentity"] == "dead-rollout"


def test_query_sees_kureds_lock(cluster, run_module, lock):
    now = datetime.datetime.now(datetime.timezone.utc)
    held = json.dumps({"nodeID": "worker-7", "metadata": {"unschedulable": False},
                       "created": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "TTL": 600 * 10 ** 9})
    kured_daemonset(cluster, lock.namespace, held)
    until = (now + datetime.timedelta(seconds=600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    busy = run_module(MODULE, lock(holder="rollout", state="query"))
    assert_query(busy, False, "busy", ("kured", "worker-7", until))
    assert busy["kured"]["holders"] == ["worker-7"] and busy["lease"] is None
    assert read_lease(cluster, lock) is None

    unchecked = run_module(MODULE, lock(holder="rollout", state="query", kured_check=False))
    assert_query(unchecked, True, "created")
    assert "kured" not in unchecked


def test_concurrent_acquirers_exactly_one_wins(cluster, run_module, lock):
    """Four ansible processes race for the same Lease: first to create it, then (after a release)
    to take the existing free Lease. Each round has exactly one winner; the others name it."""
    for round_number in range(2):
        holders = ["racer-%d-%d" % (round_number, i) for i in range(4)]
        results = {}
        barrier = threading.Barrier(len(holders))

        def race(holder):
            barrier.wait()
            results[holder] = run_module(MODULE, lock(holder=holder))

        threads = [threading.Thread(target=race, args=(h,)) for h in holders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        winners = [h for h, r in results.items() if not r["failed"]]
        assert len(winners) == 1, {h: r.get("msg") for h, r in results.items()}
        winner = winners[0]
        assert results[winner]["outcome"] == ("created" if round_number == 0 else "acquired")
        for holder, result in results.items():
            if holder != winner:
                assert repr(winner) in result["msg"], result["msg"]
        assert read_lease(cluster, lock)["spec"]["holderIdentity"] == winner
        assert_ok(run_module(MODULE, lock(holder=winner, state="absent")))


def test_default_holder_and_bad_arguments(run_module, lock):
    result = run_module(MODULE, lock())
    assert_ok(result)
    assert "@" in result["holder"] and "/ansible-" in result["holder"]
    assert any("holder not given" in w for w in result.get("warnings", []))

    bad = run_module(MODULE, lock(holder="x", duration_seconds=0))
    assert bad["failed"] is True and "duration_seconds" in bad["msg"]


def test_missing_namespace_is_explained(run_module):
    result = run_module(MODULE, {"name": "lock", "namespace": "no-such-ns-%s" % uuid.uuid4().hex[:6],
                                 "holder": "x", "kured_check": False})
    assert result["failed"] is True
    assert "lease no-such-ns-" in result["msg"]
