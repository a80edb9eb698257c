# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster guards: may this node be taken out of service now, as far as the cluster is concerned?

Plain functions over node and pod dicts (as the API returns them); each guard returns one result
``{"guard", "status" (pass | fail | skip), "reason", ...details}``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import re

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import (
    is_unschedulable,
    node_is_ready,
    node_ready_status,
)

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane",)
PASS, FAIL, SKIP = "pass", "fail", "skip"

_MIN_READY = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


def guard_result(guard, status, reason, **details):
    result = {"guard": guard, "status": status, "reason": reason}
    result.update(details)
    return result


def node_name(node):
    return ((node or {}).get("metadata") or {}).get("name")


def _labels(node):
    return ((node or {}).get("metadata") or {}).get("labels") or {}


def find_node(nodes, name):
    for node in nodes:
        if node_name(node) == name:
            return node
    return None


def unavailable_reason(node):
    """Why a node does not count as Ready and schedulable, or None when it does."""
    if not node_is_ready(node):
        return "Ready=%s" % node_ready_status(node)
    if is_unschedulable(node):
        return "cordoned"
    return None


def _describe(nodes, limit=10):
    items = ["%s (%s)" % (node_name(n), unavailable_reason(n) or "Ready") for n in nodes[:limit]]
    if len(nodes) > limit:
        items.append("%d more" % (len(nodes) - limit))
    return ", ".join(items) or "none"


# ------------------------------------------------------------------------------------------------
# The last Ready control-plane node
# ------------------------------------------------------------------------------------------------

def is_control_plane(node, labels=CONTROL_PLANE_LABELS):
    return any(label in _labels(node) for label in labels)


def control_plane_guard(nodes, name, labels=CONTROL_PLANE_LABELS):
    """Refuse to take the last Ready control-plane node (the apiserver and etcd on it go with it)."""
    target = find_node(nodes, name)
    if target is None:
        return guard_result("control_plane", FAIL, "node/%s not found" % name)
    if not is_control_plane(target, labels):
        return guard_result("control_plane", PASS, "not a control-plane node", control_plane_nodes=[])
    planes = [n for n in nodes if is_control_plane(n, labels)]
    others = [n for n in planes if node_name(n) != name and node_is_ready(n)]
    details = {"control_plane_nodes": sorted(node_name(n) for n in planes),
               "other_ready": sorted(node_name(n) for n in others)}
    if not others:
        return guard_result(
            "control_plane", FAIL,
            "node/%s is the last Ready control-plane node (control-plane nodes: %s); taking it out takes the "
            "API server with it. Bring another control-plane node back first." % (name, _describe(planes)),
            **details)
    return guard_result("control_plane", PASS, "%d other Ready control-plane node(s): %s"
                        % (len(others), ", ".join(details["other_ready"])), **details)


# ------------------------------------------------------------------------------------------------
# At least N (or N%) nodes Ready and schedulable
# ------------------------------------------------------------------------------------------------

