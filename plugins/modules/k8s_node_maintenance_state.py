#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_node_maintenance_state
short_description: Read, record or clear the maintenance record kept on a Kubernetes node
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Keeps one JSON document in the node annotation C(maintenance.kubeops.io/state), saying which
    rollout touched the node, the phase it is in, how that phase went, what the node looked like before
    (cordoned already? which taints we added), and how long each phase took. A rollout that stops
    anywhere can be re-run and resume from it, and a person can read it with
    C(kubectl get node NAME -o jsonpath='{.metadata.annotations.maintenance\.kubeops\.io/state}').
  - Only that annotation is written, with a JSON merge patch of C(metadata.annotations) guarded by the
    node's C(resourceVersion). When the node changed between the read and the write (HTTP 409), it is
    read again and the record recomputed, within O(timeout). Labels, taints, other annotations and
    C(spec) are never sent.
  - "The record, with O(state=present):"
  - "C(version): schema version, V(1)."
  - "C(rollout): the rollout id. Setting a different rollout than the one recorded starts a new
    record; nothing of the old one is kept (it is returned in RV(previous))."
  - "C(phase): the phase the node is in (free text, for example V(drain)). C(status): V(in_progress),
    V(done) or V(failed), for that phase; the node is finished with a rollout when C(status=done)."
  - "C(message): what happened, for example the error of a failed phase. Cleared when the phase or
    the status changes and no new O(msg) is given, so an old error never sticks to a new phase."
  - "C(cordoned_before): whether the node was already unschedulable before the rollout touched it
    (so the rollout knows not to uncordon it); V(null) until given."
  - "C(taints_added): the taints the rollout added, C([{key, value, effect}]), to be removed at the end."
  - "C(moved_workloads): the controllers whose pods the drain moved, C([{namespace, owner_kind,
    owner_name}]), so that a re-run resuming after the drain still knows what the health gate waits
    for. Present once given."
  - "C(static_pods): the node's static pods before the maintenance, by their mirror pods,
    C([{namespace, name}]), for the same reason (the health gate waits for them to be back). Present
    once given."
  - "C(labels_added): keys of the node labels the rollout added, to be removed on return (the
    load-balancer exclusion label when the node did not have it before). Present once given."
  - "C(started), C(updated): RFC 3339 UTC times, milliseconds, of the record's creation and of the
    last change. C(updated) moves only when something else in the record changed."
  - "C(phases): one entry per phase, in the order they were entered:
    C({started, finished, seconds, status, attempts}). Entering a new phase closes the previous one
    (C(finished), C(seconds), C(status=done) unless it had failed); O(status=done) or V(failed) closes
    the current one. Entering a phase again after it failed or finished starts a new attempt:
    C(attempts) counts them, C(started) is the new attempt's. C(seconds) is never negative, even when
    the clocks of the machines that ran the rollout disagree."
  - Keys this version does not know are kept as they are, so a newer writer's fields survive.
  - O(event) writes a core/v1 Event about the node (C(kubectl describe node) and
    C(kubectl get events --field-selector involvedObject.kind=Node) show it), with any O(state).
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
  - kubeops.node_maintenance.k8s_options.node_name
  - kubeops.node_maintenance.k8s_options.timeout
