# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which DaemonSets run a pod on a node, and which pods are a node's static pods (pure).

The rules of kube-controller-manager's DaemonSet controller (``NodeShouldRunDaemonPod``): the pod
it makes from the template carries the tolerations the controller adds to every DaemonSet pod
(``DAEMON_POD_TOLERATIONS``); it should run on a node when the template's ``nodeName``, if set, is
the node, its ``nodeSelector`` and required node affinity match the node, and every NoSchedule and
NoExecute taint of the node is tolerated. Objects are the API server's JSON (camelCase dicts).

Taints against tolerations are ``_tolerations``' rules, nodeSelector and required node affinity
``_selectors``'; this file adds what the DaemonSet controller does on top of them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._api_objects import controller_of
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import taint_ref
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pod_rules import is_daemonset_ref, is_mirror_pod
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._selectors import (
    match_labels,
    node_selector_terms_match,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._tolerations import untolerated_taint

# What the DaemonSet controller adds to every pod it makes (AddOrUpdateDaemonPodTolerations): its
# pods survive node problems and run on cordoned nodes.
DAEMON_POD_TOLERATIONS = tuple(
    {"key": "node.kubernetes.io/" + key, "operator": "Exists", "effect": effect}
    for key, effect in (("not-ready", "NoExecute"), ("unreachable", "NoExecute"),
                        ("disk-pressure", "NoSchedule"), ("memory-pressure", "NoSchedule"),
                        ("pid-pressure", "NoSchedule"), ("unschedulable", "NoSchedule")))
# ... and to the pods of a host-network DaemonSet.
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                           "effect": "NoSchedule"}


def daemon_pod_tolerations(pod_spec):
    """The tolerations of the pod the DaemonSet controller makes from ``pod_spec`` (its template's spec)."""
    pod_spec = pod_spec or {}
    added = list(DAEMON_POD_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        added.append(HOST_NETWORK_TOLERATION)
    return list(pod_spec.get("tolerations") or ()) + added


def required_affinity_terms(pod_spec):
    """The nodeSelectorTerms of the required node affinity, or None when there is none."""
    required = ((((pod_spec or {}).get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return None
    return list(required.get("nodeSelectorTerms") or ())


def placement_obstacle(pod_spec, node):
    """Why the DaemonSet controller runs no pod of this template's DaemonSet on ``node``, or None
    when it runs one there. ``pod_spec`` is the DaemonSet's ``spec.template.spec``."""
    pod_spec = pod_spec or {}
    metadata = node.get("metadata") or {}
    name = metadata.get("name") or ""
    labels = metadata.get("labels") or {}
    if pod_spec.get("nodeName") and pod_spec["nodeName"] != name:
        return "its template's nodeName is %s" % pod_spec["nodeName"]
    for key, value in sorted((pod_spec.get("nodeSelector") or {}).items()):
        if not match_labels({key: value}, labels):
            return "nodeSelector %s=%s does not match the node's labels" % (key, value)
    terms = required_affinity_terms(pod_spec)
    if terms is not None and not node_selector_terms_match(terms, labels, name):
        return "its required node affinity does not match the node"
    taint = untolerated_taint(daemon_pod_tolerations(pod_spec), (node.get("spec") or {}).get("taints"))
    if taint is not None:
        return "it does not tolerate the node's taint %s" % taint_ref(taint)
    return None


def daemonset_obstacle(daemonset, node):
    """``placement_obstacle`` of a DaemonSet object; a DaemonSet being deleted runs nowhere."""
    if (daemonset.get("metadata") or {}).get("deletionTimestamp"):
        return "it is being deleted"
    template_spec = (((daemonset.get("spec") or {}).get("template") or {}).get("spec")) or {}
    return placement_obstacle(template_spec, node)


def is_node_mirror_pod(pod, node_name):
    """A mirror pod (the API server's copy of a static pod the kubelet runs from a manifest file:
    annotation ``kubernetes.io/config.mirror``) bound to ``node_name``."""
    return is_mirror_pod(pod) and ((pod.get("spec") or {}).get("nodeName") == node_name)


def is_pod_of_daemonset(pod, daemonset):
    """Whether the DaemonSet controls the pod (its controller reference: an apps/v1 DaemonSet of that
    name, and that UID when both have one), in the DaemonSet's namespace."""
    ds_meta = daemonset.get("metadata") or {}
    if ((pod.get("metadata") or {}).get("namespace")) != ds_meta.get("namespace"):
        return False
    ref = controller_of(pod)
    if not is_daemonset_ref(ref) or ref.get("name") != ds_meta.get("name"):
        return False
    return not (ref.get("uid") and ds_meta.get("uid")) or ref["uid"] == ds_meta["uid"]
