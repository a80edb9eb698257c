# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which DaemonSets run a pod on a node, and which pods are a node's static pods (pure).

The rules of kube-controller-manager's DaemonSet controller (``NodeShouldRunDaemonPod``): the pod
it makes from the template carries the tolerations the controller adds to every DaemonSet pod
(``DAEMON_POD_TOLERATIONS``); it should run on a node when the template's ``nodeName``, if set, is
the node, its ``nodeSelector`` and required node affinity match the node, and every NoSchedule and
NoExecute taint of the node is tolerated. Objects are the API server's JSON (camelCase dicts).

Selector, affinity and toleration matching sit here, in one small file, so that the shared home
for these rules (issue #19) can take them over in one move.
"""

from __future__ import annotations

import re

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pods import is_mirror_pod

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
# The taint effects that keep a DaemonSet pod off a node (PreferNoSchedule does not).
BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")
# strconv.ParseInt(s, 10, 64), which Gt and Lt use: an optional sign and decimal digits, nothing else.
_INTEGER = re.compile(r"[+-]?[0-9]+\Z")
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


def daemon_pod_tolerations(pod_spec):
    """The tolerations of the pod the DaemonSet controller makes from ``pod_spec`` (its template's spec)."""
    pod_spec = pod_spec or {}
    added = list(DAEMON_POD_TOLERATIONS)
    if pod_spec.get("hostNetwork"):
        added.append(HOST_NETWORK_TOLERATION)
    return list(pod_spec.get("tolerations") or ()) + added


def tolerates(toleration, taint):
    """Kubernetes' ``Toleration.ToleratesTaint``: the effect and the key (each when set), then the
    operator: Exists tolerates any value, Equal (the default) only the same value. An operator this
    code does not know tolerates nothing."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(tolerations, taints):
    """The first NoSchedule or NoExecute taint no toleration covers, or None."""
    for taint in taints or ():
        if taint.get("effect") in BLOCKING_EFFECTS and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def taint_text(taint):
    value = taint.get("value")
    return "%s%s:%s" % (taint.get("key") or "", "=" + value if value else "", taint.get("effect") or "")


def _parse_int64(text):
    if not isinstance(text, str) or not _INTEGER.match(text):
        return None
    number = int(text)
    return number if _INT64[0] <= number <= _INT64[1] else None


def requirement_matches(requirement, values_by_key):
    """One NodeSelectorRequirement against labels (or fields). A requirement the API server could
    not turn into a selector (In without values, Exists with values, Gt with a non-integer) matches
    nothing, as the controller then drops its term."""
    key = requirement.get("key")
    operator = requirement.get("operator")
    values = list(requirement.get("values") or ())
    present = key in values_by_key
    value = values_by_key.get(key)
    if operator in ("In", "NotIn"):
        if not values:
            return False
        return (present and value in values) if operator == "In" else (not present or value not in values)
    if operator in ("Exists", "DoesNotExist"):
        return not values and present == (operator == "Exists")
    if operator in ("Gt", "Lt") and len(values) == 1 and present:
        mine, bound = _parse_int64(value), _parse_int64(values[0])
        if mine is None or bound is None:
            return False
        return mine > bound if operator == "Gt" else mine < bound
    return False


def _field_requirement_valid(requirement):
    """Node fields: only ``metadata.name``, with In or NotIn and exactly one value."""
    return (requirement.get("key") == "metadata.name" and requirement.get("operator") in ("In", "NotIn")
            and len(requirement.get("values") or ()) == 1)


def term_matches(term, node_name, labels):
    """A nodeSelectorTerm: every expression and field requirement; an empty term matches nothing."""
    expressions = term.get("matchExpressions") or ()
    fields = term.get("matchFields") or ()
    if not expressions and not fields:
        return False
    if not all(_field_requirement_valid(r) and requirement_matches(r, {"metadata.name": node_name})
               for r in fields):
        return False
    return all(requirement_matches(r, labels) for r in expressions)


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
        if labels.get(key) != value:
            return "nodeSelector %s=%s does not match the node's labels" % (key, value)
    terms = required_affinity_terms(pod_spec)
    if terms is not None and not any(term_matches(term, name, labels) for term in terms):
        return "its required node affinity does not match the node"
    taint = untolerated_taint(daemon_pod_tolerations(pod_spec), (node.get("spec") or {}).get("taints"))
    if taint is not None:
        return "it does not tolerate the node's taint %s" % taint_text(taint)
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
    """Whether the DaemonSet controls the pod (its controller reference: kind, name, and the UID when
    both have one), in the DaemonSet's namespace."""
    ds_meta = daemonset.get("metadata") or {}
    pod_meta = pod.get("metadata") or {}
    if pod_meta.get("namespace") != ds_meta.get("namespace"):
        return False
    for ref in pod_meta.get("ownerReferences") or ():
        if ref.get("controller") and ref.get("kind") == "DaemonSet" and ref.get("name") == ds_meta.get("name"):
            return not (ref.get("uid") and ds_meta.get("uid")) or ref["uid"] == ds_meta["uid"]
    return False
