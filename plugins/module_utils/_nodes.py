# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node facts and edits as pure functions over node dicts (the API's JSON shape, camelCase keys).

Nothing here talks to the API: callers read a node, hand the dict in, and write what comes out.
- cordon: ``cordon_patch``, ``is_unschedulable``
- readiness: ``node_ready_status``, ``node_is_ready``, ``node_summary`` (a condition by type:
  ``_api_objects.status_condition``)
- taints, with ``kubectl taint`` matching (a taint is key + effect):
  ``validate_taints``, ``merge_taints``, ``taints_json_patch``
- NoExecute fallout: ``noexecute_evictions``, ``noexecute_warning`` (toleration matching:
  ``_tolerations``)
- node counts given as ``3`` or ``"50%"`` (min_ready_nodes, max_unavailable): ``parse_node_count``
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._api_objects import status_condition
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pod_rules import is_finished, is_terminating
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._tolerations import (
    first_toleration,
    noexecute_delay,
)

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

# Taints that Kubernetes components and installers own (not-ready, unreachable, uninitialized,
# control-plane role). ``replace`` never removes them; only naming them in ``state=absent`` does.
SYSTEM_TAINT_PREFIXES = (
    "node.kubernetes.io/",
    "node-role.kubernetes.io/",
    "node.cloudprovider.kubernetes.io/",
)

_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NODE_COUNT_RE = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


# ------------------------------------------------------------------------------------------------
# Node counts
# ------------------------------------------------------------------------------------------------

def parse_node_count(value, option):
    """``(number, is_percent)`` from ``3``, ``"3"`` or ``"50%"``; ValueError naming ``option`` for
    anything else (a negative number, a percentage above 100, a bool)."""
    if isinstance(value, bool):
        raise ValueError("%s must be a number or a percentage such as 50%%, not %r" % (option, value))
    if isinstance(value, int):
        number, percent = value, False
    else:
        match = _NODE_COUNT_RE.match(str(value if value is not None else ""))
        if not match:
            raise ValueError("%s must be a number or a percentage such as 50%%, not %r" % (option, value))
        number, percent = int(match.group(1)), bool(match.group(2))
    if number < 0 or (percent and number > 100):
        raise ValueError("%s out of range: %r" % (option, value))
    return number, percent


# ------------------------------------------------------------------------------------------------
# Cordon
# ------------------------------------------------------------------------------------------------

def cordon_patch(unschedulable):
    """Strategic-merge patch that sets ``spec.unschedulable`` and touches nothing else."""
    return {"spec": {"unschedulable": bool(unschedulable)}}


def is_unschedulable(node):
    return bool(((node or {}).get("spec") or {}).get("unschedulable"))


# ------------------------------------------------------------------------------------------------
# Readiness
# ------------------------------------------------------------------------------------------------

def node_ready_status(node):
    """``"True"``, ``"False"`` or ``"Unknown"`` (also when the kubelet never reported)."""
    cond = status_condition(node, "Ready")
    return (cond or {}).get("status") or "Unknown"


def node_is_ready(node):
    return node_ready_status(node) == "True"


def node_summary(node):
    """What the node modules return about a node."""
    node = node or {}
    metadata = node.get("metadata") or {}
    ready = status_condition(node, "Ready") or {}
    return {
        "name": metadata.get("name"),
        "unschedulable": is_unschedulable(node),
        "resource_version": metadata.get("resourceVersion"),
        "taints": list((node.get("spec") or {}).get("taints") or []),
        "ready": ready.get("status") or "Unknown",
        "ready_reason": ready.get("reason"),
    }


# ------------------------------------------------------------------------------------------------
# Taints
# ------------------------------------------------------------------------------------------------

def taint_id(taint):
    """Identity of a taint, as ``kubectl taint`` matches it: (key, effect)."""
    return (taint.get("key") or "", taint.get("effect") or "")


def taint_value(taint):
    return taint.get("value") or ""


def taint_ref(taint):
    """``key=value:effect`` as kubectl prints it (``key:effect`` without value, ``key`` without effect)."""
    text = taint.get("key") or ""
    if taint_value(taint):
        text += "=" + taint_value(taint)
    if taint.get("effect"):
        text += ":" + taint["effect"]
    return text


