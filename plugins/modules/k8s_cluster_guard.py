#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_cluster_guard
short_description: Check that the cluster can spare a node before it is taken out of service
version_added: 0.2.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Cluster-wide conditions that must hold before a node is cordoned and drained; checked before each
    node of a rollout, after the maintenance lock is taken (so no other rollout changes the answer).
  - O(control_plane) refuses the last Ready control-plane node (labelled C(node-role.kubernetes.io/control-plane)
    or one of O(control_plane_labels)).
  - O(min_ready_nodes) refuses when fewer than that many nodes (or that percentage of the nodes) would
    stay Ready and schedulable without this one; O(node_selector) limits the nodes that count.
  - O(etcd_quorum) refuses when the node runs a member of a stacked etcd and the members left healthy
    without it would be fewer than a quorum. The members are the etcd pods (kubeadm's static pods
    C(etcd-<node>) in C(kube-system), healthy when Ready), or the O(etcd_endpoints) you list, healthy when
    their C(/health) answers C({"health":"true"}).
  - Fails, naming every guard that refused and why, when a guard is not met (after waiting up to
    O(wait_timeout) for it to be met). Changes nothing.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
  - kubeops.node_maintenance.k8s_options.node_name
options:
  control_plane:
    description:
      - Refuse when the node is a control-plane node and no other control-plane node is Ready.
    type: bool
    default: true
  control_plane_labels:
    description:
      - Labels (keys) that mark a control-plane node; a node with any of them is one.
    type: list
    elements: str
    default: [node-role.kubernetes.io/control-plane]
  with_nodes:
    description:
      - The other nodes taken out of service together with this one (the rest of its batch in a
        rolling maintenance). Every guard then counts them as gone too, for example O(min_ready_nodes)
        counts the Ready nodes left without all of them.
    type: list
    elements: str
    default: []
  min_ready_nodes:
    description:
      - How many nodes must stay Ready and schedulable (not cordoned) while this node is out, a number
        such as V(3) or a percentage of the counted nodes such as V(60%) (rounded up).
      - V(0) turns the guard off.
    type: raw
    default: 0
  node_selector:
    description:
      - Label selector of the nodes that count for O(min_ready_nodes) (for example one node pool,
        C(pool=workers)). Empty counts every node.
    type: str
    default: ""
  etcd_quorum:
    description:
      - Refuse when taking the node out would leave a stacked etcd without quorum.
      - Without O(etcd_endpoints), the members are the pods matching O(etcd_pod_selector) in
        O(etcd_pod_namespace); a cluster without such pods passes (nothing to protect).
    type: bool
    default: true
  etcd_pod_namespace:
    description: Namespace of the etcd pods.
    type: str
    default: kube-system
  etcd_pod_selector:
    description: Label selector of the etcd pods (kubeadm labels them C(component=etcd)).
    type: str
    default: component=etcd
  etcd_endpoints:
    description:
      - The etcd members, when they are not pods the API server knows (an external or non-kubeadm etcd
        that still runs on the nodes). Each member's C(/health) is read from the controller.
    type: list
    elements: dict
    default: []
    suboptions:
      node:
        description: The node the member runs on.
        type: str
        required: true
      url:
        description: The member's client URL, for example V(https://10.0.0.11:2379).
        type: str
        required: true
  etcd_ca_cert:
    description: CA bundle (path on the controller) that signed the etcd server certificates.
    type: path
  etcd_client_cert:
    description: Client certificate (path) for the etcd endpoints.
    type: path
  etcd_client_key:
    description: Key (path) of O(etcd_client_cert).
    type: path
  etcd_validate_certs:
    description: Verify the etcd endpoints' certificates.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for the guards to be met before refusing (for example while another node is
        still coming back). V(0) checks once.
    type: int
    default: 0
  poll_interval:
    description: Seconds between two checks while waiting.
    type: int
    default: 5
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode runs the same checks once, without waiting.
  diff_mode:
    support: none
    description: The module changes nothing, so there is nothing to diff.
notes:
  - The module never changes anything and always reports C(changed=false).
  - Reads all nodes with one list call, the selected nodes with one more when O(node_selector) is set,
    and the etcd pods with one more when O(etcd_quorum) is on and O(etcd_endpoints) is empty.
