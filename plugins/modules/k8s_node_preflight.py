#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: k8s_node_preflight
short_description: Check what draining Kubernetes nodes would break, before any pod moves
version_added: 0.1.0
description:
  - Reads one snapshot of the cluster (nodes, pods, PodDisruptionBudgets, ReplicaSets and
    PersistentVolumes, each with paged list calls) and answers, for the nodes named in O(name),
    the questions to ask before a drain.
  - V(capacity) packs the pods the drain would evict (largest first) onto the remaining nodes that
    are Ready and schedulable, whose taints the pod tolerates and whose labels match its
    C(nodeSelector), its required node affinity and the node affinity of its PersistentVolumes,
    counting CPU, memory, pod slots and any other requested resource. Each pod that fits nowhere is
    a finding, with the reason (for example C(3 short of cpu) or C(2 taint, 1 nodeSelector)).
  - V(pdb) reports PodDisruptionBudgets whose C(status.disruptionsAllowed) is smaller than the
    number of their pods on the nodes (V(0) blocks the drain), and pods covered by more than one
    budget, which the eviction API refuses.
  - V(single_node_workloads) reports Deployments, StatefulSets, ReplicaSets (and other controllers
    except DaemonSets and Jobs) whose ready pods all run on the nodes, so the service is down
    during the drain.
  - V(local_storage) reports pods with C(hostPath) volumes or C(local)/C(hostPath)
    PersistentVolumes (the data stays on the node) and C(emptyDir) volumes (the data is deleted).
  - V(unmanaged_pods) reports pods that no controller re-creates after eviction.
  - V(pull_concentration) estimates where the scheduler puts the evicted pods (least-allocated
    spreading) and warns when most of them would land on one or two nodes, whose kubelet pulls
    images one at a time by default; the finding carries an estimate of the delay.
  - V(opt_outs) reports pods on the nodes that carry another tool's opt-out, and what
    M(kubeops.node_maintenance.k8s_node_drain) does about it (the same rule decides for both);
    C(karpenter.sh/do-not-disrupt) and C(cluster-autoscaler.kubernetes.io/safe-to-evict=false)
    (effect V(block), the drain refuses to start), the label C(cluster.x-k8s.io/drain=skip) (V(skip),
    the pod stays on the node) or C(=wait-completed) (V(wait_completed), not evicted, waited for until it
    finishes), and marks that are not honoured (V(ignored), with the reason). Each finding has the
    fix.
  - V(replacement_first) lists the Deployments that the drain's replacement first
    (O(kubeops.node_maintenance.k8s_node_drain#module:replacement_first)) would restart before evicting
    their pods on the nodes (C(state=would_replace)), because every ready replica is there or a
    PodDisruptionBudget allows no disruption now, and those it would want to restart but cannot
    (C(state=not_replaced)) because their strategy stops old pods first (C(Recreate), C(maxSurge) 0) or
    they are paused. Only pods that opt in count, by O(replacement_first) or by the pod annotation
    C(node-maintenance.kubeops.io/replacement-first), the same rule as the drain's. Their Deployments
    are read (one C(list) by name each, the verb the drain needs for it) only when such pods are on the
    nodes. Findings only warn unless O(fail_on) names the check.
  - Pods the drain leaves alone are not counted, that is mirror (static) pods, DaemonSet pods, finished
    pods, pods already terminating, and pods labelled C(cluster.x-k8s.io/drain) V(skip) or
    V(wait-completed) (unless O(ignore_opt_outs) disregards Cluster API).
  - Several nodes in O(name) are judged as drained together (a batch of a rolling maintenance) and not
    one by one. V(capacity) removes all of them at once, V(pdb) counts a budget's pods on all of them
    against its allowed disruptions, and V(single_node_workloads) reports workloads whose ready pods
    all run on them.
  - With O(max_unavailable), the nodes out of service once these go (the nodes NotReady or cordoned
    already, and these) must stay within the limit; over it the task fails (C(checks.max_unavailable) in RV(checks)).
  - Read-only; C(changed) is always V(false) and check mode runs the same checks.
author:
  - kubeops maintainers (@kubeops)
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
  - kubeops.node_maintenance.k8s_options.timeout
  - kubeops.node_maintenance.k8s_options.record
  - kubeops.node_maintenance.k8s_options.records
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode runs every check.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to show.
options:
  name:
    description:
      - The node to check, or a list of nodes to check as if they were drained together
        ("what if I drain these").
    type: list
    elements: str
    required: true
    aliases: [nodes]
  checks:
    description:
      - The checks to run. V(all) runs every check.
    type: list
    elements: str
    choices: [all, capacity, pdb, single_node_workloads, local_storage, unmanaged_pods, pull_concentration, opt_outs,
              replacement_first]
    default: [all]
  fail_on:
    description:
      - Checks whose findings fail the task. Findings of the other checks that ran are returned
        with status V(warn) and shown as warnings.
      - V(all) makes every check fail the task; an empty list only warns.
    type: list
    elements: str
    choices: [all, capacity, pdb, single_node_workloads, local_storage, unmanaged_pods, pull_concentration, opt_outs,
              replacement_first]
    default: [capacity, pdb]
  ignore_opt_outs:
    description:
      - The opt-out vocabularies the drain will disregard (its own O(kubeops.node_maintenance.k8s_node_drain#module:ignore_opt_outs)),
        so the checks see the pods as the drain will treat them; their marks are reported with effect V(ignored).
      - V(karpenter) (C(karpenter.sh/do-not-disrupt)), V(cluster-autoscaler)
        (C(cluster-autoscaler.kubernetes.io/safe-to-evict)), V(cluster-api) (label C(cluster.x-k8s.io/drain)),
        V(all).
      - The default, an empty list, honours them all, as the drain does.
    type: list
    elements: str
    choices: [all, karpenter, cluster-autoscaler, cluster-api]
    default: []
  replacement_first:
    description:
      - What the drain's O(kubeops.node_maintenance.k8s_node_drain#module:replacement_first) will be, so
        that the V(replacement_first) check sees the pods as the drain will treat them; the pod annotation
        C(node-maintenance.kubeops.io/replacement-first) (V(true) or V(false)) decides for its pod
        whatever this says.
    type: bool
    default: false
  pull_estimate:
    description:
      - Thresholds and assumptions of the V(pull_concentration) check.
    type: dict
    default: {}
    suboptions:
      share:
        description:
          - Warn when the one or two busiest landing nodes would receive more than this share of the
            evicted pods.
        type: float
        default: 0.5
      min_pods:
        description:
          - Do not warn when fewer pods than this are evicted.
        type: int
        default: 10
      seconds_per_image:
        description:
          - Assumed time to pull one image, for the delay estimate in the finding.
        type: int
        default: 10
  max_unavailable:
    description:
      - At most this many nodes out of service at once, a number or a percentage of the nodes Ready
        now (rounded down, never below 1), such as V(10%).
      - Out of service are the nodes that are NotReady or cordoned (counted whether the task names them
        or not) and the nodes in O(name). More than that fails the task, whatever O(fail_on) says,
        naming the nodes already out.
      - Not given, there is no limit.
    type: raw
  page_size:
    description:
      - Objects per list call (the C(limit) parameter); large lists are read page by page with
        C(continue) tokens.
    type: int
    default: 500
  timeout:
    description:
      - Seconds the snapshot (every list call, page by page) may take before the module fails; the
        checks that follow are not counted.
      - API errors that may pass (no connection, HTTP 5xx, 429) are retried within this time.
    default: 120
notes:
  - The capacity check is a model of the scheduler, not the scheduler. It honours taints and
    tolerations, C(nodeSelector), required node affinity and PersistentVolume node affinity, and
    resource requests; it does not model inter-pod affinity and anti-affinity, topology spread
    constraints, host ports or pods that are Pending elsewhere in the cluster. A pass means the
    requests fit, not that every pod will be scheduled.
  - The RBAC role needs C(list) on nodes, pods, persistentvolumes, and
    C(policy/poddisruptionbudgets) and C(apps/replicasets) in all namespaces.
requirements:
  - kubernetes >= 29.0.0 (the Python client)
seealso:
  - module: kubeops.node_maintenance.k8s_node_drain
    description: Evicts the pods once the checks pass.
  - module: kubeops.node_maintenance.k8s_node_cordon
    description: Marks the node unschedulable before the drain.
  - name: Safely drain a node
    description: Kubernetes documentation on draining, PodDisruptionBudgets and eviction.
    link: https://kubernetes.io/docs/tasks/administer-cluster/safely-drain-node/
  - name: Specifying a Disruption Budget for your Application
    description: How disruptionsAllowed is computed and what unhealthyPodEvictionPolicy changes.
    link: https://kubernetes.io/docs/tasks/run-application/configure-pdb/
"""

EXAMPLES = r"""
- name: Check that worker-3 can be drained (fails on capacity or PDB findings)
  kubeops.node_maintenance.k8s_node_preflight:
    name: worker-3
  delegate_to: localhost

- name: What if two nodes go at once? Only warn, and look at the answers
  kubeops.node_maintenance.k8s_node_preflight:
    name: [worker-3, worker-4]
    fail_on: []
  register: __preflight
  delegate_to: localhost

- name: Show the pods that would stay Pending
  ansible.builtin.debug:
    msg: "{{ __preflight.checks.capacity.findings | map(attribute='reason') | list }}"

- name: Refuse on everything except image pulls, with AWX credentials from the environment
  kubeops.node_maintenance.k8s_node_preflight:
    name: "{{ inventory_hostname }}"
    fail_on: [capacity, pdb, single_node_workloads, local_storage, unmanaged_pods]
  delegate_to: localhost

- name: A batch of three nodes, judged as drained together, with at most 10% of the nodes out at once
  kubeops.node_maintenance.k8s_node_preflight:
    name: [worker-3, worker-4, worker-5]
    max_unavailable: 10%
  delegate_to: localhost

- name: Which Deployments will the drain restart first (replacement first on for every pod)?
  kubeops.node_maintenance.k8s_node_preflight:
    name: worker-3
    checks: [replacement_first]
    replacement_first: true
  delegate_to: localhost

- name: Only the PDB and storage checks, with a slower registry
  kubeops.node_maintenance.k8s_node_preflight:
    name: worker-3
    checks: [pdb, local_storage, pull_concentration]
    pull_estimate:
      seconds_per_image: 60
  delegate_to: localhost
"""

RETURN = r"""
ok:
  description: V(true) when no check in O(fail_on) has findings.
  returned: always
  type: bool
  sample: false
nodes:
  description: The nodes checked.
  returned: always
  type: list
  elements: str
  sample: [worker-3]
checks:
  description:
    - One entry per check that ran, keyed by the check's name; with O(max_unavailable), also
      C(max_unavailable) (its one finding names the nodes already out in C(unavailable)).
  returned: always
  type: dict
  contains:
    status:
      description:
        - V(pass) when the check found nothing, V(fail) when it found something and is in
          O(fail_on), V(warn) otherwise.
      type: str
      sample: fail
    summary:
      description: One line on what the check looked at.
      type: str
      sample: 41 of 43 evicted pods fit on 12 Ready schedulable nodes
    findings:
      description:
        - What the check found. Every finding has C(kind), C(namespace) (V(null) for nodes),
          C(name), C(reason) and C(fix); some add C(node), C(nodes), C(pods), C(requests),
          C(volumes), C(ready_pods), C(disruptions_allowed), C(images_to_pull) or
          C(estimated_seconds); those of V(opt_outs) add C(node), C(vocabulary), C(key), C(value) and
          C(effect) (V(block), V(skip), V(wait_completed) or V(ignored)); those of V(replacement_first) add
          C(nodes), C(pods) (names) and C(state) (V(would_replace) or V(not_replaced)).
      type: list
      elements: dict
      sample:
        - kind: Pod
          namespace: shop
          name: web-7d9c-x2x
          node: worker-3
          reason: >-
            would stay Pending: needs cpu 4, memory 8Gi, pods 1; 3 of 5 Ready schedulable nodes
            accept it but none has room (3 short of cpu)
          fix: add nodes (or free room on the remaining ones) ...
  sample:
    pdb:
      status: fail
      summary: 1 PodDisruptionBudget(s) cover pods on the node(s)
      findings:
        - kind: PodDisruptionBudget
          namespace: shop
          name: web
          reason: allows 0 disruptions now, so evicting its 2 pod(s) on the node(s) (web-1, web-2) is refused and the drain blocks
          fix: wait until the budget allows disruptions ...
          pods: 2
          disruptions_allowed: 0
snapshot:
  description: What was read, and how.
  returned: always
  type: dict
  contains:
    nodes:
      description: Nodes in the cluster.
      type: int
    pods:
      description: Pods that are not finished (phase not Succeeded or Failed).
      type: int
    pdbs:
      description: PodDisruptionBudgets.
      type: int
    list_calls:
      description: API requests made (one per page).
      type: int
    seconds:
      description: Time taken to read the snapshot.
      type: float
  sample: {nodes: 1000, pods: 30000, pdbs: 40, list_calls: 68, seconds: 2.1}
phase_record:
  description:
    - With O(record), the node's maintenance record after the task wrote its phase (in check mode,
      as it would be), as RV(kubeops.node_maintenance.k8s_node_maintenance_state#module:record) returns it.
  returned: with O(record), on success
  type: dict
  sample: {"rollout": "patch-2026-11", "phase": "preflight", "status": "in_progress", "message": "preflight started"}
phase_records:
  description:
    - With O(records), each node's maintenance record after the task wrote its phase, by node name.
  returned: with O(records), on success
  type: dict
  sample: {"worker-3": {"rollout": "patch-2026-11", "phase": "preflight", "status": "in_progress"}}
"""

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _pod_rules, _preflight
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import (
    RECORD_SPEC,
    RECORDS_SPEC,
    K8sModule,
    timeout_spec,
)


def argument_spec():
    choices = list(_preflight.CHECK_CHOICES)
    return {
        "name": {"type": "list", "elements": "str", "required": True, "aliases": ["nodes"]},
        "checks": {"type": "list", "elements": "str", "choices": choices, "default": ["all"]},
        "fail_on": {"type": "list", "elements": "str", "choices": choices, "default": list(_preflight.DEFAULT_FAIL_ON)},
        "pull_estimate": {"type": "dict", "default": {}, "options": {
            "share": {"type": "float", "default": 0.5},
            "min_pods": {"type": "int", "default": 10},
            "seconds_per_image": {"type": "int", "default": 10},
        }},
        "max_unavailable": {"type": "raw"},
        "page_size": {"type": "int", "default": 500},
        "ignore_opt_outs": {"type": "list", "elements": "str", "default": [],
                            "choices": ["all"] + list(_pod_rules.VOCABULARIES)},
        "replacement_first": {"type": "bool", "default": False},
        "record": RECORD_SPEC,
        "records": RECORDS_SPEC,
        "timeout": timeout_spec(120),
    }


def main():
    module = K8sModule("k8s_node_preflight", argument_spec(), mutually_exclusive=[("record", "records")])
    nodes = _preflight.node_names(module.params["name"])
    module.about(_preflight.nodes_ref(nodes), nodes=nodes)
    module.run(lambda: _preflight.preflight(lambda: module.raw, nodes, module.params, module.warn),
               record_for=nodes[0] if len(nodes) == 1 else None)


if __name__ == "__main__":
    main()
