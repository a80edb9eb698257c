# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pre-drain checks over one snapshot of the cluster (pure: data in, findings out).

The snapshot is built from the raw JSON of list calls (``Snapshot.add_*``), reducing every object
to the few fields the checks read as it arrives, so a big cluster's pages never have to be held
at once. ``run_checks`` answers, for the nodes about to be drained, the questions the field notes
ask before any pod moves:

- capacity: do the evicted pods' requests fit on the remaining Ready, schedulable nodes whose
  taints they tolerate and whose labels match their nodeSelector / required node affinity
  (first-fit-decreasing packing); which pods would stay Pending and why.
- pdb: budgets that allow fewer disruptions than they have pods on the nodes (0 blocks the drain),
  and pods covered by more than one budget (the eviction API refuses those with a 500).
- single_node_workloads: controllers whose ready pods all run on the nodes.
- local_storage: hostPath, local PersistentVolumes (data stays behind) and emptyDir (data lost).
- unmanaged_pods: pods no controller re-creates.
- pull_concentration: most evicted pods landing on one or two nodes, whose kubelet pulls images
  one after another by default.
- opt_outs: pods that carry another tool's opt-out (Karpenter's do-not-disrupt, the cluster
  autoscaler's safe-to-evict "false", Cluster API's drain label), with what the drain does about
  it (``_pod_rules.opt_outs`` decides, as for the drain). Pods the drain skips or waits for by their
  label need no room elsewhere.
- replacement_first: the Deployments the drain's replacement first (``_replacement_first``, the same
  rule) would restart before evicting their pods here, opted in by the run or their pods'
  annotation, and those it wants to but cannot (Recreate, maxSurge 0, paused). Their Deployments are
  read by ``preflight`` after the lists (one list call each, by name), only for opted-in pods.
- max_unavailable (only when a limit is given, and always refusing): the nodes out of service once
  these go (those NotReady or cordoned already, and these) within the limit.

Nodes named together are judged as drained together: every check removes all of them at once.

