"""Unit tests for _lease: time parsing, expiry math, acquire/release decisions, bodies, kured's lock."""
import datetime
import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _lease

UTC = datetime.timezone.utc
NOW = datetime.datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC)

aware_times = st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1),
                           timezones=st.just(UTC))


def lease(holder="rollout-a", renew=NOW, duration=60, acquire=None, transitions=3, rv="100", **extra_spec):
    spec = {"leaseTransitions": transitions}
    if holder is not None:
        spec["holderIdentity"] = holder
    if duration is not None:
        spec["leaseDurationSeconds"] = duration
    if renew is not None:
        spec["renewTime"] = _lease.format_micro_time(renew)
    if acquire is not None:
        spec["acquireTime"] = _lease.format_micro_time(acquire)
    spec.update(extra_spec)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "lock", "namespace": "kube-system", "resourceVersion": rv,
                         "annotations": {"someone": "else"}},
            "spec": spec}


# ------------------------------------------------------------------------------------------------
# time
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("2024-05-01T10:00:00Z", NOW),
    ("2024-05-01T10:00:00.000000Z", NOW),
    ("2024-05-01T10:00:00.123456789Z", NOW.replace(microsecond=123456)),  # Go's nanoseconds
    ("2024-05-01T10:00:00.5Z", NOW.replace(microsecond=500000)),
    ("2024-05-01T12:00:00+02:00", NOW),
    ("2024-05-01T07:30:00-02:30", NOW),
    ("2024-05-01t10:00:00z", NOW),
    # what the generated client's sanitize_for_serialization wrote (isoformat()): same instants
    ("2024-05-01T10:00:00+00:00", NOW),
    ("2024-05-01T10:00:00.123456+00:00", NOW.replace(microsecond=123456)),
    ("2024-05-01T10:00:00.123456Z", NOW.replace(microsecond=123456)),  # MicroTime as the API server writes it
])
def test_parse_time(text, expected):
    assert _lease.parse_time(text) == expected


@given(aware_times)
def test_api_server_and_isoformat_texts_of_one_instant_parse_alike(moment):
    api_server = moment.strftime("%Y-%m-%dT%H:%M:%S") + (".%06d" % moment.microsecond if moment.microsecond else "") + "Z"
    assert _lease.parse_time(api_server) == _lease.parse_time(moment.isoformat()) == moment
    assert _lease.parse_time(_lease.format_micro_time(moment)) == moment


@pytest.mark.parametrize("renew", ["2024-05-01T09:59:00.000000Z", "2024-05-01T09:59:00Z",
                                   "2024-05-01T09:59:00+00:00", "2024-05-01T11:59:00+02:00"])
def test_expiry_is_the_same_whatever_form_the_renew_time_has(renew):
    current = lease(renew=None)
    current["spec"]["renewTime"] = renew
    assert _lease.lease_expiry(current) == NOW
    assert _lease.lease_expired(current, NOW) and not _lease.lease_expired(current, NOW - datetime.timedelta(seconds=1))
    assert _lease.describe_holder(current, NOW) == "'rollout-a' (renewed 2024-05-01T09:59:00Z, expired " \
                                                   "2024-05-01T10:00:00Z, 0s ago)"


@pytest.mark.parametrize("text", [None, "", "yesterday", "2024-05-01", "2024-13-01T00:00:00Z",
                                  "2024-05-01T10:00:00", "2024-02-30T00:00:00Z"])
def test_parse_time_rejects(text):
    assert _lease.parse_time(text) is None


def test_parse_time_accepts_datetimes():
    assert _lease.parse_time(NOW.replace(tzinfo=None)) == NOW
    assert _lease.parse_time(NOW.astimezone(datetime.timezone(datetime.timedelta(hours=5)))) == NOW


@given(aware_times)
def test_micro_time_round_trips_with_six_digits(moment):
    text = _lease.format_micro_time(moment)
    # the API server parses MicroTime with exactly six fractional digits and a zone
    assert len(text.split(".")[1]) == 7 and text.endswith("Z")
    assert _lease.parse_time(text) == moment


