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
  - kubeops.node_maintenance.k8s_options.node_name
  - kubeops.node_maintenance.k8s_options.timeout
  - kubeops.node_maintenance.k8s_options.record
options:
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
      - API errors that may pass (no connection, HTTP 5xx, 429) are retried within this time.
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
  - The decisions are those of C(kubectl drain) of the same Kubernetes version, proven against
    C(kubectl drain --dry-run=server) for every combination of O(ignore_daemonsets),
    O(delete_emptydir_data) and O(force) (refused or not, which pods stop the drain and by which rule,
    which pods are evicted, deleted or left alone), with three deliberate differences.
  - The first difference. A pod already terminating (it has a C(deletionTimestamp)) is waited for and
    never stops the drain. C(kubectl drain) evicts it again, and refuses the drain for it when it declares no
    controller (without C(--force)) or has C(emptyDir) volumes (without C(--delete-emptydir-data)),
    although the pod and its data are going whatever the drain does.
  - The second difference. Every rule a pod breaks is named with the option that allows it (a pod with
    C(emptyDir) volumes and no controller needs O(delete_emptydir_data) and O(force)); C(kubectl drain)
    names the first one only.
  - The third difference. A finished pod (phase C(Succeeded) or C(Failed)) is deleted; C(kubectl drain)
    sends it an eviction, which the API server turns into the same deletion without consulting any
    budget.
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
  returned: when the drain failed after it began evicting
  type: bool
  sample: false
stopped_by:
  description:
    - Why the drain stopped before the node was drained, so a playbook can decide what to do next
      without reading RV(pods) or the message. The module fails whenever it is not V(null).
    - V(null) when nothing stopped it; the node is drained (in check mode, or with O(dry_run=server),
      the plan was made and nothing stopped it).
    - V(refused) when pods the options do not allow are on the node (RV(pods[].plan) V(refuse));
      nothing was evicted, and the node was left as it was.
    - V(timeout) when pods were still on the node when O(timeout) ran out (a PodDisruptionBudget
      without room, or pods slow to terminate).
    - V(node_deleted) when someone else deleted the Node object during the drain (RV(node_deleted)).
    - V(access_lost) when the API server stopped accepting the module's credentials (HTTP 401) or
      its right to list pods (403) while it waited for the pods; it stops at once.
    - V(pod_errors) when, before the timeout, the API server refused to evict or delete some pods
      for a reason waiting does not fix (a pod covered by more than one PodDisruptionBudget, RBAC,
      an invalid request); RV(pods[].reason) says which.
    - A failure to reach or read the node or its pods has no RV(stopped_by); its C(status) says what
      the API server answered.
  returned: when the node's pods were listed
  type: str
  choices: [refused, timeout, node_deleted, access_lost, pod_errors]
  sample: timeout
api_requests:
  description: API requests the drain made, by kind (C(evict), C(list pods), C(list pdbs), ...).
  returned: when the node was read
  type: dict
  sample: {"list pods": 6, "list pdbs": 1, "evict": 12, "get node": 1, "patch node": 1}
phase_record:
  description:
    - With O(record), the node's maintenance record after the task wrote its phase (in check mode,
      as it would be), as RV(kubeops.node_maintenance.k8s_node_maintenance_state#module:record) returns it.
  returned: with O(record), on success
  type: dict
  sample: {"rollout": "patch-2026-11", "phase": "drain", "status": "in_progress", "message": "drain started"}
"""

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._drain import drain
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import (
    NODE_NAME_SPEC,
    RECORD_SPEC,
    K8sModule,
    timeout_spec,
)


def argument_spec():
    return {
        "name": NODE_NAME_SPEC,
        "cordon": {"type": "bool", "default": True},
        "ignore_daemonsets": {"type": "bool", "default": False},
        "delete_emptydir_data": {"type": "bool", "default": False},
        "force": {"type": "bool", "default": False},
        "disable_eviction": {"type": "bool", "default": False},
        "grace_period": {"type": "int", "default": -1},
        "record": RECORD_SPEC,
        "timeout": timeout_spec(300),
        "skip_wait_for_delete_timeout": {"type": "int", "default": 0},
        "pod_selector": {"type": "str"},
        "max_concurrency": {"type": "int", "default": 50},
        "dry_run": {"type": "str", "choices": ["none", "server"], "default": "none"},
    }


def main():
    module = K8sModule("k8s_node_drain", argument_spec())
    name = module.params["name"]
    module.about("node/%s" % name, node=name)
    module.run(lambda: drain(module.params, module.check_mode, module.started, lambda: module.api_client, module.warn),
               record_for=name)


if __name__ == "__main__":
    main()
