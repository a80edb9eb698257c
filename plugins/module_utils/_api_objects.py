# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rules that read every kind of API object the same way (pure functions over the API's JSON dicts).

- ``controller_of(obj)``: the owner reference marked ``controller: true``, as
  ``metav1.GetControllerOf`` finds it (the first such reference), for a pod, a ReplicaSet or
  anything else;
- ``status_condition(obj, cond_type)``: the ``status.conditions`` entry of a type (a node's
  ``Ready``, a pod's ``Ready``, a Deployment's ``Progressing``); the first one of that type counts,
  as the Kubernetes helpers (``GetPodCondition``, ``GetNodeCondition``) take it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


def controller_of(obj):
    """The owner reference of ``obj`` marked ``controller: true`` (the first), or None."""
    for ref in ((obj or {}).get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def status_condition(obj, cond_type):
    """The first ``status.conditions`` entry of type ``cond_type``, or None."""
    for cond in ((obj or {}).get("status") or {}).get("conditions") or ():
        if cond.get("type") == cond_type:
            return cond
    return None
