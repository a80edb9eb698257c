# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster guards: may this node be taken out of service now, as far as the cluster is concerned?

Plain functions over node and pod dicts (as the API returns them); each guard returns one result
``{"guard", "status" (pass | fail | skip), "reason", ...details}``. At the end, what
``k8s_cluster_guard`` does with them: ``GuardReader`` lists what the guards need, ``check_guards``
checks them once, ``wait_for_guards`` until they are met or ``wait_timeout`` has passed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math
import time

from ansible.module_utils.urls import open_url

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    K8sAccessError,
    api_path,
    describe_api_error,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import (
    is_unschedulable,
    node_is_ready,
    node_ready_status,
    parse_node_count,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pod_rules import is_serving
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._retry import poll_until

CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane",)
PASS, FAIL, SKIP = "pass", "fail", "skip"


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


def _taking(name, with_nodes):
    """``node/a`` or ``node/a (with node/b, node/c of its batch)``: what a refusal says is taken out."""
    others = [n for n in with_nodes if n != name]
    if not others:
        return "node/%s" % name
    return "node/%s (with %s of its batch)" % (name, ", ".join("node/%s" % n for n in others))


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


def control_plane_guard(nodes, name, labels=CONTROL_PLANE_LABELS, with_nodes=()):
    """Refuse to take the last Ready control-plane node (the apiserver and etcd on it go with it);
    ``with_nodes``: the other nodes of its batch, out at the same time."""
    target = find_node(nodes, name)
    if target is None:
        return guard_result("control_plane", FAIL, "node/%s not found" % name)
    if not is_control_plane(target, labels):
        return guard_result("control_plane", PASS, "not a control-plane node", control_plane_nodes=[])
    planes = [n for n in nodes if is_control_plane(n, labels)]
    going = {name} | set(with_nodes)
    others = [n for n in planes if node_name(n) not in going and node_is_ready(n)]
    details = {"control_plane_nodes": sorted(node_name(n) for n in planes),
               "other_ready": sorted(node_name(n) for n in others)}
    if not others:
        return guard_result(
            "control_plane", FAIL,
            "%s (control-plane nodes: %s); taking it out takes the API server with it. Bring another "
            "control-plane node back first%s."
            % ("node/%s is the last Ready control-plane node" % name if going == {name}
               else "taking %s out leaves no Ready control-plane node" % _taking(name, with_nodes),
               _describe(planes), "" if going == {name} else ", or take fewer nodes at once"),
            **details)
    return guard_result("control_plane", PASS, "%d other Ready control-plane node(s): %s"
                        % (len(others), ", ".join(details["other_ready"])), **details)


# ------------------------------------------------------------------------------------------------
# At least N (or N%) nodes Ready and schedulable
# ------------------------------------------------------------------------------------------------

def parse_min_ready(value):
    """``(number, is_percent)`` from ``3``, ``"3"`` or ``"50%"``; ValueError for anything else."""
    return parse_node_count(value, "min_ready_nodes")


def required_ready(value, total):
    """Nodes that must stay Ready and schedulable out of ``total`` (a percentage rounds up)."""
    number, percent = parse_min_ready(value)
    if percent:
        return int(math.ceil(total * number / 100.0))
    return number


def min_ready_guard(nodes, name, min_ready, with_nodes=()):
    """``nodes``: the pool that counts (all nodes, or those matching the node selector);
    ``with_nodes``: the other nodes of its batch, out at the same time."""
    total = len(nodes)
    needed = required_ready(min_ready, total)
    if needed == 0:
        return guard_result("min_ready_nodes", SKIP, "no minimum set", required=0, total=total)
    going = {name} | set(with_nodes)
    available_now = [n for n in nodes if unavailable_reason(n) is None]
    after = [n for n in available_now if node_name(n) not in going]
    details = {"required": needed, "total": total, "available_now": len(available_now),
               "available_after": len(after)}
    if len(after) < needed:
        unavailable = [n for n in nodes if unavailable_reason(n) is not None and node_name(n) not in going]
        return guard_result(
            "min_ready_nodes", FAIL,
            "taking %s out leaves %d of %d nodes Ready and schedulable, fewer than the %d required "
            "(min_ready_nodes %s); not available now: %s"
            % (_taking(name, with_nodes), len(after), total, needed, min_ready, _describe(unavailable)),
            **details)
    return guard_result("min_ready_nodes", PASS, "%d of %d nodes stay Ready and schedulable (%d required)"
                        % (len(after), total, needed), **details)


# ------------------------------------------------------------------------------------------------
# Stacked etcd quorum
# ------------------------------------------------------------------------------------------------

def etcd_members_from_pods(pods):
    """One member per etcd pod (kubeadm's static pods ``etcd-<node>``): its node and whether it is Ready."""
    members = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        ready = is_serving(pod)
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


def etcd_quorum_guard(members, name, with_nodes=()):
    """Refuse when the members left healthy without this node's (and those of ``with_nodes``, the
    other nodes of its batch) would be fewer than a quorum."""
    if not members:
        return guard_result("etcd_quorum", SKIP, "no etcd members found (not a stacked etcd, or none listed)",
                            members=[])
    mine = [m for m in members if m.get("node") == name]
    size = len(members)
    needed = quorum(size)
    healthy = [m for m in members if m.get("healthy")]
    going = {name} | set(with_nodes)
    after = [m for m in healthy if m.get("node") not in going]
    details = {"members": members, "quorum": needed, "healthy": len(healthy), "healthy_after": len(after)}
    if not mine:
        return guard_result("etcd_quorum", PASS, "no etcd member on node/%s" % name, **details)
    if len(after) < needed:
        unhealthy = ["%s on %s (%s)" % (m.get("name"), m.get("node"), m.get("reason", "unhealthy"))
                     for m in members if not m.get("healthy")]
        return guard_result(
            "etcd_quorum", FAIL,
            "etcd has %d members (quorum %d), %d healthy; taking %s out leaves %d healthy, so etcd would "
            "lose quorum%s" % (size, needed, len(healthy), _taking(name, with_nodes), len(after),
                               ("; unhealthy: " + ", ".join(unhealthy)) if unhealthy else ""),
            **details)
    return guard_result("etcd_quorum", PASS, "%d of %d etcd members stay healthy (quorum %d)"
                        % (len(after), size, needed), **details)


def refusals(results):
    """The reasons of the guards that failed."""
    return [r["reason"] for r in results if r["status"] == FAIL]


# ------------------------------------------------------------------------------------------------
# k8s_cluster_guard: reading the cluster, checking, waiting
# ------------------------------------------------------------------------------------------------

class GuardReader:
    """The list calls the guards need, each retried on transient errors, items as plain dicts.

    ``raw`` is a ``_k8s_client.RawApi``: the API server's JSON as it is, no generated model classes.
    An API error is a ``K8sAccessError`` naming the list; an etcd endpoint that does not answer
    healthy, however it fails, is an unhealthy member (so a refusal, not an error)."""

    def __init__(self, raw, params):
        self.raw = raw
        self.params = params

    def _list(self, path, ref, deadline, query=None):
        # Paged (500 a page, as kubectl): a cluster's node list can be tens of MB in one answer.
        try:
            return retry_transient(lambda: self.raw.list_all(path, query or (), timeout=request_timeout(deadline)),
                                   deadline=deadline, describe=ref)
        except ApiException as exc:
            raise K8sAccessError(describe_api_error(exc, ref), status=exc.status, cause=exc)

    def nodes(self, deadline, selector=""):
        query = [("labelSelector", selector)] if selector else None
        return self._list("/api/v1/nodes", "nodes", deadline, query)

    def etcd_pods(self, deadline):
        namespace = self.params["etcd_pod_namespace"]
        selector = self.params["etcd_pod_selector"]
        return self._list(api_path("/api/v1/namespaces", namespace, "pods"), "pods %s/%s" % (namespace, selector),
                          deadline, [("labelSelector", selector)])

    def etcd_endpoint_members(self):
        members = []
        for endpoint in self.params["etcd_endpoints"]:
            url = endpoint["url"].rstrip("/") + "/health"
            try:
                response = open_url(url, method="GET", timeout=5, validate_certs=self.params["etcd_validate_certs"],
                                    ca_path=self.params["etcd_ca_cert"], client_cert=self.params["etcd_client_cert"],
                                    client_key=self.params["etcd_client_key"])
                healthy, reason = parse_etcd_health(response.getcode(), response.read())
            except Exception as exc:  # pylint: disable=broad-except  # any failure to answer is unhealthy
                healthy, reason = False, "no answer: %s" % (getattr(exc, "reason", None) or exc)
            members.append({"name": endpoint["url"], "node": endpoint["node"], "healthy": healthy, "reason": reason})
        return members


def check_guards(reader, params, deadline):
    """One check of every enabled guard: a list of guard results."""
    name = params["name"]
    with_nodes = [n for n in params.get("with_nodes") or () if n != name]
    results = []
    nodes = reader.nodes(deadline)
    if find_node(nodes, name) is None:
        return [guard_result("node", FAIL, "node/%s not found; `kubectl get nodes` lists the names" % name)]
    if params["control_plane"]:
        results.append(control_plane_guard(nodes, name, params["control_plane_labels"], with_nodes))
    if parse_min_ready(params["min_ready_nodes"])[0] > 0:
        pool = reader.nodes(deadline, params["node_selector"]) if params["node_selector"] else nodes
        results.append(min_ready_guard(pool, name, params["min_ready_nodes"], with_nodes))
    if params["etcd_quorum"]:
        if params["etcd_endpoints"]:
            members = reader.etcd_endpoint_members()
        else:
            members = etcd_members_from_pods(reader.etcd_pods(deadline))
        results.append(etcd_quorum_guard(members, name, with_nodes))
    return results


def check_options(params):
    """``ModuleFailure`` for the option values the argument spec cannot refuse."""
    try:
        parse_min_ready(params["min_ready_nodes"])
    except ValueError as exc:
        raise ModuleFailure(str(exc))
    if params["wait_timeout"] < 0 or params["poll_interval"] < 1:
        raise ModuleFailure("wait_timeout must not be negative and poll_interval must be at least 1")


def wait_for_guards(reader, params, check_mode, sleep=time.sleep, clock=time.monotonic):
    """Check the guards until every one is met, ``wait_timeout`` has passed, or once in check mode.

    Returns k8s_cluster_guard's result when they are met; raises ``ModuleFailure`` with the same
    fields and every refusal in ``msg`` when they are not. A failing list call is not waited out:
    its ``K8sAccessError`` ends the wait (each call is retried on transient errors, for at least 30 s).
    """
    name = params["name"]

    def check(poll):
        results = check_guards(reader, params, max(poll.deadline, clock() + 30))
        refused = refusals(results)
        return not refused, (results, refused)

    _passed, (results, refused), poll = poll_until(check, params["wait_timeout"], params["poll_interval"],
                                                   once=check_mode, sleep=sleep, clock=clock)
    result = {"name": name, "passed": not refused, "refused": refused, "guards": results, "checks": poll.polls,
              "waited_seconds": round(poll.elapsed(), 1)}
    if not refused:
        return dict(result, changed=False)
    raise ModuleFailure("node/%s: refused by the cluster guards%s: %s" % (
        name, (" after %ds" % round(result["waited_seconds"])) if params["wait_timeout"] else "",
        "; ".join(refused)), **result)


def cluster_guard(connect, params, check_mode, sleep=time.sleep, clock=time.monotonic):
    """What k8s_cluster_guard does: the options checked, then ``wait_for_guards`` over the
    ``RawApi`` that ``connect()`` gives (asked for only once the options are good)."""
    check_options(params)
    return wait_for_guards(GuardReader(connect(), params), params, check_mode, sleep=sleep, clock=clock)