def test_server_now_prefers_the_date_header():
    local = datetime.datetime(2030, 1, 1, tzinfo=UTC)
    assert _lease.server_now("Wed, 01 May 2024 10:00:00 GMT", local) == NOW
    assert _lease.server_now(None, local) == local
    assert _lease.server_now("garbage", local) == local


# ------------------------------------------------------------------------------------------------
# expiry
# ------------------------------------------------------------------------------------------------

@given(renew=aware_times, duration=st.integers(1, 10 ** 6), offset=st.integers(-10 ** 7, 10 ** 7))
def test_expiry_is_renew_plus_duration(renew, duration, offset):
    item = lease(renew=renew, duration=duration)
    now = renew + datetime.timedelta(seconds=offset)
    assert _lease.lease_expiry(item) == renew + datetime.timedelta(seconds=duration)
    assert _lease.lease_expired(item, now) is (offset >= duration)


@given(acquire=aware_times, duration=st.integers(1, 10 ** 6))
def test_expiry_falls_back_to_acquire_time(acquire, duration):
    item = lease(renew=None, acquire=acquire, duration=duration)
    assert _lease.lease_expiry(item) == acquire + datetime.timedelta(seconds=duration)


@pytest.mark.parametrize("item", [
    lease(renew=None),
    lease(duration=None),
    lease(duration=0),
    lease(duration=-5),
    lease(duration=True),
    lease(renewTime="not a time"),
])
def test_claims_that_cannot_be_timed_never_expire(item):
    assert _lease.lease_expiry(item) is None
    far_future = NOW + datetime.timedelta(days=10000)
    assert not _lease.lease_expired(item, far_future)
    assert _lease.decide_acquire(item, "other", far_future, break_expired=True)[0] == _lease.BUSY


# ------------------------------------------------------------------------------------------------
# decisions
# ------------------------------------------------------------------------------------------------

def test_decide_acquire_table():
    later = NOW + datetime.timedelta(seconds=61)
    assert _lease.decide_acquire(None, "me", NOW, True) == (_lease.CREATE, None)
    assert _lease.decide_acquire(lease(holder=None), "me", NOW, True) == (_lease.ACQUIRE, None)
    assert _lease.decide_acquire(lease(holder=""), "me", NOW, True) == (_lease.ACQUIRE, None)
    assert _lease.decide_acquire(lease(holder="me"), "me", NOW, True) == (_lease.RENEW, "me")
    # an expired claim of our own is renewed, not broken
    assert _lease.decide_acquire(lease(holder="me"), "me", later, True) == (_lease.RENEW, "me")
    assert _lease.decide_acquire(lease(), "me", NOW, True) == (_lease.BUSY, "rollout-a")
    assert _lease.decide_acquire(lease(), "me", later, True) == (_lease.BREAK, "rollout-a")
    assert _lease.decide_acquire(lease(), "me", later, False) == (_lease.BUSY, "rollout-a")


def test_decide_acquire_needs_a_holder():
    with pytest.raises(ValueError):
        _lease.decide_acquire(None, "", NOW, True)


@given(holder=st.text(min_size=1, max_size=20), other=st.text(min_size=1, max_size=20),
       renew=aware_times, duration=st.integers(1, 10 ** 6), offset=st.integers(-10 ** 7, 10 ** 7),
       break_expired=st.booleans())
def test_never_take_a_live_claim_of_someone_else(holder, other, renew, duration, offset, break_expired):
    assume(holder != other)
    item = lease(holder=other, renew=renew, duration=duration)
    now = renew + datetime.timedelta(seconds=offset)
    action, previous = _lease.decide_acquire(item, holder, now, break_expired)
    assert previous == other
    if offset < duration or not break_expired:
        assert action == _lease.BUSY
    else:
        assert action == _lease.BREAK