def is_system_taint(taint):
    return (taint.get("key") or "").startswith(SYSTEM_TAINT_PREFIXES)


def _api_taint(taint, now=None):
    """A requested taint in the API's shape: no empty value; ``timeAdded`` on NoExecute, as kubectl sets it."""
    out = {"key": taint["key"], "effect": taint["effect"]}
    if taint_value(taint):
        out["value"] = taint_value(taint)
    if now and taint["effect"] == "NoExecute":
        out["timeAdded"] = now
    return out


def _key_errors(key):
    if not key:
        return ["the taint key is empty"]
    errors = []
    prefix, name = key.rpartition("/")[::2]
    if "/" in key and not prefix:
        errors.append("the prefix of taint key %r is empty" % key)
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.match(prefix)):
        errors.append("the prefix of taint key %r must be a DNS subdomain (lower case, at most 253 characters)"
                      % key)
    if not name or len(name) > 63 or not _NAME_RE.match(name):
        errors.append("taint key %r: the name part must be 1-63 characters, alphanumerics with '-', '_' or '.' "
                      "inside" % key)
    return errors


def validate_taints(taints, state):
    """Problems with the requested taints, as sentences; empty when they are fine.

    ``present`` needs an effect on every taint and one entry per key + effect; ``absent`` allows a
    missing effect (meaning: every effect of that key).
    """
    errors = []
    seen = {}
    for index, taint in enumerate(taints or []):
        where = "taints[%d]" % index
        if not isinstance(taint, dict):
            errors.append("%s must be a dictionary with key, value and effect" % where)
            continue
        key = taint.get("key")
        key = key if isinstance(key, str) else ("" if key is None else str(key))
        errors.extend("%s: %s" % (where, e) for e in _key_errors(key))
        value = taint_value(taint)
        if value and (len(value) > 63 or not _LABEL_VALUE_RE.match(value)):
            errors.append("%s: value %r must be at most 63 characters, alphanumerics with '-', '_' or '.' "
                          "inside" % (where, value))
        effect = taint.get("effect")
        if effect and effect not in TAINT_EFFECTS:
            errors.append("%s: effect %r is not one of %s" % (where, effect, ", ".join(TAINT_EFFECTS)))
        if state == "present" and not effect:
            errors.append("%s: taint %r needs an effect (%s) to be added"
                          % (where, key, ", ".join(TAINT_EFFECTS)))
        if state == "present" and effect:
            ident = (key, effect)
            if ident in seen and taint_value(taint) != seen[ident]:
                errors.append("%s: %s:%s is listed twice with different values" % (where, key, effect))
            seen[ident] = taint_value(taint)
    return errors


def merge_taints(current, requested, state, replace=False, now=None):
    """The node's new taint list after applying ``requested`` with ``state``.

    Returns ``{"taints": new_list, "added": [...], "removed": [...], "changed": bool}``.
    - present: each requested taint is on the node afterwards, with its value; a taint with the same
      key + effect but another value is replaced (reported as removed + added).
    - present + replace: additionally, every taint not requested is removed, except system taints
      (``node.kubernetes.io/*``, ``node-role.kubernetes.io/*``, ``node.cloudprovider.kubernetes.io/*``).
    - absent: a taint with key + effect is removed; a key without effect removes every effect of that
      key. Values are ignored, as ``kubectl taint key:effect-`` does.
    Taints not touched keep their position and every field (``timeAdded`` included). ``now`` (an
    RFC 3339 time) becomes the ``timeAdded`` of NoExecute taints this adds, as ``kubectl taint`` does;
    ``timeAdded`` never counts in comparisons.
    """
    current = [dict(t) for t in (current or [])]
    requested = list(requested or [])
    added, removed = [], []
    result = list(current)
    if state == "present":
        wanted = []
        for taint in requested:
            new = _api_taint(taint, now)
            if taint_id(new) not in [taint_id(w) for w in wanted]:
                wanted.append(new)
        for new in wanted:
            for index, old in enumerate(result):
                if taint_id(old) == taint_id(new):
                    if taint_value(old) != taint_value(new):
                        result[index] = new
                        removed.append(old)
                        added.append(new)
                    break
            else:
                result.append(new)
                added.append(new)
        if replace:
            wanted_ids = set(taint_id(w) for w in wanted)
            kept = []
            for taint in result:
                if taint_id(taint) in wanted_ids or is_system_taint(taint):
                    kept.append(taint)
                else:
                    removed.append(taint)
            result = kept
    elif state == "absent":
        if replace:
            raise ValueError("replace applies to state=present only")
        kept = []
        for taint in result:
            if any(_absent_matches(req, taint) for req in requested):
                removed.append(taint)
            else:
                kept.append(taint)
        result = kept
    else:
        raise ValueError("state must be present or absent, not %r" % (state,))
    return {"taints": result, "added": added, "removed": removed, "changed": bool(added or removed)}


