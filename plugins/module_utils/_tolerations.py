# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tolerations against taints, as Kubernetes matches them (pure functions over the API's JSON dicts).

- ``tolerates(toleration, taint)``: ``Toleration.ToleratesTaint`` (k8s.io/api/core/v1): the effect
  (empty: every effect), the key (empty: every key), then the operator: ``Exists``, or ``Equal``
  (also when empty) with the same value. ``Lt`` / ``Gt`` exist only behind the alpha feature gate
  ``TaintTolerationComparisonOperators`` (off by default; the API refuses them without it), and,
  as there, do not tolerate while it is off; any other operator never tolerates either;
- ``first_toleration(tolerations, taint)``: the first one that tolerates the taint (the one the
  taint eviction controller takes);
- ``untolerated_taint(tolerations, taints, effects)``: ``FindMatchingUntoleratedTaint``, the first
  taint of those ``effects`` (the scheduler's: NoSchedule and NoExecute) nothing tolerates;
- ``noexecute_delay(tolerations, taints)``: seconds until the taint eviction controller deletes a
  pod for NoExecute ``taints``: 0 at once, None never.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")


def tolerates(toleration, taint):
    """True when ``toleration`` tolerates ``taint`` (both dicts as in a pod spec and a node spec)."""
    effect = toleration.get("effect") or ""
    if effect and effect != (taint.get("effect") or ""):
        return False
    key = toleration.get("key") or ""
    if key and key != (taint.get("key") or ""):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def first_toleration(tolerations, taint):
    """The first of ``tolerations`` that tolerates ``taint``, or None."""
    for toleration in tolerations or ():
        if tolerates(toleration, taint):
            return toleration
    return None


def untolerated_taint(tolerations, taints, effects=SCHEDULING_EFFECTS):
    """The first of ``taints`` with one of ``effects`` that no toleration tolerates, or None."""
    for taint in taints or ():
        if (taint.get("effect") or "") in effects and first_toleration(tolerations, taint) is None:
            return taint
    return None


def noexecute_delay(tolerations, taints):
    """Seconds until the taint eviction controller deletes a pod with ``tolerations`` from a node
    with the NoExecute ``taints``; 0 = at once, None = never.

    As the controller does it: for each taint the first toleration that tolerates it counts; a
    taint none tolerates means at once; otherwise the smallest ``tolerationSeconds`` among the
    counted ones (0 or less: at once), and none set means never.
    """
    used = []
    for taint in taints:
        toleration = first_toleration(tolerations, taint)
        if toleration is None:
            return 0
        used.append(toleration)
    seconds = [t.get("tolerationSeconds") for t in used if t.get("tolerationSeconds") is not None]
    if not seconds:
        return None
    return max(0, min(int(s) for s in seconds))