def test_decide_release_table():
    assert _lease.decide_release(None, "me", False) == (_lease.NOTHING, None)
    assert _lease.decide_release(lease(holder=None), "me", False) == (_lease.NOTHING, None)
    assert _lease.decide_release(lease(holder="me"), "me", False) == (_lease.RELEASE, "me")
    assert _lease.decide_release(lease(), "me", False) == (_lease.REFUSE, "rollout-a")
    assert _lease.decide_release(lease(), "me", True) == (_lease.FORCE_RELEASE, "rollout-a")


# ------------------------------------------------------------------------------------------------
# bodies
# ------------------------------------------------------------------------------------------------

def test_create_body():
    body = _lease.acquire_body(None, _lease.CREATE, "me", 300, NOW, "lock", "ops")
    assert body["metadata"] == {"name": "lock", "namespace": "ops",
                                "labels": {"app.kubernetes.io/managed-by": "kubeops.node_maintenance"}}
    assert body["spec"] == {"holderIdentity": "me", "leaseDurationSeconds": 300,
                            "acquireTime": "2024-05-01T10:00:00.000000Z",
                            "renewTime": "2024-05-01T10:00:00.000000Z", "leaseTransitions": 0}


def test_renew_keeps_acquire_time_and_transitions():
    earlier = NOW - datetime.timedelta(minutes=5)
    item = lease(holder="me", renew=earlier, acquire=earlier, transitions=4)
    body = _lease.acquire_body(item, _lease.RENEW, "me", 900, NOW, "lock", "kube-system")
    assert body["spec"]["acquireTime"] == _lease.format_micro_time(earlier)
    assert body["spec"]["renewTime"] == _lease.format_micro_time(NOW)
    assert body["spec"]["leaseDurationSeconds"] == 900
    assert body["spec"]["leaseTransitions"] == 4
    assert body["metadata"]["resourceVersion"] == "100"
    assert item["spec"]["renewTime"] == _lease.format_micro_time(earlier), "input must not be modified"


@pytest.mark.parametrize("action", [_lease.ACQUIRE, _lease.BREAK])
def test_taking_over_counts_a_transition_and_keeps_foreign_fields(action):
    item = lease(holder=None if action == _lease.ACQUIRE else "old", transitions=7,
                 strategy="OldestEmulationVersion")
    body = _lease.acquire_body(item, action, "me", 60, NOW, "lock", "kube-system")
    assert body["spec"]["holderIdentity"] == "me"
    assert body["spec"]["acquireTime"] == body["spec"]["renewTime"] == _lease.format_micro_time(NOW)
    assert body["spec"]["leaseTransitions"] == 8
    assert body["spec"]["strategy"] == "OldestEmulationVersion"
    assert body["metadata"]["annotations"] == {"someone": "else"}
    assert body["metadata"]["resourceVersion"] == "100"


def test_release_body_clears_the_holder_only():
    item = lease(holder="me", acquire=NOW - datetime.timedelta(minutes=1), transitions=2)
    body = _lease.release_body(item, NOW)
    assert "holderIdentity" not in body["spec"] and "acquireTime" not in body["spec"]
    assert body["spec"]["leaseTransitions"] == 2
    assert body["metadata"]["resourceVersion"] == "100"
    assert _lease.lease_holder(body) is None
    assert _lease.decide_acquire(body, "next", NOW, False) == (_lease.ACQUIRE, None)


def test_no_body_for_busy():
    with pytest.raises(ValueError):
        _lease.acquire_body(lease(), _lease.BUSY, "me", 60, NOW, "lock", "ns")


