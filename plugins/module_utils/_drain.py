# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drain one node, as k8s_node_drain does: cordon it, decide for each of its pods (``_pods``),
evict them (``_eviction.Drainer``), and say how the drain ended.

``drain(params, check_mode, started, connect, warn)`` returns the module's result. A drain that did not
end with the node drained raises ``ModuleFailure`` with the same result fields, among them
``stopped_by`` (one of ``STOPPED_BY``), so a caller decides what to do next from data, not from
the message.

Re-cordon guard: a drain that cordoned the node reads it every few seconds anyway (was it
deleted?); when that read finds it schedulable again (someone uncordoned it mid-drain), the drain
cordons it again, warns, and writes a Warning Event ``MaintenanceRecordoned`` on the node
(``recordoned`` counts them). Pods the scheduler put on the node meanwhile are not part of the
drain: one more list of the node's pods at the end finds them, and the drain then fails with
``stopped_by: uncordoned`` naming them (a re-run drains them).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import (
    _drain_order,
    _eviction,
    _lb_exclusion,
    _pod_rules,
    _pods,
    _replacement_first,
    _volume_detach,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._api_objects import controller_of
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    RawApi,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import (
    USER_AGENT_PREFIX,
    ModuleFailure,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import (
    patch_unschedulable,
    read_node,
    set_unschedulable,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._maintenance_state import create_event
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import is_unschedulable

USER_AGENT = USER_AGENT_PREFIX + "k8s_node_drain"

# How many pods a failure message names before it says "and N more" (all are in ``pods``).
MESSAGE_POD_LIMIT = 15

# Why the drain stopped short of a drained node (the result's ``stopped_by``; None when it did not).
STOPPED_REFUSED = "refused"            # pods the options do not allow; nothing was evicted
STOPPED_TIMEOUT = "timeout"            # pods still on the node when the timeout ran out
STOPPED_NODE_DELETED = "node_deleted"  # someone else deleted the Node object mid-drain
STOPPED_ACCESS_LOST = "access_lost"    # the API server stopped accepting the credentials (401) or rights (403)
STOPPED_POD_ERRORS = "pod_errors"      # before the timeout, the API refused to evict or delete some pods
STOPPED_VOLUMES = "volumes_attached"   # drained, but volumes still attached at volume_detach_timeout
STOPPED_UNCORDONED = "uncordoned"      # uncordoned mid-drain by someone else, and pods landed meanwhile
STOPPED_REPLACEMENT = "replacement_not_ready"  # replacement first: restarted Deployments not replaced in time
STOPPED_BY = (STOPPED_REFUSED, STOPPED_TIMEOUT, STOPPED_NODE_DELETED, STOPPED_ACCESS_LOST, STOPPED_POD_ERRORS,
              STOPPED_VOLUMES, STOPPED_UNCORDONED, STOPPED_REPLACEMENT)
RECORDON_EVENT_REASON = "MaintenanceRecordoned"


def validate(params):
    errors = []
    if params["timeout"] < 1:
        errors.append("timeout must be at least 1 second")
    if params["max_concurrency"] < 1:
        errors.append("max_concurrency must be at least 1")
    if params["grace_period"] < -1:
        errors.append("grace_period must be -1 (the pod's own), 0 (immediately) or a number of seconds")
    if params["skip_wait_for_delete_timeout"] < 0:
        errors.append("skip_wait_for_delete_timeout must be 0 (always wait) or a number of seconds")
    if params["volume_detach_timeout"] < 0:
        errors.append("volume_detach_timeout must be 0 (look once) or a number of seconds")
    errors.extend(_drain_order.validate_rules(params.get("drain_rules")))
    return errors


def missing_daemonsets(api, pods, deadline):
    """(namespace, name) of DaemonSets that running DaemonSet pods name but that no longer exist.

    One GET per distinct DaemonSet (there are few), not per pod.
    """
    owners = set()
    for pod in pods:
        if _pod_rules.is_daemonset_pod(pod) and not _pod_rules.is_finished(pod) and not _pod_rules.is_mirror_pod(pod):
            owners.add((_pods.pod_key(pod)[0], controller_of(pod).get("name")))
    missing = set()
    for namespace, name in sorted(owners):
        exists = retry_transient(lambda: api.daemonset_exists(namespace, name), deadline=deadline,
                                 describe="daemonset %s/%s" % (namespace, name))
        if not exists:
            missing.add((namespace, name))
    return missing


def list_pdbs(api, deadline, warn):
    """All PodDisruptionBudgets, or None (and a warning) when this identity may not list them (not
    required)."""
    try:
        return retry_transient(api.list_pdbs, deadline=deadline, describe="poddisruptionbudgets")
    except ApiException as exc:
        if exc.status in (403, 404):
            warn("cannot list PodDisruptionBudgets (%s); evictions a budget refuses are retried "
                 "every %ds instead of when the budget has room, and results do not name budgets"
                 % (exc.status, int(_eviction.DEFAULT_RETRY_DELAY)))
            return None
        raise


class RecordonGuard:
    """Cordons the node again when the drain's periodic node read finds it schedulable (the
    Drainer's ``on_uncordoned``): one patch, a warning and a Warning Event per time it happens."""

    def __init__(self, raw, node, deadline, warn):
        self.raw = raw
        self.node = node
        self.deadline = deadline
        self.warn = warn
        self.count = 0

    def __call__(self, node_obj):
        retry_transient(lambda: patch_unschedulable(self.raw, self.node, True, self.deadline), deadline=self.deadline,
                        describe="node/%s" % self.node)
        self.count += 1
        text = ("node/%s was found schedulable during its drain (uncordoned by someone else); k8s_node_drain "
                "cordoned it again. Pods scheduled to it meanwhile are not part of this drain" % self.node)
        self.warn(text)
        try:
            create_event(self.raw, node_obj, {"reason": RECORDON_EVENT_REASON, "msg": text, "type": "Warning"},
                         self.deadline)
        except Exception as exc:  # noqa: BLE001 - the cordon is what matters; say the Event is missing
            self.warn("node/%s: the %s Event was not written: %s" % (self.node, RECORDON_EVENT_REASON, exc))


def arrived_pods(api, node, params, seen_uids, deadline):
    """``namespace/name`` of pods on the node now that were not when the drain listed them and that
    the drain would have to move (any plan but skip): what landed while the node was uncordoned."""
    pods = retry_transient(lambda: api.list_node_pods(node, params["pod_selector"]), deadline=deadline,
                           describe="pods on node/%s" % node)
    fresh = [p for p in pods if (p.get("metadata") or {}).get("uid") not in seen_uids]
    entries = _pods.plan_drain(fresh, **plan_options(params))
    return ["%s/%s" % (e["namespace"], e["name"]) for e in entries if e["plan"] != _pods.PLAN_SKIP]


def plan_options(params, missing=frozenset()):
    """``_pods.classify_pod``'s options from the module's."""
    return {"ignore_daemonsets": params["ignore_daemonsets"], "delete_emptydir_data": params["delete_emptydir_data"],
            "force": params["force"], "skip_wait_for_delete_timeout": params["skip_wait_for_delete_timeout"],
            "missing_daemonsets": missing, "ignore_opt_outs": tuple(params.get("ignore_opt_outs") or ())}


def static_result(entry, action, reason=None):
    """A result for a pod the engine does not touch (skipped, refused, check mode)."""
    out = dict(entry)
    out.update({"action": action, "reason": reason or entry["reason"], "attempts": 0, "seconds": 0.0})
    return out


def ordered(results, entries):
    """Results in the order of the pod list, whatever order they were produced in."""
    index = dict(((e["namespace"], e["name"]), i) for i, e in enumerate(entries))
    return sorted(results, key=lambda r: index.get((r["namespace"], r["name"]), 0))


def stop_reason(timed_out, node_deleted=False, stopped=None):
    """``stopped_by`` of a drain that left pods on the node (not a refusal): the first that applies
    of the drain stopping on lost access, the node deleted, the timeout, or pods that failed."""
    if stopped:
        return STOPPED_ACCESS_LOST
    if node_deleted:
        return STOPPED_NODE_DELETED
    if timed_out:
        return STOPPED_TIMEOUT
    return STOPPED_POD_ERRORS


def failure_message(node, results, cordoned, stopped_by, timeout, stopped=None, progress=None):
    """What a drain that left pods on the node says; ``stopped``: the drain engine's words for
    ``STOPPED_ACCESS_LOST``; ``progress``: which tier of the drain order held it up."""
    # The pods of the tier that held the drain up first, then those of the tiers after it.
    failed = sorted((r for r in results if r["action"] == _eviction.ACTION_FAILED),
                    key=lambda r: (r.get("tier") or {}).get("index") or 0)
    lines = ["%s/%s: %s" % (r["namespace"], r["name"], r["reason"]) for r in failed[:MESSAGE_POD_LIMIT]]
    if len(failed) > MESSAGE_POD_LIMIT:
        lines.append("and %d more (see pods)" % (len(failed) - MESSAGE_POD_LIMIT))
    cordon_state = ("node/%s stays cordoned" % node if cordoned
                    else "node/%s was not cordoned (cordon: false)" % node)
    if stopped_by == STOPPED_ACCESS_LOST:
        # The reason is the same for every pod: say it once, then name the pods.
        names = ["%s/%s" % (r["namespace"], r["name"]) for r in failed[:MESSAGE_POD_LIMIT]]
        more = " and %d more" % (len(failed) - MESSAGE_POD_LIMIT) if len(failed) > MESSAGE_POD_LIMIT else ""
        return ("drain of node/%s stopped before its timeout: %s. %d pod(s) not confirmed gone: %s%s. %s; "
                "renew the credentials (or restore the rights) and run the drain again"
                % (node, stopped, len(failed), ", ".join(names), more, cordon_state))
    if stopped_by == STOPPED_NODE_DELETED:
        return ("drain of node/%s stopped: the Node object was deleted during the drain (not by this task). "
                "The %d pod(s) still bound to it are deleted by the pod garbage collector without regard to "
                "PodDisruptionBudgets: %s. Find out who deleted the node before it rejoins the cluster"
                % (node, len(failed), "; ".join(lines)))
    head = ("drain of node/%s did not finish within the timeout (%ds)" % (node, timeout)
            if stopped_by == STOPPED_TIMEOUT else "drain of node/%s failed" % node)
    tail = cordon_state + ("; fix the cause and run the drain again" if cordoned else "")
    if progress:
        head += ": " + progress
    return "%s: %d pod(s) still on the node. %s. %s" % (head, len(failed), "; ".join(lines), tail)


def drain(params, check_mode, started, connect, warn):
    """Drain ``params["name"]`` with the module's options; returns the module's result.

    ``started``: the monotonic time the module started (``timeout`` counts from it); ``connect()``:
    the ``kubernetes.client.ApiClient`` to use, asked for once the options are checked; ``warn(msg)``:
    the module's warning. Raises ``ModuleFailure`` for bad options, and with every result field
    when the drain stops short.
    """
    errors = validate(params)
    if errors:
        raise ModuleFailure("; ".join(errors))
    node = params["name"]
    deadline = started + params["timeout"]
    dry_run = params["dry_run"] == "server"
    no_changes = check_mode or dry_run
    # retries=False: the drain engine retries by its own rules and must not wait inside a request.
    raw = RawApi(connect(), user_agent=USER_AGENT, pool_size=params["max_concurrency"], retries=False)
    api = _eviction.DrainApi(raw, deadline)
    result = {"node": node, "changed": False}

    exclude = params["exclude_from_load_balancers"]
    if params["cordon"] or exclude is not None:
        # Cordon first, so nothing new lands on the node between the pod list and the last eviction
        # (out of the load balancers in the same write).
        cordon_changed, before, after = set_unschedulable(raw, node, True if params["cordon"] else None, no_changes,
                                                          deadline, exclude_from_load_balancers=exclude)
        cordon_changed = cordon_changed and not no_changes
    else:
        before = after = read_node(raw, node, deadline)
        cordon_changed = False
    was_cordoned = is_unschedulable(before)
    cordoned = result["cordoned"] = was_cordoned or params["cordon"]
    result["excluded_from_load_balancers"] = _lb_exclusion.excluded(after)
    result.update(_lb_exclusion.label_diff(before, after))

    pods = retry_transient(lambda: api.list_node_pods(node, params["pod_selector"]), deadline=deadline,
                           describe="pods on node/%s" % node)
    entries = _pods.plan_drain(pods, **plan_options(params, missing_daemonsets(api, pods, deadline)))
    by_key = dict((_pods.pod_key(p), p) for p in pods)
    rules = params.get("drain_rules") or []
    namespace_labels = (_drain_order.list_namespace_labels(raw, deadline)
                        if _drain_order.uses_namespace_labels(rules) else None)
    tiers = _drain_order.assign(entries, by_key, rules, params.get("drain_order") or _drain_order.MODE_PRIORITY,
                                namespace_labels)
    pdbs = None
    if any(e["plan"] == _pods.PLAN_EVICT for e in entries) and not params["disable_eviction"]:
        pdbs = list_pdbs(api, deadline, warn)
    pdb_by_key = dict((_eviction.pdb_key(p), p) for p in pdbs or ())
    for entry in entries:
        pod = by_key[(entry["namespace"], entry["name"])]
        entry["pdb_keys"] = _eviction.pdbs_covering(pod, pdbs) if pdbs is not None else []
        entry["pdb"] = [_eviction.describe_pdb(pdb_by_key[k]) for k in entry["pdb_keys"]]

    def finish(results, stopped_by, **extra):
        for item in results:
            item.pop("pdb_keys", None)
        result.update(pods=results, counts=_eviction.count_actions(results), tiers=tiers, api_requests=dict(raw.counts),
                      seconds=round(time.monotonic() - started, 3), stopped_by=stopped_by, **extra)
        return result

    refusal = _pods.refusal_message(node, entries)
    if refusal:
        uncordon = False if cordon_changed and params["cordon"] and not was_cordoned else None
        unlabel = _lb_exclusion.label_change(after, False) if cordon_changed and result["labels_added"] else None
        if uncordon is not None or unlabel is not None:
            # Leave the node as we found it: the drain has not begun, nothing moved.
            retry_transient(lambda: patch_unschedulable(raw, node, uncordon, deadline, unlabel), deadline=deadline,
                            describe="node/%s" % node)
            cordoned = result["cordoned"] = was_cordoned
            result["excluded_from_load_balancers"] = _lb_exclusion.excluded(before)
            result["labels_added"] = []
        refusal += (". The node was left schedulable as it was" if not cordoned else
                    ". node/%s stays cordoned as it was before this task" % node)
        result["changed"] = False
        _drain_order.summary(tiers, _drain_order.TIER_NOT_STARTED)
        raise ModuleFailure(refusal, **finish(
            [static_result(e, _eviction.ACTION_NONE, "would stop the drain: " + e["reason"])
             if e["plan"] == _pods.PLAN_REFUSE else static_result(e, _eviction.ACTION_NONE) for e in entries],
            STOPPED_REFUSED))

    # Replacement first, before any eviction: Deployments an eviction would take down (or whose
    # budget blocks it) are restarted while the node is cordoned, and their pods leave with it.
    first = _replacement_first.replace_first(
        raw, api, node, entries, by_key, params["replacement_first"] and not params["disable_eviction"],
        cordoned, no_changes, deadline, warn)
    result["replacement_first"] = first["deployments"]
    if first["failure"]:
        result["changed"] = cordon_changed or first["changed"]
        raise ModuleFailure(first["failure"], **finish(
            [static_result(e, _eviction.ACTION_NONE) for e in entries], STOPPED_REPLACEMENT))

    results = []
    tasks = []
    for entry in entries:
        plan = entry["plan"]
        key = (entry["namespace"], entry["name"])
        if plan == _pods.PLAN_SKIP:
            results.append(static_result(entry, _eviction.ACTION_SKIPPED))
            continue
        if key in first["replaced"]:
            results.append(static_result(entry, _eviction.ACTION_REPLACED, first["replaced"][key]))
            continue
        if key in first["planned"]:
            results.append(static_result(entry, _eviction.ACTION_NONE, first["planned"][key]))
            continue
        method = {"evict": "delete" if params["disable_eviction"] else "evict",
                  "delete": "delete", "wait": "wait", _pods.PLAN_WAIT_COMPLETED: "wait_completed"}[plan]
        if no_changes and (method in ("wait", "wait_completed") or not dry_run):
            reason = entry["reason"]
            if method == "evict" and entry["pdb"]:
                reason += "; " + "; ".join(_eviction.pdb_text(info) for info in entry["pdb"])
            results.append(static_result(entry, _eviction.ACTION_NONE, reason))
            continue
        pod = by_key[(entry["namespace"], entry["name"])]
        tasks.append(_eviction.PodTask(entry, method, ready=_pod_rules.is_ready(pod), pdbs=entry["pdb_keys"],
                                       labels=(pod.get("metadata") or {}).get("labels") or {}))

    # Only a drain that cordoned the node (or found it cordoned and was asked to keep it so) guards it.
    guard = RecordonGuard(raw, node, deadline, warn) if params["cordon"] and not no_changes else None
    if tasks:
        drainer = _eviction.Drainer(
            api, node, deadline, max_concurrency=params["max_concurrency"], grace_period=params["grace_period"],
            dry_run=dry_run, skip_wait_for_delete_timeout=params["skip_wait_for_delete_timeout"], pdbs=pdbs,
            on_uncordoned=guard)
        # One tier after another (the drain order), all within the one deadline.
        results.extend(_drain_order.run_tiers(drainer, tasks, tiers, dry_run))
        accepted = any(task.accepted_at is not None for task in tasks)
        node_deleted = drainer.node_deleted
        stopped = drainer.stopped
    else:
        accepted = node_deleted = False
        stopped = None
    _drain_order.summary(tiers, _drain_order.TIER_PLANNED if no_changes else _drain_order.TIER_DRAINED)
    results = ordered(results, entries)
    if no_changes:
        result["changed"] = (params["cordon"] and not was_cordoned) or bool(result["labels_added"]) or any(
            e["plan"] in (_pods.PLAN_EVICT, _pods.PLAN_DELETE) for e in entries)
    else:
        result["changed"] = cordon_changed or accepted or first["changed"]
    if guard is not None:
        result["recordoned"] = guard.count
        if guard.count:
            result["changed"] = True
    failed = [r for r in results if r["action"] == _eviction.ACTION_FAILED]
    if failed and not dry_run:
        stopped_by = stop_reason(time.monotonic() >= deadline, node_deleted, stopped)
        finish(results, stopped_by, node_deleted=node_deleted)
        raise ModuleFailure(failure_message(node, results, cordoned, stopped_by, params["timeout"], stopped,
                                            _drain_order.progress_text(tiers)), **result)
    if guard is not None and guard.count and not node_deleted:
        arrived = arrived_pods(api, node, params, set(e["uid"] for e in entries), deadline)
        if arrived:
            finish(results, STOPPED_UNCORDONED, arrived_while_uncordoned=arrived)
            raise ModuleFailure(
                "drain of node/%s: someone uncordoned the node during the drain (cordoned again %d time(s), see its "
                "%s Events), and %d pod(s) were scheduled to it meanwhile that this drain did not move: %s. "
                "node/%s stays cordoned; run the drain again to move them"
                % (node, guard.count, RECORDON_EVENT_REASON, len(arrived), ", ".join(arrived[:MESSAGE_POD_LIMIT])
                   + (" and %d more" % (len(arrived) - MESSAGE_POD_LIMIT) if len(arrived) > MESSAGE_POD_LIMIT else ""),
                   node), **result)
    if params["wait_for_volume_detach"]:
        # After the pods: their volumes detached before the node goes down (check mode: one look).
        moving = set(e["uid"] for e in entries if e["plan"] in (
            _pods.PLAN_EVICT, _pods.PLAN_DELETE, _pods.PLAN_WAIT, _pods.PLAN_WAIT_COMPLETED))
        result["volumes"] = _volume_detach.wait_detached(raw, node, params["volume_detach_timeout"], moving,
                                                         once=no_changes)
        if not result["volumes"]["detached"] and not no_changes:
            finish(results, STOPPED_VOLUMES)
            raise ModuleFailure(_volume_detach.timeout_message(node, result["volumes"], params["volume_detach_timeout"]),
                                **result)
    return finish(results, None)
