# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and patching Node objects over ``_k8s_client.RawApi``, with the shared retry rules.

- cordon (k8s_node_cordon, and the drain's cordon): ``set_unschedulable``, ``patch_unschedulable``,
  ``cordon_result``;
- taints (k8s_node_taint): ``taint_node``, over ``converge_taints`` (read, merge, write guarded by
  resourceVersion, redo on a conflict) and ``NodeTaints``;
- both take the option ``exclude_from_load_balancers`` (``_lb_exclusion``) into the same write.

What to write is decided by the pure functions of ``_nodes``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import random
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _lb_exclusion
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    JSON_PATCH,
    STRATEGIC_MERGE_PATCH,
    ApiException,
    K8sAccessError,
    api_path,
    pods_on_node,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import (
    cordon_patch,
    is_unschedulable,
    merge_taints,
    node_summary,
    noexecute_evictions,
    noexecute_warning,
    taints_json_patch,
    validate_taints,
)

NODES = "/api/v1/nodes"


def node_path(name):
    return api_path(NODES, name)


def read_node(raw, name, deadline, missing_ok=False):
    """The node as a plain dict; None when it does not exist and ``missing_ok`` (else the 404 raises).

    ``raw`` is a ``_k8s_client.RawApi``."""
    try:
        return retry_transient(
            lambda: raw.call("GET", node_path(name), timeout=request_timeout(deadline), count_as="get node"),
            deadline=deadline, describe="node/%s" % name)
    except ApiException as exc:
        if missing_ok and exc.status == 404:
            return None
        raise


def patch_node(raw, name, patch, content_type, deadline):
    """One PATCH of the node; returns the node after it. No retry here: callers wrap it in
    ``retry_transient`` their own way (a patch guarded by resourceVersion must be recomputed)."""
    return raw.call("PATCH", node_path(name), body=patch, content_type=content_type,
                    timeout=request_timeout(deadline), count_as="patch node")


def patch_unschedulable(raw, name, unschedulable, deadline, label=None):
    """One strategic-merge patch of ``spec.unschedulable`` (unless None) and the load-balancer
    label change ``label`` (``_lb_exclusion.label_change``; nobody else's data is in it, so no
    resourceVersion guard); returns the node after it."""
    patch = cordon_patch(unschedulable) if unschedulable is not None else {}
    patch.update(_lb_exclusion.merge_patch(label))
    return patch_node(raw, name, patch, STRATEGIC_MERGE_PATCH, deadline)


def set_unschedulable(raw, name, unschedulable, check_mode, deadline, exclude_from_load_balancers=None):
    """Read the node and patch ``spec.unschedulable`` when it differs, as ``kubectl cordon`` and
    ``uncordon`` do (None: left as it is), with the load-balancer label of
    ``exclude_from_load_balancers`` (``_lb_exclusion``) in the same patch; returns (changed, node
    before, node after). Check mode writes nothing and returns the node as it would be."""
    before = read_node(raw, name, deadline)
    cordon = None if unschedulable is None or is_unschedulable(before) == unschedulable else unschedulable
    label = _lb_exclusion.label_change(before, exclude_from_load_balancers)
    if cordon is None and label is None:
        return False, before, before
    if check_mode:
        after = _lb_exclusion.apply(before, label)
        if cordon is not None:
            after.setdefault("spec", {})["unschedulable"] = cordon
        return True, before, after
    after = retry_transient(lambda: patch_unschedulable(raw, name, cordon, deadline, label),
                            deadline=deadline, describe="node/%s" % name)
    return True, before, after


def cordon_result(name, changed, before, after, diff):
    """What k8s_node_cordon returns."""
    summary = node_summary(after)
    result = {
        "changed": changed,
        "name": name,
        "unschedulable": summary["unschedulable"],
        "resource_version": summary["resource_version"],
        "taints": summary["taints"],
        "excluded_from_load_balancers": _lb_exclusion.excluded(after),
    }
    result.update(_lb_exclusion.label_diff(before, after))
    if diff:
        header = "node/%s" % name
        result["diff"] = {
            "before_header": header,
            "after_header": header,
            "before": {"spec": {"unschedulable": is_unschedulable(before)}},
            "after": {"spec": {"unschedulable": summary["unschedulable"]}},
        }
        _label_diff(result["diff"], before, after)
    return result


def _label_diff(diff, before, after):
    """The load-balancer label in a diff, when the task changed it."""
    if _lb_exclusion.excluded(before) != _lb_exclusion.excluded(after):
        for side, node in (("before", before), ("after", after)):
            value = _lb_exclusion.node_labels(node).get(_lb_exclusion.LABEL)
            diff[side]["metadata"] = {"labels": {_lb_exclusion.LABEL: value}}


def check_taint_request(name, taints, state, replace):
    """Raise ``ModuleFailure`` when k8s_node_taint's options ask for something it cannot do."""
    if replace and state == "absent":
        raise ModuleFailure("replace=true applies to state=present only")
    errors = validate_taints(taints, state)
    if errors:
        raise ModuleFailure("invalid taints for node/%s: %s" % (name, "; ".join(errors)))


def is_write_conflict(exc, tested_version, version_now):
    """Whether a refused guarded write means "the node changed since we read it".

    A stale resourceVersion in storage gives 409. A failed JSON-patch ``test`` gives 422 with a
    generic "the server rejected our request" text that does not say which op failed, so a 422
    counts as a conflict only when the node's resourceVersion has indeed moved; otherwise the
    values were refused and the error stands.
    """
    status = getattr(exc, "status", None)
    if status == 409:
        return True
    return status == 422 and version_now != tested_version


class NodeTaints:
    """Reads and writes one node's taints through the API (kept apart so tests can interpose)."""

    def __init__(self, raw, name, deadline):
        self.raw = raw
        self.name = name
        self.ref = "node/%s" % name
        self.deadline = deadline

    def read(self):
        return read_node(self.raw, self.name, self.deadline)

    def write(self, resource_version, taints, unschedulable=None, label_ops=()):
        """The taint list (and ``spec.unschedulable`` unless None, and the load-balancer label's
        ``label_ops``) in one write guarded by ``resource_version``."""
        patch = taints_json_patch(resource_version, taints)
        if unschedulable is not None:
            patch.append({"op": "add", "path": "/spec/unschedulable", "value": bool(unschedulable)})
        patch.extend(label_ops)
        return retry_transient(
            lambda: patch_node(self.raw, self.name, patch, JSON_PATCH, self.deadline),
            deadline=self.deadline, describe=self.ref)

    def pods(self):
        return retry_transient(
            lambda: pods_on_node(self.raw, self.name, timeout=request_timeout(self.deadline)),
            deadline=self.deadline, describe="node/%s (listing its pods)" % self.name)


def converge_taints(nodes, requested, state, replace, check_mode, deadline, clock=time.monotonic,
                    sleep=time.sleep, unschedulable=None, exclude_from_load_balancers=None):
    """Read, merge, write guarded by resourceVersion; on a conflict read again and redo.
    ``unschedulable`` (unless None) is set in the same write (a cordon or uncordon with the taints),
    and so is the load-balancer label of ``exclude_from_load_balancers`` (``_lb_exclusion``).

    Returns (before_node, after_node, change, conflict_retries). ``before_node`` is the read the
    final decision was based on; ``change["changed"]`` also counts a change of ``spec.unschedulable``.
    """
    conflicts = 0
    refused = None  # (resourceVersion we tested, the ApiException) of the last refused write
    while True:
        if refused is not None:
            # a short, growing pause so two writers racing in lockstep fall out of step
            sleep(min(1.0, 0.02 * 2 ** min(conflicts, 6)) * random.uniform(0.5, 1.0))
        node = nodes.read()
        version = (node.get("metadata") or {}).get("resourceVersion")
        if refused is not None:
            if not is_write_conflict(refused[1], refused[0], version):
                raise refused[1]
            conflicts += 1
            if clock() >= deadline:
                raise K8sAccessError(
                    "%s: the node kept changing while its taints were written (%d conflicting writes); "
                    "nothing was changed, run the task again" % (nodes.ref, conflicts),
                    status=409, cause=refused[1])
            refused = None
        current = (node.get("spec") or {}).get("taints") or []
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        change = merge_taints(current, requested, state, replace, now=now)
        cordon = None if unschedulable is None or is_unschedulable(node) == unschedulable else unschedulable
        label = _lb_exclusion.label_change(node, exclude_from_load_balancers)
        if cordon is not None or label is not None:
            change = dict(change, changed=True)
        if not change["changed"]:
            return node, node, change, conflicts
        if check_mode:
            after = _lb_exclusion.apply(node, label)
            after.setdefault("spec", {})["taints"] = change["taints"]
            if cordon is not None:
                after["spec"]["unschedulable"] = cordon
            return node, after, change, conflicts
        try:
            after = nodes.write(version, change["taints"], cordon, _lb_exclusion.json_patch_ops(node, label))
            return node, after, change, conflicts
        except ApiException as exc:
            if getattr(exc, "status", None) not in (409, 422):
                raise
            refused = (version, exc)


def taint_intent(node, taints, state, replace, exclude_from_load_balancers=None):
    """What ``taint_node`` is about to add to ``node`` as read: ``{"taints_added", "labels_added"}``
    for the phase record written ahead of it (``_maintenance_state.record_phase``)."""
    current = (node.get("spec") or {}).get("taints") or []
    added = merge_taints(current, taints, state, replace)["added"] if state == "present" else []
    return {"taints_added": added, "labels_added": _lb_exclusion.labels_to_add(node, exclude_from_load_balancers)}


def taint_node(raw, name, taints, state, replace, check_mode, deadline, diff, warn, unschedulable=None,
               exclude_from_load_balancers=None):
    """What k8s_node_taint does once its options are checked (``check_taint_request``): converge
    the node's taints (and ``spec.unschedulable`` unless None, and the load-balancer label, in the
    same write) and return the module's result; ``warn(msg)`` gets the warning about pods an added
    NoExecute taint deletes."""
    nodes = NodeTaints(raw, name, deadline)
    # The pods must be listed before the write: the taint eviction controller deletes the
    # intolerant ones within moments of it.
    pods = []
    if state == "present" and any(t.get("effect") == "NoExecute" for t in taints):
        pods = nodes.pods()
    before, after, change, conflicts = converge_taints(nodes, taints, state, replace, check_mode, deadline,
                                                       unschedulable=unschedulable,
                                                       exclude_from_load_balancers=exclude_from_load_balancers)
    evictions = noexecute_evictions(pods, change["added"])
    if evictions:
        warn(noexecute_warning(name, change["added"], evictions, check_mode))
    taints_after = list((after.get("spec") or {}).get("taints") or [])
    taints_before = list((before.get("spec") or {}).get("taints") or [])
    result = {
        "changed": change["changed"],
        "name": name,
        "taints": taints_after,
        "taints_before": taints_before,
        "added": change["added"],
        "removed": change["removed"],
        "resource_version": (after.get("metadata") or {}).get("resourceVersion"),
        "conflict_retries": conflicts,
        "noexecute_evictions": evictions,
        "unschedulable": is_unschedulable(after),
        "excluded_from_load_balancers": _lb_exclusion.excluded(after),
    }
    result.update(_lb_exclusion.label_diff(before, after))
    if diff:
        header = "node/%s" % name
        result["diff"] = {
            "before_header": header,
            "after_header": header,
            "before": {"spec": {"taints": taints_before}},
            "after": {"spec": {"taints": taints_after}},
        }
        if unschedulable is not None:
            result["diff"]["before"]["spec"]["unschedulable"] = is_unschedulable(before)
            result["diff"]["after"]["spec"]["unschedulable"] = is_unschedulable(after)
        _label_diff(result["diff"], before, after)
    return result
