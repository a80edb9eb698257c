#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_node_remove
short_description: Delete a drained Kubernetes node object before its host is reinstalled
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Deletes the Node object, as C(kubectl delete node) does, so a reinstalled host can register
    afresh (the "remove node, reinstall, re-add" flow of a reimage).
  - Refuses, and changes nothing, while pods other than DaemonSet, mirror (static), finished or
    terminating pods are bound to the node, or while the node is not cordoned; the refusal lists
    the pods. Those checks can be turned off.
  - A node that does not exist is already removed; the task reports no change.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
  - kubeops.node_maintenance.k8s_options.node_name
  - kubeops.node_maintenance.k8s_options.timeout
options:
  require_drained:
    description:
      - Refuse while pods that a drain would move are still bound to the node.
    type: bool
    default: true
  require_cordoned:
    description:
      - Refuse while the node is schedulable.
    type: bool
    default: true
  timeout:
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the node and its pods and reports whether it would be deleted; deletes nothing.
  diff_mode:
    support: none
    description: Deleting a node has no before/after to show; RV(blocking_pods) says what stands in the way.
notes:
  - Needs C(get) and C(delete) on C(nodes), and C(list) on C(pods).
  - Deleting the Node object does not touch the host. The kubelet of a host that keeps running
    registers the node again.
seealso:
  - module: kubeops.node_maintenance.k8s_node_drain
  - module: kubeops.node_maintenance.k8s_node_wait
"""

EXAMPLES = r"""
- name: Drain worker-3, then remove its node object before the reinstall
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
  delegate_to: localhost

- name: Remove node worker-3
  kubeops.node_maintenance.k8s_node_remove:
    name: worker-3
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: Name of the node.
  returned: always
  type: str
  sample: worker-3
existed:
  description: Whether the node existed when the task started.
  returned: success
  type: bool
  sample: true
uid:
  description: C(metadata.uid) of the node that was (or would be) deleted.
  returned: when the node existed
  type: str
  sample: 0b9d3c1e-4e1a-4c48-9a54-1a1f3f0e2a11
blocking_pods:
  description: C(namespace/name) of the pods still bound to the node that a drain would move.
  returned: when the node existed
  type: list
  elements: str
  sample: [shop/web-7d9c-x2x4q]
"""

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import (
    NODE_NAME_SPEC,
    K8sModule,
    timeout_spec,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_removal import remove_node


def argument_spec():
    return {
        "name": NODE_NAME_SPEC,
        "require_drained": {"type": "bool", "default": True},
        "require_cordoned": {"type": "bool", "default": True},
        "timeout": timeout_spec(60),
    }


def main():
    module = K8sModule("k8s_node_remove", argument_spec())
    params = module.params
    module.about("node/%s" % params["name"], name=params["name"])
    module.run(lambda: remove_node(module.raw, params["name"], module.check_mode,
                                   module.deadline(params["timeout"], minimum=1),
                                   require_cordoned=params["require_cordoned"],
                                   require_drained=params["require_drained"]))


if __name__ == "__main__":
    main()
