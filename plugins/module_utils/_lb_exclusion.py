# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The node out of the external load balancers while it is drained and maintained: the label
``node.kubernetes.io/exclude-from-external-load-balancers``, as pure functions over node dicts.

The service controller (and the cloud providers' load balancer controllers) take a node with the
label out of the load balancers' backends, so connections drain before the node's pods go. Karpenter
sets it while it terminates a node, aws-node-termination-handler while it drains one.

The rule of the option ``exclude_from_load_balancers`` (k8s_node_cordon, k8s_node_taint,
k8s_node_drain), decided by ``label_change``:

- ``True``: the label is added with the value ``true`` unless the node has it already; a label already
  there, whatever its value, is left as it is (it is someone else's, and the rollout keeps its hands
  off it);
- ``False``: the label is removed when the node has it (the rollout's return passes ``False`` only
  for a label its own record says it added, ``labels_added``);
- ``None``: the label is not looked at.

The change goes into the write the module makes anyway (the cordon's strategic-merge patch,
``merge_patch``; the taints' guarded JSON patch, ``json_patch_ops``), so it costs no request.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
VALUE = "true"


def node_labels(node):
    return ((node or {}).get("metadata") or {}).get("labels") or {}


def label_change(node, exclude):
    """``(key, value)`` to write (value None: remove the label), or None when nothing changes."""
    if exclude is None:
        return None
    present = LABEL in node_labels(node)
    if exclude and not present:
        return (LABEL, VALUE)
    if not exclude and present:
        return (LABEL, None)
    return None


def merge_patch(change):
    """The labels part of a strategic-merge (or JSON merge) patch: ``{"metadata": {"labels": ...}}``
    (a null value removes the key); ``{}`` for no change."""
    if change is None:
        return {}
    return {"metadata": {"labels": {change[0]: change[1]}}}


def json_pointer(key):
    """The JSON pointer (RFC 6901) of a label: ``~`` and ``/`` escaped."""
    return "/metadata/labels/" + key.replace("~", "~0").replace("/", "~1")


def json_patch_ops(node, change):
    """JSON patch operations that make ``change`` on ``node`` (after the patch's ``test`` of the
    resourceVersion, so they apply to the node as read)."""
    if change is None:
        return []
    key, value = change
    if value is None:
        return [{"op": "remove", "path": json_pointer(key)}]
    if not isinstance(((node or {}).get("metadata") or {}).get("labels"), dict):
        return [{"op": "add", "path": "/metadata/labels", "value": {key: value}}]
    return [{"op": "add", "path": json_pointer(key), "value": value}]


def apply(node, change):
    """The node as it is after ``change`` (check mode); ``node`` is not modified."""
    out = copy.deepcopy(node)
    if change is None:
        return out
    labels = out.setdefault("metadata", {}).get("labels")
    if not isinstance(labels, dict):
        labels = out["metadata"]["labels"] = {}
    if change[1] is None:
        labels.pop(change[0], None)
    else:
        labels[change[0]] = change[1]
    return out


def label_diff(before, after):
    """``{"labels_added": [...], "labels_removed": [...]}``: the load-balancer label added to or removed
    from the node between the two reads (a module's result; the role records ``labels_added``)."""
    had, has = LABEL in node_labels(before), LABEL in node_labels(after)
    return {"labels_added": [LABEL] if has and not had else [],
            "labels_removed": [LABEL] if had and not has else []}


def labels_to_add(node, exclude):
    """``[LABEL]`` when ``exclude`` would add the label to ``node`` as read, else ``[]``: the
    ``labels_added`` a phase's record names before the write (``_maintenance_state.record_phase``)."""
    change = label_change(node, exclude)
    return [LABEL] if change is not None and change[1] is not None else []


def excluded(node):
    """Whether the node carries the label (what the result's ``excluded_from_load_balancers`` says)."""
    return LABEL in node_labels(node)
