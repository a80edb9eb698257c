#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_node_wait
short_description: Wait until a Kubernetes node is Ready (or not), rebooted, and its conditions hold
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Polls a node until everything asked for holds at the same time, or fails at O(timeout) with what
    it saw last (every condition with its reason, last heartbeat and last transition, and the boot ID)
    and what it was still waiting for.
  - By default waits for C(Ready=True). With O(ready=false) it waits for the node to drop out
    (C(Ready) V(False) or V(Unknown)), as after stopping its kubelet.
  - O(boot_id_changed_from) waits for a new C(status.nodeInfo.bootID), which proves the machine
    rebooted, even when the reboot was too quick for the node to be marked NotReady.
  - O(require_not_ready_first) ignores a node that has been Ready all along (the old kubelet, still
    reporting before a reboot took it down) and waits for NotReady, then Ready.
  - A node object that disappears while waiting (deleted and re-registered in a reimage) counts as
    not Ready; the wait goes on until it is back.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
  - kubeops.node_maintenance.k8s_options.node_name
  - kubeops.node_maintenance.k8s_options.timeout
  - kubeops.node_maintenance.k8s_options.record
options:
  ready:
    description:
      - V(true) waits for the C(Ready) condition to be V(True).
      - V(false) waits for it to be V(False) or V(Unknown).
    type: bool
    default: true
  boot_id_changed_from:
    description:
      - Also wait until the node reports a C(status.nodeInfo.bootID) other than this one.
      - Read it before the reboot (RV(boot_id) of an earlier run of this module, or
        C(kubectl get node NAME -o jsonpath='{.status.nodeInfo.bootID}')).
    type: str
  require_not_ready_first:
    description:
      - Only accept C(Ready=True) after the node was not Ready, that is, seen with C(Ready) other than
        V(True), or absent, on some poll, or its C(Ready) condition's C(lastTransitionTime) moved past
        the one seen on the first poll (a flip that happened between two polls).
      - Needs O(ready=true).
      - A reboot that the node controller never noticed (shorter than its grace period) does not
        satisfy this; use O(boot_id_changed_from) to detect reboots.
    type: bool
    default: false
  conditions:
    description:
      - Further node conditions that must have the given status at the same time, such as
        C(DiskPressure) V(False) or a custom condition set by node-problem-detector.
      - A condition the node does not report never matches.
    type: list
    elements: dict
    default: []
    suboptions:
      type:
        description: The condition type, for example V(MemoryPressure).
        type: str
        required: true
      status:
        description: The wanted status.
        type: str
        choices: ["True", "False", "Unknown"]
        default: "True"
  timeout:
    description:
      - Seconds to wait in total before failing.
      - API errors that may pass (no connection, HTTP 5xx, 429) are retried within this time.
    default: 600
  poll_interval:
    description:
      - Seconds between two reads of the node.
    type: int
    default: 5
attributes:
  check_mode:
    support: full
    description:
      - Reads the node once and reports whether the wanted state holds now (RV(met), RV(unmet)),
        without waiting; in check mode nothing was rebooted, so waiting could only time out.
  diff_mode:
    support: none
    description: The module changes nothing, so there is nothing to diff.
notes:
  - The module never changes anything and always reports C(changed=false).
  - How fast a stopped node turns V(Unknown) depends on the controller manager's
    C(--node-monitor-grace-period) (40 s by default, 50 s from Kubernetes 1.32).
seealso:
  - module: kubeops.node_maintenance.k8s_node_cordon
  - module: kubeops.node_maintenance.k8s_maintenance_lock
  - module: ansible.builtin.reboot
  - name: Node status
    description: The conditions a node reports and what they mean.
    link: https://kubernetes.io/docs/reference/node/node-status/
"""

EXAMPLES = r"""
- name: Remember the boot ID before the reboot
  kubeops.node_maintenance.k8s_node_wait:
    name: "{{ node_name }}"
    timeout: 30
  delegate_to: localhost
  register: before

- name: Reboot the host
  ansible.builtin.reboot:

- name: Wait until the node rebooted and is Ready again
  kubeops.node_maintenance.k8s_node_wait:
    name: "{{ node_name }}"
    boot_id_changed_from: "{{ before.boot_id }}"
    timeout: 900
  delegate_to: localhost

- name: After stopping kubelet, wait until the cluster sees the node go away
  kubeops.node_maintenance.k8s_node_wait:
    name: "{{ node_name }}"
    ready: false
    timeout: 120
  delegate_to: localhost

