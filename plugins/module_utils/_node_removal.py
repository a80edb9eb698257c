# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a node may be removed from the cluster: pure decisions over the node and its pods."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pods import (
    is_daemonset_pod,
    is_finished,
    is_mirror_pod,
    is_terminating,
    pod_ref,
)


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
