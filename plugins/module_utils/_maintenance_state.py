# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The per-node maintenance record kept in one node annotation, and the module that keeps it.

The record is a JSON object in ``maintenance.kubeops.io/state`` (see the module
``k8s_node_maintenance_state`` for its fields). ``merge_record`` applies what a task reports (a new
phase, a status, a message, the node's prior state) and keeps the phase timings; it and the other
functions down to ``event_body`` are pure (data in, data out).

The module's run is made of steps that compose (``maintain`` is the module's own composition):
``requested_updates`` (the options checked) -> ``write_record`` (read the node, ``compute_record``,
patch the annotation, recomputed on a conflict) -> ``record_event`` (the Event, ``create_event``)
-> ``state_result`` (what the module returns, with ``resume_info``).
"""

from __future__ import annotations

import copy
import datetime
import json
import socket
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    MERGE_PATCH,
    ApiException,
    api_path,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._lease import parse_time
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import (
    patch_node,
    read_node,
)

ANNOTATION = "maintenance.kubeops.io/state"
SCHEMA_VERSION = 1

IN_PROGRESS = "in_progress"
DONE = "done"
FAILED = "failed"
STATUSES = (IN_PROGRESS, DONE, FAILED)
TERMINAL = (DONE, FAILED)

# The fields a task may set (module options of the same names, but ``message`` is the option ``msg``).
UPDATABLE = ("rollout", "phase", "status", "message", "cordoned_before", "taints_added", "moved_workloads",
             "static_pods", "labels_added")

MESSAGE_LIMIT = 4096
EVENT_NAMESPACE = "default"  # where the kubelet writes events about nodes
EVENT_COMPONENT = "kubeops-node-maintenance"
EVENT_MESSAGE_LIMIT = 1024  # the kubelet's limit; longer messages only clutter `kubectl describe`

UTC = datetime.timezone.utc


# ------------------------------------------------------------------------------------------------
# Time
# ------------------------------------------------------------------------------------------------

def utc_now():
    return datetime.datetime.now(UTC)


def format_timestamp(moment):
    """RFC 3339, UTC, milliseconds: ``2024-05-01T10:00:00.123Z`` (short phases still get a duration)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def phase_seconds(started, finished):
    """Seconds between two recorded times, never negative (the machines that wrote them may
    disagree about the time); None when either cannot be read."""
    start, end = parse_time(started), parse_time(finished)
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


def cut(text, limit):
    text = text or ""
    if len(text) <= limit:
        return text
    marker = " ... (cut)"
    return text[:limit - len(marker)] + marker


# ------------------------------------------------------------------------------------------------
# Reading and writing the annotation
# ------------------------------------------------------------------------------------------------

def parse_record(text):
    """``(record, warnings)`` from the annotation's value; ``{}`` when there is none or it is unreadable."""
    if text is None:
        return {}, []
    try:
        record = json.loads(text)
    except ValueError as exc:
        return {}, ["annotation %s is not JSON (%s); it is treated as no record and replaced on the "
                    "next write" % (ANNOTATION, exc)]
    if not isinstance(record, dict):
        return {}, ["annotation %s holds a JSON %s, not an object; it is treated as no record and "
                    "replaced on the next write" % (ANNOTATION, type(record).__name__)]
    return record, []


def render_record(record):
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def record_patch(node, record):
    """JSON merge patch that sets the annotation and nothing else.

    ``resourceVersion`` makes the API server refuse (409) a write based on a stale read, so two
    writers cannot lose each other's phase.
    """
    metadata = {"annotations": {ANNOTATION: render_record(record)}}
    version = (node.get("metadata") or {}).get("resourceVersion")
    if version:
        metadata["resourceVersion"] = version
    return {"metadata": metadata}


def removal_patch(node):
    """JSON merge patch that removes the annotation (null deletes a key)."""
    metadata = {"annotations": {ANNOTATION: None}}
    version = (node.get("metadata") or {}).get("resourceVersion")
    if version:
        metadata["resourceVersion"] = version
    return {"metadata": metadata}


# ------------------------------------------------------------------------------------------------
# Merging
# ------------------------------------------------------------------------------------------------

