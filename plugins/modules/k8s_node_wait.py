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
options:
  name:
    description:
      - Name of the node, as C(kubectl get nodes) lists it.
    type: str
    required: true
    aliases: [node]
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
    type: int
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
"""

import copy
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import read_node
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    K8S_AUTH_ARG_SPEC,
    ApiException,
    K8sAccessError,
    RawApi,
    build_api_client,
    describe_api_error,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _node_wait


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARG_SPEC)
    spec.update(
        name={"type": "str", "required": True, "aliases": ["node"]},
        ready={"type": "bool", "default": True},
        boot_id_changed_from={"type": "str"},
        require_not_ready_first={"type": "bool", "default": False},
        conditions={"type": "list", "elements": "dict", "default": [], "options": {
            "type": {"type": "str", "required": True},
            "status": {"type": "str", "choices": ["True", "False", "Unknown"], "default": "True"},
        }},
        timeout={"type": "int", "default": 600},
        poll_interval={"type": "int", "default": 5},
    )
    return spec


def wait_for_node(raw, name, wanted, timeout, poll_interval, check_mode,
                  sleep=time.sleep, clock=time.monotonic):
    """Poll until ``wanted`` holds; ``(met, unmet, state, waited seconds)``. ``raw`` is a
    ``_k8s_client.RawApi``."""
    state = _node_wait.WaitState()
    started = clock()
    deadline = started + timeout
    while True:
        node = read_node(raw, name, max(deadline, clock() + 5), missing_ok=True)
        unmet = _node_wait.observe(state, node, wanted, clock() - started)
        if not unmet or check_mode:
            return not unmet, unmet, state, clock() - started
        remaining = deadline - clock()
        if remaining <= 0:
            return False, unmet, state, clock() - started
        sleep(min(poll_interval, remaining))


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    name = params["name"]
    wanted = {
        "ready": params["ready"],
        "boot_id_changed_from": params["boot_id_changed_from"],
        "require_not_ready_first": params["require_not_ready_first"],
        "conditions": params["conditions"],
    }
    errors = _node_wait.validate_wanted(wanted)
    if params["timeout"] < 0:
        errors.append("timeout must not be negative")
    if params["poll_interval"] < 1:
        errors.append("poll_interval must be at least 1")
    if errors:
        module.fail_json(msg="; ".join(errors), name=name)

    try:
        raw = RawApi(build_api_client(params), user_agent="kubeops.node_maintenance/k8s_node_wait")
        met, unmet, state, waited = wait_for_node(
            raw, name, wanted, params["timeout"], params["poll_interval"], module.check_mode)
    except K8sAccessError as exc:
        module.fail_json(msg=exc.message, status=exc.status, name=name)
    except ApiException as exc:
        module.fail_json(msg=describe_api_error(exc, "node/%s" % name), status=exc.status, name=name)

    result = dict(_node_wait.result_fields(state), changed=False, name=name, met=met, unmet=unmet,
                  waited_seconds=round(waited, 1))
    if met or module.check_mode:
        module.exit_json(**result)
    result.pop("changed")
    module.fail_json(
        msg="node/%s: still waiting after %ds for: %s. Last seen: %s. Transitions: %s"
            % (name, round(waited), "; ".join(unmet), _node_wait.describe_last_seen(state, name),
               _node_wait.describe_transitions(state)),
        **result)


if __name__ == "__main__":
    main()
