# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a pod is, read from its JSON dict (the API server's camelCase keys): the one home of these
rules for the drain (``_pods``, ``_eviction``), the preflight, the cluster guard and node removal.

- ``is_ready``: the pod's first ``Ready`` condition is ``True`` (``podutil.IsPodReady``); what a
  PodDisruptionBudget counts as healthy and the eviction API as not "unhealthy";
- ``is_serving`` / ``serving``: Ready, Running and not being deleted, as the EndpointSlice
  controller marks an endpoint ready: a pod that serves now and keeps serving;
- ``is_mirror_pod``: the kubelet's mirror of a static pod (annotation ``kubernetes.io/config.mirror``);
- ``is_daemonset_pod``: controlled by an ``apps/v1`` DaemonSet (``_api_objects.controller_of``);
- ``is_finished`` (phase Succeeded or Failed), ``is_terminating`` (has a ``deletionTimestamp``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._api_objects import (
    controller_of,
    status_condition,
)

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
FINISHED_PHASES = ("Succeeded", "Failed")
RUNNING = "Running"


def is_ready(pod):
    """True when the pod's (first) ``Ready`` condition has status ``True``."""
    return (status_condition(pod, "Ready") or {}).get("status") == "True"


def serving(phase, terminating, ready):
    """The serving rule over the three facts it needs (for records that keep only those)."""
    return phase == RUNNING and not terminating and bool(ready)


def is_serving(pod):
    """Ready, Running and not being deleted."""
    return serving(((pod or {}).get("status") or {}).get("phase"), is_terminating(pod), is_ready(pod))


def is_mirror_pod(pod):
    return MIRROR_POD_ANNOTATION in (((pod or {}).get("metadata") or {}).get("annotations") or {})


def is_daemonset_ref(ref):
    """True when the owner reference ``ref`` (a pod's controller) is an ``apps/v1`` DaemonSet; an
    owner of another group that is also called DaemonSet is some other controller's, and its pods
    are treated like any controlled pod."""
    return bool(ref) and ref.get("kind") == "DaemonSet" and ref.get("apiVersion") == "apps/v1"


def is_daemonset_pod(pod):
    """Controlled by an ``apps/v1`` DaemonSet."""
    return is_daemonset_ref(controller_of(pod))


def is_finished(pod):
    return (((pod or {}).get("status") or {}).get("phase")) in FINISHED_PHASES


def is_terminating(pod):
    return bool(((pod or {}).get("metadata") or {}).get("deletionTimestamp"))