def _absent_matches(requested, taint):
    if (requested.get("key") or "") != (taint.get("key") or ""):
        return False
    return not requested.get("effect") or requested["effect"] == taint.get("effect")


def taints_json_patch(resource_version, taints):
    """JSON patch writing the whole taint list only if the node is still at ``resource_version``.

    The ``test`` makes the API server refuse the write when anyone changed the node since we read
    it, so a taint added meanwhile by someone else is never overwritten by our stale list.
    """
    return [
        {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
        {"op": "add", "path": "/spec/taints", "value": list(taints)},
    ]


# ------------------------------------------------------------------------------------------------
# NoExecute: which pods the taint eviction controller deletes
# ------------------------------------------------------------------------------------------------

def noexecute_evictions(pods, added_taints):
    """Pods that the NoExecute taints in ``added_taints`` make the cluster delete.

    ``pods`` are pod dicts of the node. Returns one entry per affected pod that has neither finished
    nor is being deleted already:
    ``namespace``, ``name``, ``uid``, ``taints`` (the added NoExecute taints it does not tolerate
    indefinitely, as ``key=value:NoExecute``) and ``after_seconds`` (0 = deleted at once, otherwise
    its ``tolerationSeconds``). These deletions ignore PodDisruptionBudgets.
    """
    noexec = [t for t in (added_taints or []) if t.get("effect") == "NoExecute"]
    if not noexec:
        return []
    out = []
    for pod in pods or []:
        metadata = pod.get("metadata") or {}
        if is_finished(pod) or is_terminating(pod):
            continue  # finished or already being deleted: not the taint's doing
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        delay = noexecute_delay(tolerations, noexec)
        if delay is None:
            continue
        offending = [taint_ref(t) for t in noexec
                     if (first_toleration(tolerations, t) or {"tolerationSeconds": 0}).get(
                         "tolerationSeconds") is not None]
        out.append({
            "namespace": metadata.get("namespace"),
            "name": metadata.get("name"),
            "uid": metadata.get("uid"),
            "taints": offending,
            "after_seconds": delay,
        })
    out.sort(key=lambda e: (e["after_seconds"], e["namespace"] or "", e["name"] or ""))
    return out


# How many pods the NoExecute warning names before it says "and N more" (all are in the result).
NOEXECUTE_WARNING_POD_LIMIT = 10


def noexecute_warning(name, added_taints, evictions, check_mode=False):
    """The warning for ``evictions`` (``noexecute_evictions``) that the NoExecute taints among
    ``added_taints`` cause on node ``name``; in check mode, what they would cause."""
    added = ", ".join(taint_ref(t) for t in added_taints if t.get("effect") == "NoExecute")
    at_once = [e for e in evictions if e["after_seconds"] == 0]
    later = [e for e in evictions if e["after_seconds"] > 0]
    limit = NOEXECUTE_WARNING_POD_LIMIT
    listed = ", ".join("%s/%s" % (e["namespace"], e["name"]) for e in evictions[:limit])
    return ("%s NoExecute taint %s on node/%s %s %d pod(s) at once and %d more after their "
            "tolerationSeconds, without regard to PodDisruptionBudgets: %s%s. Drain the node first "
            "(kubeops.node_maintenance.k8s_node_drain) to respect the budgets."
            % ("The" if check_mode else "The added", added, name,
               "would delete" if check_mode else "deletes", len(at_once), len(later), listed,
               " and %d more" % (len(evictions) - limit) if len(evictions) > limit else ""))