At the end, what ``k8s_node_preflight`` does with them: ``read_snapshot`` lists the cluster page by
page (``iter_pages``), and ``preflight`` is the whole module run.
"""

from __future__ import annotations

import gc
import json
import queue
import re
import threading
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _pod_rules, _replacement_first
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._api_objects import controller_of
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    K8sAccessError,
    describe_api_error,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import node_is_ready, parse_node_count
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._quantity import (
    QuantityError,
    format_amount,
    resource_amount,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._selectors import (
    label_selector_matches,
    match_labels,
    node_selector_terms_match,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._tolerations import untolerated_taint

CHECKS = (
    "capacity",
    "pdb",
    "single_node_workloads",
    "local_storage",
    "unmanaged_pods",
    "pull_concentration",
    "opt_outs",
    "replacement_first",
)
DEFAULT_FAIL_ON = ("capacity", "pdb")

# Owners whose pods are not "a service" that a drain takes down: a DaemonSet pod is not evicted,
# a Job's pods run to completion, a Node owns mirror (static) pods.
_NOT_A_SERVICE = frozenset(("DaemonSet", "Job", "Node"))

_FIX = {
    "capacity": "add nodes (or free room on the remaining ones) that match these pods' nodeSelector, "
    "affinity and tolerations before draining, or drain fewer nodes at once",
    "capacity_pinned": "the pod can only run where its volume is; drain when the workload can be down "
    "until the node is back, or move the data first",
    "pdb_zero": "wait until the budget allows disruptions (scale the workload up or make its pods Ready); "
    "for planned maintenance the field notes suggest removing the PDB and restoring it afterwards",
    "pdb_short": "the drain will wait for replacement pods to become Ready between evictions; make sure "
    "they can start elsewhere, or raise the workload's replicas first",
    "pdb_overlap": "make the PDBs' selectors disjoint: the eviction API refuses a pod covered by "
    "more than one PodDisruptionBudget",
    "single_node": "add pod anti-affinity or a topologySpreadConstraint on kubernetes.io/hostname "
    "(and at least 2 replicas) so replicas spread; if they must share a node, drain in a "
    "low-traffic window",
    "local_storage": "back up the data on the node before draining; hostPath and local volumes stay "
    "on this node, emptyDir data is deleted with the pod",
    "unmanaged": "save the manifest (kubectl get pod -o yaml) and re-create the pod after the drain, "
    "or run it under a Deployment/StatefulSet",
    "max_unavailable": "wait until the nodes already out of service are back (Ready and uncordoned), or "
    "take fewer nodes at once (node_maintenance_serial), or raise max_unavailable",
    "pull": "pre-pull the images on other nodes, uncordon or add nodes so pods spread, or raise the "
    "kubelet's maxParallelImagePulls (serializeImagePulls: false)",
    "opt_out_block": "k8s_node_drain refuses to start while this pod is on the node: ask the workload's owner "
    "whether it may move now, then remove the mark, or drain with ignore_opt_outs: [%s] (the role: "
    "node_maintenance_drain_ignore_opt_outs)",
    "opt_out_skip": "k8s_node_drain leaves this pod on the node, so the maintenance stops it with the node: make "
    "sure it may be down for the action, or drain with ignore_opt_outs: [%s] to evict it",
    "opt_out_wait_completed": "k8s_node_drain does not evict this pod and waits, within its timeout, until it "
    "finishes: let it finish before the maintenance, raise the drain's timeout, or drain with "
    "ignore_opt_outs: [%s] to evict it",
    "opt_out_ignored": "nothing to do for the drain; correct or remove the mark if %s should read it",
    "replacement_first": "nothing to do: the drain restarts the Deployment (as kubectl rollout restart) while the "
    "node is cordoned and evicts its pods once the replacements are available; the cluster needs room for its "
    "maxSurge extra pods meanwhile",
    "replacement_first_not_possible": "give the Deployment a RollingUpdate strategy with maxSurge of at least 1 "
    "(or resume it), or accept that it is down until its pods start elsewhere; annotate its pod template "
    "node-maintenance.kubeops.io/replacement-first: \"false\" to stop asking",
}


# --------------------------------------------------------------------------------------------
# Compact records
# --------------------------------------------------------------------------------------------
class NodeInfo:
    __slots__ = ("name", "labels", "taints", "ready", "unschedulable", "allocatable", "images")

    def __init__(self, name, labels=None, taints=(), ready=True, unschedulable=False,
                 allocatable=None, images=frozenset()):
        self.name = name
        self.labels = labels or {}
        self.taints = tuple(taints)  # the node's taint dicts, as the API has them
        self.ready = ready
        self.unschedulable = unschedulable
        self.allocatable = allocatable or {}
        self.images = images


class PodInfo:
    __slots__ = (
        "namespace", "name", "node", "phase", "deleting", "labels", "ready", "owner", "mirror",
        "daemonset", "requests", "constraints", "volumes", "images", "opt_outs", "replacement_choice",
    )

    def __init__(self, namespace, name, node=None, phase="Running", deleting=False, labels=None,
                 ready=True, owner=None, mirror=False, daemonset=False, requests=None,
                 constraints=None, volumes=(), images=(), opt_outs=(), replacement_choice=None):
        self.namespace = namespace
        self.name = name
        self.node = node
        self.phase = phase
        self.deleting = deleting
        self.labels = labels or {}
        self.ready = ready
        self.owner = owner  # (kind, name) of the controller owner reference, or None
        self.mirror = mirror
        self.daemonset = bool(daemonset)
        self.requests = requests or {"pods": 1}
        self.constraints = constraints  # SchedulingConstraints or None (no constraint)
        self.volumes = tuple(volumes)  # (type, volume name, detail)
        self.images = tuple(images)
        self.opt_outs = tuple(opt_outs)  # _pod_rules.pod_opt_outs, none disregarded
        self.replacement_choice = replacement_choice  # _replacement_first.annotation_choice: True, False, None

    @property
    def ref(self):
        return "%s/%s" % (self.namespace, self.name)

    @property
    def serving(self):
        """Ready, Running and not being deleted (``_pod_rules.serving``)."""
        return _pod_rules.serving(self.phase, self.deleting, self.ready)


class SchedulingConstraints:
    """What limits where a pod may run: tolerations (the pod's dicts), nodeSelector, required node affinity."""

    __slots__ = ("tolerations", "node_selector", "node_affinity", "key")

    def __init__(self, tolerations=(), node_selector=None, node_affinity=None):
        self.tolerations = tuple(tolerations)
        self.node_selector = node_selector or {}
        self.node_affinity = node_affinity  # list of nodeSelectorTerms, or None
        # Pods of one template share the key, so node filtering is computed once per template.
        self.key = json.dumps([self.tolerations, self.node_selector, self.node_affinity],
                              sort_keys=True, default=str)


class PdbInfo:
    __slots__ = ("namespace", "name", "selector", "disruptions_allowed", "stale",
                 "always_allow_unhealthy")

    def __init__(self, namespace, name, selector, disruptions_allowed=0, stale=False,
                 always_allow_unhealthy=False):
        self.namespace = namespace
        self.name = name
        self.selector = selector
        self.disruptions_allowed = disruptions_allowed
        self.stale = stale
        self.always_allow_unhealthy = always_allow_unhealthy


class PvInfo:
    __slots__ = ("name", "claim", "local_path", "host_path", "node_affinity")

    def __init__(self, name, claim=None, local_path=None, host_path=None, node_affinity=None):
        self.name = name
        self.claim = claim  # (namespace, name) from spec.claimRef
        self.local_path = local_path
        self.host_path = host_path
        self.node_affinity = node_affinity  # list of nodeSelectorTerms, or None


# --------------------------------------------------------------------------------------------
# From API JSON (camelCase dicts, as the list calls return them)
# --------------------------------------------------------------------------------------------
def _amounts(resources):
    out = {}
    for resource, value in (resources or {}).items():
        try:
            out[resource] = resource_amount(resource, value)
        except QuantityError:
            continue
    return out


def _add_into(total, amounts):
    for resource, amount in amounts.items():
        total[resource] = total.get(resource, 0) + amount


def pod_requests(spec):
    """Requests the scheduler counts for a pod, as {resource: int} (cpu in millicores).

    The larger of (app containers + sidecars) and the peak while init containers run, plus the
    pod overhead; pod-level ``spec.resources.requests`` replaces the per-container sum where set.
    ``pods`` is always 1.
    """
    containers = {}
    for container in spec.get("containers") or ():
        _add_into(containers, _amounts((container.get("resources") or {}).get("requests")))
    sidecars = {}
    init_peak = {}
    for container in spec.get("initContainers") or ():
        requests = _amounts((container.get("resources") or {}).get("requests"))
        if container.get("restartPolicy") == "Always":
            _add_into(sidecars, requests)
            running = sidecars
        else:
            running = dict(sidecars)
            _add_into(running, requests)
        for resource, amount in running.items():
            init_peak[resource] = max(init_peak.get(resource, 0), amount)
    total = dict(containers)
    _add_into(total, sidecars)
    for resource, amount in init_peak.items():
        total[resource] = max(total.get(resource, 0), amount)
    pod_level = _amounts((spec.get("resources") or {}).get("requests"))
    total.update(pod_level)
    _add_into(total, _amounts(spec.get("overhead")))
    total["pods"] = 1
    return {resource: amount for resource, amount in total.items() if amount > 0}


def _owner(ref):
    """``(kind, name)`` of a controller owner reference, or None."""
    return (ref.get("kind"), ref.get("name")) if ref else None


def _pod_constraints(spec):
    tolerations = spec.get("tolerations") or ()
    node_affinity = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {})
        .get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    ).get("nodeSelectorTerms")
    if not tolerations and not spec.get("nodeSelector") and node_affinity is None:
        return None
    return SchedulingConstraints(tolerations, spec.get("nodeSelector"), node_affinity)


def _pod_volumes(name, spec):
    volumes = []
    for volume in spec.get("volumes") or ():
        if "hostPath" in volume:
            volumes.append(("hostPath", volume.get("name"), (volume["hostPath"] or {}).get("path")))
        elif "emptyDir" in volume:
            volumes.append(("emptyDir", volume.get("name"), (volume["emptyDir"] or {}).get("medium") or ""))
        elif "persistentVolumeClaim" in volume or "ephemeral" in volume:
            kind = "pvc" if "persistentVolumeClaim" in volume else "ephemeral"
            volumes.append((kind, volume.get("name"), _pod_rules.volume_claim_name(name, volume)))
    return volumes


