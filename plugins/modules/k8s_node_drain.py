#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_node_drain
short_description: Cordon a Kubernetes node and move its pods away, as kubectl drain does
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Cordons the node (unless O(cordon=false)), lists the pods bound to it with one paged list call,
    decides for each pod what to do with it, and then evicts them through the eviction API
    (C(policy/v1)), so PodDisruptionBudgets are honoured, with at most O(max_concurrency) requests
    in flight.
  - The rules are those of C(kubectl drain). Mirror pods of static pods are skipped. DaemonSet pods
    stop the drain unless O(ignore_daemonsets=true). Running pods with C(emptyDir) volumes stop it
    unless O(delete_emptydir_data=true). Running pods that declare no controller stop it unless
    O(force=true). Pods already terminating are waited for, not evicted again. Finished pods (phase
    C(Succeeded) or C(Failed)) are deleted.
  - When any pod stops the drain, the module fails before evicting anything, names every such pod
    with the option that would let the drain take it, and leaves the node as it found it (a cordon
    made by this task is undone).
  - An eviction refused by a PodDisruptionBudget (HTTP 429) is tried again when a fresh list of the
    budgets shows room, and every 5 seconds at the latest, until O(timeout). A pod covered by more
    than one budget fails with both named, since the eviction API refuses such pods. In a namespace
    that is being deleted the pod is deleted instead, because an eviction there never succeeds.
  - The module then waits until every evicted pod is gone from the node or replaced (its UID is no
    longer listed on the node), with one list call per poll for the whole node.
  - On failure or timeout the node stays cordoned, and the message lists the pods still there, each
    with the budget that held it up (C(disruptionsAllowed), healthy and desired pods) or the reason.
  - When someone else deletes the Node object during the drain, the drain stops within a few seconds
    and fails saying so (RV(node_deleted)), instead of waiting out O(timeout) for pods that the pod
    garbage collector now removes.
  - When the API server stops accepting the credentials while the module waits for the pods (HTTP 401,
    for example a bound token that expired) or refuses it the right to list pods (403), the drain stops
    at once and says so, instead of waiting out O(timeout). Other failed polls are retried until
    O(timeout), and a timeout message then quotes the last one.
  - The result has one entry per pod with what was done, why, how many requests it took and how long.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
options:
  name:
    description:
      - Name of the node, as C(kubectl get nodes) lists it.
    type: str
    required: true
    aliases: [node]
  cordon:
    description:
      - Mark the node unschedulable before moving its pods, so the scheduler does not put them (or
        new pods) back on it.
      - With V(false) the node's C(spec.unschedulable) is not touched; pods evicted from a schedulable
        node may be scheduled onto it again, and are then new pods (new UID) the drain does not wait for.
    type: bool
    default: true
  ignore_daemonsets:
    description:
      - Leave DaemonSet-managed pods on the node instead of failing. They tolerate the cordon, so
        evicting them would only see them recreated in place.
    type: bool
    default: false
  delete_emptydir_data:
    description:
      - Evict pods that use C(emptyDir) volumes; the data in those volumes is lost.
    type: bool
    default: false
  force:
    description:
      - Evict pods that declare no controller (no owner reference with C(controller=true)); nothing
        recreates them.
      - Also evicts pods whose DaemonSet no longer exists (orphans).
    type: bool
    default: false
  disable_eviction:
    description:
      - Delete pods instead of evicting them.
      - B(This bypasses PodDisruptionBudgets); use it only when the eviction API is not available
        or a budget must be overridden on purpose.
    type: bool
    default: false
  grace_period:
    description:
      - Seconds each pod gets to terminate gracefully.
      - V(-1) uses the pod's own C(terminationGracePeriodSeconds). V(0) is sent as it is and asks for
        immediate deletion.
    type: int
    default: -1
  timeout:
    description:
      - Seconds the whole drain may take, from the first API call to the last pod gone.
      - When it runs out the module fails, the node stays cordoned, and each pod still there is
        reported with what held it up.
    type: int
    default: 300
  skip_wait_for_delete_timeout:
    description:
      - Stop waiting for a pod whose C(deletionTimestamp) is older than this many seconds, as
        C(kubectl drain --skip-wait-for-delete-timeout) does; such pods already terminating when the
        drain starts are skipped. Useful when the node is down and its pods can never finish.
      - V(0) always waits.
    type: int
    default: 0
  pod_selector:
    description:
      - Label selector (C(app=web,tier!=db)); only pods on the node that match it are drained.
    type: str
  max_concurrency:
    description:
      - Most eviction (or delete) requests in flight at once.
      - A pod waiting for its budget does not hold a slot.
    type: int
    default: 50
  dry_run:
    description:
      - V(server) sends every eviction (or delete) with C(dryRun=All); the API server checks it
        against the budgets and RBAC, and changes nothing. PodDisruptionBudget refusals show up in
        advance, in each pod's C(reason).
      - With V(server) the module changes nothing, in check mode or not; the node is not cordoned.
      - V(none) makes the real changes (or, in check mode, only reads and plans).
    type: str
    choices: [none, server]
    default: none
