#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_node_taint
short_description: Add, remove or set the taints of a Kubernetes node
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Adds or removes taints on a node the way C(kubectl taint) does, declaratively and idempotently.
  - A taint is identified by its key and effect, so V(dedicated=db:NoSchedule) and
    V(dedicated=db:NoExecute) are two taints, and a new value for the same key and effect replaces the
    old value.
  - The node is read, the new taint list computed, and written with a JSON patch that first tests
    C(metadata.resourceVersion). If anyone changed the node in between, the API server refuses the
    write and the module reads the node again and recomputes, so taints that another client adds at
    the same time are never lost.
  - Adding a C(NoExecute) taint makes the cluster delete every pod on the node that does not
    tolerate it, at once and without regard to PodDisruptionBudgets. The module returns those pods in
    RV(noexecute_evictions) and warns; drain the node with M(kubeops.node_maintenance.k8s_node_drain)
    first when the workloads matter.
  - O(unschedulable) cordons or uncordons the node in the same guarded write, so a rollout returns a
    node to service (our taints removed, uncordoned) with one request.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
  - kubeops.node_maintenance.k8s_options.node_name
  - kubeops.node_maintenance.k8s_options.timeout
  - kubeops.node_maintenance.k8s_options.record
  - kubeops.node_maintenance.k8s_options.exclude_from_load_balancers
options:
  unschedulable:
    description:
      - Also set C(spec.unschedulable) in the same write as the taints, guarded by the same
        C(resourceVersion) test; V(false) uncordons the node, V(true) cordons it. Left as it is when
        not given.
      - The task is changed when the taints or C(spec.unschedulable) change.
    type: bool
  taints:
    description:
      - The taints to add or remove. May be empty, with O(unschedulable) alone.
      - With O(state=present) every entry needs O(taints[].effect), and each key and effect may appear once.
      - An added C(NoExecute) taint gets C(timeAdded), as C(kubectl taint) sets it.
    type: list
    elements: dict
    required: true
    suboptions:
      key:
        description:
          - The taint key, for example V(dedicated) or V(example.com/maintenance).
        type: str
        required: true
      value:
        description:
          - The taint value. Empty or omitted means no value.
          - Ignored with O(state=absent), like C(kubectl taint key:effect-).
        type: str
      effect:
        description:
          - What the taint does to pods that do not tolerate it.
          - With O(state=absent), omitting it removes the key for every effect.
        type: str
        choices: [NoSchedule, PreferNoSchedule, NoExecute]
  state:
    description:
      - V(present) makes sure the listed taints are on the node, with the given values.
      - V(absent) makes sure they are not.
    type: str
    choices: [present, absent]
    default: present
  replace:
    description:
      - With V(true) and O(state=present), the node ends up with exactly the listed taints, plus the
        system taints it already has, whose keys start with C(node.kubernetes.io/),
        C(node-role.kubernetes.io/) or C(node.cloudprovider.kubernetes.io/). Those are set by
        Kubernetes components and installers (not-ready, unreachable, control-plane) and are never
        removed this way.
      - Not allowed with O(state=absent).
    type: bool
    default: false
  timeout:
    description:
      - Seconds the module may run before it fails.
      - API errors that may pass (no connection, HTTP 5xx, 429), and writes refused because the node
        changed after it was read, are retried within this time.
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the node (and, for a new C(NoExecute) taint, its pods) and reports what would change.
  diff_mode:
    support: full
    description: Shows C(spec.taints) before and after, and the load-balancer label when the task changes it.
notes:
  - Needs C(get) and C(patch) on C(nodes); with a C(NoExecute) taint in O(taints) and O(state=present),
    also C(list) on C(pods) in all namespaces, to report the pods the taint deletes.
seealso:
  - module: kubeops.node_maintenance.k8s_node_cordon
  - module: kubeops.node_maintenance.k8s_node_drain
  - name: Taints and tolerations
    description: How taints, tolerations and NoExecute evictions work.
    link: https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/
"""

EXAMPLES = r"""
- name: Keep ordinary pods off the database nodes
  kubeops.node_maintenance.k8s_node_taint:
    name: db-1
    taints:
      - key: dedicated
        value: db
        effect: NoSchedule
  delegate_to: localhost

- name: Mark a node as under maintenance (the workloads were drained before)
  kubeops.node_maintenance.k8s_node_taint:
    name: "{{ inventory_hostname }}"
    taints:
      - key: kubeops.io/maintenance
        effect: NoExecute
  delegate_to: localhost
  register: maintenance_taint

- name: Show what the NoExecute taint deleted
  ansible.builtin.debug:
    msg: "{{ item.namespace }}/{{ item.name }} after {{ item.after_seconds }}s"
  loop: "{{ maintenance_taint.noexecute_evictions }}"

- name: Remove the maintenance taint, whatever its effect
  kubeops.node_maintenance.k8s_node_taint:
    name: "{{ inventory_hostname }}"
    taints:
      - key: kubeops.io/maintenance
    state: absent
  delegate_to: localhost