def parse_min_ready(value):
    """``(number, is_percent)`` from ``3``, ``"3"`` or ``"50%"``; ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError("min_ready_nodes must be a number or a percentage such as 50%%, not %r" % value)
    if isinstance(value, int):
        number, percent = value, False
    else:
        match = _MIN_READY.match(str(value if value is not None else ""))
        if not match:
            raise ValueError("min_ready_nodes must be a number or a percentage such as 50%%, not %r" % (value,))
        number, percent = int(match.group(1)), bool(match.group(2))
    if number < 0 or (percent and number > 100):
        raise ValueError("min_ready_nodes out of range: %r" % (value,))
    return number, percent


def required_ready(value, total):
    """Nodes that must stay Ready and schedulable out of ``total`` (a percentage rounds up)."""
    number, percent = parse_min_ready(value)
    if percent:
        return int(math.ceil(total * number / 100.0))
    return number


def min_ready_guard(nodes, name, min_ready):
    """``nodes``: the pool that counts (all nodes, or those matching the node selector)."""
    total = len(nodes)
    needed = required_ready(min_ready, total)
    if needed == 0:
        return guard_result("min_ready_nodes", SKIP, "no minimum set", required=0, total=total)
    available_now = [n for n in nodes if unavailable_reason(n) is None]
    after = [n for n in available_now if node_name(n) != name]
    details = {"required": needed, "total": total, "available_now": len(available_now),
               "available_after": len(after)}
    if len(after) < needed:
        unavailable = [n for n in nodes if unavailable_reason(n) is not None and node_name(n) != name]
        return guard_result(
            "min_ready_nodes", FAIL,
            "taking node/%s out leaves %d of %d nodes Ready and schedulable, fewer than the %d required "
            "(min_ready_nodes %s); not available now: %s"
            % (name, len(after), total, needed, min_ready, _describe(unavailable)),
            **details)
    return guard_result("min_ready_nodes", PASS, "%d of %d nodes stay Ready and schedulable (%d required)"
                        % (len(after), total, needed), **details)


# ------------------------------------------------------------------------------------------------
# Stacked etcd quorum
# ------------------------------------------------------------------------------------------------

def _pod_ready(pod):
    status = (pod or {}).get("status") or {}
    if ((pod or {}).get("metadata") or {}).get("deletionTimestamp"):
        return False
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def etcd_members_from_pods(pods):
    """One member per etcd pod (kubeadm's static pods ``etcd-<node>``): its node and whether it is Ready."""
    members = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        ready = _pod_ready(pod)
        members.append({"name": metadata.get("name"), "node": (pod.get("spec") or {}).get("nodeName"),
                        "healthy": ready, "reason": "pod Ready" if ready else "pod not Ready"})
    return sorted(members, key=lambda m: (m["node"] or "", m["name"] or ""))


def parse_etcd_health(status_code, body):
    """``(healthy, reason)`` from an etcd ``/health`` answer (``{"health": "true"}``)."""
    if status_code != 200:
        return False, "HTTP %s" % status_code
    try:
        data = json.loads(body)
    except ValueError:
        return False, "not JSON: %s" % str(body)[:80]
    if not isinstance(data, dict):
        return False, "unexpected answer: %s" % str(body)[:80]
    health = data.get("health")
    if str(health).lower() == "true":
        return True, "healthy"
    return False, "health=%s%s" % (health, (" (%s)" % data["reason"]) if data.get("reason") else "")


def quorum(size):
    return size // 2 + 1


def etcd_quorum_guard(members, name):
    """Refuse when the members left healthy without this node's would be fewer than a quorum."""
    if not members:
        return guard_result("etcd_quorum", SKIP, "no etcd members found (not a stacked etcd, or none listed)",
                            members=[])
    mine = [m for m in members if m.get("node") == name]
    size = len(members)
    needed = quorum(size)
    healthy = [m for m in members if m.get("healthy")]
    after = [m for m in healthy if m.get("node") != name]
    details = {"members": members, "quorum": needed, "healthy": len(healthy), "healthy_after": len(after)}
    if not mine:
        return guard_result("etcd_quorum", PASS, "no etcd member on node/%s" % name, **details)
    if len(after) < needed:
        unhealthy = ["%s on %s (%s)" % (m.get("name"), m.get("node"), m.get("reason", "unhealthy"))
                     for m in members if not m.get("healthy")]
        return guard_result(
            "etcd_quorum", FAIL,
            "etcd has %d members (quorum %d), %d healthy; taking node/%s out leaves %d healthy, so etcd would "
            "lose quorum%s" % (size, needed, len(healthy), name, len(after),
                               ("; unhealthy: " + ", ".join(unhealthy)) if unhealthy else ""),
            **details)
    return guard_result("etcd_quorum", PASS, "%d of %d etcd members stay healthy (quorum %d)"
                        % (len(after), size, needed), **details)


def refusals(results):
    """The reasons of the guards that failed."""
    return [r["reason"] for r in results if r["status"] == FAIL]
