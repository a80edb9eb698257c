# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is a controller back to full strength, and does its PodDisruptionBudget hold? (pure)

Functions take the API objects as plain dicts (the API server's JSON, camelCase keys) and return
plain dicts. The rules follow what ``kubectl rollout status`` waits for, plus the ready counts a
maintenance needs. At the end, what ``k8s_workloads_healthy`` does with them: ``ClusterReader``
lists the objects, ``observe`` polls once, ``wait_healthy`` until healthy or the timeout, and
``health_gate`` is the whole module run. With a node, ``node_pods_health`` also waits for the node's
own pods: the pods of the DaemonSets that run on it (``_daemonset_placement``) and its static pods.
"""

from __future__ import annotations

import functools
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    K8sAccessError,
    api_path,
    describe_api_error,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._api_objects import controller_of, status_condition
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._selectors import label_selector_matches
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _daemonset_placement as placement
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pod_rules import is_ready as is_pod_ready
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pod_rules import is_terminating
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import read_node

DEPLOYMENT = "Deployment"
STATEFULSET = "StatefulSet"
REPLICASET = "ReplicaSet"
DAEMONSET = "DaemonSet"
KINDS = (DEPLOYMENT, STATEFULSET, REPLICASET, DAEMONSET)
PDB = "PodDisruptionBudget"


def kind_ref(kind):
    """How a kind is written in messages: ``deployment``, ``pdb``."""
    return "pdb" if kind == PDB else kind.lower()


def ref_key(ref):
    return ref["kind"], ref["namespace"], ref["name"]


def ref_text(ref):
    return "%s %s/%s" % (kind_ref(ref["kind"]), ref["namespace"], ref["name"])


# ------------------------------------------------------------------------------------------------
# What to check
# ------------------------------------------------------------------------------------------------

def dedupe_refs(refs):
    """``[{kind, namespace, name}]`` in the order given, each once."""
    out = []
    seen = set()
    for ref in refs or ():
        clean = {"kind": ref["kind"], "namespace": ref["namespace"], "name": ref["name"]}
        if ref.get("resolved_from"):
            clean["resolved_from"] = ref["resolved_from"]
        if ref_key(clean) not in seen:
            seen.add(ref_key(clean))
            out.append(clean)
    return out


def dedupe_pdb_refs(refs):
    out = []
    seen = set()
    for ref in refs or ():
        key = (ref["namespace"], ref["name"])
        if key not in seen:
            seen.add(key)
            out.append({"namespace": key[0], "name": key[1]})
    return out


def group_refs(refs):
    """``{(kind, namespace): {names}}``: one list call per group."""
    groups = {}
    for ref in refs:
        groups.setdefault((ref["kind"], ref["namespace"]), set()).add(ref["name"])
    return groups


def group_pdb_refs(refs):
    groups = {}
    for ref in refs:
        groups.setdefault(ref["namespace"], set()).add(ref["name"])
    return groups


def resolve_refs(refs, replicasets):
    """Replace each ReplicaSet that a Deployment controls by that Deployment.

    ``replicasets`` maps ``(namespace, name)`` to the ReplicaSet objects that exist. A ReplicaSet
    that does not exist, or that no Deployment controls, is kept as it is.
    """
    out = []
    for ref in refs:
        if ref["kind"] == REPLICASET:
            owner = controller_of(replicasets.get((ref["namespace"], ref["name"])) or {})
            if owner and owner.get("kind") == DEPLOYMENT and owner.get("name"):
                ref = {"kind": DEPLOYMENT, "namespace": ref["namespace"], "name": owner["name"],
                       "resolved_from": "ReplicaSet %s/%s" % (ref["namespace"], ref["name"])}
        out.append(ref)
    return dedupe_refs(out)


def refs_from_pods(pods):
    """Workload refs from pod results (``namespace``, ``owner_kind``, ``owner_name``), as
    ``k8s_node_drain`` returns them; pods whose owner is not a workload kind are left out."""
    return dedupe_refs(
        {"kind": pod.get("owner_kind"), "namespace": pod.get("namespace"), "name": pod.get("owner_name")}
        for pod in pods or ()
        if pod.get("owner_kind") in KINDS and pod.get("owner_name") and pod.get("namespace"))


# ------------------------------------------------------------------------------------------------
# Health
# ------------------------------------------------------------------------------------------------

def _int(value, default=0):
    """API integer fields are omitted when zero."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _generation_gap(obj):
    """Text when the controller has not yet observed the latest spec, else None."""
    generation = (obj.get("metadata") or {}).get("generation")
    observed = (obj.get("status") or {}).get("observedGeneration")
    if generation is None or _int(observed, -1) >= _int(generation):
        return None
    return "generation %s not observed yet (observed %s)" % (generation, observed if observed is not None else "none")


def _gap(have, want, what):
    return None if have == want else "%d/%d %s" % (have, want, what)


def workload_counts(kind, obj):
    """``(desired, ready, available, updated, total)`` of a controller."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if kind == DAEMONSET:
        desired = _int(status.get("desiredNumberScheduled"))
        return (desired, _int(status.get("numberReady")), _int(status.get("numberAvailable")),
                _int(status.get("updatedNumberScheduled")), _int(status.get("currentNumberScheduled")))
    desired = _int(spec.get("replicas"), 1)  # the API defaults replicas to 1
    return (desired, _int(status.get("readyReplicas")), _int(status.get("availableReplicas")),
            _int(status.get("updatedReplicas")), _int(status.get("replicas")))


def _statefulset_updated_needed(obj, desired):
    """Replicas a StatefulSet's update strategy must have updated; None when it does not update them (OnDelete)."""
    strategy = (obj.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    partition = _int((strategy.get("rollingUpdate") or {}).get("partition"))
    return max(0, desired - partition)


def workload_missing(kind, obj):
    """What keeps a controller from being healthy (empty list: healthy)."""
    desired, ready, available, updated, total = workload_counts(kind, obj)
    missing = [_generation_gap(obj), _gap(ready, desired, "ready"), _gap(available, desired, "available")]
    if kind == DEPLOYMENT:
        missing.append(_gap(updated, desired, "updated"))
    elif kind == STATEFULSET:
        needed = _statefulset_updated_needed(obj, desired)
        if needed is not None and updated < needed:
            missing.append("%d/%d updated" % (updated, needed))
    if kind != DAEMONSET and total > desired:
        missing.append("%d replicas where %d are wanted (old ones not gone yet)" % (total, desired))
    elif kind != DAEMONSET and total < desired and ready == desired:
        missing.append("%d/%d replicas" % (total, desired))
    if kind == DEPLOYMENT:
        progressing = status_condition(obj, "Progressing")
        if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
            missing.append("progress deadline exceeded: %s" % (progressing.get("message") or "no message"))
    if kind == DEPLOYMENT or kind == REPLICASET:
        failure = status_condition(obj, "ReplicaFailure")
        if failure and failure.get("status") == "True":
            missing.append("replica failure: %s" % (failure.get("message") or failure.get("reason") or ""))
    return [text for text in missing if text]


def workload_health(ref, obj):
    """The result entry of one workload; ``obj`` is None when it does not exist."""
    entry = {"kind": ref["kind"], "namespace": ref["namespace"], "name": ref["name"]}
    if ref.get("resolved_from"):
        entry["resolved_from"] = ref["resolved_from"]
    if obj is None:
        entry.update(exists=False, healthy=None, desired=None, ready=None, available=None, updated=None,
                     missing=[], summary="%s: not found, not waited for (deleted or renamed since the drain?)"
                     % ref_text(ref))
        return entry
    desired, ready, available, updated, _total = workload_counts(ref["kind"], obj)
    missing = workload_missing(ref["kind"], obj)
    summary = "%s: %s" % (ref_text(ref), ", ".join(missing) if missing else "%d/%d ready" % (ready, desired))
    entry.update(exists=True, healthy=not missing, desired=desired, ready=ready, available=available,
                 updated=updated, missing=missing, summary=summary)
    return entry


def pdb_health(pdb, matched_workloads=None):
    """The result entry of one PodDisruptionBudget object."""
    metadata = pdb.get("metadata") or {}
    status = pdb.get("status") or {}
    current = _int(status.get("currentHealthy"))
    desired = _int(status.get("desiredHealthy"))
    allowed = _int(status.get("disruptionsAllowed"))
    ref = {"kind": PDB, "namespace": metadata.get("namespace"), "name": metadata.get("name")}
    missing = []
    generation = metadata.get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and _int(observed, -1) < _int(generation):
        missing.append("status not computed yet for generation %s (observed %s); is the disruption "
                       "controller of kube-controller-manager running?"
                       % (generation, observed if observed is not None else "none"))
    if current < desired:
        missing.append("%d healthy of %d required" % (current, desired))
    if missing:
        summary = "%s: %s" % (ref_text(ref), ", ".join(missing))
    else:
        summary = "%s: %d healthy of %d required, %d disruption%s allowed" % (
            ref_text(ref), current, desired, allowed, "" if allowed == 1 else "s")
    return {
        "namespace": ref["namespace"], "name": ref["name"], "exists": True, "healthy": not missing,
        "current_healthy": current, "desired_healthy": desired, "disruptions_allowed": allowed,
        "expected_pods": _int(status.get("expectedPods")), "matched_workloads": list(matched_workloads or []),
        "missing": missing, "summary": summary,
    }


def _missing_pdb(ref):
    return {
        "namespace": ref["namespace"], "name": ref["name"], "exists": False, "healthy": None,
        "current_healthy": None, "desired_healthy": None, "disruptions_allowed": None, "expected_pods": None,
        "matched_workloads": [], "missing": [],
        "summary": "pdb %s/%s: not found, not waited for" % (ref["namespace"], ref["name"]),
    }


def template_labels(obj):
    return ((((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")) or {}


def pdbs_health(pdb_refs, pdb_objects, workloads=None):
    """Entries for the named budgets, then for the budgets that select a workload's pods.

    ``workloads`` maps ``(kind, namespace, name)`` to the workload objects whose budgets are wanted
    (None: only the named ones). A budget selects a workload when its selector selects the labels
    of the workload's pod template, in the same namespace.
    """
    by_key = {}
    for pdb in pdb_objects:
        metadata = pdb.get("metadata") or {}
        by_key[(metadata.get("namespace"), metadata.get("name"))] = pdb
    matches = {}
    for key, pdb in by_key.items():
        selector = (pdb.get("spec") or {}).get("selector")
        for (kind, namespace, name), obj in sorted((workloads or {}).items()):
            if namespace == key[0] and label_selector_matches(selector, template_labels(obj)):
                matches.setdefault(key, []).append("%s %s/%s" % (kind_ref(kind), namespace, name))
    out = []
    wanted = [(ref["namespace"], ref["name"]) for ref in pdb_refs]
    wanted += sorted(key for key in matches if key not in set(wanted))
    for key in wanted:
        if key in by_key:
            out.append(pdb_health(by_key[key], matches.get(key)))
        else:
            out.append(_missing_pdb({"namespace": key[0], "name": key[1]}))
    return out


# ------------------------------------------------------------------------------------------------
# The node's own pods: its DaemonSet pods and its static (mirror) pods
# ------------------------------------------------------------------------------------------------

NODE_DAEMONSET = "DaemonSet"
NODE_STATIC = "StaticPod"


def static_pod_refs(items):
    """``[{namespace, name}]`` of mirror pods, in the order given, each once. Items that have an
    ``owner_kind`` other than ``Node`` are left out: of the pod results ``k8s_node_drain`` returns,
    the mirror pods are those whose controller reference is the Node, which the kubelet sets."""
    return dedupe_pdb_refs(item for item in items or ()
                           if item.get("namespace") and item.get("name") and item.get("owner_kind", "Node") == "Node")


def pod_waiting_for(pod):
    """Why a pod is not Ready, in a few words: its phase, the Ready condition's reason and message,
    and the containers that are waiting or not ready (``Pending; container app: ImagePullBackOff``)."""
    status = pod.get("status") or {}
    parts = [status.get("phase") or "no status yet"]
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready" and condition.get("status") != "True":
            said = ": ".join(text for text in (condition.get("reason"), condition.get("message")) if text)
            if said:
                parts.append(said)
    for container in status.get("containerStatuses") or ():
        if container.get("ready"):
            continue
        waiting = (container.get("state") or {}).get("waiting") or {}
        parts.append("container %s: %s" % (container.get("name"), waiting.get("reason") or "not ready"))
    return "; ".join(parts)


def _node_pod_entry(kind, namespace, name, pod, ready, waiting_for, summary):
    return {"kind": kind, "namespace": namespace, "name": name,
            "pod": ((pod or {}).get("metadata") or {}).get("name"), "ready": ready,
            "waiting_for": waiting_for, "summary": summary}


def daemonset_pod_health(daemonset, pods, node_name):
    """The entry of one DaemonSet that runs a pod on the node: Ready when a pod of it there is Ready
    and not terminating."""
    metadata = daemonset.get("metadata") or {}
    namespace, name = metadata.get("namespace"), metadata.get("name")
    where = "node/%s" % node_name
    head = "daemonset %s/%s: " % (namespace, name)
    mine = [pod for pod in pods if placement.is_pod_of_daemonset(pod, daemonset)
            and (pod.get("spec") or {}).get("nodeName") == node_name]
    live = [pod for pod in mine if not is_terminating(pod)]
    ready = [pod for pod in live if is_pod_ready(pod)]
    if ready:
        pod = ready[0]
        return _node_pod_entry(NODE_DAEMONSET, namespace, name, pod, True, None, head + "pod %s Ready on %s" % (
            pod["metadata"]["name"], where))
    if live:
        pod = live[0]
        waiting = "pod %s on %s to be Ready (%s)" % (pod["metadata"]["name"], where, pod_waiting_for(pod))
    elif mine:
        pod = mine[0]
        waiting = "a new pod on %s (pod %s is terminating)" % (where, pod["metadata"]["name"])
    else:
        pod = None
        waiting = "its pod on %s (none yet; the DaemonSet controller creates it)" % where
    return _node_pod_entry(NODE_DAEMONSET, namespace, name, pod, False, waiting, head + "waiting for " + waiting)


def static_pod_health(ref, pod, node_name):
    """The entry of one static pod, ``pod`` being its mirror pod on the node (None when there is none)."""
    where = "node/%s" % node_name
    head = "static pod %s/%s: " % (ref["namespace"], ref["name"])
    if pod is None:
        waiting = ("its mirror pod to be back on %s (the kubelet recreates it from the manifest in its "
                   "static pod directory; is the manifest still there?)" % where)
    elif is_terminating(pod):
        waiting = "the kubelet to recreate its mirror pod on %s (the old one is terminating)" % where
    elif not is_pod_ready(pod):
        waiting = "it to be Ready on %s (%s)" % (where, pod_waiting_for(pod))
    else:
        return _node_pod_entry(NODE_STATIC, ref["namespace"], ref["name"], pod, True, None,
                               head + "Ready on %s" % where)
    return _node_pod_entry(NODE_STATIC, ref["namespace"], ref["name"], pod, False, waiting, head + "waiting for " + waiting)


def node_pods_health(node_name, node, daemonsets, pods, static_refs):
    """``(entries, excluded, lines)`` for the node's own pods.

    ``entries``: one per DaemonSet whose pod the DaemonSet controller runs on the node (its
    placement rules: ``_daemonset_placement``), then one per static pod: those in ``static_refs``
    (the mirror pods that were there before the maintenance) and those on the node now.
    ``excluded``: the DaemonSets that run no pod there, with the reason. ``lines``: what is not Ready.
    ``node`` is None when the node does not exist: nothing can be Ready on it.
    """
    if node is None:
        return [], [], ["node/%s: not found (waiting for it to register)" % node_name]
    entries = []
    excluded = []
    for daemonset in sorted(daemonsets, key=lambda ds: (ds["metadata"].get("namespace"), ds["metadata"]["name"])):
        obstacle = placement.daemonset_obstacle(daemonset, node)
        if obstacle:
            excluded.append({"namespace": daemonset["metadata"].get("namespace"),
                             "name": daemonset["metadata"]["name"], "reason": obstacle})
        else:
            entries.append(daemonset_pod_health(daemonset, pods, node_name))
    mirrors = {}
    for pod in pods:
        if placement.is_node_mirror_pod(pod, node_name):
            mirrors.setdefault((pod["metadata"].get("namespace"), pod["metadata"]["name"]), []).append(pod)
    wanted = dedupe_pdb_refs(list(static_refs or ()) + [
        {"namespace": key[0], "name": key[1]} for key in sorted(mirrors)])
    for ref in wanted:
        found = sorted(mirrors.get((ref["namespace"], ref["name"])) or (), key=is_terminating)
        entries.append(static_pod_health(ref, found[0] if found else None, node_name))
    return entries, excluded, [entry["summary"] for entry in entries if not entry["ready"]]


# ------------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------------

def unhealthy_lines(workloads, pdbs):
    """One line per existing workload or budget that is not healthy."""
    return [entry["summary"] for entry in list(workloads) + list(pdbs) if entry["exists"] and not entry["healthy"]]


def absent_lines(workloads, pdbs):
    return [entry["summary"] for entry in list(workloads) + list(pdbs) if not entry["exists"]]


def timeout_message(lines, seconds):
    """The failure message: every line, in one message (``unhealthy`` has them as a list)."""
    return "not healthy after %.0fs: %s" % (seconds, "; ".join(lines))


# ------------------------------------------------------------------------------------------------
# k8s_workloads_healthy: reading the cluster, polling
# ------------------------------------------------------------------------------------------------

# Where each kind is listed in a namespace.
LIST_PATHS = {
    DEPLOYMENT: ("/apis/apps/v1/namespaces", "deployments"),
    STATEFULSET: ("/apis/apps/v1/namespaces", "statefulsets"),
    REPLICASET: ("/apis/apps/v1/namespaces", "replicasets"),
    DAEMONSET: ("/apis/apps/v1/namespaces", "daemonsets"),
    PDB: ("/apis/policy/v1/namespaces", "poddisruptionbudgets"),
}


class ClusterReader:
    """List calls for the kinds the gate reads; every object comes back as a plain dict.

    ``raw`` is a ``_k8s_client.RawApi``: the API server's JSON as it is, no generated model classes.
    ``deadline_fn()`` gives the monotonic time until which one list call's transient errors are
    retried; an API error is a ``K8sAccessError`` naming the list (``deployment shop/web``)."""

    def __init__(self, raw, deadline_fn):
        self.raw = raw
        self.deadline_fn = deadline_fn
        self.calls = 0

    def list(self, kind, namespace, names=None):
        """Objects of ``kind`` in ``namespace``; only ``names`` when given (a field selector for one)."""
        query = []
        if names is not None and len(names) == 1:
            query.append(("fieldSelector", "metadata.name=%s" % next(iter(names))))
        prefix, resource = LIST_PATHS[kind]
        ref = "%s %s/%s" % (kind_ref(kind), namespace,
                            next(iter(names)) if names is not None and len(names) == 1 else "*")
        items = self.list_path(api_path(prefix, namespace, resource), query, ref)
        if names is not None:
            items = [item for item in items if item["metadata"]["name"] in names]
        return items

    def list_path(self, path, query, ref):
        """Every item a list call at ``path`` returns; ``ref`` names the list in an error."""
        deadline = self.deadline_fn()
        self.calls += 1
        try:
            # Paged (500 a page, as kubectl): one namespace can hold thousands of ReplicaSets.
            return retry_transient(
                lambda: self.raw.list_all(path, query, timeout=request_timeout(deadline)),
                deadline=deadline, describe=ref)
        except ApiException as exc:
            raise K8sAccessError(describe_api_error(exc, ref), status=exc.status, cause=exc)

    def node(self, name):
        """The node as a plain dict, None when it does not exist."""
        self.calls += 1
        try:
            return read_node(self.raw, name, self.deadline_fn(), missing_ok=True)
        except ApiException as exc:
            raise K8sAccessError(describe_api_error(exc, "node/%s" % name), status=exc.status, cause=exc)


def observe(reader, refs, pdb_refs, pdbs_from_workloads):
    """One poll: (workload results, pdb results)."""
    workload_objects = {}
    for (kind, namespace), names in sorted(group_refs(refs).items()):
        for obj in reader.list(kind, namespace, names):
            workload_objects[(kind, namespace, obj["metadata"]["name"])] = obj
    workloads = [workload_health(ref, workload_objects.get(ref_key(ref))) for ref in refs]

    wanted_pdbs = group_pdb_refs(pdb_refs)
    pdb_namespaces = set(wanted_pdbs)
    if pdbs_from_workloads:
        pdb_namespaces |= {ref["namespace"] for ref in refs}
    pdb_objects = []
    for namespace in sorted(pdb_namespaces):
        names = None if pdbs_from_workloads and namespace in {r["namespace"] for r in refs} \
            else wanted_pdbs.get(namespace)
        pdb_objects.extend(reader.list(PDB, namespace, names))
    pdbs = pdbs_health(pdb_refs, pdb_objects, workload_objects if pdbs_from_workloads else None)
    return workloads, pdbs


def observe_node_pods(reader, node_name, static_refs):
    """One poll of the node's own pods: ``node_pods_health`` over the node, every DaemonSet in the
    cluster and the pods bound to the node (three calls)."""
    node = reader.node(node_name)
    if node is None:
        return node_pods_health(node_name, None, [], [], static_refs)
    daemonsets = reader.list_path("/apis/apps/v1/daemonsets", [], "daemonsets")
    pods = reader.list_path("/api/v1/pods", [("fieldSelector", "spec.nodeName=%s" % node_name)],
                            "pods on node/%s" % node_name)
    return node_pods_health(node_name, node, daemonsets, pods, static_refs)


def wait_healthy(reader, refs, pdb_refs, pdbs_from_workloads, timeout, poll_interval,
                 sleep=time.sleep, clock=time.monotonic, node_pods=None):
    """Poll until everything is healthy at once or ``timeout`` seconds have passed (0: once).

    ``node_pods``: a function that polls the node's own pods once (``(entries, excluded, lines)``,
    see ``observe_node_pods``), or None when they are not waited for."""
    started = clock()
    deadline = started + timeout
    polls = 0
    while True:
        polls += 1
        workloads, pdbs = observe(reader, refs, pdb_refs, pdbs_from_workloads)
        unhealthy = unhealthy_lines(workloads, pdbs)
        own, excluded, own_lines = node_pods() if node_pods else ([], [], [])
        unhealthy += own_lines
        remaining = deadline - clock()
        if not unhealthy or remaining <= 0:
            return {"healthy": not unhealthy, "unhealthy": unhealthy, "workloads": workloads, "pdbs": pdbs,
                    "node_pods": own, "not_ready": [entry for entry in own if not entry["ready"]],
                    "node_pods_excluded": excluded, "polls": polls, "seconds": round(clock() - started, 1)}
        sleep(min(poll_interval, remaining))


def resolve_replicasets(reader, refs):
    """Replace ReplicaSets a Deployment controls by that Deployment (one list per namespace)."""
    replicasets = {}
    for (kind, namespace), names in sorted(group_refs(refs).items()):
        if kind == REPLICASET:
            for obj in reader.list(REPLICASET, namespace, names):
                replicasets[(namespace, obj["metadata"]["name"])] = obj
    return resolve_refs(refs, replicasets)


def check_options(params):
    """``ModuleFailure`` for the option values the argument spec cannot refuse (all of them in one message)."""
    errors = []
    if params["timeout"] < 0:
        errors.append("timeout must not be negative")
    if params["poll_interval"] <= 0:
        errors.append("poll_interval must be more than 0")
    if errors:
        raise ModuleFailure("; ".join(errors))


def health_gate(connect, params, warn, sleep=time.sleep, clock=time.monotonic):
    """What k8s_workloads_healthy does, over the ``RawApi`` that ``connect()`` gives (asked for only
    once the options are good): the ReplicaSets resolved to their Deployments, then polls until
    healthy or ``timeout``, with the node's own pods when ``node`` is given. Returns the module's
    result, or raises ``ModuleFailure`` with the same fields at the timeout; ``warn(text)`` is called
    for each workload or budget that does not exist.
    """
    check_options(params)
    refs = dedupe_refs(list(params["workloads"]) + refs_from_pods(params["pods"]))
    pdb_refs = dedupe_pdb_refs(params["pdbs"])
    started = clock()

    def deadline_fn():
        # a transient API failure is retried until the gate's own deadline, but always for a little while
        return max(started + params["timeout"], clock() + 10)

    reader = ClusterReader(connect(), deadline_fn)
    refs = resolve_replicasets(reader, refs)
    node_pods = None
    if params.get("node"):
        static_refs = static_pod_refs(params.get("static_pods"))
        node_pods = functools.partial(observe_node_pods, reader, params["node"], static_refs)
    result = wait_healthy(reader, refs, pdb_refs, params["pdbs_from_workloads"],
                          params["timeout"] - (clock() - started), params["poll_interval"], sleep=sleep, clock=clock,
                          node_pods=node_pods)
    result["seconds"] = round(clock() - started, 1)
    for line in absent_lines(result["workloads"], result["pdbs"]):
        warn(line)
    if result["healthy"]:
        return dict(result, changed=False)
    raise ModuleFailure(timeout_message(result["unhealthy"], result["seconds"]), **result)