- name: The node's own taints are exactly these (system taints stay)
  kubeops.node_maintenance.k8s_node_taint:
    name: gpu-7
    taints:
      - key: nvidia.com/gpu
        value: present
        effect: NoSchedule
    replace: true
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: Name of the node.
  returned: success
  type: str
  sample: worker-3
taints:
  description:
    - The node's taints after the task, as the API returns them. In check mode, the taints it would have.
  returned: success
  type: list
  elements: dict
  sample: [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
taints_before:
  description: The node's taints before the task.
  returned: success
  type: list
  elements: dict
  sample: []
added:
  description: Taints added; a taint whose value changed appears here with the new value.
  returned: success
  type: list
  elements: dict
  sample: [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
removed:
  description: Taints removed; a taint whose value changed appears here with the old value.
  returned: success
  type: list
  elements: dict
  sample: []
resource_version:
  description:
    - C(metadata.resourceVersion) of the node after the write (in check mode, or without a change, as read).
  returned: success
  type: str
  sample: "48213"
conflict_retries:
  description:
    - How many times the write was refused because the node changed after it was read, and was
      redone on a fresh read.
  returned: success
  type: int
  sample: 0
unschedulable:
  description: C(spec.unschedulable) after the task (in check mode, as it would be).
  returned: success
  type: bool
  sample: false
excluded_from_load_balancers:
  description:
    - Whether the node has the label C(node.kubernetes.io/exclude-from-external-load-balancers) after
      the task (in check mode, as it would be).
  returned: success
  type: bool
  sample: true
labels_added:
  description:
    - Keys of the labels the task added (the load-balancer label with O(exclude_from_load_balancers=true)
      on a node that did not have it); empty when none. With O(record), recorded in the node's record
      (C(phase_record.labels_added)).
  returned: success
  type: list
  elements: str
  sample: ["node.kubernetes.io/exclude-from-external-load-balancers"]
labels_removed:
  description: Keys of the labels the task removed (O(exclude_from_load_balancers=false)); empty when none.
  returned: success
  type: list
  elements: str
  sample: []
phase_record:
  description:
    - With O(record), the node's maintenance record after the task (in check mode, as it would be),
      as RV(kubeops.node_maintenance.k8s_node_maintenance_state#module:record) returns it.
    - Its C(taints_added) holds O(record.taints_added) and the taints this task added (RV(added)),
      recorded with the phase, before the write to the node (a run killed in between still has them
      recorded).
  returned: with O(record), on success
  type: dict
  sample: {"rollout": "patch-2026-11", "phase": "drain", "status": "in_progress",
           "taints_added": [{"key": "maintenance.kubeops.io/draining", "value": "", "effect": "NoSchedule"}]}
noexecute_evictions:
  description:
    - Pods on the node that an added C(NoExecute) taint makes the cluster delete, without regard to
      PodDisruptionBudgets. Empty when no C(NoExecute) taint was added.
  returned: success
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace of the pod.
      type: str
    name:
      description: Name of the pod.
      type: str
    uid:
      description: UID of the pod.
      type: str
    taints:
      description: The added C(NoExecute) taints (C(key=value:effect)) the pod does not tolerate for ever.
      type: list
      elements: str
    after_seconds:
      description: V(0) when the pod is deleted at once, else its C(tolerationSeconds).
      type: int
  sample: [{"namespace": "shop", "name": "web-5d9c-x7k2p", "uid": "0b6c...", "taints": ["maint:NoExecute"],
            "after_seconds": 0}]
"""

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import (
    NODE_NAME_SPEC,
    RECORD_SPEC,
    K8sModule,
    labels_added,
    timeout_spec,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import (
    check_taint_request,
    taint_intent,
    taint_node,
)


def argument_spec():
    return {
        "name": NODE_NAME_SPEC,
        "taints": {"type": "list", "elements": "dict", "required": True, "options": {
            "key": {"type": "str", "required": True, "no_log": False},
            "value": {"type": "str"},
            "effect": {"type": "str", "choices": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
        }},
        "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
        "replace": {"type": "bool", "default": False},
        "unschedulable": {"type": "bool"},
        "exclude_from_load_balancers": {"type": "bool"},
        "record": RECORD_SPEC,
        "timeout": timeout_spec(60),
    }


def main():
    module = K8sModule("k8s_node_taint", argument_spec())
    params = module.params
    name = params["name"]
    module.about("node/%s" % name, name=name)

    def taint():
        check_taint_request(name, params["taints"], params["state"], params["replace"])
        return taint_node(module.raw, name, params["taints"], params["state"], params["replace"], module.check_mode,
                          module.deadline(params["timeout"], minimum=1), module.diff, module.warn,
                          unschedulable=params["unschedulable"],
                          exclude_from_load_balancers=params["exclude_from_load_balancers"])

    def taints_added(result):
        # the taints (and labels) this task added join those the record kept: the rollout removes exactly them later
        fields = labels_added(params["record"], result) or {}
        if result["added"]:
            fields["taints_added"] = (params["record"].get("taints_added") or []) + result["added"]
        return fields or None

    module.run(taint, record_for=name, record_after=taints_added,
               record_intent=lambda node: taint_intent(node, params["taints"], params["state"], params["replace"],
                                                       params["exclude_from_load_balancers"]))


if __name__ == "__main__":
    main()
