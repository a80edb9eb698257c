# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading Node objects through the shared client, with the shared retry rules."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import cordon_patch


def read_node(api_client, name, deadline, missing_ok=False, core=None):
    """The node as a plain dict; None when it does not exist and ``missing_ok`` (else the 404 raises).

    ``core`` is a CoreV1Api to use instead of one made from ``api_client``.
    """
    if core is None:
        from kubernetes.client import CoreV1Api

        core = CoreV1Api(api_client)
    try:
        node = retry_transient(
            lambda: core.read_node(name, _request_timeout=request_timeout(deadline)),
            deadline=deadline, describe="node/%s" % name)
    except ApiException as exc:
        if missing_ok and exc.status == 404:
            return None
        raise
    return api_client.sanitize_for_serialization(node)


def patch_unschedulable(core, name, unschedulable, deadline):
    """One strategic-merge patch of ``spec.unschedulable`` (nobody else's data is in it, so no
    resourceVersion guard). No retry here: callers wrap it in ``retry_transient`` their own way."""
    return core.patch_node(name, cordon_patch(unschedulable),
                           _content_type="application/strategic-merge-patch+json",
                           _request_timeout=request_timeout(deadline))
