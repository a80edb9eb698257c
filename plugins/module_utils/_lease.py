# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster-wide maintenance lock, as pure functions over Lease dicts (the API's JSON shape).

Nothing here talks to the API. A caller reads the ``coordination.k8s.io/v1`` Lease (or learns it is
absent), asks ``decide_acquire`` / ``decide_release`` what to do, writes the body that
``acquire_body`` / ``release_body`` return with the ``resourceVersion`` it read (so of two writers
exactly one wins and the other gets 409 and decides again), and reports ``lease_summary``.

kured's reboot lock (an annotation on its DaemonSet) is read with ``parse_kured_lock``.

Times are timezone-aware UTC datetimes. Leases carry ``MicroTime`` (RFC 3339 with exactly six
fractional digits, which the API server insists on when parsing), kured carries Go's RFC 3339 with
up to nine.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import re
from email.utils import parsedate_to_datetime

UTC = datetime.timezone.utc

KURED_LOCK_ANNOTATION = "weave.works/kured-node-lock"
MANAGED_BY_LABEL = ("app.kubernetes.io/managed-by", "kubeops.node_maintenance")

# Actions decide_acquire can return.
CREATE = "create"          # no Lease yet: create it, holding it
ACQUIRE = "acquire"        # the Lease exists and nobody holds it
RENEW = "renew"            # we hold it already: push renewTime forward
BREAK = "break"            # someone else held it and their time is up: take it over
BUSY = "busy"              # someone else holds it: wait or fail

# Actions decide_release can return.
RELEASE = "release"        # we hold it: clear the holder
FORCE_RELEASE = "force_release"  # someone else holds it and force was given
REFUSE = "refuse"          # someone else holds it
NOTHING = "nothing"        # no Lease, or nobody holds it

_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})$")


# ------------------------------------------------------------------------------------------------
# Time
# ------------------------------------------------------------------------------------------------

