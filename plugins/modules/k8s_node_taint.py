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
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
options:
  name:
    description:
      - Name of the node, as C(kubectl get nodes) lists it.
    type: str
    required: true
    aliases: [node]
  taints:
    description:
      - The taints to add or remove.
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
      - Seconds to keep retrying when the API server is unreachable, answers with HTTP 5xx or 429, or
        the node keeps changing under the write.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the node (and, for a new C(NoExecute) taint, its pods) and reports what would change.
  diff_mode:
    support: full
    description: Shows C(spec.taints) before and after.
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

import copy
import datetime
import random
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    JSON_PATCH,
    K8S_AUTH_ARG_SPEC,
    ApiException,
    K8sAccessError,
    RawApi,
    build_api_client,
    describe_api_error,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import (
    patch_node,
    read_node,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import (
    merge_taints,
    noexecute_evictions,
    taint_ref,
    taints_json_patch,
    validate_taints,
)


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARG_SPEC)
    spec.update(
        name={"type": "str", "required": True, "aliases": ["node"]},
        taints={"type": "list", "elements": "dict", "required": True, "options": {
            "key": {"type": "str", "required": True, "no_log": False},
            "value": {"type": "str"},
            "effect": {"type": "str", "choices": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
        }},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        replace={"type": "bool", "default": False},
        timeout={"type": "int", "default": 60},
    )
    return spec


def is_write_conflict(exc, tested_version, version_now):
    """Whether a refused guarded write means "the node changed since we read it".

    A stale resourceVersion in storage gives 409. A failed JSON-patch ``test`` gives 422 with a
    generic "the server rejected our request" text that does not say which op failed, so a 422
    counts as a conflict only when the node's resourceVersion has indeed moved; otherwise the
    values were refused and the error stands.
    """
    status = getattr(exc, "status", None)
    if status == 409:
        return True
    return status == 422 and version_now != tested_version


class NodeTaints:
    """Reads and writes one node's taints through the API (kept apart so tests can interpose)."""

    def __init__(self, raw, name, deadline):
        self.raw = raw
        self.name = name
        self.ref = "node/%s" % name
        self.deadline = deadline

    def read(self):
        return read_node(self.raw, self.name, self.deadline)

    def write(self, resource_version, taints):
        return retry_transient(
            lambda: patch_node(self.raw, self.name, taints_json_patch(resource_version, taints), JSON_PATCH,
                               self.deadline),
            deadline=self.deadline, describe=self.ref)

    def pods(self):
        # Paged with limit/continue like kubectl (500 a page), not one unbounded list answer.
        return retry_transient(
            lambda: self.raw.list_all("/api/v1/pods", [("fieldSelector", "spec.nodeName=%s" % self.name)],
                                      timeout=request_timeout(self.deadline), count_as="list pods"),
            deadline=self.deadline, describe="node/%s (listing its pods)" % self.name)


def converge_taints(nodes, requested, state, replace, check_mode, deadline, clock=time.monotonic,
                    sleep=time.sleep):
    """Read, merge, write guarded by resourceVersion; on a conflict read again and redo.

    Returns (before_node, after_node, change, conflict_retries). ``before_node`` is the read the
    final decision was based on.
    """
    conflicts = 0
    refused = None  # (resourceVersion we tested, the ApiException) of the last refused write
    while True:
        if refused is not None:
            # a short, growing pause so two writers racing in lockstep fall out of step
            sleep(min(1.0, 0.02 * 2 ** min(conflicts, 6)) * random.uniform(0.5, 1.0))
        node = nodes.read()
        version = (node.get("metadata") or {}).get("resourceVersion")
        if refused is not None:
            if not is_write_conflict(refused[1], refused[0], version):
                raise refused[1]
            conflicts += 1
            if clock() >= deadline:
                raise K8sAccessError(
                    "%s: the node kept changing while its taints were written (%d conflicting writes); "
                    "nothing was changed, run the task again" % (nodes.ref, conflicts),
                    status=409, cause=refused[1])
            refused = None
        current = (node.get("spec") or {}).get("taints") or []
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        change = merge_taints(current, requested, state, replace, now=now)
        if not change["changed"]:
            return node, node, change, conflicts
        if check_mode:
            after = copy.deepcopy(node)
            after.setdefault("spec", {})["taints"] = change["taints"]
            return node, after, change, conflicts
        try:
            after = nodes.write(version, change["taints"])
            return node, after, change, conflicts
        except ApiException as exc:
            if getattr(exc, "status", None) not in (409, 422):
                raise
            refused = (version, exc)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    name, state, replace = params["name"], params["state"], params["replace"]
    if replace and state == "absent":
        module.fail_json(msg="replace=true applies to state=present only")
    errors = validate_taints(params["taints"], state)
    if errors:
        module.fail_json(msg="invalid taints for node/%s: %s" % (name, "; ".join(errors)))
    deadline = time.monotonic() + max(1, params["timeout"])

    try:
        raw = RawApi(build_api_client(params), user_agent="kubeops.node_maintenance/k8s_node_taint")
        nodes = NodeTaints(raw, name, deadline)
        # The pods must be listed before the write: the taint eviction controller deletes the
        # intolerant ones within moments of it.
        pods = []
        if state == "present" and any(t.get("effect") == "NoExecute" for t in params["taints"]):
            pods = nodes.pods()
        before, after, change, conflicts = converge_taints(
            nodes, params["taints"], state, replace, module.check_mode, deadline)
        evictions = noexecute_evictions(pods, change["added"])
    except K8sAccessError as exc:
        module.fail_json(msg=exc.message, status=exc.status)
    except ApiException as exc:
        module.fail_json(msg=describe_api_error(exc, "node/%s" % name), status=exc.status)
    except Exception as exc:  # noqa: BLE001 - anything the client raises gets the same translation
        module.fail_json(msg=describe_api_error(exc, "node/%s" % name), exception=traceback.format_exc())

    if evictions:
        added = ", ".join(taint_ref(t) for t in change["added"] if t.get("effect") == "NoExecute")
        at_once = [e for e in evictions if e["after_seconds"] == 0]
        later = [e for e in evictions if e["after_seconds"] > 0]
        listed = ", ".join("%s/%s" % (e["namespace"], e["name"]) for e in evictions[:10])
        module.warn(
            "%s NoExecute taint %s on node/%s %s %d pod(s) at once and %d more after their "
            "tolerationSeconds, without regard to PodDisruptionBudgets: %s%s. Drain the node first "
            "(kubeops.node_maintenance.k8s_node_drain) to respect the budgets."
            % ("The" if module.check_mode else "The added", added, name,
               "would delete" if module.check_mode else "deletes", len(at_once), len(later), listed,
               " and %d more" % (len(evictions) - 10) if len(evictions) > 10 else ""))

    taints_after = list((after.get("spec") or {}).get("taints") or [])
    taints_before = list((before.get("spec") or {}).get("taints") or [])
    result = {
        "changed": change["changed"],
        "name": name,
        "taints": taints_after,
        "taints_before": taints_before,
        "added": change["added"],
        "removed": change["removed"],
        "resource_version": (after.get("metadata") or {}).get("resourceVersion"),
        "conflict_retries": conflicts,
        "noexecute_evictions": evictions,
    }
    if module._diff:
        result["diff"] = {
            "before_header": "node/%s" % name,
            "after_header": "node/%s" % name,
            "before": {"spec": {"taints": taints_before}},
            "after": {"spec": {"taints": taints_after}},
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