def validate_updates(updates):
    """Errors in what a task wants to record (the argument spec has checked the types)."""
    errors = []
    rollout = updates.get("rollout")
    if rollout is not None and not rollout.strip():
        errors.append("rollout must not be empty")
    phase = updates.get("phase")
    if phase is not None and not phase.strip():
        errors.append("phase must not be empty")
    if updates.get("status") is not None and updates["status"] not in STATUSES:
        errors.append("status must be one of %s, not %r" % (", ".join(STATUSES), updates["status"]))
    for index, taint in enumerate(updates.get("taints_added") or ()):
        if not isinstance(taint, dict) or not taint.get("key") or not taint.get("effect"):
            errors.append("taints_added[%d] needs a key and an effect" % index)
    for index, key in enumerate(updates.get("labels_added") or ()):
        if not isinstance(key, str) or not key.strip():
            errors.append("labels_added[%d] must be a label key" % index)
    return errors


def normalize_taints(taints):
    """``[{key, value, effect}]`` with an empty value instead of none, each (key, effect) once."""
    out = []
    seen = set()
    for taint in taints or ():
        identity = (taint.get("key") or "", taint.get("effect") or "")
        if identity in seen:
            continue
        seen.add(identity)
        out.append({"key": identity[0], "value": taint.get("value") or "", "effect": identity[1]})
    return out


def normalize_workloads(workloads):
    """``[{namespace, owner_kind, owner_name}]``, each workload once, in the order given.

    The controllers whose pods a drain moved: the health gate waits for them, also when a re-run
    resumes after the drain (the drain's own result is gone by then)."""
    out = []
    seen = set()
    for item in workloads or ():
        identity = (item.get("namespace") or "", item.get("owner_kind") or "", item.get("owner_name") or "")
        if identity in seen or not identity[0]:
            continue
        seen.add(identity)
        out.append({"namespace": identity[0], "owner_kind": identity[1] or None, "owner_name": identity[2] or None})
    return out


def normalize_static_pods(pods):
    """``[{namespace, name}]`` of the node's mirror pods before the maintenance, each once, in the
    order given: the health gate waits for them to be back, also in a re-run that resumes later."""
    out = []
    for item in pods or ():
        identity = {"namespace": item.get("namespace") or "", "name": item.get("name") or ""}
        if identity["namespace"] and identity["name"] and identity not in out:
            out.append(identity)
    return out


def normalize_label_keys(keys):
    """The label keys the rollout added (``labels_added``), each once, in the order given: what the
    return removes again (a label that was on the node before the rollout is never among them)."""
    out = []
    for key in keys or ():
        if key and key not in out:
            out.append(key)
    return out


def new_record(rollout, stamp):
    return {
        "version": SCHEMA_VERSION,
        "rollout": rollout,
        "phase": None,
        "status": IN_PROGRESS,
        "message": "",
        "cordoned_before": None,
        "taints_added": [],
        "started": stamp,
        "updated": stamp,
        "phases": {},
    }


def same_record(a, b):
    """Equal apart from ``updated`` (which only says when the rest last changed)."""
    def strip(record):
        return {k: v for k, v in (record or {}).items() if k != "updated"}
    return strip(a) == strip(b)


def _phase_entry(phases, phase):
    entry = phases.get(phase)
    return entry if isinstance(entry, dict) else {}


def _close_phase(phases, phase, stamp, status):
    entry = dict(_phase_entry(phases, phase))
    if "finished" not in entry:
        entry["finished"] = stamp
        entry["seconds"] = phase_seconds(entry.get("started"), stamp)
    entry["status"] = status
    phases[phase] = entry


def _attempts(entry):
    try:
        return max(0, int(entry.get("attempts", 0)))
    except (TypeError, ValueError):
        return 0


