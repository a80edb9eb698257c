# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Removing a node from the cluster (module k8s_node_remove): whether it may go, pure decisions over
the node and its pods (``pods_in_the_way``, ``removal_refusal``), and the removal itself
(``remove_node``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    pods_on_node,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import (
    node_path,
    read_node,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pod_rules import (
    is_daemonset_pod,
    is_finished,
    is_mirror_pod,
    is_terminating,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pods import pod_ref


def pods_in_the_way(pods):
    """Pods that would lose their node: everything but DaemonSet, mirror, finished and terminating pods.

    These are exactly the pods a drain moves, so a drained node has none.
    """
    return [pod_ref(pod) for pod in pods
            if not (is_daemonset_pod(pod) or is_mirror_pod(pod) or is_finished(pod) or is_terminating(pod))]


def removal_refusal(name, node, blocking_pods, require_cordoned, require_drained):
    """The message refusing to remove the node, or None when it may go."""
    problems = []
    if require_cordoned and not (node.get("spec") or {}).get("unschedulable"):
        problems.append("it is not cordoned (new pods could still land on it)")
    if require_drained and blocking_pods:
        shown = ", ".join(blocking_pods[:10]) + (" and %d more" % (len(blocking_pods) - 10) if len(blocking_pods) > 10 else "")
        problems.append("%d pod(s) still run on it: %s" % (len(blocking_pods), shown))
    if not problems:
        return None
    return ("refusing to delete node/%s: %s; drain it first with kubeops.node_maintenance.k8s_node_drain, "
            "or set require_drained=false / require_cordoned=false to delete it anyway"
            % (name, "; ".join(problems)))


def remove_node(raw, name, check_mode, deadline, require_cordoned=True, require_drained=True):
    """Delete node ``name`` unless ``removal_refusal`` objects; what k8s_node_remove returns.

    A missing node is no change. A refusal raises ``ModuleFailure`` with the result's fields
    (``existed``, ``uid``, ``blocking_pods``, ``changed=false``). The DELETE is guarded by the uid
    read, so a node object that re-registered meanwhile is never deleted (HTTP 409); one already gone
    (404) counts as removed. Check mode deletes nothing. ``raw`` is a ``_k8s_client.RawApi``.
    """
    ref = "node/%s" % name
    node = read_node(raw, name, deadline, missing_ok=True)
    if node is None:
        return {"changed": False, "existed": False}
    pods = retry_transient(
        lambda: pods_on_node(raw, name, timeout=request_timeout(deadline)),
        deadline=deadline, describe="pods on %s" % ref)
    blocking = pods_in_the_way(pods)
    result = {"existed": True, "uid": node["metadata"].get("uid"), "blocking_pods": blocking}
    refusal = removal_refusal(name, node, blocking, require_cordoned, require_drained)
    if refusal:
        raise ModuleFailure(refusal, changed=False, **result)
    if not check_mode:
        try:
            retry_transient(
                lambda: raw.call("DELETE", node_path(name), body={"preconditions": {"uid": result["uid"]}},
                                 timeout=request_timeout(deadline), count_as="delete node"),
                deadline=deadline, describe=ref)
        except ApiException as exc:
            if exc.status != 404:
                raise
    result["changed"] = True
    return result
