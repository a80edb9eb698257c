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
options:
  name:
    description:
      - Name of the node to be taken out of service, as C(kubectl get nodes) lists it.
    type: str
    required: true
    aliases: [node]
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

import copy
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    K8S_AUTH_ARG_SPEC,
    ApiException,
    K8sAccessError,
    RawApi,
    api_path,
    build_api_client,
    describe_api_error,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _cluster_guard as guard

USER_AGENT = "kubeops.node_maintenance/k8s_cluster_guard"


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARG_SPEC)
    spec.update(
        name={"type": "str", "required": True, "aliases": ["node"]},
        control_plane={"type": "bool", "default": True},
        control_plane_labels={"type": "list", "elements": "str", "default": list(guard.CONTROL_PLANE_LABELS)},
        min_ready_nodes={"type": "raw", "default": 0},
        node_selector={"type": "str", "default": ""},
        etcd_quorum={"type": "bool", "default": True},
        etcd_pod_namespace={"type": "str", "default": "kube-system"},
        etcd_pod_selector={"type": "str", "default": "component=etcd"},
        etcd_endpoints={"type": "list", "elements": "dict", "default": [], "options": {
            "node": {"type": "str", "required": True},
            "url": {"type": "str", "required": True},
        }},
        etcd_ca_cert={"type": "path"},
        etcd_client_cert={"type": "path"},
        etcd_client_key={"type": "path", "no_log": False},
        etcd_validate_certs={"type": "bool", "default": True},
        wait_timeout={"type": "int", "default": 0},
        poll_interval={"type": "int", "default": 5},
    )
    return spec


class GuardReader:
    """The list calls the guards need, each retried on transient errors, items as plain dicts.

    ``raw`` is a ``_k8s_client.RawApi``: the API server's JSON as it is, no generated model classes."""

    def __init__(self, raw, params):
        self.raw = raw
        self.params = params

    def _list(self, path, ref, deadline, query=None):
        # Paged (500 a page, as kubectl): a cluster's node list can be tens of MB in one answer.
        try:
            return retry_transient(lambda: self.raw.list_all(path, query or (), timeout=request_timeout(deadline)),
                                   deadline=deadline, describe=ref)
        except ApiException as exc:
            raise K8sAccessError(describe_api_error(exc, ref), status=exc.status, cause=exc)

    def nodes(self, deadline, selector=""):
        query = [("labelSelector", selector)] if selector else None
        return self._list("/api/v1/nodes", "nodes", deadline, query)

    def etcd_pods(self, deadline):
        namespace = self.params["etcd_pod_namespace"]
        selector = self.params["etcd_pod_selector"]
        return self._list(api_path("/api/v1/namespaces", namespace, "pods"), "pods %s/%s" % (namespace, selector),
                          deadline, [("labelSelector", selector)])

    def etcd_endpoint_members(self):
        members = []
        for endpoint in self.params["etcd_endpoints"]:
            url = endpoint["url"].rstrip("/") + "/health"
            try:
                response = open_url(url, method="GET", timeout=5, validate_certs=self.params["etcd_validate_certs"],
                                    ca_path=self.params["etcd_ca_cert"], client_cert=self.params["etcd_client_cert"],
                                    client_key=self.params["etcd_client_key"])
                healthy, reason = guard.parse_etcd_health(response.getcode(), response.read())
            except Exception as exc:  # pylint: disable=broad-except  # any failure to answer is unhealthy
                healthy, reason = False, "no answer: %s" % (getattr(exc, "reason", None) or exc)
            members.append({"name": endpoint["url"], "node": endpoint["node"], "healthy": healthy, "reason": reason})
        return members


def check_guards(reader, params, deadline):
    """One check of every enabled guard: a list of guard results."""
    name = params["name"]
    results = []
    nodes = reader.nodes(deadline)
    if guard.find_node(nodes, name) is None:
        return [guard.guard_result("node", guard.FAIL, "node/%s not found; `kubectl get nodes` lists the names" % name)]
    if params["control_plane"]:
        results.append(guard.control_plane_guard(nodes, name, params["control_plane_labels"]))
    if guard.parse_min_ready(params["min_ready_nodes"])[0] > 0:
        pool = reader.nodes(deadline, params["node_selector"]) if params["node_selector"] else nodes
        results.append(guard.min_ready_guard(pool, name, params["min_ready_nodes"]))
    if params["etcd_quorum"]:
        if params["etcd_endpoints"]:
            members = reader.etcd_endpoint_members()
        else:
            members = guard.etcd_members_from_pods(reader.etcd_pods(deadline))
        results.append(guard.etcd_quorum_guard(members, name))
    return results


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_together=[("etcd_client_cert", "etcd_client_key")])
    params = module.params
    name = params["name"]
    try:
        guard.parse_min_ready(params["min_ready_nodes"])
    except ValueError as exc:
        module.fail_json(msg=str(exc), name=name)
    if params["wait_timeout"] < 0 or params["poll_interval"] < 1:
        module.fail_json(msg="wait_timeout must not be negative and poll_interval must be at least 1", name=name)

    started = time.monotonic()
    deadline_at = started + params["wait_timeout"]
    checks = 0
    try:
        reader = GuardReader(RawApi(build_api_client(params), user_agent=USER_AGENT), params)
        while True:
            checks += 1
            results = check_guards(reader, params, max(deadline_at, time.monotonic() + 30))
            refused = guard.refusals(results)
            remaining = deadline_at - time.monotonic()
            if not refused or module.check_mode or remaining <= 0:
                break
            time.sleep(min(params["poll_interval"], remaining))
    except K8sAccessError as exc:
        module.fail_json(msg=exc.message, status=exc.status, name=name)

    result = {"name": name, "passed": not refused, "refused": refused, "guards": results, "checks": checks,
              "waited_seconds": round(time.monotonic() - started, 1)}
    if not refused:
        module.exit_json(changed=False, **result)
    module.fail_json(msg="node/%s: refused by the cluster guards%s: %s" % (
        name, (" after %ds" % round(result["waited_seconds"])) if params["wait_timeout"] else "",
        "; ".join(refused)), **result)


if __name__ == "__main__":
    main()