seealso:
  - module: kubeops.node_maintenance.k8s_node_preflight
  - module: kubeops.node_maintenance.k8s_maintenance_lock
  - name: etcd fault tolerance
    description: Why a cluster of N members needs N/2+1 of them.
    link: https://etcd.io/docs/v3.6/faq/#what-is-failure-tolerance
"""

EXAMPLES = r"""
- name: The cluster can spare this node
  kubeops.node_maintenance.k8s_cluster_guard:
    name: "{{ node_name }}"
    min_ready_nodes: 80%
    node_selector: node-role.kubernetes.io/worker
  delegate_to: localhost

- name: Stacked etcd outside of kubeadm's pods, checked over TLS
  kubeops.node_maintenance.k8s_cluster_guard:
    name: cp-1
    etcd_endpoints:
      - {node: cp-1, url: "https://10.0.0.11:2379"}
      - {node: cp-2, url: "https://10.0.0.12:2379"}
      - {node: cp-3, url: "https://10.0.0.13:2379"}
    etcd_ca_cert: /etc/kubeops/etcd-ca.crt
    etcd_client_cert: /etc/kubeops/etcd-healthcheck.crt
    etcd_client_key: /etc/kubeops/etcd-healthcheck.key
    wait_timeout: 300
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: Name of the node.
  returned: always
  type: str
  sample: cp-1
passed:
  description: Whether every guard was met (always V(true) on success).
  returned: always
  type: bool
  sample: true
refused:
  description: The reasons of the guards that were not met, on the last check.
  returned: always
  type: list
  elements: str
  sample: ["node/cp-1 is the last Ready control-plane node (control-plane nodes: cp-1 (Ready)); ..."]
guards:
  description: Each guard on the last check.
  returned: always
  type: list
  elements: dict
  contains:
    guard:
      description: V(control_plane), V(min_ready_nodes) or V(etcd_quorum).
      type: str
      sample: etcd_quorum
    status:
      description: V(pass), V(fail) or V(skip) (nothing to check).
      type: str
      sample: pass
    reason:
      description: Why, in words.
      type: str
      sample: 2 of 3 etcd members stay healthy (quorum 2)
  sample:
    - {"guard": "control_plane", "status": "pass", "reason": "not a control-plane node"}
    - {"guard": "min_ready_nodes", "status": "pass", "reason": "4 of 5 nodes stay Ready and schedulable (3 required)",
       "required": 3, "total": 5, "available_now": 5, "available_after": 4}
checks:
  description: How many times the guards were checked.
  returned: always
  type: int
  sample: 1
waited_seconds:
  description: Seconds spent waiting for the guards.
  returned: always
  type: float
  sample: 0.0
"""

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _cluster_guard as guard
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import NODE_NAME_SPEC, K8sModule


def argument_spec():
    return {
        "name": NODE_NAME_SPEC,
        "control_plane": {"type": "bool", "default": True},
        "control_plane_labels": {"type": "list", "elements": "str", "default": list(guard.CONTROL_PLANE_LABELS)},
        "with_nodes": {"type": "list", "elements": "str", "default": []},
        "min_ready_nodes": {"type": "raw", "default": 0},
        "node_selector": {"type": "str", "default": ""},
        "etcd_quorum": {"type": "bool", "default": True},
        "etcd_pod_namespace": {"type": "str", "default": "kube-system"},
        "etcd_pod_selector": {"type": "str", "default": "component=etcd"},
        "etcd_endpoints": {"type": "list", "elements": "dict", "default": [], "options": {
            "node": {"type": "str", "required": True},
            "url": {"type": "str", "required": True},
        }},
        "etcd_ca_cert": {"type": "path"},
        "etcd_client_cert": {"type": "path"},
        "etcd_client_key": {"type": "path", "no_log": False},
        "etcd_validate_certs": {"type": "bool", "default": True},
        "wait_timeout": {"type": "int", "default": 0},
        "poll_interval": {"type": "int", "default": 5},
    }


def main():
    module = K8sModule("k8s_cluster_guard", argument_spec(), required_together=[("etcd_client_cert", "etcd_client_key")])
    name = module.params["name"]
    module.about("node/%s" % name, name=name)
    module.run(lambda: guard.cluster_guard(lambda: module.raw, module.params, module.check_mode))


if __name__ == "__main__":
    main()
