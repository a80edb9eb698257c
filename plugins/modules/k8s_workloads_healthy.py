#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_workloads_healthy
short_description: Wait until workloads and their PodDisruptionBudgets are back to full health
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
  - Writes nothing; C(changed) is always V(false).
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
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
      - Seconds to wait for everything to be healthy. V(0) checks once.
      - Transient API errors (no connection, HTTP 5xx, 429) are retried within this time.
    type: int
    default: 300
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
  description: One line per workload or budget not healthy on the last poll; empty on success.
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
"""

import copy
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

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
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _workload_health as wh


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARG_SPEC)
    spec.update(
        workloads={"type": "list", "elements": "dict", "default": [], "options": {
            "kind": {"type": "str", "required": True, "choices": list(wh.KINDS)},
            "namespace": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
        }},
        pdbs={"type": "list", "elements": "dict", "default": [], "options": {
            "namespace": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
        }},
        pods={"type": "list", "elements": "dict", "default": []},
        pdbs_from_workloads={"type": "bool", "default": False},
        timeout={"type": "int", "default": 300},
        poll_interval={"type": "float", "default": 2.0},
    )
    return spec


USER_AGENT = "kubeops.node_maintenance/k8s_workloads_healthy"
# Where each kind is listed in a namespace.
LIST_PATHS = {
    wh.DEPLOYMENT: ("/apis/apps/v1/namespaces", "deployments"),
    wh.STATEFULSET: ("/apis/apps/v1/namespaces", "statefulsets"),
    wh.REPLICASET: ("/apis/apps/v1/namespaces", "replicasets"),
    wh.DAEMONSET: ("/apis/apps/v1/namespaces", "daemonsets"),
    wh.PDB: ("/apis/policy/v1/namespaces", "poddisruptionbudgets"),
}


class ClusterReader:
    """List calls for the kinds the gate reads; every object comes back as a plain dict.

    ``raw`` is a ``_k8s_client.RawApi``: the API server's JSON as it is, no generated model classes."""

    def __init__(self, raw, deadline_fn):
        self.raw = raw
        self.deadline_fn = deadline_fn
        self.calls = 0

    def list(self, kind, namespace, names=None):
        """Objects of ``kind`` in ``namespace``; only ``names`` when given (a field selector for one)."""
        query = []
        if names is not None and len(names) == 1:
            query.append(("fieldSelector", "metadata.name=%s" % next(iter(names))))
        deadline = self.deadline_fn()
        prefix, resource = LIST_PATHS[kind]
        path = api_path(prefix, namespace, resource)
        self.calls += 1
        ref = "%s %s/%s" % (wh.kind_ref(kind), namespace,
                            next(iter(names)) if names is not None and len(names) == 1 else "*")
        try:
            # Paged (500 a page, as kubectl): one namespace can hold thousands of ReplicaSets.
            items = retry_transient(
                lambda: self.raw.list_all(path, query, timeout=request_timeout(deadline)),
                deadline=deadline, describe=ref)
        except ApiException as exc:
            raise K8sAccessError(describe_api_error(exc, ref), status=exc.status, cause=exc)
        if names is not None:
            items = [item for item in items if item["metadata"]["name"] in names]
        return items


def observe(reader, refs, pdb_refs, pdbs_from_workloads):
    """One poll: (workload results, pdb results)."""
    workload_objects = {}
    for (kind, namespace), names in sorted(wh.group_refs(refs).items()):
        for obj in reader.list(kind, namespace, names):
            workload_objects[(kind, namespace, obj["metadata"]["name"])] = obj
    workloads = [wh.workload_health(ref, workload_objects.get(wh.ref_key(ref))) for ref in refs]

    wanted_pdbs = wh.group_pdb_refs(pdb_refs)
    pdb_namespaces = set(wanted_pdbs)
    if pdbs_from_workloads:
        pdb_namespaces |= {ref["namespace"] for ref in refs}
    pdb_objects = []
    for namespace in sorted(pdb_namespaces):
        names = None if pdbs_from_workloads and namespace in {r["namespace"] for r in refs} \
            else wanted_pdbs.get(namespace)
        pdb_objects.extend(reader.list("PodDisruptionBudget", namespace, names))
    pdbs = wh.pdbs_health(pdb_refs, pdb_objects, workload_objects if pdbs_from_workloads else None)
    return workloads, pdbs


def wait_healthy(reader, refs, pdb_refs, pdbs_from_workloads, timeout, poll_interval,
                 sleep=time.sleep, clock=time.monotonic):
    started = clock()
    deadline = started + timeout
    polls = 0
    while True:
        polls += 1
        workloads, pdbs = observe(reader, refs, pdb_refs, pdbs_from_workloads)
        unhealthy = wh.unhealthy_lines(workloads, pdbs)
        remaining = deadline - clock()
        if not unhealthy or remaining <= 0:
            return {"healthy": not unhealthy, "unhealthy": unhealthy, "workloads": workloads, "pdbs": pdbs,
                    "polls": polls, "seconds": round(clock() - started, 1)}
        sleep(min(poll_interval, remaining))


def resolve_replicasets(reader, refs):
    """Replace ReplicaSets a Deployment controls by that Deployment (one list per namespace)."""
    replicasets = {}
    for (kind, namespace), names in sorted(wh.group_refs(refs).items()):
        if kind == "ReplicaSet":
            for obj in reader.list("ReplicaSet", namespace, names):
                replicasets[(namespace, obj["metadata"]["name"])] = obj
    return wh.resolve_refs(refs, replicasets)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    errors = []
    if params["timeout"] < 0:
        errors.append("timeout must not be negative")
    if params["poll_interval"] <= 0:
        errors.append("poll_interval must be more than 0")
    if errors:
        module.fail_json(msg="; ".join(errors))
    refs = wh.dedupe_refs(list(params["workloads"]) + wh.refs_from_pods(params["pods"]))
    pdb_refs = wh.dedupe_pdb_refs(params["pdbs"])

    started = time.monotonic()

    def deadline_fn():
        # a transient API failure is retried until the gate's own deadline, but always for a little while
        return max(started + params["timeout"], time.monotonic() + 10)

    try:
        reader = ClusterReader(RawApi(build_api_client(params), user_agent=USER_AGENT), deadline_fn)
        refs = resolve_replicasets(reader, refs)
        result = wait_healthy(reader, refs, pdb_refs, params["pdbs_from_workloads"],
                              params["timeout"] - (time.monotonic() - started), params["poll_interval"])
    except K8sAccessError as exc:
        module.fail_json(msg=exc.message, status=exc.status)
    except ApiException as exc:
        module.fail_json(msg=describe_api_error(exc, None), status=exc.status)
    except Exception as exc:  # noqa: BLE001 - anything the client raises gets the same translation
        module.fail_json(msg=describe_api_error(exc, None), exception=traceback.format_exc())

    result["seconds"] = round(time.monotonic() - started, 1)
    for line in wh.absent_lines(result["workloads"], result["pdbs"]):
        module.warn(line)
    if result["healthy"]:
        module.exit_json(changed=False, **result)
    module.fail_json(msg=wh.timeout_message(result["unhealthy"], result["seconds"]), **result)


if __name__ == "__main__":
    main()