def _pod_info(obj, metadata, spec, **fields):
    """The record every pod gets: where it runs, its state, its controller and the room it takes."""
    controller = controller_of(obj)
    return PodInfo(
        namespace=metadata.get("namespace"),
        name=metadata.get("name"),
        node=spec.get("nodeName"),
        phase=(obj.get("status") or {}).get("phase") or "Pending",
        deleting=_pod_rules.is_terminating(obj),
        ready=_pod_rules.is_ready(obj),
        owner=_owner(controller),
        daemonset=_pod_rules.is_daemonset_ref(controller),
        requests=pod_requests(spec),
        **fields
    )


def pod_from_api(obj):
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    images = []
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if container.get("image") and container["image"] not in images:
            images.append(container["image"])
    return _pod_info(
        obj, metadata, spec,
        labels=metadata.get("labels") or {},
        mirror=_pod_rules.is_mirror_pod(obj),
        constraints=_pod_constraints(spec),
        volumes=_pod_volumes(metadata.get("name"), spec),
        images=images,
        opt_outs=_pod_rules.pod_opt_outs(obj),
        replacement_choice=_replacement_first.annotation_choice(obj),
    )


def light_pod_from_api(obj):
    """The fields the checks read from a pod that is not on a drained node: where it runs, the
    room it takes, and which workload it serves (a quarter of the cost of ``pod_from_api``)."""
    return _pod_info(obj, obj.get("metadata") or {}, obj.get("spec") or {})


def node_from_api(obj):
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    images = set()
    for image in status.get("images") or ():
        images.update(image.get("names") or ())
    return NodeInfo(
        name=metadata.get("name"),
        labels=metadata.get("labels") or {},
        taints=spec.get("taints") or (),
        ready=node_is_ready(obj),
        unschedulable=bool(spec.get("unschedulable")),
        allocatable=_amounts(status.get("allocatable") or status.get("capacity")),
        images=frozenset(images),
    )


def pdb_from_api(obj):
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    return PdbInfo(
        namespace=metadata.get("namespace"),
        name=metadata.get("name"),
        selector=spec.get("selector"),
        disruptions_allowed=int(status.get("disruptionsAllowed") or 0),
        stale=observed is None or observed < (metadata.get("generation") or 0),
        always_allow_unhealthy=spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow",
    )