def merge_record(current, updates, now):
    """The record after applying ``updates`` (option name -> value, None = not given) at ``now``.

    - A rollout other than the recorded one starts a new record.
    - A phase given without a status is entered with ``in_progress``.
    - Entering a phase (a different one, or the same one again after it finished or failed) closes
      the phase that was open (as done) and starts a timing entry with one more attempt.
    - ``done`` / ``failed`` closes the current phase's timing.
    - ``message`` is cleared when the phase or status changes without a new one.
    - ``updated`` moves only when something else changed, so re-reporting the same state is no change.
    ``current`` is not modified.
    """
    stamp = format_timestamp(now)
    current = current or {}
    rollout = updates.get("rollout")
    if not current or (rollout is not None and current.get("rollout") != rollout):
        record = new_record(rollout, stamp)
    else:
        record = copy.deepcopy(current)
    if not isinstance(record.get("phases"), dict):
        record["phases"] = {}
    phases = record["phases"]

    old_phase = record.get("phase")
    old_status = record.get("status")
    phase = updates.get("phase")
    status = updates.get("status")
    if phase is not None and status is None:
        status = IN_PROGRESS
    target = phase if phase is not None else old_phase
    new_status = status if status is not None else old_status

    entering = target is not None and (
        target != old_phase or (new_status == IN_PROGRESS and old_status != IN_PROGRESS))
    if entering:
        if old_phase is not None and old_phase != target and old_phase in phases \
                and "finished" not in _phase_entry(phases, old_phase):
            _close_phase(phases, old_phase, stamp, FAILED if old_status == FAILED else DONE)
        attempts = _attempts(_phase_entry(phases, target)) + 1
        phases[target] = {"started": stamp, "status": IN_PROGRESS, "attempts": attempts}
    if new_status in TERMINAL and target is not None:
        _close_phase(phases, target, stamp, new_status)

    record["phase"] = target
    record["status"] = new_status if new_status in STATUSES else IN_PROGRESS
    if updates.get("message") is not None:
        record["message"] = cut(updates["message"], MESSAGE_LIMIT)
    elif entering or new_status != old_status:
        record["message"] = ""
    if updates.get("cordoned_before") is not None:
        record["cordoned_before"] = bool(updates["cordoned_before"])
    if updates.get("taints_added") is not None:
        record["taints_added"] = normalize_taints(updates["taints_added"])
    if updates.get("moved_workloads") is not None:
        record["moved_workloads"] = normalize_workloads(updates["moved_workloads"])
    if updates.get("static_pods") is not None:
        record["static_pods"] = normalize_static_pods(updates["static_pods"])
    if updates.get("labels_added") is not None:
        record["labels_added"] = normalize_label_keys(updates["labels_added"])
    if not isinstance(record.get("version"), int) or record["version"] < SCHEMA_VERSION:
        record["version"] = SCHEMA_VERSION

    if same_record(current, record):
        return copy.deepcopy(current)
    record["updated"] = stamp
    return record


def resume_info(record, rollout):
    """What a re-run of ``rollout`` does with this node: skip it, or pick it up at a phase."""
    ours = bool(rollout) and bool(record) and record.get("rollout") == rollout
    done = ours and record.get("status") == DONE
    return {
        "done_in_rollout": done,
        "resume_phase": record.get("phase") if ours and not done else None,
    }


# ------------------------------------------------------------------------------------------------
# Events
# ------------------------------------------------------------------------------------------------

def event_body(node, event, now, host):
    """A core/v1 Event about ``node``, as the kubelet writes its own node events.

    ``event`` is the module's option: ``reason``, ``msg``, ``type``.
    """
    metadata = node.get("metadata") or {}
    node_name = metadata.get("name") or ""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    nanos = int(now.timestamp() * 1e9)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "%s.%x" % (node_name[:200], nanos), "namespace": EVENT_NAMESPACE},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node_name,
                           "uid": metadata.get("uid") or node_name},
        "reason": event["reason"],
        "message": cut(event.get("msg"), EVENT_MESSAGE_LIMIT),
        "type": event.get("type") or "Normal",
        "source": {"component": EVENT_COMPONENT, "host": host},
        "reportingComponent": EVENT_COMPONENT,
        "reportingInstance": host,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


# ------------------------------------------------------------------------------------------------
# The module: options, reading and writing the node, the event, the result
# ------------------------------------------------------------------------------------------------