def test_summary_and_description():
    item = lease(holder="rollout-a", renew=NOW, duration=60)
    summary = _lease.lease_summary(item, NOW + datetime.timedelta(seconds=10))
    assert summary["holder_identity"] == "rollout-a"
    assert summary["expires_at"] == "2024-05-01T10:01:00Z"
    assert summary["expires_in_seconds"] == 50
    assert summary["resource_version"] == "100"
    text = _lease.describe_holder(item, NOW + datetime.timedelta(seconds=10))
    assert "'rollout-a'" in text and "expires 2024-05-01T10:01:00Z, in 50s" in text
    text = _lease.describe_holder(item, NOW + datetime.timedelta(seconds=70))
    assert "expired 2024-05-01T10:01:00Z, 10s ago" in text
    assert "stays until released" in _lease.describe_holder(lease(duration=None), NOW)
    assert _lease.lease_summary(None) is None
    assert _lease.lease_summary(lease(holder=None))["expires_at"] is None


# ------------------------------------------------------------------------------------------------
# kured
# ------------------------------------------------------------------------------------------------

def kured_value(node="worker-1", created=NOW, ttl_ns=0, unschedulable=False):
    return json.dumps({"nodeID": node, "metadata": {"unschedulable": unschedulable},
                       "created": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if created else None,
                       "TTL": ttl_ns})


def annotations(value):
    return {_lease.KURED_LOCK_ANNOTATION: value, "deprecated.daemonset.template.generation": "1"}


def test_kured_no_annotation_is_free():
    result = _lease.parse_kured_lock({}, NOW)
    assert result["held"] is False and result["present"] is False
    assert _lease.parse_kured_lock(None, NOW)["held"] is False


def test_kured_lock_without_ttl_is_held_forever():
    result = _lease.parse_kured_lock(annotations(kured_value(ttl_ns=0)), NOW + datetime.timedelta(days=999))
    assert result["held"] is True and result["holders"] == ["worker-1"]
    assert result["locks"][0]["expires_at"] is None
    assert result["locks"][0]["unschedulable"] is False
    assert "worker-1" in _lease.describe_kured_lock(result, "kube-system/kured")


def test_kured_lock_with_empty_node_is_free():
    assert _lease.parse_kured_lock(annotations(kured_value(node="")), NOW)["held"] is False


@given(ttl_s=st.integers(1, 10 ** 6), offset_ms=st.integers(-10 ** 9, 10 ** 9))
def test_kured_ttl_expiry(ttl_s, offset_ms):
    now = NOW + datetime.timedelta(milliseconds=offset_ms)
    result = _lease.parse_kured_lock(annotations(kured_value(ttl_ns=ttl_s * 10 ** 9)), now)
    # kured: expired when time.Since(created) > TTL
    assert result["held"] is (offset_ms <= ttl_s * 1000)
    assert result["locks"][0]["ttl_seconds"] == ttl_s


def test_kured_multi_owner_lock():
    value = json.dumps({"maxOwners": 2, "locks": [
        json.loads(kured_value(node="a", ttl_ns=60 * 10 ** 9, created=NOW - datetime.timedelta(minutes=5))),
        json.loads(kured_value(node="b")),
    ]})
    result = _lease.parse_kured_lock(annotations(value), NOW)
    assert result["holders"] == ["b"]
    assert [lock["expired"] for lock in result["locks"]] == [True, False]
    empty = _lease.parse_kured_lock(annotations(json.dumps({"maxOwners": 2, "locks": []})), NOW)
    assert empty["held"] is False


@pytest.mark.parametrize("value", ["{not json", "[]", '"x"', '{"locks": {}}', '{"nodeID": "a", "TTL": "1h"}',
                                   '{"locks": [1]}'])
def test_kured_unreadable_lock_counts_as_held(value):
    result = _lease.parse_kured_lock(annotations(value), NOW)
    assert result["held"] is True and result["error"]
    assert "refusing" in _lease.describe_kured_lock(result, "kube-system/kured")


def test_kured_custom_annotation():
    custom = {"example.com/reboot-lock": kured_value()}
    assert _lease.parse_kured_lock(custom, NOW)["held"] is False
    assert _lease.parse_kured_lock(custom, NOW, annotation="example.com/reboot-lock")["held"] is True
