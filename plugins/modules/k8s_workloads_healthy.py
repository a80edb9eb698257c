#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_workloads_healthy
short_description: Wait until workloads, their PodDisruptionBudgets and a node's own pods are back to full health
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - "The health gate after a node returns from maintenance. Polls the given controllers, and the
    PodDisruptionBudgets given or found, until all of them are healthy at the same time, or fails at
    O(timeout) with one line per workload or budget saying what is missing, for example
    C(deployment shop/web: 2/3 ready)."
  - "Healthy means: the controller has observed its latest C(metadata.generation), and"
  - "a Deployment has C(replicas), C(updatedReplicas), C(readyReplicas) and C(availableReplicas) all
    equal to C(spec.replicas) (so no old replica is still being replaced);"
  - "a StatefulSet has C(replicas), C(readyReplicas) and C(availableReplicas) equal to C(spec.replicas),
    and C(updatedReplicas) too when its update strategy is C(RollingUpdate) (above a C(partition), only
    the replicas it updates); with C(OnDelete) the revision is not checked;"
  - "a ReplicaSet has C(replicas), C(readyReplicas) and C(availableReplicas) equal to C(spec.replicas);"
  - "a DaemonSet has C(numberReady) and C(numberAvailable) equal to C(desiredNumberScheduled);"
  - "a PodDisruptionBudget whose status is current has C(currentHealthy) >= C(desiredHealthy)."
  - Reads are list calls, one per kind per namespace on each poll (filtered by name when only one
    object of that kind is wanted there), not a GET per object.
  - A workload or budget that does not exist is reported (RV(workloads[].exists=false)) and not
    waited for; it is not a failure, since a workload may be deleted while a node is away.
  - "With O(node), the node's own pods too, which are what a reboot or a move of the container
    runtime's root breaks: for every DaemonSet whose pod the DaemonSet controller runs on that node,
    a pod of it on the node that is Ready and not terminating; and every static pod of the node (its
    mirror pod: annotation C(kubernetes.io/config.mirror), bound to the node), those in
    O(static_pods) and those on the node now, Ready. A DaemonSet runs a pod on the node when its pod
    template's C(nodeSelector) and required node affinity match the node and its tolerations, with
    those the DaemonSet controller adds to every DaemonSet pod (C(node.kubernetes.io/not-ready) and
    C(unreachable) NoExecute; C(disk-pressure), C(memory-pressure), C(pid-pressure), C(unschedulable)
    NoSchedule; C(network-unavailable) NoSchedule with C(hostNetwork)), cover every NoSchedule and
    NoExecute taint of the node; the others are listed in RV(node_pods_excluded) and not waited for."
  - Writes nothing; C(changed) is always V(false).
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
  - kubeops.node_maintenance.k8s_options.timeout
  - kubeops.node_maintenance.k8s_options.record