def parse_time(value):
    """An aware UTC datetime from RFC 3339 text (any number of fractional digits), or None.

    Also accepts a datetime (naive ones are taken as UTC). Fractions beyond microseconds are cut,
    as Go's nanoseconds do not fit in a Python datetime.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    match = _RFC3339_RE.match(str(value).strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = datetime.timezone(sign * datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        parsed = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute),
                                   int(second), micro, tzinfo=tz)
    except ValueError:
        return None
    return parsed.astimezone(UTC)


def format_micro_time(moment):
    """``MicroTime`` text: ``2024-05-01T10:00:00.000000Z`` (always six digits, always UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_time(moment):
    """RFC 3339 for people and return values, seconds precision: ``2024-05-01T10:00:00Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def server_now(date_header, local_now):
    """The API server's clock, from the HTTP ``Date`` header of a response, or ``local_now``.

    Expiry is judged against the renewTime another controller wrote; taking "now" from the one API
    server every holder talks to keeps a skewed controller clock from breaking a live lock.
    The header has one-second resolution, which is far below any lease duration.
    """
    if date_header:
        try:
            parsed = parsedate_to_datetime(date_header)
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is not None:
            return parse_time(parsed)
    return local_now


# ------------------------------------------------------------------------------------------------
# Reading a Lease
# ------------------------------------------------------------------------------------------------

def _spec(lease):
    return ((lease or {}).get("spec") or {})


def lease_holder(lease):
    """The holder identity, or None when the Lease is absent or free (empty identity counts as free)."""
    return _spec(lease).get("holderIdentity") or None


def lease_expiry(lease):
    """When the holder's claim runs out: ``(renewTime or acquireTime) + leaseDurationSeconds``.

    None when that cannot be known (no times, or no positive duration): such a claim never expires
    on its own, so it is never broken; only ``force`` releases it.
    """
    spec = _spec(lease)
    last = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    duration = spec.get("leaseDurationSeconds")
    if last is None or not isinstance(duration, int) or isinstance(duration, bool) or duration <= 0:
        return None
    return last + datetime.timedelta(seconds=duration)


def lease_expired(lease, now):
    expiry = lease_expiry(lease)
    return expiry is not None and now >= expiry


def lease_summary(lease, now=None):
    """What the module returns about the Lease (snake_case keys, times as RFC 3339 text)."""
    if not lease:
        return None
    metadata = lease.get("metadata") or {}
    spec = _spec(lease)
    expiry = lease_expiry(lease) if lease_holder(lease) else None
    summary = {
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "resource_version": metadata.get("resourceVersion"),
        "holder_identity": lease_holder(lease),
        "lease_duration_seconds": spec.get("leaseDurationSeconds"),
        "acquire_time": spec.get("acquireTime"),
        "renew_time": spec.get("renewTime"),
        "lease_transitions": spec.get("leaseTransitions") or 0,
        "expires_at": format_time(expiry),
    }
    if now is not None:
        summary["expires_in_seconds"] = (
            int((expiry - now).total_seconds()) if expiry is not None else None)
    return summary


def describe_holder(lease, now):
    """``"rollout-42" (renewed 2024-...Z, expires 2024-...Z, in 300s)`` for messages."""
    spec = _spec(lease)
    holder = lease_holder(lease)
    expiry = lease_expiry(lease)
    renewed = spec.get("renewTime") or spec.get("acquireTime")
    parts = []
    if renewed:
        parts.append("renewed %s" % format_time(parse_time(renewed)))
    if expiry is None:
        parts.append("no expiry (no renewTime or leaseDurationSeconds): it stays until released")
    elif now >= expiry:
        parts.append("expired %s, %ds ago" % (format_time(expiry), int((now - expiry).total_seconds())))
    else:
        parts.append("expires %s, in %ds" % (format_time(expiry), int((expiry - now).total_seconds())))
    return "%r (%s)" % (holder, ", ".join(parts))


# ------------------------------------------------------------------------------------------------
# Deciding
# ------------------------------------------------------------------------------------------------

def decide_acquire(lease, holder, now, break_expired):
    """What ``state=present`` does with ``lease`` (None when it does not exist).

    Returns ``(action, previous_holder)``; action is one of CREATE, ACQUIRE, RENEW, BREAK, BUSY.
    """
    if not holder:
        raise ValueError("holder identity must not be empty")
    if lease is None:
        return CREATE, None
    current = lease_holder(lease)
    if current is None:
        return ACQUIRE, None
    if current == holder:
        return RENEW, current
    if break_expired and lease_expired(lease, now):
        return BREAK, current
    return BUSY, current


def decide_release(lease, holder, force):
    """What ``state=absent`` does: ``(action, previous_holder)``; action is RELEASE, FORCE_RELEASE,
    REFUSE or NOTHING."""
    current = lease_holder(lease)
    if current is None:
        return NOTHING, None
    if current == holder:
        return RELEASE, current
    if force:
        return FORCE_RELEASE, current
    return REFUSE, current


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------

def acquire_body(lease, action, holder, duration_seconds, now, name, namespace):
    """The full Lease to PUT (or POST for CREATE) for an acquire-side action.

    Keeps everything in ``lease`` it does not own (labels, annotations, other spec fields) and its
    ``resourceVersion``, so the write fails with 409 if anyone wrote in between. Like client-go's
    leader election, ``leaseTransitions`` counts changes of holder; a renewal keeps ``acquireTime``.
    """
    if action not in (CREATE, ACQUIRE, RENEW, BREAK):
        raise ValueError("no body for action %r" % action)
    stamp = format_micro_time(now)
    if action == CREATE or lease is None:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {MANAGED_BY_LABEL[0]: MANAGED_BY_LABEL[1]}},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": int(duration_seconds),
                     "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0},
        }
    body = json.loads(json.dumps(lease))  # deep copy of plain JSON
    body.setdefault("apiVersion", "coordination.k8s.io/v1")
    body.setdefault("kind", "Lease")
    spec = body.setdefault("spec", {}) or {}
    body["spec"] = spec
    transitions = spec.get("leaseTransitions") or 0
    if action == RENEW:
        spec["acquireTime"] = spec.get("acquireTime") or stamp
    else:
        spec["acquireTime"] = stamp
        transitions += 1
    spec["holderIdentity"] = holder
    spec["leaseDurationSeconds"] = int(duration_seconds)
    spec["renewTime"] = stamp
    spec["leaseTransitions"] = transitions
    return body


def release_body(lease, now):
    """The Lease with nobody holding it: the holder and its times cleared, the history
    (``leaseTransitions``, labels, annotations) and ``resourceVersion`` kept.

    Clearing instead of deleting keeps the transition count and lets the next writer use the same
    optimistic-concurrency path as every other write.
    """
    body = json.loads(json.dumps(lease))
    spec = body.setdefault("spec", {}) or {}
    body["spec"] = spec
    for key in ("holderIdentity", "acquireTime"):
        spec.pop(key, None)
    spec["renewTime"] = format_micro_time(now)
    return body


# ------------------------------------------------------------------------------------------------
# kured
# ------------------------------------------------------------------------------------------------

def _kured_entry(entry, now):
    node_id = entry.get("nodeID") or None
    created = parse_time(entry.get("created"))
    ttl_ns = entry.get("TTL") or 0
    if not isinstance(ttl_ns, int) or isinstance(ttl_ns, bool):
        raise ValueError("TTL is not a number of nanoseconds: %r" % (ttl_ns,))
    expires = None
    if ttl_ns > 0 and created is not None:
        expires = created + datetime.timedelta(microseconds=ttl_ns // 1000)
    expired = expires is not None and now > expires
    metadata = entry.get("metadata") if isinstance(entry.get("metadata"), dict) else {}
    return {
        "node_id": node_id,
        "created": format_time(created),
        "ttl_seconds": ttl_ns / 1e9 if ttl_ns else 0,
        "expires_at": format_time(expires),
        "expired": expired,
        "unschedulable": metadata.get("unschedulable"),
        "held": bool(node_id) and not expired,
    }


def parse_kured_lock(annotations, now, annotation=KURED_LOCK_ANNOTATION):
    """Whether kured holds its reboot lock, from the annotations of kured's DaemonSet.

    Handles kured's single lock ``{"nodeID", "metadata", "created", "TTL"}`` and its multi-owner
    form (``--concurrency`` > 1) ``{"maxOwners", "locks": [...]}``. A lock with a node and a TTL
    that has not run out (TTL 0 never runs out) is held. Returns a dict with ``held``,
    ``holders`` (node names) and ``locks``; a value that cannot be read counts as held (``error``
    says why), because guessing "free" could reboot two nodes at once.
    """
    value = (annotations or {}).get(annotation)
    result = {"annotation": annotation, "present": value is not None, "held": False,
              "holders": [], "locks": [], "error": None}
    if value is None or value == "":
        return result
    try:
        data = json.loads(value)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        entries = data["locks"] if "locks" in data else [data]
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ValueError("'locks' is not a list of objects")
        locks = [_kured_entry(entry, now) for entry in entries]
    except (ValueError, TypeError, KeyError) as exc:
        result.update(held=True, error="cannot read annotation %s=%r: %s" % (annotation, value, exc))
        return result
    result["locks"] = locks
    result["holders"] = [lock["node_id"] for lock in locks if lock["held"]]
    result["held"] = bool(result["holders"])
    return result


def describe_kured_lock(kured, daemonset_ref):
    """One line saying who holds kured's lock and until when, for the failure message."""
    if kured.get("error"):
        return "%s: %s; refusing, since kured may be rebooting a node" % (daemonset_ref, kured["error"])
    parts = []
    for lock in kured["locks"]:
        if not lock["held"]:
            continue
        until = ("until %s" % lock["expires_at"]) if lock["expires_at"] else "with no TTL (until kured releases it)"
        parts.append("node %r since %s, %s" % (lock["node_id"], lock["created"], until))
    return "kured holds its reboot lock (%s on %s): %s" % (
        kured["annotation"], daemonset_ref, "; ".join(parts))
