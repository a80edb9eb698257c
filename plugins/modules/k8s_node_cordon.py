#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_node_cordon
short_description: Mark a Kubernetes node unschedulable, or schedulable again
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Sets C(spec.unschedulable) of a node, as C(kubectl cordon) and C(kubectl uncordon) do.
  - Only that field (and, with O(exclude_from_load_balancers), the load-balancer label) is patched;
    labels, taints and annotations that others manage are left alone.
  - Reads the node first, so a node already in the wanted state is not written and the task reports
    no change.
  - Cordoning does not move running pods; use M(kubeops.node_maintenance.k8s_node_drain) for that.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
  - kubeops.node_maintenance.k8s_options.node_name
  - kubeops.node_maintenance.k8s_options.timeout
  - kubeops.node_maintenance.k8s_options.record
  - kubeops.node_maintenance.k8s_options.exclude_from_load_balancers
options:
  state:
    description:
      - V(cordoned) marks the node unschedulable, so the scheduler places no new pods on it.
      - V(uncordoned) makes it schedulable again.
    type: str
    choices: [cordoned, uncordoned]
    default: cordoned
  timeout:
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the node and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Shows C(spec.unschedulable) before and after, and the load-balancer label when the task changes it.
notes:
  - Needs C(get) and C(patch) on C(nodes).
  - For a cordoned node the node lifecycle controller adds the taint C(node.kubernetes.io/unschedulable:NoSchedule)
    by itself, and removes it after uncordoning; RV(taints) shows it once the controller has acted.
seealso:
  - module: kubeops.node_maintenance.k8s_node_taint
  - module: kubeops.node_maintenance.k8s_node_drain
  - name: Safely drain a node
    description: How Kubernetes cordons and drains nodes.
    link: https://kubernetes.io/docs/tasks/administer-cluster/safely-drain-node/
"""

EXAMPLES = r"""
- name: Stop new pods from landing on worker-3
  kubeops.node_maintenance.k8s_node_cordon:
    name: worker-3
  delegate_to: localhost

- name: Let the scheduler use worker-3 again
  kubeops.node_maintenance.k8s_node_cordon:
    name: worker-3
    state: uncordoned
    kubeconfig: /etc/kubeops/admin.kubeconfig
  delegate_to: localhost

- name: Cordon every host of the play, with the connection set once for the whole group
  module_defaults:
    group/kubeops.node_maintenance.k8s:
      host: https://k8s-api.example.com:6443
      api_key: "{{ k8s_token }}"
      ca_cert: /etc/kubeops/ca.crt
  kubeops.node_maintenance.k8s_node_cordon:
    name: "{{ inventory_hostname }}"
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: Name of the node.
  returned: success
  type: str
  sample: worker-3
unschedulable:
  description:
    - C(spec.unschedulable) after the task. In check mode, the value the task would set.
  returned: success
  type: bool
  sample: true
resource_version:
  description:
    - C(metadata.resourceVersion) of the node after the write (in check mode, or without a change, as read).
  returned: success
  type: str
  sample: "48213"
taints:
  description: The node's taints, as the API returns them.
  returned: success
  type: list
  elements: dict
  sample: [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
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
    - With O(record), the node's maintenance record after the task wrote its phase (in check mode,
      as it would be), as RV(kubeops.node_maintenance.k8s_node_maintenance_state#module:record) returns it.
  returned: with O(record), on success
  type: dict
  sample: {"rollout": "patch-2026-11", "phase": "drain", "status": "in_progress", "message": "drain started"}
"""

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._lb_exclusion import labels_to_add
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import (
    NODE_NAME_SPEC,
    RECORD_SPEC,
    K8sModule,
    labels_added,
    timeout_spec,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import (
    cordon_result,
    set_unschedulable,
)


def argument_spec():
    return {
        "name": NODE_NAME_SPEC,
        "state": {"type": "str", "choices": ["cordoned", "uncordoned"], "default": "cordoned"},
        "exclude_from_load_balancers": {"type": "bool"},
        "record": RECORD_SPEC,
        "timeout": timeout_spec(60),
    }


def main():
    module = K8sModule("k8s_node_cordon", argument_spec())
    name = module.params["name"]
    module.about("node/%s" % name, name=name)

    def cordon():
        changed, before, after = set_unschedulable(
            module.raw, name, module.params["state"] == "cordoned", module.check_mode,
            module.deadline(module.params["timeout"], minimum=1),
            exclude_from_load_balancers=module.params["exclude_from_load_balancers"])
        return cordon_result(name, changed, before, after, module.diff)

    module.run(cordon, record_for=name, record_after=lambda result: labels_added(module.params["record"], result),
               record_intent=lambda node: {"labels_added": labels_to_add(
                   node, module.params["exclude_from_load_balancers"])})


if __name__ == "__main__":
    main()
