# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading and patching Node objects over ``_k8s_client.RawApi``, with the shared retry rules."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    STRATEGIC_MERGE_PATCH,
    ApiException,
    api_path,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import (
    cordon_patch,
    is_unschedulable,
    node_summary,
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


def patch_unschedulable(raw, name, unschedulable, deadline):
    """One strategic-merge patch of ``spec.unschedulable`` (nobody else's data is in it, so no
    resourceVersion guard); returns the node after it."""
    return patch_node(raw, name, cordon_patch(unschedulable), STRATEGIC_MERGE_PATCH, deadline)


def set_unschedulable(raw, name, unschedulable, check_mode, deadline):
    """Read the node and patch ``spec.unschedulable`` when it differs, as ``kubectl cordon`` and
    ``uncordon`` do; returns (changed, node before, node after). Check mode writes nothing and
    returns the node as it would be."""
    before = read_node(raw, name, deadline)
    if is_unschedulable(before) == unschedulable:
        return False, before, before
    if check_mode:
        after = copy.deepcopy(before)
        after.setdefault("spec", {})["unschedulable"] = unschedulable
        return True, before, after
    after = retry_transient(lambda: patch_unschedulable(raw, name, unschedulable, deadline),
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
    }
    if diff:
        header = "node/%s" % name
        result["diff"] = {
            "before_header": header,
            "after_header": header,
            "before": {"spec": {"unschedulable": is_unschedulable(before)}},
            "after": {"spec": {"unschedulable": summary["unschedulable"]}},
        }
    return result