def pv_from_api(obj):
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    claim_ref = spec.get("claimRef")
    required = ((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms")
    return PvInfo(
        name=metadata.get("name"),
        claim=(claim_ref.get("namespace"), claim_ref.get("name")) if claim_ref else None,
        local_path=(spec.get("local") or {}).get("path"),
        host_path=(spec.get("hostPath") or {}).get("path"),
        node_affinity=required,
    )


class Snapshot:
    """The cluster as the checks see it; fed page by page from list calls.

    With ``focus`` (the names of the nodes to be drained), pods elsewhere are kept as light
    records (``light_pod_from_api``): enough for every check, and much less work on a big cluster.
    Checks must then be asked only about nodes in ``focus``.
    """

    def __init__(self, focus=None):
        self.focus = frozenset(focus) if focus is not None else None
        # Opt-out vocabularies the drain will disregard (k8s_node_preflight's ignore_opt_outs).
        self.ignore_opt_outs = ()
        self.nodes = {}
        self.pods = []
        self.pdbs = []
        self.replicaset_owners = {}  # (namespace, replicaset) -> (kind, name) of its controller
        self.pvs_by_claim = {}  # (namespace, claim) -> PvInfo
        # (namespace, name) -> Deployment (API JSON) of replacement_candidates, read by preflight()
        # after the lists; without them check_replacement_first finds nothing
        self.deployments = {}

    def clear(self, what):
        """Forget one kind of object (``nodes``, ``pods``, ``pdbs``, ``replicasets``, ``pvs``),
        for a list that has to start over."""
        empty = {"nodes": {}, "pods": [], "pdbs": [], "replicasets": {}, "pvs": {}}[what]
        attribute = {"replicasets": "replicaset_owners", "pvs": "pvs_by_claim"}.get(what, what)
        setattr(self, attribute, empty)

    def add_nodes(self, items):
        for obj in items:
            node = node_from_api(obj)
            self.nodes[node.name] = node

    def add_pods(self, items):
        focus = self.focus
        append = self.pods.append
        for obj in items:
            if focus is None or (obj.get("spec") or {}).get("nodeName") in focus:
                append(pod_from_api(obj))
            else:
                append(light_pod_from_api(obj))

    def add_pdbs(self, items):
        for obj in items:
            self.pdbs.append(pdb_from_api(obj))

    def add_replicasets(self, items):
        for obj in items:
            metadata = obj.get("metadata") or {}
            owner = _owner(controller_of(obj))
            if owner:
                self.replicaset_owners[(metadata.get("namespace"), metadata.get("name"))] = owner

    def add_pvs(self, items):
        for obj in items:
            pv = pv_from_api(obj)
            if pv.claim:
                self.pvs_by_claim[pv.claim] = pv

    @classmethod
    def from_objects(cls, nodes=(), pods=(), pdbs=(), replicasets=(), pvs=(), focus=None):
        snapshot = cls(focus)
        snapshot.add_nodes(nodes)
        snapshot.add_pods(pods)
        snapshot.add_pdbs(pdbs)
        snapshot.add_replicasets(replicasets)
        snapshot.add_pvs(pvs)
        return snapshot

    def controller_of(self, pod):
        """(kind, name) of the workload that owns the pod: a ReplicaSet resolves to its Deployment."""
        if pod.owner is None:
            return None
        kind, name = pod.owner
        if kind == "ReplicaSet":
            return self.replicaset_owners.get((pod.namespace, name), pod.owner)
        return pod.owner


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------
def placement_obstacle(constraints, node):
    """Why the pod may not be scheduled to the node regardless of room, or None."""
    if constraints is None:
        if untolerated_taint((), node.taints):
            return "taint"
        return None
    if untolerated_taint(constraints.tolerations, node.taints):
        return "taint"
    if not match_labels(constraints.node_selector, node.labels):
        return "nodeSelector"
    if constraints.node_affinity is not None and not node_selector_terms_match(
            constraints.node_affinity, node.labels, node.name):
        return "node affinity"
    return None


# --------------------------------------------------------------------------------------------
# Which pods a drain moves
# --------------------------------------------------------------------------------------------
def drain_skip_reason(pod, ignore_opt_outs=()):
    """Why a drain leaves this pod alone (None: it is evicted and must run elsewhere).

    The flags come from ``_pod_rules`` (the drain's own rules); the preflight needs only
    "does it need room elsewhere", not the drain's option-dependent plan.
    """
    if pod.mirror:
        return "mirror pod"
    if pod.daemonset:
        return "DaemonSet pod"
    if pod.phase in _pod_rules.FINISHED_PHASES:
        return "finished"
    if pod.deleting:
        return "already terminating"
    for opt_out in _pod_rules.disregarded(pod.opt_outs, ignore_opt_outs):
        if opt_out["effect"] in (_pod_rules.SKIP, _pod_rules.WAIT_COMPLETED):
            return opt_out["text"]
    return None


def evicted_pods(snapshot, node_names):
    names = set(node_names)
    return [p for p in snapshot.pods if p.node in names and drain_skip_reason(p, snapshot.ignore_opt_outs) is None]


def _consumes_room(pod):
    return pod.phase not in _pod_rules.FINISHED_PHASES


# --------------------------------------------------------------------------------------------
# Capacity: first-fit decreasing, and a least-allocated estimate of where the scheduler puts pods
# --------------------------------------------------------------------------------------------
def _volume_node_affinity(snapshot, pod):
    """nodeSelectorTerms of the PersistentVolumes the pod mounts (each must match), as a list."""
    pinned = []
    for vtype, _name, detail in pod.volumes:
        if vtype not in ("pvc", "ephemeral"):
            continue
        pv = snapshot.pvs_by_claim.get((pod.namespace, detail))
        if pv is not None and pv.node_affinity is not None:
            pinned.append(pv)
    return pinned


class _Room:
    """Free room per candidate node, updated as pods are placed."""

    def __init__(self, snapshot, drained):
        self.candidates = []
        self.excluded = {"NotReady": 0, "unschedulable": 0}
        for name in sorted(snapshot.nodes):
            node = snapshot.nodes[name]
            if name in drained:
                continue
            if not node.ready:
                self.excluded["NotReady"] += 1
            elif node.unschedulable:
                self.excluded["unschedulable"] += 1
            else:
                self.candidates.append(node)
        self.free = {node.name: dict(node.allocatable) for node in self.candidates}
        for pod in snapshot.pods:
            free = self.free.get(pod.node)
            if free is not None and _consumes_room(pod):
                for resource, amount in pod.requests.items():
                    free[resource] = free.get(resource, 0) - amount

    def fits(self, pod, node_name):
        free = self.free[node_name]
        for resource, amount in pod.requests.items():
            if free.get(resource, 0) < amount:
                return False
        return True

    def take(self, pod, node_name):
        free = self.free[node_name]
        for resource, amount in pod.requests.items():
            free[resource] = free.get(resource, 0) - amount


def _feasible_nodes(snapshot, room, pod, cache):
    """Candidate nodes the pod may go to by taints/selector/affinity/volume, and why others are not."""
    pvs = _volume_node_affinity(snapshot, pod)
    key = (pod.constraints.key if pod.constraints else None, tuple(pv.name for pv in pvs))
    cached = cache.get(key)
    if cached is not None:
        return cached
    feasible = []
    obstacles = {}
    for node in room.candidates:
        obstacle = placement_obstacle(pod.constraints, node)
        if obstacle is None:
            for pv in pvs:
                if not node_selector_terms_match(pv.node_affinity, node.labels, node.name):
                    obstacle = "volume node affinity (%s)" % pv.name
                    break
        if obstacle is None:
            feasible.append(node.name)
        else:
            obstacles[obstacle] = obstacles.get(obstacle, 0) + 1
    cache[key] = (feasible, obstacles)
    return cache[key]


def _size_key(room):
    largest = {}
    for node in room.candidates:
        for resource in ("cpu", "memory"):
            largest[resource] = max(largest.get(resource, 0), node.allocatable.get(resource, 0))

    def key(pod):
        share = max(
            pod.requests.get(r, 0) / float(largest[r]) if largest.get(r) else 0.0 for r in ("cpu", "memory")
        )
        return (-share, -pod.requests.get("cpu", 0), -pod.requests.get("memory", 0), pod.namespace, pod.name)

    return key


def _describe_requests(requests):
    parts = []
    for resource in sorted(requests):
        if resource != "pods":
            parts.append("%s %s" % (resource, format_amount(resource, requests[resource])))
    return ", ".join(parts) or "no cpu/memory requests"


def _pending_reason(pod, feasible, obstacles, room):
    total = len(room.candidates)
    excluded = ", ".join(
        "%d %s" % (count, what) for what, count in sorted(room.excluded.items()) if count
    )
    tail = " (not counted: %s)" % excluded if excluded else ""
    if not feasible:
        why = ", ".join("%d %s" % (count, what) for what, count in sorted(obstacles.items()))
        return ("would stay Pending: none of the %d Ready schedulable nodes accepts it (%s)%s"
                % (total, why or "no nodes left", tail))
    short = {}
    for name in feasible:
        free = room.free[name]
        for resource, amount in pod.requests.items():
            if free.get(resource, 0) < amount:
                short[resource] = short.get(resource, 0) + 1
    why = ", ".join("%d short of %s" % (count, resource) for resource, count in sorted(short.items()))
    return ("would stay Pending: needs %s; %d of %d Ready schedulable nodes accept it but none has room (%s)%s"
            % (_describe_requests(pod.requests), len(feasible), total, why, tail))


def pack_first_fit_decreasing(snapshot, node_names):
    """Place the evicted pods, largest first, each on the first node (by name) with room.

    Returns (placements {pod_ref: node}, pending [(pod, reason, pinned_by_volume)], room).
    Never places a pod where a resource would go negative.
    """
    drained = set(node_names)
    room = _Room(snapshot, drained)
    cache = {}
    placements = {}
    pending = []
    for pod in sorted(evicted_pods(snapshot, drained), key=_size_key(room)):
        feasible, obstacles = _feasible_nodes(snapshot, room, pod, cache)
        target = None
        for name in feasible:
            if room.fits(pod, name):
                target = name
                break
        if target is None:
            pinned = any(k.startswith("volume node affinity") for k in obstacles) and not feasible
            pending.append((pod, _pending_reason(pod, feasible, obstacles, room), pinned))
        else:
            room.take(pod, target)
            placements[pod.ref] = target
    return placements, pending, room


def spread_least_allocated(snapshot, node_names):
    """Estimate where the scheduler puts the evicted pods: each on the feasible node with the most
    free cpu+memory share (the default LeastAllocated scoring). Returns {node: [pods]}."""
    drained = set(node_names)
    room = _Room(snapshot, drained)
    cache = {}
    landing = {}
    for pod in sorted(evicted_pods(snapshot, drained), key=_size_key(room)):
        feasible, _obstacles = _feasible_nodes(snapshot, room, pod, cache)
        best, best_score = None, None
        for name in feasible:
            if not room.fits(pod, name):
                continue
            free = room.free[name]
            allocatable = snapshot.nodes[name].allocatable
            score = 0.0
            for resource in ("cpu", "memory"):
                if allocatable.get(resource):
                    score += (free.get(resource, 0) - pod.requests.get(resource, 0)) / float(allocatable[resource])
            if best_score is None or score > best_score:
                best, best_score = name, score
        if best is not None:
            room.take(pod, best)
            landing.setdefault(best, []).append(pod)
    return landing


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def _finding(kind, namespace, name, reason, fix, **extra):
    finding = {"kind": kind, "namespace": namespace, "name": name, "reason": reason, "fix": fix}
    finding.update(extra)
    return finding


def check_capacity(snapshot, node_names):
    placements, pending, room = pack_first_fit_decreasing(snapshot, node_names)
    findings = []
    for pod, reason, pinned in pending:
        findings.append(_finding(
            "Pod", pod.namespace, pod.name, reason,
            _FIX["capacity_pinned"] if pinned else _FIX["capacity"],
            node=pod.node, requests={r: format_amount(r, a) for r, a in sorted(pod.requests.items())},
        ))
    moved = len(placements) + len(pending)
    summary = "%d of %d evicted pods fit on %d Ready schedulable nodes" % (
        len(placements), moved, len(room.candidates))
    return findings, summary


def check_pdb(snapshot, node_names):
    evicted = evicted_pods(snapshot, node_names)
    by_namespace = {}
    for pdb in snapshot.pdbs:
        by_namespace.setdefault(pdb.namespace, []).append(pdb)
    covering = {}
    covering_pdbs = 0
    findings = []
    for pdb_list in by_namespace.values():
        for pdb in pdb_list:
            on_nodes = [
                p for p in evicted
                if p.namespace == pdb.namespace and label_selector_matches(pdb.selector, p.labels)
            ]
            if on_nodes:
                covering_pdbs += 1
            for pod in on_nodes:
                covering.setdefault(pod.ref, (pod, []))[1].append(pdb.name)
            # With AlwaysAllow, pods that are not Ready are evicted whatever the budget says.
            counted = [p for p in on_nodes if p.ready] if pdb.always_allow_unhealthy else on_nodes
            if not counted:
                continue
            stale = " (its status is older than its spec: the disruption controller has not caught up)" \
                if pdb.stale else ""
            pods_text = ", ".join(sorted(p.name for p in counted)[:5]) + (" ..." if len(counted) > 5 else "")
            if pdb.disruptions_allowed <= 0:
                findings.append(_finding(
                    "PodDisruptionBudget", pdb.namespace, pdb.name,
                    "allows 0 disruptions now, so evicting its %d pod(s) on the node(s) (%s) is refused "
                    "and the drain blocks%s" % (len(counted), pods_text, stale),
                    _FIX["pdb_zero"], pods=len(counted), disruptions_allowed=pdb.disruptions_allowed,
                ))
            elif pdb.disruptions_allowed < len(counted):
                findings.append(_finding(
                    "PodDisruptionBudget", pdb.namespace, pdb.name,
                    "allows %d disruption(s) but %d of its pods are on the node(s) (%s)%s"
                    % (pdb.disruptions_allowed, len(counted), pods_text, stale),
                    _FIX["pdb_short"], pods=len(counted), disruptions_allowed=pdb.disruptions_allowed,
                ))
    for pod, names in covering.values():
        if len(names) > 1:
            findings.append(_finding(
                "Pod", pod.namespace, pod.name,
                "is covered by %d PodDisruptionBudgets (%s): the eviction API refuses it"
                % (len(names), ", ".join(sorted(names))),
                _FIX["pdb_overlap"], node=pod.node,
            ))
    summary = "%d PodDisruptionBudget(s) cover pods on the node(s)" % covering_pdbs
    return findings, summary


def check_single_node_workloads(snapshot, node_names):
    drained = set(node_names)
    affected = {}
    for pod in evicted_pods(snapshot, drained):
        controller = snapshot.controller_of(pod)
        if controller is not None and controller[0] not in _NOT_A_SERVICE:
            affected[(pod.namespace,) + controller] = {"on": [], "elsewhere": 0}
    for pod in snapshot.pods:
        if not pod.serving:
            continue
        controller = snapshot.controller_of(pod)
        if controller is None:
            continue
        entry = affected.get((pod.namespace,) + controller)
        if entry is None:
            continue
        if pod.node in drained:
            entry["on"].append(pod)
        else:
            entry["elsewhere"] += 1
    findings = []
    for (namespace, kind, name), entry in sorted(affected.items()):
        ready_on = entry["on"]
        if not ready_on or entry["elsewhere"]:
            continue
        nodes = sorted({p.node for p in ready_on})
        if len(ready_on) == 1:
            what = "its only ready pod (%s) runs on %s" % (ready_on[0].name, nodes[0])
        else:
            what = "all %d of its ready pods run on %s" % (len(ready_on), ", ".join(nodes))
        findings.append(_finding(
            kind, namespace, name,
            "%s: the service is down until replacements start elsewhere" % what,
            _FIX["single_node"], nodes=nodes, ready_pods=len(ready_on),
        ))
    summary = "%d workload(s) have pods on the node(s)" % len(affected)
    return findings, summary


def check_local_storage(snapshot, node_names):
    findings = []
    for pod in evicted_pods(snapshot, node_names):
        stays, lost = [], []
        for vtype, vname, detail in pod.volumes:
            if vtype == "hostPath":
                stays.append("hostPath %s (%s)" % (vname, detail))
            elif vtype == "emptyDir":
                lost.append("emptyDir %s%s" % (vname, " (memory)" if detail == "Memory" else ""))
            elif vtype in ("pvc", "ephemeral"):
                pv = snapshot.pvs_by_claim.get((pod.namespace, detail))
                if pv is None or (pv.local_path is None and pv.host_path is None):
                    continue
                where = "local" if pv.local_path is not None else "hostPath"
                text = "%s PersistentVolume %s (claim %s)" % (where, pv.name, detail)
                (lost if vtype == "ephemeral" else stays).append(text)
        if not stays and not lost:
            continue
        parts = []
        if stays:
            parts.append("data stays on %s: %s" % (pod.node, "; ".join(stays)))
        if lost:
            parts.append("data is deleted with the pod: %s" % "; ".join(lost))
        findings.append(_finding(
            "Pod", pod.namespace, pod.name, "; ".join(parts), _FIX["local_storage"],
            node=pod.node, volumes=stays + lost,
        ))
    summary = "%d evicted pod(s) use node-local storage" % len(findings)
    return findings, summary


def check_unmanaged_pods(snapshot, node_names):
    findings = []
    for pod in evicted_pods(snapshot, node_names):
        if pod.owner is None:
            findings.append(_finding(
                "Pod", pod.namespace, pod.name,
                "has no controller: once evicted from %s nothing re-creates it" % pod.node,
                _FIX["unmanaged"], node=pod.node,
            ))
    summary = "%d evicted pod(s) have no controller" % len(findings)
    return findings, summary


def check_pull_concentration(snapshot, node_names, share=0.5, min_pods=10, seconds_per_image=10):
    landing = spread_least_allocated(snapshot, node_names)
    total = sum(len(pods) for pods in landing.values())
    ranked = sorted(landing.items(), key=lambda item: (-len(item[1]), item[0]))
    findings = []
    if total >= min_pods and ranked:
        top = ranked[:1] if len(ranked[0][1]) > share * total else ranked[:2]
        if sum(len(pods) for _name, pods in top) > share * total:
            for name, pods in top:
                present = snapshot.nodes[name].images
                to_pull = sorted({image for pod in pods for image in pod.images if image not in present})
                findings.append(_finding(
                    "Node", None, name,
                    "about %d of the %d evicted pods would land here; its kubelet pulls their %d image(s) "
                    "not yet on the node one after another: roughly %d s before the last pod starts "
                    "(at %d s per image)" % (len(pods), total, len(to_pull), len(to_pull) * seconds_per_image,
                                             seconds_per_image),
                    _FIX["pull"], pods=len(pods), images_to_pull=len(to_pull),
                    estimated_seconds=len(to_pull) * seconds_per_image,
                ))
    summary = "evicted pods spread over %d node(s)" % len(landing)
    return findings, summary


def check_opt_outs(snapshot, node_names):
    """Pods on the nodes that carry an opt-out mark, with what the drain does about it."""
    names = set(node_names)
    findings = []
    blocking = 0
    for pod in snapshot.pods:
        if pod.node not in names or not pod.opt_outs:
            continue
        for opt_out in _pod_rules.disregarded(pod.opt_outs, snapshot.ignore_opt_outs):
            effect = opt_out["effect"]
            blocking += effect == _pod_rules.BLOCK
            what = {
                _pod_rules.BLOCK: "protects the pod: the drain of %s refuses to start" % pod.node,
                _pod_rules.SKIP: "the drain of %s leaves the pod on the node" % pod.node,
                _pod_rules.WAIT_COMPLETED: "the drain of %s does not evict the pod and waits until it finishes"
                % pod.node,
                _pod_rules.IGNORED: "not honoured",
            }[effect]
            findings.append(_finding(
                "Pod", pod.namespace, pod.name,
                "%s (%s): %s%s" % (opt_out["text"], opt_out["vocabulary"], what,
                                   "; " + opt_out["note"] if opt_out.get("note") else ""),
                _FIX["opt_out_" + effect] % opt_out["vocabulary"], node=pod.node, vocabulary=opt_out["vocabulary"],
                key=opt_out["key"], value=opt_out["value"], effect=effect,
            ))
    summary = "%d opt-out mark(s) on pods of the node(s), %d of them refusing the drain" % (len(findings), blocking)
    return findings, summary


def replacement_candidates(snapshot, node_names, run_default):
    """What the drain's replacement first weighs for the nodes: ``{(namespace, deployment):
    [entries]}`` of the pods it would evict that opt in (their annotation, else ``run_default``) and
    that a Deployment controls through its ReplicaSet, each entry ``{name, node, ready, pdb}`` as
    ``_replacement_first.plan`` reads them (``pdb``: the budgets covering the pod)."""
    pdbs = {}
    for pdb in snapshot.pdbs:
        pdbs.setdefault(pdb.namespace, []).append(pdb)
    groups = {}
    for pod in evicted_pods(snapshot, node_names):
        controller = snapshot.controller_of(pod)
        if controller is None or controller[0] != "Deployment" or pod.owner[0] != "ReplicaSet":
            continue
        if not _replacement_first.chooses(pod.replacement_choice, run_default):
            continue
        covering = [{"namespace": pdb.namespace, "name": pdb.name, "disruptions_allowed": pdb.disruptions_allowed}
                    for pdb in pdbs.get(pod.namespace, ()) if label_selector_matches(pdb.selector, pod.labels)]
        groups.setdefault((pod.namespace, controller[1]), []).append(
            {"name": pod.name, "node": pod.node, "ready": pod.ready, "pdb": covering})
    return groups


def check_replacement_first(snapshot, node_names, run_default=False):
    """The Deployments the drain would restart before evicting their pods (state ``would_replace``)
    and those it would want to but cannot (``not_replaced``, with why): ``_replacement_first.plan``
    over ``replacement_candidates`` and the snapshot's ``deployments``."""
    groups = replacement_candidates(snapshot, node_names, run_default)
    findings = []
    for item in _replacement_first.plan(groups, snapshot.deployments):
        key = (item["namespace"], item["name"])
        nodes = sorted({entry["node"] for entry in groups[key]})
        pods = ", ".join(item["pods"])
        if item.get("state") == _replacement_first.STATE_NOT_POSSIBLE:
            state, fix = item["state"], _FIX["replacement_first_not_possible"]
            reason = ("replacement first is asked for and evicting its pod(s) %s would take it down (%s), but a "
                      "restart cannot start the replacements first: %s" % (pods, item["reason"], item["detail"]))
        else:
            state, fix = _replacement_first.STATE_PLANNED, _FIX["replacement_first"]
            reason = ("the drain restarts it before evicting (%s): its replacements start elsewhere and are "
                      "available before its pod(s) %s leave" % (item["reason"], pods))
        findings.append(_finding("Deployment", item["namespace"], item["name"], reason, fix,
                                 nodes=nodes, pods=item["pods"], state=state))
    planned = sum(1 for finding in findings if finding["state"] == _replacement_first.STATE_PLANNED)
    summary = "%d Deployment(s) with opted-in pods on the node(s); the drain would restart %d first" % (
        len(groups), planned)
    return findings, summary


def allowed_unavailable(value, ready_nodes):
    """Nodes that may be out of service at once under ``max_unavailable`` (``3`` or ``"10%"`` of
    the ``ready_nodes``, rounded down but never below 1); ValueError for a value that is not one."""
    number, percent = parse_node_count(value, "max_unavailable")
    if number == 0:
        raise ValueError("max_unavailable must be at least 1 (or a percentage above 0%%), not %r; leave it "
                         "unset for no limit" % (value,))
    if percent:
        return max(1, ready_nodes * number // 100)
    return number


def check_max_unavailable(snapshot, node_names, max_unavailable):
    """``(findings, summary)``: whether the nodes out of service once ``node_names`` go (those
    NotReady or cordoned already, counted whether or not they are named, and the named ones) stay
    within ``max_unavailable`` (a percentage is of the nodes Ready now)."""
    named = set(node_names)
    ready_nodes = sum(1 for node in snapshot.nodes.values() if node.ready)
    allowed = allowed_unavailable(max_unavailable, ready_nodes)
    already = [(name, "NotReady" if not node.ready else "cordoned")
               for name, node in sorted(snapshot.nodes.items())
               if name not in named and (not node.ready or node.unschedulable)]
    out = len(already) + len(named)
    summary = "%d node(s) out of service with these, at most %d allowed (max_unavailable %s of %d Ready nodes)" % (
        out, allowed, max_unavailable, ready_nodes)
    if out <= allowed:
        return [], summary
    shown = ", ".join("%s (%s)" % item for item in already[:10]) + (" ..." if len(already) > 10 else "")
    reason = ("taking %s out makes %d node(s) unavailable, more than max_unavailable %s allows (%d of %d Ready "
              "nodes); already out of service: %s" % (nodes_ref(node_names), out, max_unavailable, allowed,
                                                      ready_nodes, shown or "none"))
    return [_finding("Node", None, None, reason, _FIX["max_unavailable"], nodes=list(node_names),
                     unavailable=[name for name, _why in already], allowed=allowed, ready_nodes=ready_nodes)], summary


def run_checks(snapshot, node_names, checks=CHECKS, fail_on=DEFAULT_FAIL_ON, pull_options=None, ignore_opt_outs=(),
               replacement_first=False):
    """Run the named checks; returns {check: {status, summary, findings}} and overall ok.

    status is ``pass`` (no findings), ``fail`` (findings and the check is in fail_on) or ``warn``.
    """
    node_names = list(node_names)
    snapshot.ignore_opt_outs = tuple(ignore_opt_outs or ())
    if snapshot.focus is not None and not set(node_names) <= snapshot.focus:
        raise ValueError("the snapshot keeps full pod records only for %s" % ", ".join(sorted(snapshot.focus)))
    functions = {
        "capacity": check_capacity,
        "pdb": check_pdb,
        "single_node_workloads": check_single_node_workloads,
        "local_storage": check_local_storage,
        "unmanaged_pods": check_unmanaged_pods,
        "pull_concentration": lambda s, n: check_pull_concentration(s, n, **(pull_options or {})),
        "opt_outs": check_opt_outs,
        "replacement_first": lambda s, n: check_replacement_first(s, n, replacement_first),
    }
    results = {}
    ok = True
    for check in CHECKS:
        if check not in checks:
            continue
        findings, summary = functions[check](snapshot, node_names)
        if not findings:
            status = "pass"
        elif check in fail_on:
            status = "fail"
            ok = False
        else:
            status = "warn"
        results[check] = {"status": status, "summary": summary, "findings": findings}
    return ok, results


# --------------------------------------------------------------------------------------------
# Paged lists
# --------------------------------------------------------------------------------------------
# The API server writes a list's metadata (with the continue token) before its items, so the
# token of the next page can be read from the first bytes while the page itself is still being
# decoded. The decoded page's own token is compared afterwards; a mismatch restarts from it.
_CONTINUE_RE = re.compile(rb'"continue"\s*:\s*"([^"]*)"')


def _peek_continue(raw):
    items_at = raw.find(b'"items":', 0, 65536)  # the key (a token that is just "items" is a value)
    match = _CONTINUE_RE.search(raw, 0, items_at if items_at >= 0 else 0)
    return match.group(1).decode("ascii") if match else None


def iter_pages(fetch, prefetch=True):
    """Yield the decoded pages of one list; ``fetch(token)`` returns a page's raw JSON.

    With ``prefetch`` a thread fetches page n+1 while page n is decoded and reduced, so the API
    server's encoding and ours overlap; at most two raw pages wait in memory.
    """
    token = None
    while True:
        pages = queue.Queue(maxsize=2)
        stop = threading.Event()

        def produce(token=token):
            while not stop.is_set():
                try:
                    raw = fetch(token)
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                    item = ("error", exc, None)
                else:
                    token = _peek_continue(raw) if prefetch else None
                    item = ("page", raw, token)
                while not stop.is_set():
                    try:
                        pages.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if item[0] == "error" or not token:
                    return

        worker = threading.Thread(target=produce, name="preflight-list", daemon=True)
        worker.start()
        try:
            while True:
                kind, raw, guessed = pages.get()
                if kind == "error":
                    raise raw
                page = json.loads(raw)
                del raw
                actual = (page.get("metadata") or {}).get("continue") or None
                yield page
                if actual != guessed:
                    token = actual
                    break
                if not actual:
                    return
        finally:
            stop.set()
            worker.join()
        if not token:
            return


def missing_nodes(snapshot, node_names):
    return [name for name in node_names if name not in snapshot.nodes]


# --------------------------------------------------------------------------------------------
# k8s_node_preflight: the snapshot read from the API, the module run
# --------------------------------------------------------------------------------------------

CHECK_CHOICES = ("all",) + CHECKS
# Pods that finished hold no room and are not evicted, so the API server can leave them out.
UNFINISHED_PODS = "status.phase!=Succeeded,status.phase!=Failed"

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


def read_snapshot(raw, focus, page_size, deadline):
    """List everything the checks need, page by page, reducing each page as it arrives.

    ``raw`` is a ``_k8s_client.RawApi``. Raw JSON is decoded with ``json``, never into the client's
    model classes (which are several times slower and heavier on a cluster with tens of thousands
    of pods, and whose API classes cost more CPU to import than a small cluster's whole snapshot).
    Pods are listed in this thread while the smaller lists run in a second one. Returns
    ``(snapshot, list calls made)``; any failure of a list is a ``K8sAccessError`` naming the list.
    """
    snapshot = Snapshot(focus=focus)
    counter = _Counter()

    def read(what, path, query, kind):
        add = getattr(snapshot, "add_" + kind)

        def fetch(token):
            page_query = list(query) + [("limit", str(page_size))] + ([("continue", token)] if token else [])
            # Undecoded: the next page's continue token is read from the bytes, and the page is
            # decoded in the consumer thread while the next one is fetched.
            body = retry_transient(lambda: raw.call("GET", path, page_query, timeout=request_timeout(deadline),
                                                    count_as="list", decode=False),
                                   deadline=deadline, describe=what)
            counter.add()
            return body

        for attempt in (1, 2):
            try:
                for page in iter_pages(fetch):
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


def node_names(names):
    """The nodes to check, each once, in the order given."""
    return list(dict.fromkeys(names))


def nodes_ref(names):
    """``node/a, node/b``: the nodes as messages (and the failure's ``object``) name them."""
    return ", ".join("node/%s" % name for name in names)


def _failure_message(names, results):
    parts = []
    for check, result in results.items():
        if result["status"] == "fail":
            findings = result["findings"]
            first = findings[0]
            if first["name"] is None:  # about the nodes themselves (max_unavailable)
                parts.append("%s: %s" % (check, first["reason"]))
                continue
            ref = "/".join(x for x in (first["kind"].lower(), first["namespace"], first["name"]) if x)
            parts.append("%s: %d finding(s), e.g. %s %s" % (check, len(findings), ref, first["reason"]))
    return "preflight refuses to drain %s: %s" % (nodes_ref(names), "; ".join(parts))


def read_replacement_deployments(raw, snapshot, names, run_default, deadline):
    """The Deployments of ``replacement_candidates`` into ``snapshot.deployments`` (one list call
    each, by name: the verb the drain's replacement first has); returns the calls made. None are
    read when no pod on the nodes opts in."""
    groups = replacement_candidates(snapshot, names, run_default)
    if not groups:
        return 0
    try:
        snapshot.deployments = _replacement_first.read_deployments(raw, sorted(groups), deadline)
    except K8sAccessError as exc:
        raise ModuleFailure("preflight of %s: %s" % (nodes_ref(names), exc.message), status=exc.status, changed=False)
    except ApiException as exc:
        raise ModuleFailure("preflight of %s: %s" % (nodes_ref(names), describe_api_error(exc, "deployments")),
                            status=exc.status, changed=False)
    return len(groups)


def preflight(connect, names, params, warn, clock=time.monotonic):
    """What k8s_node_preflight does for the nodes ``names``, over the ``RawApi`` that ``connect()``
    gives (asked for only once the options are good): one snapshot within ``params["timeout"]``,
    then the checks. Returns the module's result when no check in ``fail_on`` has findings, else
    raises ``ModuleFailure`` with the same fields; ``warn(text)`` is called for each check that
    found something and only warns.
    """
    checks = CHECKS if "all" in params["checks"] else params["checks"]
    fail_on = CHECKS if "all" in params["fail_on"] else params["fail_on"]
    if params["page_size"] < 1:
        raise ModuleFailure("page_size must be at least 1, got %d" % params["page_size"])
    max_unavailable = params.get("max_unavailable")
    if max_unavailable is not None:
        try:
            allowed_unavailable(max_unavailable, 0)
        except ValueError as exc:
            raise ModuleFailure(str(exc), changed=False)

    started = clock()
    # Decoding tens of thousands of pods creates millions of dicts that refcounting frees; the
    # cyclic collector would scan them over and over (measured: 3-5x the decoding time).
    gc.disable()
    try:
        raw = connect()
        try:
            snapshot, calls = read_snapshot(raw, names, params["page_size"], started + params["timeout"])
        except K8sAccessError as exc:
            raise ModuleFailure("preflight of %s: %s" % (nodes_ref(names), exc.message), status=exc.status,
                                changed=False)
        missing = missing_nodes(snapshot, names)
        if missing:
            raise ModuleFailure("%s: not found; `kubectl get nodes` lists the names" % nodes_ref(missing),
                                changed=False)
        if "replacement_first" in checks:
            calls += read_replacement_deployments(raw, snapshot, names, params.get("replacement_first"),
                                                  started + params["timeout"])
        read_seconds = clock() - started
        results = {}
        if max_unavailable is not None:
            findings, summary = check_max_unavailable(snapshot, names, max_unavailable)
            results["max_unavailable"] = {"status": "fail" if findings else "pass", "summary": summary,
                                          "findings": findings}
        ok, checked = run_checks(snapshot, names, checks=checks, fail_on=fail_on,
                                 pull_options=params["pull_estimate"], ignore_opt_outs=params.get("ignore_opt_outs"),
                                 replacement_first=params.get("replacement_first"))
        results.update(checked)
        ok = ok and not results.get("max_unavailable", {}).get("findings")
    finally:
        gc.enable()
    outcome = {
        "changed": False,
        "ok": ok,
        "nodes": names,
        "checks": results,
        "snapshot": {"nodes": len(snapshot.nodes), "pods": len(snapshot.pods), "pdbs": len(snapshot.pdbs),
                     "list_calls": calls, "seconds": round(read_seconds, 3)},
    }
    for check, result in results.items():
        if result["status"] == "warn":
            first = result["findings"][0]
            warn("%s: %d finding(s), e.g. %s/%s: %s"
                 % (check, len(result["findings"]), first["kind"], first["name"], first["reason"]))
    if not ok:
        raise ModuleFailure(_failure_message(names, results), **outcome)
    outcome["msg"] = "preflight passed for %s (%s)" % (
        nodes_ref(names), ", ".join("%s: %s" % (check, result["status"]) for check, result in results.items()))
    return outcome