def requested_updates(params):
    """The fields a task asks to record (``UPDATABLE``, None = not given), from the module's options
    (``message`` is the option ``msg``); raises ``ModuleFailure`` naming every bad option, so nothing
    is read or written with them."""
    updates = {key: params["msg" if key == "message" else key] for key in UPDATABLE}
    errors = validate_updates(updates) if params["state"] == "present" else []
    if params["timeout"] < 1:
        errors.append("timeout must be at least 1")
    if errors:
        raise ModuleFailure("; ".join(errors))
    return updates


def compute_record(node, state, updates, now=None):
    """``(before, after, annotation patch or None, warnings)`` for ``node`` and the module's ``state``:
    ``query`` changes nothing, ``absent`` removes the annotation, ``present`` merges ``updates`` at
    ``now`` (default: the current time). No patch when nothing would change."""
    annotations = (node.get("metadata") or {}).get("annotations") or {}
    before, warnings = parse_record(annotations.get(ANNOTATION))
    if state == "query":
        return before, before, None, warnings
    if state == "absent":
        return before, {}, removal_patch(node) if ANNOTATION in annotations else None, warnings
    after = merge_record(before, updates, now or utc_now())
    if same_record(before, after) and not warnings:
        return before, before, None, warnings
    return before, after, record_patch(node, after), warnings


def write_record(raw, name, compute, check_mode, deadline, sleep=time.sleep):
    """Read the node, ``compute(node) -> (before, after, annotation patch or None, warnings)``, patch it.

    The patch carries the resourceVersion read, so a write racing with another one gets HTTP 409;
    then the node is read again and the record recomputed, until ``deadline``.
    Returns ``(node or None, before, after, changed, warnings)``; ``changed`` is whether a write
    was (or, in check mode, would be) needed. ``raw`` is a ``_k8s_client.RawApi``.
    """
    while True:
        node = read_node(raw, name, deadline, missing_ok=True)
        if node is None:
            return None, {}, {}, False, []
        before, after, patch, warnings = compute(node)
        if patch is None or check_mode:
            return node, before, after, patch is not None, warnings
        try:
            retry_transient(lambda: patch_node(raw, name, patch, MERGE_PATCH, deadline),
                            deadline=deadline, describe="node/%s" % name)
            return node, before, after, True, warnings
        except ApiException as exc:
            if exc.status != 409 or time.monotonic() >= deadline:
                raise
            sleep(0.2)


def missing_node_failure(name):
    """The failure of ``state=present`` on a node that does not exist."""
    return ModuleFailure(
        "node/%s: not found (404); cannot record maintenance state on a node that does not exist. "
        "`kubectl get nodes` lists the names; after a reimage, wait until the node has "
        "re-joined (kubeops.node_maintenance.k8s_node_wait) before recording its state" % name,
        status=404, node_exists=False)


def create_event(raw, node, event, deadline):
    """POST the Event about ``node``; ``(event name, message as written)``."""
    body = event_body(node, event, utc_now(), socket.gethostname())
    created = retry_transient(
        lambda: raw.call("POST", api_path("/api/v1/namespaces", EVENT_NAMESPACE, "events"), body=body,
                         timeout=request_timeout(deadline), count_as="create event"),
        deadline=deadline, describe="event %s/%s" % (EVENT_NAMESPACE, body["metadata"]["name"]))
    return created["metadata"]["name"], body["message"]


def record_event(raw, name, node, event, check_mode, deadline, warn):
    """Write the ``event`` option's Event about ``node`` (not in check mode; not, with a warning, when
    the node does not exist); the module's ``event`` result."""
    result = {"created": False, "namespace": EVENT_NAMESPACE, "reason": event["reason"],
              "type": event["type"], "message": cut(event["msg"], EVENT_MESSAGE_LIMIT)}
    if node is None:
        warn("node/%s does not exist; the %s event was not written" % (name, event["reason"]))
    elif not check_mode:
        result["name"], result["message"] = create_event(raw, node, event, deadline)
        result["created"] = True
    return result


def state_result(name, node, before, after, changed, rollout, event=None, diff=False):
    """What k8s_node_maintenance_state returns (``event``: ``record_event``'s result, if any)."""
    result = {
        "changed": changed,
        "name": name,
        "node_exists": node is not None,
        "annotation": ANNOTATION,
        "record": after,
        "previous": before,
        "node": node_state(node),
    }
    result.update(resume_info(after, rollout))
    if event is not None:
        result["event"] = event
    if diff:
        header = "node/%s annotation %s" % (name, ANNOTATION)
        result["diff"] = {"before_header": header, "after_header": header, "before": before, "after": after}
    return result