attributes:
  check_mode:
    support: full
    description:
      - Reads the node, its pods and the budgets, and returns what would happen to each pod and which
        pods would stop the drain. Nothing is cordoned or evicted.
  diff_mode:
    support: none
    description: Per-pod results are returned instead; there is no before/after document to diff.
notes:
  - Needs RBAC to get and patch nodes, list pods in all namespaces, create C(pods/eviction), delete
    pods, get DaemonSets, and (optional, used to hold back evictions a budget would refuse and to
    name budgets in results) list PodDisruptionBudgets in all namespaces.
  - A second run on a node that is already cordoned and has nothing left to move reports no change.
seealso:
  - module: kubeops.node_maintenance.k8s_node_cordon
  - module: kubernetes.core.k8s_drain
    description: The kubernetes.core module for the same task; it evicts one pod after another and
      fails on the first refusal by a budget.
  - name: Safely drain a node
    description: How Kubernetes cordons and drains nodes, and how PodDisruptionBudgets take part.
    link: https://kubernetes.io/docs/tasks/administer-cluster/safely-drain-node/
  - name: API-initiated eviction
    description: The eviction API and its answers (429, 500).
    link: https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/
"""

EXAMPLES = r"""
- name: Drain worker-3, leaving its DaemonSet pods in place
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
    delete_emptydir_data: true
    timeout: 600
  delegate_to: localhost
  register: drain

- name: Show the pods a budget held up
  ansible.builtin.debug:
    msg: "{{ drain.pods | selectattr('action', 'equalto', 'failed') | list }}"
  when: drain is failed

- name: Ask the API server which evictions budgets would refuse right now, changing nothing
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
    dry_run: server
  check_mode: true
  delegate_to: localhost

- name: Move only the web pods, without cordoning the node
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    pod_selector: app=web
    cordon: false
  delegate_to: localhost

- name: Drain a node that is down, not waiting for pods stuck terminating for more than a minute
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
    force: true
    skip_wait_for_delete_timeout: 60
  delegate_to: localhost
"""

RETURN = r"""
node:
  description: Name of the node.
  returned: always
  type: str
  sample: worker-3
cordoned:
  description:
    - Whether the node is unschedulable after the task (in check mode, whether it would be).
  returned: when the node was read
  type: bool
  sample: true
pods:
  description:
    - One entry per pod that was on the node (matching O(pod_selector)) when the drain began.
  returned: when the node was read
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace of the pod.
      type: str
      sample: default
    name:
      description: Name of the pod.
      type: str
      sample: web-7d9f8-abcde
    uid:
      description: UID of the pod; its replacement has another one.
      type: str
    owner_kind:
      description: Kind of the controller that owns the pod (C(ReplicaSet), C(DaemonSet), ...), or null.
      type: str
      sample: ReplicaSet
    owner_name:
      description: Name of that controller, or null.
      type: str
    plan:
      description:
        - What the drain decided for the pod. V(evict), V(delete) (finished pods, or with
          O(disable_eviction)), V(wait) (already terminating), V(skip), V(refuse) (stops the drain).
      type: str
      sample: evict
    action:
      description:
        - What was done. V(evicted), V(deleted), V(waited) (it went away without our request, or was
          already gone), V(skipped), V(failed), V(none) (check mode or O(dry_run=server), or the drain
          was refused before it began).
      type: str
      sample: evicted
    reason:
      description: Why, in words; for a failure, what the API server or the budget said.
      type: str
      sample: evicted and gone from the node
    attempts:
      description: Eviction or delete requests sent for this pod (429 answers included).
      type: int
      sample: 1
    seconds:
      description: Seconds from the start of the evictions until the pod was gone (or the drain ended).
      type: float
      sample: 1.52
    warnings:
      description: Notes about data or pods that are lost for good (emptyDir data, unmanaged pods).
      type: list
      elements: str
    blockers:
      description:
        - For V(refuse), each rule the pod breaks with the O(force), O(ignore_daemonsets) or
          O(delete_emptydir_data) option that allows it. Empty otherwise.
      type: list
      elements: dict
      sample: [{"reason": "declares no controller, so nothing recreates it", "option": "force"}]
    pdb:
      description:
        - The PodDisruptionBudgets covering the pod (when they could be listed), each with
          C(namespace), C(name), C(disruptions_allowed), C(current_healthy), C(desired_healthy),
          C(expected_pods) and C(min_available) or C(max_unavailable).
      type: list
      elements: dict
