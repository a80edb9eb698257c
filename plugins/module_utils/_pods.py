# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decide what a drain does with each pod on a node (pure functions over pod JSON).

Pods are plain dicts as the API server sends them (camelCase keys), so these functions need no
client library and the tests can write pods as literals.

What a pod is (mirror, DaemonSet, finished, terminating, its controller) comes from ``_pod_rules``
and ``_api_objects``; this module decides the drain's plan from those facts.

The rules follow ``kubectl drain`` (k8s.io/kubectl/pkg/drain/filters.go) with three deliberate
differences (k8s_node_drain's notes; tests/integration/test_drain_parity_kubectl.py proves the
rest equal to kubectl's own decisions):

- every rule a pod breaks is reported, each with the option that would allow it, where kubectl
  stops at the first one (a pod with an emptyDir and no controller needs both
  ``delete_emptydir_data`` and ``force``, and the user learns that in one run);
- a pod that is already terminating is waited for, not evicted a second time, and never blocks
  the drain (kubectl refuses one with no controller without ``--force``, or with emptyDir
  without ``--delete-emptydir-data``, though it is going anyway);
- a finished pod is deleted, where kubectl evicts it (the eviction API deletes it the same way,
  without consulting budgets).

Plans, in the order the rules are tried:

==========  =====================================================================================
``skip``    mirror pod of a static pod (the kubelet owns it); DaemonSet pod with
            ``ignore_daemonsets``; pod terminating for longer than ``skip_wait_for_delete_timeout``
``refuse``  DaemonSet pod without ``ignore_daemonsets``; pod whose DaemonSet is gone, without
            ``force``; running pod with emptyDir data without ``delete_emptydir_data``; running
            pod with no controller without ``force``
``wait``    already terminating (has a ``deletionTimestamp``)
``delete``  finished (phase Succeeded or Failed): nothing runs, no budget applies
``wait_completed``  labelled ``cluster.x-k8s.io/drain: wait-completed``: not evicted, waited for
            until it finishes or is gone
``evict``   everything else, through the eviction API so PodDisruptionBudgets are honoured
==========  =====================================================================================

Opt-outs of other tools (``_pod_rules.opt_outs``) come first: a pod that Karpenter's
``do-not-disrupt`` or the cluster autoscaler's ``safe-to-evict: "false"`` protects is ``refuse``
(with every other rule it breaks), whatever the rules below say of it; Cluster API's
``cluster.x-k8s.io/drain: skip`` is ``skip`` right after the mirror and deleted-long-ago rules, and
``wait-completed`` is ``wait_completed`` right after the finished rule. ``ignore_opt_outs`` names the
vocabularies a run disregards.
"""

from __future__ import annotations

import calendar
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._api_objects import controller_of
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._lease import parse_time
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pod_rules import (
    BLOCK,
    CAPI_DRAIN,
    IGNORED,
    SKIP,
    WAIT_COMPLETED,
    is_daemonset_pod,
    is_finished,
    is_mirror_pod,
    is_terminating,
    pod_opt_outs,
)

PLAN_EVICT = "evict"
PLAN_DELETE = "delete"
PLAN_SKIP = "skip"
PLAN_WAIT = "wait"
PLAN_REFUSE = "refuse"
PLAN_WAIT_COMPLETED = "wait_completed"
PLANS = (PLAN_EVICT, PLAN_DELETE, PLAN_SKIP, PLAN_WAIT, PLAN_REFUSE, PLAN_WAIT_COMPLETED)

# Why a pod blocks the drain (for the pod, then for a group of pods in the failure message), and
# the module option that lets the drain take it anyway.
BLOCK_DAEMONSET = ("DaemonSet-managed pod (the DaemonSet tolerates the cordon and would recreate it)",
                   "ignore_daemonsets", "DaemonSet-managed pods")
BLOCK_ORPHANED_DAEMONSET = ("DaemonSet pod whose DaemonSet no longer exists", "force",
                            "pods of DaemonSets that no longer exist")
BLOCK_EMPTYDIR = ("uses emptyDir volumes, whose data is lost on eviction", "delete_emptydir_data",
                  "pods with emptyDir data")
BLOCK_UNMANAGED = ("declares no controller, so nothing recreates it", "force",
                   "pods that declare no controller")


def opt_out_blocker(opt_out):
    """The blocker of a pod that an opt-out protects: the mark, and the override that lets the drain take it."""
    where = "label" if opt_out["key"] == CAPI_DRAIN else "annotation"
    note = ": " + opt_out["note"] if opt_out.get("note") else ""
    return ("%s protects it (%s)%s" % (opt_out["text"], opt_out["vocabulary"], note), "ignore_opt_outs",
            "pods with %s %s" % (where, opt_out["key"]), "ignore_opt_outs: [%s]" % opt_out["vocabulary"])


def pod_key(pod):
    """``(namespace, name)`` of a pod dict."""
    meta = pod.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def pod_ref(pod):
    """``namespace/name``, the way messages name a pod."""
    return "%s/%s" % pod_key(pod)


def has_emptydir(pod):
    return any("emptyDir" in (volume or {}) for volume in (pod.get("spec") or {}).get("volumes") or ())


def parse_timestamp(value):
    """Whole seconds since the epoch of RFC 3339 text (``Z`` as the API server writes it, or an
    offset such as ``+00:00``; any fraction), or None."""
    parsed = parse_time(value)
    return None if parsed is None else calendar.timegm(parsed.utctimetuple())


def terminating_seconds(pod, now):
    """How long the pod has had a ``deletionTimestamp`` (None when it has none)."""
    stamp = parse_timestamp((pod.get("metadata") or {}).get("deletionTimestamp"))
    if stamp is None:
        return None
    return max(0.0, now - stamp)


def past_skip_wait(pod, skip_wait_for_delete_timeout, now):
    """True when kubectl's ``--skip-wait-for-delete-timeout`` lets the drain stop waiting for it."""
    if not skip_wait_for_delete_timeout or skip_wait_for_delete_timeout <= 0:
        return False
    age = terminating_seconds(pod, now)
    return age is not None and age > skip_wait_for_delete_timeout


def _decision(plan, reason, blockers=(), warnings=()):
    return {
        "plan": plan,
        "reason": reason,
        "blockers": [{"reason": blocker[0], "option": blocker[1], "kind": blocker[2],
                      "override": blocker[3] if len(blocker) > 3 else "%s: true" % blocker[1]}
                     for blocker in blockers],
        "warnings": list(warnings),
    }


def classify_pod(pod, ignore_daemonsets=False, delete_emptydir_data=False, force=False,
                 skip_wait_for_delete_timeout=0, now=None, missing_daemonsets=frozenset(), ignore_opt_outs=()):
    """Decide what the drain does with one pod.

    ``missing_daemonsets`` holds ``(namespace, name)`` of DaemonSets known not to exist (the caller
    looks up each DaemonSet named by a pod once); a DaemonSet pod whose owner is missing is an
    orphan, which kubectl deletes only with ``--force``. ``ignore_opt_outs``: the opt-out
    vocabularies (``_pod_rules.VOCABULARIES``, or ``all``) this run disregards.

    Returns ``{"plan", "reason", "blockers": [{"reason", "option", "kind", "override"}], "warnings",
    "opt_outs"}`` where ``plan`` is one of ``PLANS``, ``blockers`` is non-empty exactly when the plan
    is ``refuse``, and ``opt_outs`` lists the opt-out marks that speak about the pod.
    """
    now = time.time() if now is None else now
    found = pod_opt_outs(pod, now, ignore_opt_outs)
    effects = set(opt_out["effect"] for opt_out in found)
    decision = _classify(pod, ignore_daemonsets, delete_emptydir_data, force, skip_wait_for_delete_timeout, now,
                         missing_daemonsets, effects)
    decision["warnings"].extend("%s: %s" % (opt_out["text"], opt_out["note"]) for opt_out in found
                                if opt_out["effect"] == IGNORED)
    blocking = [opt_out_blocker(opt_out) for opt_out in found if opt_out["effect"] == BLOCK]
    if blocking:
        others = [(b["reason"], b["option"], b["kind"], b["override"]) for b in decision["blockers"]]
        refused = _decision(PLAN_REFUSE, "; ".join(blocker[0] for blocker in blocking + others), blocking + others,
                            decision["warnings"])
        decision = refused
    decision["opt_outs"] = [dict((k, v) for k, v in opt_out.items() if k != "text") for opt_out in found]
    return decision


def _classify(pod, ignore_daemonsets, delete_emptydir_data, force, skip_wait_for_delete_timeout, now,
              missing_daemonsets, opt_out_effects):
    """kubectl's rules, with Cluster API's skip and wait-completed (``opt_out_effects``) in their places."""
    namespace = pod_key(pod)[0]
    if is_mirror_pod(pod):
        return _decision(PLAN_SKIP, "mirror pod of a static pod; the kubelet owns it")
    if past_skip_wait(pod, skip_wait_for_delete_timeout, now):
        return _decision(PLAN_SKIP, "terminating for more than skip_wait_for_delete_timeout (%ds)"
                         % skip_wait_for_delete_timeout)
    if SKIP in opt_out_effects:
        return _decision(PLAN_SKIP, "labelled %s=skip (Cluster API): left on the node" % CAPI_DRAIN)
    finished = is_finished(pod)
    warnings = []
    if is_daemonset_pod(pod) and not finished:
        owner = controller_of(pod)
        if (namespace, owner.get("name")) in missing_daemonsets:
            if not force:
                return _decision(PLAN_REFUSE, BLOCK_ORPHANED_DAEMONSET[0], [BLOCK_ORPHANED_DAEMONSET])
            warnings.append("orphaned DaemonSet pod (daemonset %s/%s not found)" % (namespace, owner.get("name")))
        elif ignore_daemonsets:
            return _decision(PLAN_SKIP, "DaemonSet-managed pod, ignored (ignore_daemonsets)")
        else:
            return _decision(PLAN_REFUSE, BLOCK_DAEMONSET[0], [BLOCK_DAEMONSET])
    if is_terminating(pod):
        return _decision(PLAN_WAIT, "already terminating; waiting for it to go", warnings=warnings)
    if finished:
        return _decision(PLAN_DELETE, "finished (phase %s); deleting it frees the node"
                         % pod["status"]["phase"], warnings=warnings)
    if WAIT_COMPLETED in opt_out_effects:
        return _decision(PLAN_WAIT_COMPLETED, "labelled %s=wait-completed (Cluster API): not evicted; waiting "
                         "until it finishes" % CAPI_DRAIN, warnings=warnings)
    blockers = []
    if has_emptydir(pod):
        if delete_emptydir_data:
            warnings.append("emptyDir data will be lost (delete_emptydir_data)")
        else:
            blockers.append(BLOCK_EMPTYDIR)
    if controller_of(pod) is None:
        if force:
            warnings.append("no controller will recreate it (force)")
        else:
            blockers.append(BLOCK_UNMANAGED)
    if blockers:
        return _decision(PLAN_REFUSE, "; ".join(blocker[0] for blocker in blockers), blockers)
    return _decision(PLAN_EVICT, "evictable", warnings=warnings)


def describe_pod(pod):
    """The identifying fields every per-pod result carries."""
    namespace, name = pod_key(pod)
    owner = controller_of(pod) or {}
    return {
        "namespace": namespace,
        "name": name,
        "uid": (pod.get("metadata") or {}).get("uid"),
        "owner_kind": owner.get("kind"),
        "owner_name": owner.get("name"),
    }


def plan_drain(pods, **options):
    """Classify every pod; returns one entry per pod: ``describe_pod`` fields plus the decision."""
    entries = []
    for pod in pods:
        entry = describe_pod(pod)
        entry.update(classify_pod(pod, **options))
        entries.append(entry)
    return entries


def refusal_message(node, entries):
    """One message naming every pod that blocks the drain, grouped by what is wrong with it.

    Returns None when nothing blocks.
    """
    groups = {}
    for entry in entries:
        for blocker in entry.get("blockers") or ():
            groups.setdefault((blocker["kind"], blocker["override"]), []).append(
                "%s/%s" % (entry["namespace"], entry["name"]))
    if not groups:
        return None
    parts = ["%s (set %s to drain them anyway): %s" % (kind, override, ", ".join(names))
             for (kind, override), names in sorted(groups.items())]
    blocked = sum(1 for entry in entries if entry.get("blockers"))
    return ("cannot drain node/%s, nothing was evicted: %d pod(s) block it. %s"
            % (node, blocked, "; ".join(parts)))
