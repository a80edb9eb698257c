# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The order in which a drain moves a node's pods: tiers, and the drain that runs them one after another.

A pod's tier is ``(critical, order, priority)``, lowest first:

- ``order``: the ``order`` of the first of the user's ``drain_rules`` whose ``selector`` (a
  ``metav1.LabelSelector`` over the pod's labels, ``_selectors.label_selector_matches``) and
  ``namespace_selector`` (over its namespace's labels) both select the pod; 0 when none does. A
  missing selector selects every pod (every namespace), as in Cluster API's MachineDrainRules, whose
  ``order`` this is: lower orders drain first, a database's clients (order 0) before the database
  (order 10);
- ``critical``: the pod's PriorityClass is ``system-cluster-critical`` or ``system-node-critical``
  (Karpenter's test), or its ``spec.priority`` is at least 2000000000 (the kubelet's
  ``IsCriticalPodBasedOnPriority``, ``SystemCriticalPriority``; user classes cannot reach it). These
  pods go after every other pod, whatever their order, as Karpenter and the kubelet's graceful node
  shutdown let the cluster's own components (DNS, metrics, the network) stay while the rest leaves;
- ``priority``: ``spec.priority`` (0 when unset), lowest first, as graceful node shutdown by pod
  priority does.

``drain_order`` chooses how much of that applies: ``priority`` (all three), ``critical_last``
(``critical`` and ``order``; priorities otherwise ignored), ``none`` (``order`` only: without rules
one tier, every pod at once, as ``kubectl drain``). Pods of one tier are evicted together (up to
``max_concurrency`` requests in flight); a tier starts only when every pod of the tiers before it is
gone from the node. Pods the drain does not move (skipped mirror and DaemonSet pods, refused pods)
are in no tier.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _eviction
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    METADATA_ONLY,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pods import (
    PLAN_DELETE,
    PLAN_EVICT,
    PLAN_WAIT,
    PLAN_WAIT_COMPLETED,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._selectors import label_selector_matches

MODE_PRIORITY = "priority"
MODE_CRITICAL_LAST = "critical_last"
MODE_NONE = "none"
MODES = (MODE_PRIORITY, MODE_CRITICAL_LAST, MODE_NONE)

CRITICAL_CLASSES = ("system-cluster-critical", "system-node-critical")
SYSTEM_CRITICAL_PRIORITY = 2000000000
ORDER_MIN, ORDER_MAX = -(2 ** 31), 2 ** 31 - 1   # int32, as MachineDrainRule's order
# a pod waited for (terminating, or labelled wait-completed) holds the later tiers as an evicted one does
TIERED_PLANS = (PLAN_EVICT, PLAN_DELETE, PLAN_WAIT, PLAN_WAIT_COMPLETED)
RULE_KEYS = ("selector", "namespace_selector", "order")
SELECTOR_KEYS = ("matchLabels", "matchExpressions")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
# How many pods a tier's progress names before "and N more".
HOLDERS_NAMED = 5

# Tier states in the result's ``tiers``.
TIER_PLANNED = "planned"          # check mode: nothing was done
TIER_DRAINED = "drained"          # every pod gone (with dry_run=server: every pod answered)
TIER_UNFINISHED = "unfinished"    # started; pods still on the node when the drain stopped
TIER_NOT_STARTED = "not_started"  # a tier before it did not finish, or the drain was refused


# --- the rule ---------------------------------------------------------------------------------

def pod_priority(pod):
    """``spec.priority`` (the Priority admission plugin copies it from the class), 0 when unset."""
    value = ((pod or {}).get("spec") or {}).get("priority")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def is_critical(pod):
    """A system-critical pod: one of the two system PriorityClasses, or priority >= 2000000000."""
    spec = (pod or {}).get("spec") or {}
    return spec.get("priorityClassName") in CRITICAL_CLASSES or pod_priority(pod) >= SYSTEM_CRITICAL_PRIORITY


def _selects(selector, labels):
    """A rule's selector: missing (None) selects everything, otherwise ``metav1.LabelSelector``."""
    return True if selector is None else label_selector_matches(selector, labels)


def rule_for(pod, rules, namespace_labels=None):
    """Index of the first rule that selects the pod, or None. ``namespace_labels``: namespace name ->
    its labels (needed only by rules with a ``namespace_selector``)."""
    meta = (pod or {}).get("metadata") or {}
    labels = meta.get("labels") or {}
    ns_labels = (namespace_labels or {}).get(meta.get("namespace") or "") or {}
    for index, rule in enumerate(rules or ()):
        if _selects(rule.get("selector"), labels) and _selects(rule.get("namespace_selector"), ns_labels):
            return index
    return None


def tier_key(pod, rules=(), mode=MODE_PRIORITY, namespace_labels=None):
    """``(critical, order, priority)`` of the pod's tier as ints (False/True as 0/1), lowest first;
    the parts ``mode`` does not use are 0."""
    index = rule_for(pod, rules, namespace_labels)
    order = (rules[index].get("order") or 0) if index is not None else 0
    critical = int(is_critical(pod)) if mode in (MODE_PRIORITY, MODE_CRITICAL_LAST) else 0
    priority = pod_priority(pod) if mode == MODE_PRIORITY else 0
    return critical, order, priority


def tier_fields(key, mode):
    """How a result shows a tier (without its index): ``order``, ``critical``, ``priority``; the
    parts ``mode`` does not tier by are None."""
    critical, order, priority = key
    return {"order": order,
            "critical": bool(critical) if mode in (MODE_PRIORITY, MODE_CRITICAL_LAST) else None,
            "priority": priority if mode == MODE_PRIORITY else None}


def tier_text(tier, total=None):
    """``tier 2 (order 0, priority 1000)`` (with ``total``: ``tier 2 of 3 (...)``) for a ``tiers`` entry."""
    parts = ["order %d" % tier["order"]]
    if tier["critical"]:
        parts.append("system-critical")
    if tier["priority"] is not None:
        parts.append("priority %d" % tier["priority"])
    return "tier %d%s (%s)" % (tier["index"], " of %d" % total if total else "", ", ".join(parts))


def validate_rules(rules):
    """Errors in ``drain_rules`` (each naming the rule by its position), [] when they are usable.

    A selector Kubernetes would refuse is an error here: ``label_selector_matches`` lets such a
    selector match nothing, which would put pods silently in the wrong tier."""
    errors = []
    for position, rule in enumerate(rules or ()):
        where = "drain_rules[%d]" % position
        if not isinstance(rule, dict):
            errors.append("%s must be a dict with selector, namespace_selector and order" % where)
            continue
        unknown = sorted(set(rule) - set(RULE_KEYS))
        if unknown:
            errors.append("%s: unknown key(s) %s; a rule has %s" % (where, ", ".join(unknown), ", ".join(RULE_KEYS)))
        order = rule.get("order")
        if not isinstance(order, int) or isinstance(order, bool) or not ORDER_MIN <= order <= ORDER_MAX:
            errors.append("%s: order must be an integer from %d to %d" % (where, ORDER_MIN, ORDER_MAX))
        for field in ("selector", "namespace_selector"):
            if rule.get(field) is not None:
                errors.extend("%s.%s: %s" % (where, field, error) for error in selector_errors(rule[field]))
    return errors


def selector_errors(selector):
    """What Kubernetes would refuse in a ``metav1.LabelSelector``."""
    if not isinstance(selector, dict):
        return ["must be a label selector (matchLabels, matchExpressions)"]
    errors = []
    unknown = sorted(set(selector) - set(SELECTOR_KEYS))
    if unknown:
        errors.append("unknown key(s) %s; a label selector has matchLabels and matchExpressions" % ", ".join(unknown))
    labels = selector.get("matchLabels")
    if labels is not None and not (isinstance(labels, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
        errors.append("matchLabels must map label keys to string values")
    for position, requirement in enumerate(selector.get("matchExpressions") or ()):
        if not isinstance(requirement, dict) or not isinstance(requirement.get("key"), str):
            errors.append("matchExpressions[%d] needs a key" % position)
            continue
        operator = requirement.get("operator")
        values = requirement.get("values") or []
        if operator not in OPERATORS:
            errors.append("matchExpressions[%d]: operator %r is not one of %s" % (position, operator, ", ".join(OPERATORS)))
        elif operator in ("In", "NotIn") and not values:
            errors.append("matchExpressions[%d]: %s needs values" % (position, operator))
        elif operator in ("Exists", "DoesNotExist") and values:
            errors.append("matchExpressions[%d]: %s takes no values" % (position, operator))
    return errors


def uses_namespace_labels(rules):
    return any((rule or {}).get("namespace_selector") is not None for rule in rules or ())


def list_namespace_labels(raw, deadline):
    """Namespace name -> labels, for rules with a ``namespace_selector`` (one paged metadata list)."""
    items = retry_transient(lambda: raw.list_all("/api/v1/namespaces", accept=METADATA_ONLY,
                                                 timeout=request_timeout(deadline), count_as="list namespaces"),
                            deadline=deadline, describe="namespaces (drain_rules' namespace_selector)")
    return dict(((item.get("metadata") or {}).get("name"), (item.get("metadata") or {}).get("labels") or {})
                for item in items)


def assign(entries, pods_by_key, rules=(), mode=MODE_PRIORITY, namespace_labels=None):
    """Put every entry the drain moves (plan evict, delete, wait or wait_completed) in its tier: sets ``tier``
    (``index`` from 1, lowest first, and ``tier_fields``) and ``drain_rule`` (index of the rule that
    gave its order, or None) on each entry; None for the others. Returns the tiers, lowest first:
    ``{"index", "order", "critical", "priority", "pods"}`` (``pods``: how many)."""
    keys = {}
    for entry in entries:
        entry["tier"] = entry["drain_rule"] = None
        if entry["plan"] in TIERED_PLANS:
            pod = pods_by_key[(entry["namespace"], entry["name"])]
            entry["drain_rule"] = rule_for(pod, rules, namespace_labels)
            keys[id(entry)] = tier_key(pod, rules, mode, namespace_labels)
    tiers = []
    by_key = {}
    for index, key in enumerate(sorted(set(keys.values())), 1):
        tier = dict(tier_fields(key, mode), index=index, pods=0)
        by_key[key] = tier
        tiers.append(tier)
    for entry in entries:
        key = keys.get(id(entry))
        if key is not None:
            tier = by_key[key]
            tier["pods"] += 1
            entry["tier"] = dict((field, tier[field]) for field in ("index", "order", "critical", "priority"))
    return tiers


# --- running the tiers ------------------------------------------------------------------------

def _names(refs):
    shown = ", ".join(refs[:HOLDERS_NAMED])
    return shown + (" and %d more" % (len(refs) - HOLDERS_NAMED) if len(refs) > HOLDERS_NAMED else "")


def run_tiers(drainer, tasks, tiers, dry_run=False, clock=time.monotonic):
    """Run ``drainer`` over the tasks one tier at a time (``task.entry["tier"]["index"]``), lowest
    first, each when every pod of the tiers before it is gone; with ``dry_run`` (nothing goes) each
    tier runs when the one before has its answers. Returns the per-pod results and fills each of
    ``tiers`` with ``state`` and ``seconds`` (and ``held_by`` for an unfinished tier)."""
    groups = dict((tier["index"], []) for tier in tiers)
    for task in tasks:
        groups[task.entry["tier"]["index"]].append(task)
    results = []
    holder = None                    # the tier that did not finish, and stops the rest
    for position, tier in enumerate(tiers):
        group = groups[tier["index"]]
        tier["seconds"] = 0.0
        if holder is not None or not group:
            tier["state"] = TIER_NOT_STARTED if holder is not None else TIER_DRAINED
            for task in group:
                task.state = _eviction.PodTask.DONE
                task.action = _eviction.ACTION_FAILED
                task.reason = "not evicted: %s starts only when %s is gone, which still had %s" % (
                    tier_text(tier), tier_text(holder), _names(holder["held_by"]))
                results.append(task.result(clock()))
            continue
        if position and drainer.pdbs is not None:
            drainer.refresh_pdbs(group)
        started = clock()
        tier_results = drainer.run(group)
        tier["seconds"] = round(clock() - started, 3)
        results.extend(tier_results)
        left = ["%s/%s" % (r["namespace"], r["name"]) for r in tier_results if r["action"] == _eviction.ACTION_FAILED]
        if left and not dry_run:
            tier["state"] = TIER_UNFINISHED
            tier["held_by"] = left
            holder = tier
        else:
            tier["state"] = TIER_DRAINED
    return results


def progress_text(tiers):
    """Which tier held the drain up, with which pods, and what did not start; None when no tier did."""
    unfinished = [tier for tier in tiers if tier.get("state") == TIER_UNFINISHED]
    if not unfinished or len(tiers) < 2:
        return None
    tier = unfinished[0]
    waiting = [t for t in tiers if t.get("state") == TIER_NOT_STARTED]
    text = "%s was in progress, held by %s" % (tier_text(tier, len(tiers)), _names(tier["held_by"]))
    if waiting:
        text += "; %d later tier(s) with %d pod(s) not started" % (len(waiting), sum(t["pods"] for t in waiting))
    return text


def summary(tiers, state):
    """The result's ``tiers`` when none ran (check mode, a refusal): each with ``state``."""
    for tier in tiers:
        tier.setdefault("state", state)
        tier.setdefault("seconds", 0.0)
    return tiers