options:
  workloads:
    description:
      - The controllers to wait for, typically the owners of the pods drained from the node
        (C(owner_kind), C(owner_name) and C(namespace) of the pods
        M(kubeops.node_maintenance.k8s_node_drain) returns).
      - A V(ReplicaSet) that a Deployment controls is replaced by that Deployment (RV(workloads[].resolved_from)
        says so), since the Deployment's health is what matters. Duplicates are checked once.
    type: list
    elements: dict
    default: []
    suboptions:
      kind:
        description: Kind of the controller.
        type: str
        required: true
        choices: [Deployment, StatefulSet, ReplicaSet, DaemonSet]
      namespace:
        description: Its namespace.
        type: str
        required: true
      name:
        description: Its name.
        type: str
        required: true
  pods:
    description:
      - Pods whose controllers to wait for, as M(kubeops.node_maintenance.k8s_node_drain) returns them in
        its C(pods) result. Each needs C(namespace), C(owner_kind) and C(owner_name); other keys are
        ignored, and so are pods whose owner is not one of the kinds of O(workloads[].kind) (Jobs, static
        pods, pods without a controller).
      - Added to O(workloads).
    type: list
    elements: dict
    default: []
  pdbs:
    description:
      - PodDisruptionBudgets that must be healthy too (C(currentHealthy) >= C(desiredHealthy)).
    type: list
    elements: dict
    default: []
    suboptions:
      namespace:
        description: Its namespace.
        type: str
        required: true
      name:
        description: Its name.
        type: str
        required: true
  pdbs_from_workloads:
    description:
      - Also wait for every PodDisruptionBudget, in the namespaces of O(workloads), whose selector
        selects the pod template labels of one of the workloads.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for everything to be healthy before the module fails. V(0) checks once.
      - API errors that may pass (no connection, HTTP 5xx, 429) are retried within this time, and for
        10 seconds at least.
    default: 300
  node:
    description:
      - The node whose own DaemonSet pods and static pods must be Ready on it again (see above);
        unset, they are not looked at.
      - Three more reads per poll (the node, every DaemonSet, the pods bound to the node).
    type: str
  static_pods:
    description:
      - The static pods that were on O(node) before the maintenance, by the names of their mirror
        pods (C(<static pod name>-<node name>)), typically the pods of the drain's result whose
        C(owner_kind) is V(Node) (the kubelet makes the Node its mirror pods' owner). The kubelet
        recreates them from its manifests (after a reimage, with new UIDs); one that is not back is
        waited for, and named at the timeout.
      - Each needs C(namespace) and C(name); other keys are ignored, and so are the items whose
        C(owner_kind) is not V(Node), so the drain's pod results can be given as they are.
      - The static pods on the node now are waited for too, listed or not. Only with O(node).
    type: list
    elements: dict
    default: []
  poll_interval:
    description:
      - Seconds between two polls.
    type: float
    default: 2
attributes:
  check_mode:
    support: full
    description:
      - The module only reads, so check mode does exactly what a normal run does, waiting included.
        It fails in check mode too when the workloads do not become healthy.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to show.
notes:
  - The PodDisruptionBudget status comes from the disruption controller of kube-controller-manager;
    a budget whose C(status.observedGeneration) is behind its C(metadata.generation) counts as not
    healthy until the controller has caught up.
seealso:
  - module: kubeops.node_maintenance.k8s_node_drain
  - module: kubeops.node_maintenance.k8s_node_wait
  - module: kubeops.node_maintenance.k8s_node_maintenance_state
  - name: kubectl rollout status
    description: The rollout checks this module's Deployment and StatefulSet rules follow.
    link: https://kubernetes.io/docs/reference/kubectl/generated/kubectl_rollout/kubectl_rollout_status/
  - name: Specifying a Disruption Budget for your Application
    description: How PodDisruptionBudget status is computed.
    link: https://kubernetes.io/docs/tasks/run-application/configure-pdb/
"""

EXAMPLES = r"""
- name: Drain worker-3
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
  register: __drain
  delegate_to: localhost

# ... reboot, wait for the node, uncordon ...

- name: Wait until the controllers of the pods drained from worker-3 are back, with their budgets
  kubeops.node_maintenance.k8s_workloads_healthy:
    pods: "{{ __drain.pods }}"
    pdbs_from_workloads: true
    timeout: 600
  delegate_to: localhost

- name: Wait until worker-3's DaemonSet pods and the static pods it had before are Ready on it again
  kubeops.node_maintenance.k8s_workloads_healthy:
    node: worker-3
    static_pods: "{{ __drain.pods }}"  # its mirror pods (owner_kind Node) are taken
    timeout: 600
  delegate_to: localhost

- name: Wait for named workloads and a budget
  kubeops.node_maintenance.k8s_workloads_healthy:
    workloads:
      - {kind: Deployment, namespace: shop, name: web}
      - {kind: StatefulSet, namespace: shop, name: db}
    pdbs:
      - {namespace: shop, name: db}
    timeout: 300
    poll_interval: 5
  register: __health
  delegate_to: localhost

- name: Show what was checked
  ansible.builtin.debug:
    msg: "{{ __health.workloads | map(attribute='summary') | list }}"
"""

RETURN = r"""
healthy:
  description: Whether everything was healthy on the last poll (V(true) whenever the task succeeds).
  returned: always
  type: bool
  sample: true
seconds:
  description: Seconds spent waiting.
  returned: always
  type: float
  sample: 12.4
polls:
  description: Number of polls made.
  returned: always
  type: int
  sample: 5
unhealthy:
  description: One line per workload, budget or node pod not healthy on the last poll; empty on success.
  returned: always
  type: list
  elements: str
  sample: ["deployment shop/web: 2/3 ready, 2/3 available"]
workloads:
  description: Each workload as seen on the last poll.
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: V(Deployment), V(StatefulSet), V(ReplicaSet) or V(DaemonSet).
      type: str
    namespace:
      description: Namespace.
      type: str
    name:
      description: Name.
      type: str
    exists:
      description: Whether it exists. One that does not is not waited for.
      type: bool
    healthy:
      description: Whether it is healthy; V(null) when it does not exist.
      type: bool
    desired:
      description: The replicas it should have (C(spec.replicas), or C(desiredNumberScheduled) for a DaemonSet).
      type: int
    ready:
      description: C(readyReplicas) (C(numberReady) for a DaemonSet).
      type: int
    available:
      description: C(availableReplicas) (C(numberAvailable) for a DaemonSet).
      type: int
    updated:
      description: C(updatedReplicas) (C(updatedNumberScheduled) for a DaemonSet).
      type: int
    missing:
      description: What keeps it from being healthy, for example V(2/3 ready); empty when healthy.
      type: list
      elements: str
    summary:
      description: "One line, as in the failure message, for example V(deployment shop/web: 3/3 ready)."
      type: str
    resolved_from:
      description: The ReplicaSet given, when it was replaced by the Deployment that controls it.
      type: str
  sample:
    - {"kind": "Deployment", "namespace": "shop", "name": "web", "exists": true, "healthy": true,
       "desired": 3, "ready": 3, "available": 3, "updated": 3, "missing": [],
       "summary": "deployment shop/web: 3/3 ready", "resolved_from": "ReplicaSet shop/web-6d4b7c9f8"}
node_pods:
  description:
    - With O(node), the node's own pods as seen on the last poll, each DaemonSet that runs a pod
      there, then each static pod; empty without O(node).
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: V(DaemonSet) or V(StaticPod).
      type: str
    namespace:
      description: Namespace.
      type: str
    name:
      description: The DaemonSet's name, or the static pod's (its mirror pod's) name.
      type: str
    pod:
      description: The pod on the node that was looked at; V(null) when there is none.
      type: str
    ready:
      description: Whether it is Ready on the node.
      type: bool
    waiting_for:
      description: What it is waiting for, V(null) when Ready.
      type: str
    summary:
      description: One line, as in the failure message.
      type: str
  sample:
    - {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy", "pod": "kube-proxy-x7k2p",
       "ready": true, "waiting_for": null,
       "summary": "daemonset kube-system/kube-proxy: pod kube-proxy-x7k2p Ready on node/worker-3"}
    - {"kind": "StaticPod", "namespace": "kube-system", "name": "etcd-worker-3", "pod": null, "ready": false,
       "waiting_for": "its mirror pod to be back on node/worker-3 (the kubelet recreates it from ...)",
       "summary": "static pod kube-system/etcd-worker-3: waiting for its mirror pod to be back on ..."}
not_ready:
  description: The entries of RV(node_pods) not Ready on the last poll; empty on success.
  returned: always
  type: list
  elements: dict
  sample:
    - {"kind": "DaemonSet", "namespace": "kube-system", "name": "kube-proxy", "pod": "kube-proxy-x7k2p",
       "ready": false, "waiting_for": "pod kube-proxy-x7k2p on node/worker-3 to be Ready (Running; ...)",
       "summary": "daemonset kube-system/kube-proxy: waiting for pod kube-proxy-x7k2p on node/worker-3 ..."}
node_pods_excluded:
  description: With O(node), the DaemonSets that run no pod on it, with the reason; not waited for.
  returned: always
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace.
      type: str
    name:
      description: Name.
      type: str
    reason:
      description: Why the DaemonSet controller runs no pod of it on the node.
      type: str
  sample:
    - {"namespace": "gpu", "name": "nvidia-driver", "reason": "nodeSelector gpu=true does not match the node's labels"}
pdbs:
  description: Each PodDisruptionBudget, given or found, as seen on the last poll.
  returned: always
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace.
      type: str
    name:
      description: Name.
      type: str
    exists:
      description: Whether it exists. One that does not is not waited for.
      type: bool
    healthy:
      description: Whether C(currentHealthy) >= C(desiredHealthy) with a current status; V(null) when it does not exist.
      type: bool
    current_healthy:
      description: C(status.currentHealthy).
      type: int
    desired_healthy:
      description: C(status.desiredHealthy).
      type: int
    disruptions_allowed:
      description: C(status.disruptionsAllowed).
      type: int
    expected_pods:
      description: C(status.expectedPods).
      type: int
    matched_workloads:
      description: The workloads whose pods it selects (with O(pdbs_from_workloads)).
      type: list
      elements: str
    missing:
      description: What keeps it from being healthy.
      type: list
      elements: str
    summary:
      description: "One line, for example V(pdb shop/web: 1 healthy of 2 required)."
      type: str
  sample:
    - {"namespace": "shop", "name": "web", "exists": true, "healthy": true, "current_healthy": 3,
       "desired_healthy": 2, "disruptions_allowed": 1, "expected_pods": 3, "missing": [],
       "matched_workloads": ["deployment shop/web"], "summary": "pdb shop/web: 3/2 healthy, 1 disruption allowed"}
phase_record:
  description:
    - With O(record), the node's maintenance record after the task wrote its phase (in check mode,
      as it would be), as RV(kubeops.node_maintenance.k8s_node_maintenance_state#module:record) returns it.
  returned: with O(record), on success
  type: dict
  sample: {"rollout": "patch-2026-11", "phase": "verify", "status": "in_progress", "message": "verify started"}
"""

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _workload_health as wh
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import RECORD_SPEC, K8sModule, timeout_spec


def argument_spec():
    return {
        "workloads": {"type": "list", "elements": "dict", "default": [], "options": {
            "kind": {"type": "str", "required": True, "choices": list(wh.KINDS)},
            "namespace": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
        }},
        "pdbs": {"type": "list", "elements": "dict", "default": [], "options": {
            "namespace": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
        }},
        "pods": {"type": "list", "elements": "dict", "default": []},
        "pdbs_from_workloads": {"type": "bool", "default": False},
        "node": {"type": "str"},
        "static_pods": {"type": "list", "elements": "dict", "default": []},
        "record": RECORD_SPEC,
        "timeout": timeout_spec(300),
        "poll_interval": {"type": "float", "default": 2.0},
    }


def main():
    module = K8sModule("k8s_workloads_healthy", argument_spec())
    # No one object: "workloads" names what an error was about, and gives no misleading `kubectl get` hint.
    module.about("workloads")
    # the record is that of O(node), or of record.node
    module.run(lambda: wh.health_gate(lambda: module.raw, module.params, module.warn), record_for=module.params["node"])


if __name__ == "__main__":
    main()