options:
  state:
    description:
      - V(query) reads the record and changes nothing. A node that does not exist is not an error
        (RV(node_exists=false)), so a rollout can ask about a node that was deleted for a reimage.
      - V(present) merges the given O(rollout), O(phase), O(status), O(msg), O(cordoned_before),
        O(taints_added), O(moved_workloads), O(static_pods) and O(labels_added) into the record
        (creating it) and writes it when it differs. Fails if the node does not exist.
      - V(absent) removes the annotation. A node that does not exist has none, so that is no change.
    type: str
    choices: [query, present, absent]
    default: query
  rollout:
    description:
      - The rollout id. Required with O(state=present).
      - With O(state=query), RV(done_in_rollout) and RV(resume_phase) are computed against it.
    type: str
  phase:
    description:
      - The phase the node enters or is in. Giving a phase without O(status) means O(status=in_progress).
    type: str
  status:
    description:
      - How the current phase (O(phase), or the recorded one) stands.
      - V(done) on the last phase marks the node finished for O(rollout); RV(done_in_rollout) is then
        V(true), and a re-run can skip it.
    type: str
    choices: [in_progress, done, failed]
  msg:
    description:
      - Free text kept in the record as C(message), for example the error that failed the phase. Cut
        at 4096 characters.
      - (Ansible reserves the option name C(message), hence C(msg).)
    type: str
  cordoned_before:
    description:
      - Whether the node was unschedulable before the rollout cordoned it. Set it once, before cordoning;
        leave it out afterwards so a re-run does not overwrite it with the rollout's own cordon.
    type: bool
  taints_added:
    description:
      - The taints the rollout added to the node. Replaces the recorded list.
    type: list
    elements: dict
    suboptions:
      key:
        description: Taint key.
        type: str
        required: true
      value:
        description: Taint value; empty when not given.
        type: str
      effect:
        description: Taint effect.
        type: str
        required: true
        choices: [NoSchedule, PreferNoSchedule, NoExecute]
  moved_workloads:
    description:
      - The controllers whose pods the drain moved (the drain's RV(kubeops.node_maintenance.k8s_node_drain#module:pods)
        entries have these keys). Replaces the recorded list; each workload is kept once.
    type: list
    elements: dict
    suboptions:
      namespace:
        description: Namespace of the pods.
        type: str
        required: true
      owner_kind:
        description: Kind of the pods' controller, for example V(ReplicaSet); empty for pods without one.
        type: str
      owner_name:
        description: Name of the pods' controller.
        type: str
  static_pods:
    description:
      - The node's static pods before the maintenance, by the names of their mirror pods (the drain's
        RV(kubeops.node_maintenance.k8s_node_drain#module:pods) entries whose C(owner_kind) is V(Node)).
        Replaces the recorded list; each pod is kept once.
    type: list
    elements: dict
    suboptions:
      namespace:
        description: Namespace of the mirror pod.
        type: str
        required: true
      name:
        description: Name of the mirror pod.
        type: str
        required: true
  labels_added:
    description:
      - Keys of the node labels the rollout added (RV(kubeops.node_maintenance.k8s_node_taint#module:labels_added)),
        removed again on return. Replaces the recorded list; each key is kept once.
    type: list
    elements: str
  event:
    description:
      - Write a core/v1 Event about the node, every time the task runs (in check mode it is only
        shown, not written). It goes to namespace C(default), where the kubelet writes node events,
        with C(involvedObject) the node (kind, name and uid) and source component
        C(kubeops-node-maintenance).
      - Writing an event does not make the task changed; C(changed) is about the record only, so a
        re-run that only writes an event again still reports no change.
        RV(event.created) says whether one was written.
      - Skipped, with a warning, when the node does not exist.
    type: dict
    suboptions:
      reason:
        description: Short CamelCase reason, for example V(MaintenanceDrainStarted).
        type: str
        required: true
      msg:
        description:
          - What happened, for a person; the event's C(message). Cut at 1024 characters as the kubelet does.
        type: str
        required: true
      type:
        description: Event type.
        type: str
        choices: [Normal, Warning]
        default: Normal
  renew_lock:
    description:
      - Renew the rollout's cluster-wide lock (the Lease of M(kubeops.node_maintenance.k8s_maintenance_lock))
        in the same run, when O(renew_lock.holder) holds it; otherwise nothing is written and
        C(renewed) of RV(lock) is V(false). The lock is never taken here (that may mean waiting for it);
        M(kubeops.node_maintenance.k8s_maintenance_lock) takes it.
      - A rollout reads each node's record as the node begins; renewing there spares a module run per node.
      - As with the lock module, a held kured reboot lock (O(renew_lock.kured_check)) is reported in a warning.
      - Not in check mode unless the task runs with C(check_mode=false); then it is written.
    type: dict
    suboptions:
      name:
        description: Name of the Lease.
        type: str
        default: kubeops-node-maintenance
      namespace:
        description: Namespace of the Lease.
        type: str
        default: kube-system
      holder:
        description: The rollout's holder identity.
        type: str
        required: true
      duration_seconds:
        description: Seconds the renewed claim lasts.
        type: int
        default: 1800
      kured_check:
        description: Also read kured's reboot lock, to warn when it is held.
        type: bool
        default: true
      kured_daemonset:
        description: Name of kured's DaemonSet.
        type: str
        default: kured
      kured_namespace:
        description: Namespace of kured's DaemonSet.
        type: str
        default: kube-system
  timeout:
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the node and returns the record as it would be; writes neither the annotation nor the event.
  diff_mode:
    support: full
    description: Shows the record before and after.
notes:
  - Times come from the clock of the host that runs the module (normally the controller, with
    C(delegate_to=localhost)).
seealso:
  - module: kubeops.node_maintenance.k8s_node_cordon
  - module: kubeops.node_maintenance.k8s_node_taint
  - module: kubeops.node_maintenance.k8s_workloads_healthy
  - name: Kubernetes annotations
    description: Annotation keys, values and size limits.
    link: https://kubernetes.io/docs/concepts/overview/working-with-objects/annotations/
"""

EXAMPLES = r"""
- name: Read the record, to skip nodes this rollout already finished
  kubeops.node_maintenance.k8s_node_maintenance_state:
    name: worker-3
    rollout: "{{ rollout_id }}"
  register: __state
  delegate_to: localhost

- name: Remember what the node looked like before we touched it, entering the first phase
  kubeops.node_maintenance.k8s_node_maintenance_state:
    name: worker-3
    state: present
    rollout: "{{ rollout_id }}"
    phase: drain
    cordoned_before: "{{ __node.unschedulable }}"
    event:
      reason: MaintenanceDrainStarted
      msg: "Rollout {{ rollout_id }}: draining worker-3"
  when: not __state.done_in_rollout
  delegate_to: localhost

- name: Record the failure and tell whoever looks at the node
  kubeops.node_maintenance.k8s_node_maintenance_state:
    name: worker-3
    state: present
    rollout: "{{ rollout_id }}"
    status: failed
    msg: "{{ ansible_failed_result.msg | default('unknown error') }}"
    event:
      reason: MaintenanceFailed
      type: Warning
      msg: "Rollout {{ rollout_id }} stopped at {{ __state.record.phase }}: {{ ansible_failed_result.msg | default('') }}"
  delegate_to: localhost

- name: Finish the node
  kubeops.node_maintenance.k8s_node_maintenance_state:
    name: worker-3
    state: present
    rollout: "{{ rollout_id }}"
    phase: verify
    status: done
  delegate_to: localhost

- name: Forget the record
  kubeops.node_maintenance.k8s_node_maintenance_state:
    name: worker-3
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: Name of the node.
  returned: always
  type: str
  sample: worker-3
node_exists:
  description: Whether the node exists. V(false) only with O(state=query) or O(state=absent).
  returned: success
  type: bool
  sample: true
annotation:
  description: The annotation key the record is kept in.
  returned: success
  type: str
  sample: maintenance.kubeops.io/state
record:
  description:
    - The record after the task (in check mode, as it would be), V({}) when there is none.
    - See the description for its fields.
  returned: success
  type: dict
  sample:
    version: 1
    rollout: "2024-05-01-kernel"
    phase: reboot
    status: in_progress
    message: ""
    cordoned_before: false
    taints_added: [{"key": "maintenance.kubeops.io/draining", "value": "", "effect": "NoSchedule"}]
    moved_workloads: [{"namespace": "shop", "owner_kind": "ReplicaSet", "owner_name": "web-7d4b9c"}]
    started: "2024-05-01T10:00:00.120Z"
    updated: "2024-05-01T10:03:12.480Z"
    phases:
      drain: {"started": "2024-05-01T10:00:00.120Z", "finished": "2024-05-01T10:02:41.005Z",
              "seconds": 160.885, "status": "done", "attempts": 1}
      reboot: {"started": "2024-05-01T10:02:41.005Z", "status": "in_progress", "attempts": 1}
previous:
  description: The record before the task, V({}) when there was none.
  returned: success
  type: dict
  sample: {}
done_in_rollout:
  description:
    - V(true) when the record belongs to O(rollout) and its status is V(done), that is, the node was finished
      by this rollout and a re-run can skip it. V(false) without O(rollout).
  returned: success
  type: bool
  sample: false
resume_phase:
  description:
    - The recorded phase when the record belongs to O(rollout) and is not done (the phase a re-run
      picks the node up at), else V(null).
  returned: success
  type: str
  sample: reboot
node:
  description:
    - What a rollout needs to know of the node itself, from the same read as the record; V(null)
      when the node does not exist.
  returned: success
  type: dict
  contains:
    unschedulable:
      description: C(spec.unschedulable) (whether the node is cordoned), as read before any write of this task.
      type: bool
    boot_id:
      description: C(status.nodeInfo.bootID), empty when the kubelet reports none (to prove a reboot later).
      type: str
    taints:
      description: The node's taints, as the API returns them.
      type: list
      elements: dict
  sample: {"unschedulable": false, "boot_id": "5d4e1c0f-6b39-4c5e-9a53-0b3a7c2f5e10", "taints": []}
lock:
  description:
    - With O(renew_lock), the result of M(kubeops.node_maintenance.k8s_maintenance_lock) for the
      renewal (RV(kubeops.node_maintenance.k8s_maintenance_lock#module:renewed),
      RV(kubeops.node_maintenance.k8s_maintenance_lock#module:lease), ...); C(renewed=false) when
      the holder did not hold the lock, and then C(outcome) says what taking it would do.
  returned: when O(renew_lock) was given
  type: dict
  sample: {"renewed": true, "holder": "patch-2026-11", "outcome": "renewed", "changed": true}
event:
  description: The event written (or, in check mode, that would have been), when O(event) was given.
  returned: when O(event) was given
  type: dict
  contains:
    created:
      description: Whether the event was written.
      type: bool
    name:
      description: Name of the event (namespace C(default)), when written.
      type: str
    namespace:
      description: V(default).
      type: str
    reason:
      description: As given.
      type: str
    type:
      description: As given.
      type: str
    message:
      description: As written (possibly cut).
      type: str
  sample: {"created": true, "name": "worker-3.17c9a1f0b2d4e6a8", "namespace": "default",
           "reason": "MaintenanceDrainStarted", "type": "Normal", "message": "draining"}
"""

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import (
    NODE_NAME_SPEC,
    RECORD_FIELD_SPECS,
    K8sModule,
    timeout_spec,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _maintenance_state as ms
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._maintenance_lock import (
    RENEW_LOCK_SPEC,
    renew_if_held,
)


def argument_spec():
    return {
        "name": NODE_NAME_SPEC,
        "state": {"type": "str", "choices": ["query", "present", "absent"], "default": "query"},
        "rollout": {"type": "str"},
        "phase": {"type": "str"},
        "status": {"type": "str", "choices": list(ms.STATUSES)},
        "msg": {"type": "str"},
        "cordoned_before": {"type": "bool"},
        "taints_added": RECORD_FIELD_SPECS["taints_added"],
        "moved_workloads": RECORD_FIELD_SPECS["moved_workloads"],
        "static_pods": RECORD_FIELD_SPECS["static_pods"],
        "labels_added": RECORD_FIELD_SPECS["labels_added"],
        "event": RECORD_FIELD_SPECS["event"],
        "renew_lock": RENEW_LOCK_SPEC,
        "timeout": timeout_spec(60),
    }


def main():
    module = K8sModule("k8s_node_maintenance_state", argument_spec(), required_if=[("state", "present", ["rollout"])])
    params = module.params
    module.about("node/%s" % params["name"], name=params["name"])

    def maintain():
        updates = ms.requested_updates(params)  # bad options fail before the node is read
        deadline = module.deadline(params["timeout"])
        result = ms.maintain(module.raw, params, updates, module.check_mode, module.diff, deadline, module.warn)
        if params["renew_lock"]:
            result["lock"] = renew_if_held(module.raw, params["renew_lock"], module.check_mode, module.warn,
                                           module.started, deadline)
        return result

    module.run(maintain)


if __name__ == "__main__":
    main()