counts:
  description: Number of pods per RV(pods[].action), and C(total).
  returned: when the node was read
  type: dict
  sample: {"evicted": 12, "deleted": 1, "skipped": 3, "waited": 0, "failed": 0, "none": 0, "total": 16}
seconds:
  description: Seconds the whole task took.
  returned: always
  type: float
  sample: 4.73
node_deleted:
  description:
    - True when the Node object was deleted by someone else while the drain was going on; the drain
      then stops at once (it checks every few seconds) and fails, leaving the pods still bound to the
      node to the pod garbage collector.
  returned: when the drain began evicting
  type: bool
  sample: false
api_requests:
  description: API requests the drain made, by kind (C(evict), C(list pods), C(list pdbs), ...).
  returned: when the node was read
  type: dict
  sample: {"list pods": 6, "list pdbs": 1, "evict": 12, "get node": 1, "patch node": 1}
"""

import copy
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _eviction, _pods
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    K8S_AUTH_ARG_SPEC,
    ApiException,
    K8sAccessError,
    RawApi,
    build_api_client,
    describe_api_error,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import (
    patch_unschedulable,
    read_node,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import is_unschedulable

# How many pods a failure message names before it says "and N more" (all are in ``pods``).
MESSAGE_POD_LIMIT = 15


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARG_SPEC)
    spec.update(
        name={"type": "str", "required": True, "aliases": ["node"]},
        cordon={"type": "bool", "default": True},
        ignore_daemonsets={"type": "bool", "default": False},
        delete_emptydir_data={"type": "bool", "default": False},
        force={"type": "bool", "default": False},
        disable_eviction={"type": "bool", "default": False},
        grace_period={"type": "int", "default": -1},
        timeout={"type": "int", "default": 300},
        skip_wait_for_delete_timeout={"type": "int", "default": 0},
        pod_selector={"type": "str"},
        max_concurrency={"type": "int", "default": 50},
        dry_run={"type": "str", "choices": ["none", "server"], "default": "none"},
    )
    return spec


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
    return errors


class NodeApi:
    """Read and cordon the node, with the shared retry rules."""

    def __init__(self, raw, name, deadline):
        self.raw = raw
        self.name = name
        self.deadline = deadline

    def read(self):
        return read_node(self.raw, self.name, self.deadline)

    def set_unschedulable(self, value):
        retry_transient(lambda: patch_unschedulable(self.raw, self.name, value, self.deadline),
                        deadline=self.deadline, describe="node/%s" % self.name)


def missing_daemonsets(api, pods, deadline):
    """(namespace, name) of DaemonSets that running DaemonSet pods name but that no longer exist.

    One GET per distinct DaemonSet (there are few), not per pod.
    """
    owners = set()
    for pod in pods:
        if _pods.is_daemonset_pod(pod) and not _pods.is_finished(pod) and not _pods.is_mirror_pod(pod):
            owners.add((_pods.pod_key(pod)[0], _pods.controller_of(pod).get("name")))
    missing = set()
    for namespace, name in sorted(owners):
        exists = retry_transient(lambda: api.daemonset_exists(namespace, name), deadline=deadline,
                                 describe="daemonset %s/%s" % (namespace, name))
        if not exists:
            missing.add((namespace, name))
    return missing


def list_pdbs(api, deadline, warnings):
    """All PodDisruptionBudgets, or None when this identity may not list them (not required)."""
    try:
        return retry_transient(api.list_pdbs, deadline=deadline, describe="poddisruptionbudgets")
    except ApiException as exc:
        if exc.status in (403, 404):
            warnings.append("cannot list PodDisruptionBudgets (%s); evictions a budget refuses are retried "
                            "every %ds instead of when the budget has room, and results do not name budgets"
                            % (exc.status, int(_eviction.DEFAULT_RETRY_DELAY)))
            return None
        raise


def static_result(entry, action, reason=None):
    """A result for a pod the engine does not touch (skipped, refused, check mode)."""
    out = dict(entry)
    out.update({"action": action, "reason": reason or entry["reason"], "attempts": 0, "seconds": 0.0})
    return out


def ordered(results, entries):
    """Results in the order of the pod list, whatever order they were produced in."""
    index = dict(((e["namespace"], e["name"]), i) for i, e in enumerate(entries))
    return sorted(results, key=lambda r: index.get((r["namespace"], r["name"]), 0))


def failure_message(node, results, cordoned, timed_out, timeout, node_deleted=False, stopped=None):
    failed = [r for r in results if r["action"] == _eviction.ACTION_FAILED]
    lines = ["%s/%s: %s" % (r["namespace"], r["name"], r["reason"]) for r in failed[:MESSAGE_POD_LIMIT]]
    if len(failed) > MESSAGE_POD_LIMIT:
        lines.append("and %d more (see pods)" % (len(failed) - MESSAGE_POD_LIMIT))
    cordon_state = ("node/%s stays cordoned" % node if cordoned
                    else "node/%s was not cordoned (cordon: false)" % node)
    if stopped:
        # The reason is the same for every pod: say it once, then name the pods.
        names = ["%s/%s" % (r["namespace"], r["name"]) for r in failed[:MESSAGE_POD_LIMIT]]
        more = " and %d more" % (len(failed) - MESSAGE_POD_LIMIT) if len(failed) > MESSAGE_POD_LIMIT else ""
        return ("drain of node/%s stopped before its timeout: %s. %d pod(s) not confirmed gone: %s%s. %s; "
                "renew the credentials (or restore the rights) and run the drain again"
                % (node, stopped, len(failed), ", ".join(names), more, cordon_state))
    if node_deleted:
        return ("drain of node/%s stopped: the Node object was deleted during the drain (not by this task). "
                "The %d pod(s) still bound to it are deleted by the pod garbage collector without regard to "
                "PodDisruptionBudgets: %s. Find out who deleted the node before it rejoins the cluster"
                % (node, len(failed), "; ".join(lines)))
    head = ("drain of node/%s did not finish within the timeout (%ds)" % (node, timeout) if timed_out
            else "drain of node/%s failed" % node)
    tail = cordon_state + ("; fix the cause and run the drain again" if cordoned else "")
    return "%s: %d pod(s) still on the node. %s. %s" % (head, len(failed), "; ".join(lines), tail)


def run(module, params, started):
    node = params["name"]
    deadline = started + params["timeout"]
    dry_run = params["dry_run"] == "server"
    no_changes = module.check_mode or dry_run
    warnings = []
    api_client = build_api_client(params)
    # retries=False: the drain engine retries by its own rules and must not wait inside a request.
    raw = RawApi(api_client, user_agent="kubeops.node_maintenance/k8s_node_drain",
                 pool_size=params["max_concurrency"], retries=False)
    api = _eviction.DrainApi(raw, deadline)
    node_api = NodeApi(raw, node, deadline)
    result = {"node": node, "changed": False}

    before = node_api.read()
    was_cordoned = is_unschedulable(before)
    cordon_changed = False
    if params["cordon"] and not was_cordoned and not no_changes:
        # Cordon first, so nothing new lands on the node between the pod list and the last eviction.
        node_api.set_unschedulable(True)
        cordon_changed = True
    cordoned = was_cordoned or (params["cordon"] and (cordon_changed or no_changes))
    result["cordoned"] = cordoned

    pods = retry_transient(lambda: api.list_node_pods(node, params["pod_selector"]), deadline=deadline,
                           describe="pods on node/%s" % node)
    entries = _pods.plan_drain(
        pods, ignore_daemonsets=params["ignore_daemonsets"], delete_emptydir_data=params["delete_emptydir_data"],
        force=params["force"], skip_wait_for_delete_timeout=params["skip_wait_for_delete_timeout"],
        missing_daemonsets=missing_daemonsets(api, pods, deadline))
    by_key = dict((_pods.pod_key(p), p) for p in pods)
    pdbs = None
    if any(e["plan"] == _pods.PLAN_EVICT for e in entries) and not params["disable_eviction"]:
        pdbs = list_pdbs(api, deadline, warnings)
    pdb_by_key = dict((_eviction.pdb_key(p), p) for p in pdbs or ())
    for entry in entries:
        pod = by_key[(entry["namespace"], entry["name"])]
        entry["pdb_keys"] = _eviction.pdbs_covering(pod, pdbs) if pdbs is not None else []
        entry["pdb"] = [_eviction.describe_pdb(pdb_by_key[k]) for k in entry["pdb_keys"]]

    def finish(results, **extra):
        for item in results:
            item.pop("pdb_keys", None)
        result.update(pods=results, counts=_eviction.count_actions(results), api_requests=dict(raw.counts),
                      seconds=round(time.monotonic() - started, 3), **extra)
        if warnings:
            result["warnings"] = warnings
        return result

    refusal = _pods.refusal_message(node, entries)
    if refusal:
        if cordon_changed:
            # Leave the node as we found it: the drain has not begun, nothing moved.
            node_api.set_unschedulable(False)
            cordoned = result["cordoned"] = False
        refusal += (". The node was left schedulable as it was" if not cordoned else
                    ". node/%s stays cordoned as it was before this task" % node)
        result["changed"] = False
        return finish([static_result(e, _eviction.ACTION_NONE, "would stop the drain: " + e["reason"])
                       if e["plan"] == _pods.PLAN_REFUSE else static_result(e, _eviction.ACTION_NONE)
                       for e in entries]), refusal

    results = []
    tasks = []
    for entry in entries:
        plan = entry["plan"]
        if plan == _pods.PLAN_SKIP:
            results.append(static_result(entry, _eviction.ACTION_SKIPPED))
            continue
        method = {"evict": "delete" if params["disable_eviction"] else "evict",
                  "delete": "delete", "wait": "wait"}[plan]
        if no_changes and (method == "wait" or not dry_run):
            reason = entry["reason"]
            if method == "evict" and entry["pdb"]:
                reason += "; " + "; ".join(_eviction.pdb_text(info) for info in entry["pdb"])
            results.append(static_result(entry, _eviction.ACTION_NONE, reason))
            continue
        pod = by_key[(entry["namespace"], entry["name"])]
        tasks.append(_eviction.PodTask(entry, method, ready=_eviction.is_pod_ready(pod), pdbs=entry["pdb_keys"],
                                       labels=(pod.get("metadata") or {}).get("labels") or {}))

    if tasks:
        drainer = _eviction.Drainer(
            api, node, deadline, max_concurrency=params["max_concurrency"], grace_period=params["grace_period"],
            dry_run=dry_run, skip_wait_for_delete_timeout=params["skip_wait_for_delete_timeout"], pdbs=pdbs)
        results.extend(drainer.run(tasks))
        accepted = any(task.accepted_at is not None for task in tasks)
        node_deleted = drainer.node_deleted
        stopped = drainer.stopped
    else:
        accepted = node_deleted = False
        stopped = None
    results = ordered(results, entries)
    if no_changes:
        result["changed"] = (params["cordon"] and not was_cordoned) or any(
            e["plan"] in (_pods.PLAN_EVICT, _pods.PLAN_DELETE) for e in entries)
    else:
        result["changed"] = cordon_changed or accepted
    failed = [r for r in results if r["action"] == _eviction.ACTION_FAILED]
    if failed and not dry_run:
        timed_out = time.monotonic() >= deadline
        return finish(results, node_deleted=node_deleted), failure_message(
            node, results, cordoned, timed_out, params["timeout"], node_deleted, stopped)
    return finish(results), None


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    started = time.monotonic()
    errors = validate(module.params)
    if errors:
        module.fail_json(msg="; ".join(errors))
    node = module.params["name"]
    try:
        result, failure = run(module, module.params, started)
    except K8sAccessError as exc:
        module.fail_json(msg=exc.message, status=exc.status, node=node,
                         seconds=round(time.monotonic() - started, 3))
    except ApiException as exc:
        module.fail_json(msg=describe_api_error(exc, "node/%s" % node), status=exc.status, node=node,
                         seconds=round(time.monotonic() - started, 3))
    if failure:
        module.fail_json(msg=failure, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