def maintain(raw, params, updates, check_mode, diff, deadline, warn, intent=None):
    """One run of k8s_node_maintenance_state: the record (``updates`` from ``requested_updates``)
    read, or written for ``state=present`` / ``absent``, then the event; the module's result.
    ``warn(text)`` reports a warning. ``intent``: see ``record_phase``."""
    name, state = params["name"], params["state"]

    def compute(current):
        return compute_record(current, state, with_intent(updates, intent(current) if intent else None))

    node, before, after, changed, warnings = write_record(raw, name, compute, check_mode, deadline)
    for warning in warnings:
        warn("node/%s: %s" % (name, warning))
    if node is None and state == "present":
        raise missing_node_failure(name)
    event = record_event(raw, name, node, params["event"], check_mode, deadline, warn) if params["event"] else None
    return state_result(name, node, before, after, changed, params["rollout"], event, diff)


# ------------------------------------------------------------------------------------------------
# The ``record`` option of the phase modules (K8sModule), and what the role reads of the node
# ------------------------------------------------------------------------------------------------

def record_phase(raw, name, record, check_mode, deadline, warn, intent=None):
    """The ``record`` option (doc fragment ``k8s_options.record``) of a phase's first module: the
    phase entered in node ``name``'s record, with its Event, before the module's work, as
    ``k8s_node_maintenance_state state=present`` would; returns the record after it (in check mode
    as it would be, nothing written). A node that does not exist fails.

    ``intent(node) -> fields`` (or None): what the work is about to add to the node as this write
    read it (``taints_added``: the taints not on it yet; ``labels_added``: the load-balancer label),
    joined to the record's lists in this same write, ahead of the work. A run killed between its
    write and ``record_fields`` leaves a record that still names them; without this the run that
    resumes finds them on the node, cannot tell them from an operator's, and leaves them there
    after the node returns."""
    params = {"name": name, "state": "present", "timeout": 60, "event": record.get("event")}
    params.update((key, record.get(key)) for key in UPDATABLE if key != "message")
    params["msg"] = record.get("msg")
    return maintain(raw, params, requested_updates(params), check_mode, False, deadline, warn,
                    intent=intent)["record"]


INTENT_FIELDS = ("taints_added", "labels_added")


def with_intent(updates, fields):
    """``updates`` with each list of ``fields`` (``INTENT_FIELDS``) appended to the list given (none
    given counts as empty, as ``record_fields`` after the work counts it; the record keeps each
    entry once); ``updates`` itself when there is nothing to add."""
    fields = {key: list(value) for key, value in (fields or {}).items() if value}
    unknown = set(fields) - set(INTENT_FIELDS)
    if unknown:
        raise ValueError("intent fields: %s" % ", ".join(sorted(unknown)))
    if not fields:
        return updates
    return dict(updates, **{key: list(updates.get(key) or []) + value for key, value in fields.items()})


def record_fields(raw, name, rollout, current, fields, check_mode, deadline, warn):
    """Fields the module's work found out (say ``taints_added``), merged into the record it began
    with (``current``, the record returned by ``record_phase``); the record after it. In check mode
    nothing was written, so ``current`` is merged with them as it would be."""
    updates = dict.fromkeys(UPDATABLE)
    updates.update(fields, rollout=rollout)
    if check_mode:
        return merge_record(current, updates, utc_now())
    _node, _before, after, _changed, warnings = write_record(
        raw, name, lambda node: compute_record(node, "present", updates), check_mode, deadline)
    for warning in warnings:
        warn("node/%s: %s" % (name, warning))
    return after


def node_state(node):
    """What a rollout needs to know of the node itself, read with its record: whether it is
    cordoned, its boot ID (to prove a reboot) and its taints; None when it does not exist."""
    if node is None:
        return None
    return {
        "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
        "boot_id": ((node.get("status") or {}).get("nodeInfo") or {}).get("bootID") or "",
        "taints": list((node.get("spec") or {}).get("taints") or []),
    }
