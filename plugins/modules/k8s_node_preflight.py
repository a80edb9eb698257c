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
  - Pods the drain leaves alone are not counted, that is mirror (static) pods, DaemonSet pods, finished
    pods and pods already terminating.
  - Read-only; C(changed) is always V(false) and check mode runs the same checks.
author:
  - kubeops maintainers (@kubeops)
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
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
    choices: [all, capacity, pdb, single_node_workloads, local_storage, unmanaged_pods, pull_concentration]
    default: [all]
  fail_on:
    description:
      - Checks whose findings fail the task. Findings of the other checks that ran are returned
        with status V(warn) and shown as warnings.
      - V(all) makes every check fail the task; an empty list only warns.
    type: list
    elements: str
    choices: [all, capacity, pdb, single_node_workloads, local_storage, unmanaged_pods, pull_concentration]
    default: [capacity, pdb]
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
  page_size:
    description:
      - Objects per list call (the C(limit) parameter); large lists are read page by page with
        C(continue) tokens.
    type: int
    default: 500
  timeout:
    description:
      - Seconds the snapshot may take, retries of transient API errors included.
    type: int
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
    - One entry per check that ran, keyed by the check's name.
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
          C(estimated_seconds).
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
"""

import copy
import gc
import threading
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _preflight
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    HAS_KUBERNETES,
    K8S_AUTH_ARG_SPEC,
    KUBERNETES_IMPORT_ERROR,
    ApiException,
    K8sAccessError,
    RawApi,
    build_api_client,
    describe_api_error,
    missing_kubernetes_library_message,
    request_timeout,
    retry_transient,
)

CHECK_CHOICES = ["all"] + list(_preflight.CHECKS)
# Pods that finished hold no room and are not evicted, so the API server can leave them out.
UNFINISHED_PODS = "status.phase!=Succeeded,status.phase!=Failed"
USER_AGENT = "kubeops.node_maintenance/k8s_node_preflight"

SOURCES = (
    # (what, list path, extra query, what the snapshot calls it)
    ("pods in all namespaces", "/api/v1/pods", (("fieldSelector", UNFINISHED_PODS),), "pods"),
    ("nodes", "/api/v1/nodes", (), "nodes"),
    ("replicasets in all namespaces", "/apis/apps/v1/replicasets", (), "replicasets"),
    ("pdb in all namespaces", "/apis/policy/v1/poddisruptionbudgets", (), "pdbs"),
    ("persistentvolumes", "/api/v1/persistentvolumes", (), "pvs"),
)


class _Counter:
    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def add(self):
        with self.lock:
            self.calls += 1


def read_snapshot(api_client, focus, page_size, deadline):
    """List everything the checks need, page by page, reducing each page as it arrives.

    Raw JSON is decoded with ``json``, never into the client's model classes (which are several
    times slower and heavier on a cluster with tens of thousands of pods, and whose API classes
    cost more CPU to import than a small cluster's whole snapshot). Pods are listed in this
    thread while the smaller lists run in a second one.
    """
    snapshot = _preflight.Snapshot(focus=focus)
    counter = _Counter()
    api = RawApi(api_client, user_agent=USER_AGENT)

    def read(what, path, query, kind):
        add = getattr(snapshot, "add_" + kind)

        def fetch(token):
            page_query = list(query) + [("limit", str(page_size))] + ([("continue", token)] if token else [])
            # Undecoded: the next page's continue token is read from the bytes, and the page is
            # decoded in the consumer thread while the next one is fetched.
            raw = retry_transient(lambda: api.call("GET", path, page_query, timeout=request_timeout(deadline),
                                                   count_as="list", decode=False),
                                  deadline=deadline, describe=what)
            counter.add()
            return raw

        for attempt in (1, 2):
            try:
                for page in _preflight.iter_pages(fetch):
                    add(page.get("items") or ())
                return
            except K8sAccessError:
                raise
            except ApiException as exc:
                if exc.status == 410 and attempt == 1:
                    # The continue token expired (the list outlived etcd compaction): start over once.
                    snapshot.clear(kind)
                    continue
                raise K8sAccessError(describe_api_error(exc, what), status=exc.status, cause=exc)
            except Exception as exc:  # noqa: BLE001 - connection errors past retry, decoding
                raise K8sAccessError(describe_api_error(exc, what), cause=exc)

    failures = []

    def read_small_lists():
        try:
            for source in SOURCES[1:]:
                read(*source)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            failures.append(exc)

    others = threading.Thread(target=read_small_lists, name="preflight-lists", daemon=True)
    others.start()
    try:
        read(*SOURCES[0])
    finally:
        others.join()
    if failures:
        raise failures[0]
    return snapshot, counter.calls


def _failure_message(node_names, results):
    parts = []
    for check, result in results.items():
        if result["status"] == "fail":
            findings = result["findings"]
            first = findings[0]
            ref = "/".join(x for x in (first["kind"].lower(), first["namespace"], first["name"]) if x)
            parts.append("%s: %d finding(s), e.g. %s %s" % (check, len(findings), ref, first["reason"]))
    return "preflight refuses to drain %s: %s" % (
        ", ".join("node/%s" % n for n in node_names), "; ".join(parts))


def main():
    argument_spec = copy.deepcopy(K8S_AUTH_ARG_SPEC)
    argument_spec.update(
        name=dict(type="list", elements="str", required=True, aliases=["nodes"]),
        checks=dict(type="list", elements="str", choices=CHECK_CHOICES, default=["all"]),
        fail_on=dict(type="list", elements="str", choices=CHECK_CHOICES, default=list(_preflight.DEFAULT_FAIL_ON)),
        pull_estimate=dict(
            type="dict",
            default={},
            options=dict(
                share=dict(type="float", default=0.5),
                min_pods=dict(type="int", default=10),
                seconds_per_image=dict(type="int", default=10),
            ),
        ),
        page_size=dict(type="int", default=500),
        timeout=dict(type="int", default=120),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_kubernetes_library_message(), exception="".join(traceback.format_exception(
            type(KUBERNETES_IMPORT_ERROR), KUBERNETES_IMPORT_ERROR, KUBERNETES_IMPORT_ERROR.__traceback__)))

    node_names = list(dict.fromkeys(module.params["name"]))
    checks = _preflight.CHECKS if "all" in module.params["checks"] else module.params["checks"]
    fail_on = _preflight.CHECKS if "all" in module.params["fail_on"] else module.params["fail_on"]
    if module.params["page_size"] < 1:
        module.fail_json(msg="page_size must be at least 1, got %d" % module.params["page_size"])

    started = time.monotonic()
    # Decoding tens of thousands of pods creates millions of dicts that refcounting frees; the
    # cyclic collector would scan them over and over (measured: 3-5x the decoding time).
    gc.disable()
    try:
        api_client = build_api_client(module.params)
        snapshot, calls = read_snapshot(api_client, node_names, module.params["page_size"],
                                        started + module.params["timeout"])
    except K8sAccessError as exc:
        gc.enable()
        module.fail_json(msg="preflight of %s: %s" % (", ".join("node/%s" % n for n in node_names), exc.message),
                         changed=False)
    read_seconds = time.monotonic() - started

    missing = _preflight.missing_nodes(snapshot, node_names)
    if missing:
        module.fail_json(
            msg="%s: not found; `kubectl get nodes` lists the names" % ", ".join("node/%s" % n for n in missing),
            changed=False, nodes=node_names,
        )

    ok, results = _preflight.run_checks(
        snapshot, node_names, checks=checks, fail_on=fail_on, pull_options=module.params["pull_estimate"])
    gc.enable()
    outcome = dict(
        changed=False,
        ok=ok,
        nodes=node_names,
        checks=results,
        snapshot=dict(
            nodes=len(snapshot.nodes), pods=len(snapshot.pods), pdbs=len(snapshot.pdbs),
            list_calls=calls, seconds=round(read_seconds, 3),
        ),
    )
    for check, result in results.items():
        if result["status"] == "warn":
            module.warn("%s: %d finding(s), e.g. %s/%s: %s" % (
                check, len(result["findings"]), result["findings"][0]["kind"],
                result["findings"][0]["name"], result["findings"][0]["reason"]))
    if not ok:
        module.fail_json(msg=_failure_message(node_names, results), **outcome)
    outcome["msg"] = "preflight passed for %s (%s)" % (
        ", ".join("node/%s" % n for n in node_names),
        ", ".join("%s: %s" % (check, result["status"]) for check, result in results.items()))
    module.exit_json(**outcome)


if __name__ == "__main__":
    main()