- name: After starting it again, wait for NotReady then Ready, with no disk or memory pressure
  kubeops.node_maintenance.k8s_node_wait:
    name: "{{ node_name }}"
    require_not_ready_first: true
    conditions:
      - type: DiskPressure
        status: "False"
      - type: MemoryPressure
        status: "False"
    poll_interval: 2
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: Name of the node.
  returned: always
  type: str
  sample: worker-3
met:
  description: Whether everything asked for held on the last poll (always V(true) on success outside check mode).
  returned: always
  type: bool
  sample: true
unmet:
  description: What did not hold on the last poll; empty when RV(met) is V(true).
  returned: always
  type: list
  elements: str
  sample: ["Ready=True (is Unknown)"]
ready:
  description: The C(Ready) status on the last poll, V(True), V(False), V(Unknown), or V(absent) when the node object did not exist.
  returned: always
  type: str
  sample: "True"
conditions:
  description: Every condition of the node on the last poll where it existed.
  returned: always
  type: list
  elements: dict
  contains:
    type:
      description: Condition type.
      type: str
      sample: Ready
    status:
      description: V(True), V(False) or V(Unknown).
      type: str
      sample: "True"
    reason:
      description: Machine-readable reason.
      type: str
      sample: KubeletReady
    message:
      description: Human-readable message.
      type: str
      sample: kubelet is posting ready status
    last_heartbeat_time:
      description: When the kubelet last reported this condition.
      type: str
      sample: "2024-05-01T10:00:00Z"
    last_transition_time:
      description: When the status last changed.
      type: str
      sample: "2024-05-01T09:58:12Z"
boot_id:
  description: C(status.nodeInfo.bootID) on the last poll where the node reported one.
  returned: always
  type: str
  sample: 5d4e1c0f-6b39-4c5e-9a53-0b3a7c2f5e10
uid:
  description: C(metadata.uid) of the node (changes when the node object is recreated).
  returned: always
  type: str
seen_not_ready:
  description: Whether the node was not Ready at some point during the wait (seen, or proven by the
    Ready condition's C(lastTransitionTime)).
  returned: always
  type: bool
  sample: true
transitions:
  description: What changed while waiting, in order, with seconds since the start.
  returned: always
  type: list
  elements: dict
  sample:
    - {"elapsed_seconds": 0.0, "event": "first seen", "ready": "True", "reason": "KubeletReady", "boot_id": "5d4e..."}
    - {"elapsed_seconds": 41.2, "event": "Ready True -> Unknown", "ready": "Unknown", "reason": "NodeStatusUnknown"}
    - {"elapsed_seconds": 95.7, "event": "Ready Unknown -> True", "ready": "True", "reason": "KubeletReady"}
waited_seconds:
  description: Seconds spent waiting.
  returned: always
  type: float
  sample: 95.7
polls:
  description: How many times the node was read.
  returned: always
  type: int
  sample: 20
unschedulable:
  description:
    - C(spec.unschedulable) of the node on the last poll where it existed (V(null) when it never did),
      so a caller that cordoned the node learns, without another read, whether someone uncordoned it.
  returned: always
  type: bool
  sample: true
phase_record:
  description:
    - With O(record), the node's maintenance record after the task wrote its phase (in check mode,
      as it would be), as RV(kubeops.node_maintenance.k8s_node_maintenance_state#module:record) returns it.
  returned: with O(record), on success
  type: dict
  sample: {"rollout": "patch-2026-11", "phase": "return", "status": "in_progress", "message": "return started"}
"""

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import (
    NODE_NAME_SPEC,
    RECORD_SPEC,
    K8sModule,
    timeout_spec,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _node_wait


def argument_spec():
    return {
        "name": NODE_NAME_SPEC,
        "ready": {"type": "bool", "default": True},
        "boot_id_changed_from": {"type": "str"},
        "require_not_ready_first": {"type": "bool", "default": False},
        "conditions": {"type": "list", "elements": "dict", "default": [], "options": {
            "type": {"type": "str", "required": True},
            "status": {"type": "str", "choices": ["True", "False", "Unknown"], "default": "True"},
        }},
        "record": RECORD_SPEC,
        "timeout": timeout_spec(600),
        "poll_interval": {"type": "int", "default": 5},
    }


def main():
    module = K8sModule("k8s_node_wait", argument_spec())
    params = module.params
    name = params["name"]
    module.about("node/%s" % name, name=name)

    def wait():
        wanted = _node_wait.wanted_state(params)  # bad options fail before the node is read
        outcome = _node_wait.wait_for_node(module.raw, name, wanted, params["timeout"], params["poll_interval"],
                                           module.check_mode)
        return _node_wait.wait_result(name, outcome, module.check_mode)

    module.run(wait, record_for=name)


if __name__ == "__main__":
    main()
