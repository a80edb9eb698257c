# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Replacement first: a Deployment that an eviction would take out of service gets its
replacements elsewhere before its pods leave the node.

Evicting the pods of a Deployment whose every ready replica is on the node stops the service
until the replacements are Ready; a Deployment whose PodDisruptionBudget allows no disruption now
blocks the drain. For both, with the node cordoned, the drain restarts the Deployment the way
``kubectl rollout restart`` does (the pod template's ``kubectl.kubernetes.io/restartedAt``
annotation): the Deployment controller starts new pods elsewhere, within its own surge rules, and
scales the old ReplicaSet down only as they become available. The drain waits until the rollout
is complete and the Deployment's pods have left the node, then drains the rest.

Opt-in: the module's ``replacement_first`` for every such Deployment of the node, or the
annotation ``node-maintenance.kubeops.io/replacement-first`` in the Deployment's pod template
(``"true"`` opts it in, ``"false"`` out, whatever the run says). On the pod, like
cluster-autoscaler's ``safe-to-evict``: the drain reads it from the pods it lists anyway, so a drain
where nothing opts in reads no ReplicaSet or Deployment at all. Not for a Deployment whose strategy would stop old
pods before new ones are up (``Recreate``, or a rolling update whose ``maxSurge`` is 0), nor a
paused one: those are drained as usual, with a warning. Never for StatefulSets: a replacement
has the same name and identity as the pod it replaces, so it cannot exist before it.

Pure rules (``opted_in``, ``surge``, ``obstacle``, ``plan``) and the steps that talk to the API
server (``owners``, ``restart``, ``wait_replaced``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _pod_rules, _pods, _workload_health
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._api_objects import controller_of
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import retry_transient
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._retry import poll_until

ANNOTATION = "node-maintenance.kubeops.io/replacement-first"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # kubectl rollout restart's, so its history reads the same
POLL_SECONDS = 1.0

# ``state`` of a Deployment in the result's ``replacement_first``
STATE_REPLACED = "replaced"            # restarted; its replacements are available and its pods left the node
STATE_PLANNED = "would_replace"        # check mode: would be restarted
STATE_NOT_POSSIBLE = "not_replaced"    # wanted, but its strategy stops old pods first (drained as usual)
STATE_NOT_CORDONED = "not_cordoned"    # wanted, but the node is schedulable: a replacement could land on it
STATE_TIMED_OUT = "timed_out"          # restarted, but not replaced by the drain's timeout (nothing evicted)
STATES = (STATE_REPLACED, STATE_PLANNED, STATE_NOT_POSSIBLE, STATE_NOT_CORDONED, STATE_TIMED_OUT)


def annotation_choice(pod):
    """What the pod's annotation says: True ("true"), False ("false"), or None (no choice)."""
    value = str(((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION, "")).strip().lower()
    return {"true": True, "false": False}.get(value)


def chooses(choice, run_default):
    """A pod's ``annotation_choice`` decides; without one, the run's option."""
    return bool(run_default) if choice is None else choice


def opted_in(pod, run_default):
    """The pod's annotation decides ("true"/"false"); without one, the run's option."""
    return chooses(annotation_choice(pod), run_default)


def _surge_count(value, replicas):
    """maxSurge as a count: an int, or a percentage of ``replicas`` rounded up (as the Deployment
    controller rounds maxSurge); None when it is neither."""
    text = str(value).strip()
    try:
        if text.endswith("%"):
            return int(math.ceil(float(text[:-1]) * replicas / 100.0))
        return int(text)
    except ValueError:
        return None


def surge(deployment):
    """How many pods above ``replicas`` the Deployment's rolling update may start (its API default
    is 25%), or None for ``Recreate``."""
    spec = deployment.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return None
    value = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    found = _surge_count(value, spec.get("replicas", 1))
    return 0 if found is None else found


def obstacle(deployment):
    """Why a restart would not start the replacements first, or None."""
    if (deployment.get("spec") or {}).get("paused"):
        return "the Deployment is paused: a restart would not roll until it is resumed"
    allowed = surge(deployment)
    if allowed is None:
        return "its strategy is Recreate: a restart stops every replica before it starts new ones"
    if not allowed:
        return "its rolling update has maxSurge 0: a restart stops an old pod before it starts a new one"
    return None


def plan(groups, deployments):
    """What to do per Deployment whose pods the drain would evict.

    ``groups``: ``{(namespace, deployment name): [drain entries of its opted-in pods on the node]}``, each
    entry with ``ready`` (the pod is Ready) and ``pdb`` (``_eviction.describe_pdb`` of its
    budgets); ``deployments``: ``{(namespace, name): Deployment}``. Returns a list (sorted by
    namespace/name) of ``{kind, namespace, name, pods, reason, state?, detail?}``; only Deployments
    for which an eviction would stop the service or block the drain appear. ``state`` is left for
    the caller when the Deployment is to be restarted."""
    out = []
    for key in sorted(groups):
        deployment = deployments.get(key)
        if deployment is None:
            continue
        entries = groups[key]
        ready_on_node = sum(1 for e in entries if e.get("ready"))
        ready_total = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        reasons = []
        if ready_on_node and ready_on_node >= ready_total:
            reasons.append("every ready replica (%d) is on the node" % ready_on_node)
        blocking = sorted(set("%s/%s" % (info["namespace"], info["name"]) for e in entries for info in e.get("pdb") or ()
                              if info.get("disruptions_allowed", 0) <= 0))
        if blocking:
            reasons.append("pdb %s allows no disruption now" % ", ".join(blocking))
        if not reasons:
            continue
        item = {"kind": "Deployment", "namespace": key[0], "name": key[1],
                "pods": sorted(e["name"] for e in entries), "reason": "; ".join(reasons)}
        why_not = obstacle(deployment)
        if why_not:
            item.update(state=STATE_NOT_POSSIBLE, detail=why_not + "; its pods are evicted as usual")
        out.append(item)
    return out


def restart_patch(now_text):
    """The merge patch that restarts a Deployment (a new pod template, nothing else changed)."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now_text}}}}}


def replaced(deployment, generation, original_uids, node_pod_uids):
    """What the restarted Deployment still waits for (empty: done). ``generation``: the one our
    restart wrote; ``original_uids``: its pods on the node when the drain began."""
    missing = []
    observed = int((deployment.get("status") or {}).get("observedGeneration") or 0)
    if observed < generation:
        missing.append("the restart (generation %d) not observed yet" % generation)
    else:
        missing.extend(_workload_health.workload_missing(_workload_health.DEPLOYMENT, deployment))
    left = sorted(set(original_uids) & set(node_pod_uids))
    if left:
        missing.append("%d of its pods still on the node" % len(left))
    return missing


# --- the API server ---------------------------------------------------------------------------

def _get_by_name(raw, path, namespace, name, deadline, what):
    """One object by name through ``list`` (the only verb the role grants on it), or None."""
    items = retry_transient(
        lambda: raw.list_all("/apis/apps/v1/namespaces/%s/%s" % (namespace, path),
                             query=[("fieldSelector", "metadata.name=%s" % name)], count_as="list " + path),
        deadline=deadline, describe="%s %s/%s" % (what, namespace, name))
    return items[0] if items else None


def opted_in_entries(entries, pods_by_key, run_default):
    """The entries the drain would evict whose pod opts in (or the run does for every pod)."""
    return [e for e in entries if e["plan"] == _pods.PLAN_EVICT
            and opted_in(pods_by_key[(e["namespace"], e["name"])], run_default)]


def owners(raw, entries, pods_by_key, deadline):
    """``({(namespace, deployment): [entries]}, {(namespace, deployment): Deployment})`` for the
    ``entries`` whose pod a Deployment controls (through its ReplicaSet). One list per distinct
    ReplicaSet and Deployment."""
    replicasets, groups = {}, {}
    for entry in entries:
        pod = pods_by_key[(entry["namespace"], entry["name"])]
        ref = controller_of(pod)
        if not ref or ref.get("kind") != "ReplicaSet":
            continue
        rs_key = (entry["namespace"], ref.get("name"))
        if rs_key not in replicasets:
            rs = _get_by_name(raw, "replicasets", rs_key[0], rs_key[1], deadline, "replicaset")
            owner = controller_of(rs) if rs else None
            replicasets[rs_key] = owner.get("name") if owner and owner.get("kind") == "Deployment" else None
        name = replicasets[rs_key]
        if name is None:
            continue
        key = (entry["namespace"], name)
        groups.setdefault(key, []).append(dict(entry, ready=_pod_rules.is_ready(pod),
                                               uid=(pod.get("metadata") or {}).get("uid")))
    return groups, read_deployments(raw, groups, deadline)


def read_deployments(raw, keys, deadline):
    """``{(namespace, name): Deployment}`` of those of ``keys`` that exist (one list each)."""
    deployments = {}
    for key in keys:
        found = _get_by_name(raw, "deployments", key[0], key[1], deadline, "deployment")
        if found is not None:
            deployments[key] = found
    return deployments


def restart(raw, namespace, name, deadline, now_text):
    """Restart the Deployment; returns the generation the restart made."""
    body = retry_transient(
        lambda: raw.call("PATCH", "/apis/apps/v1/namespaces/%s/deployments/%s" % (namespace, name),
                         body=restart_patch(now_text), content_type="application/merge-patch+json",
                         count_as="patch deployment"),
        deadline=deadline, describe="deployment %s/%s" % (namespace, name))
    return int((body.get("metadata") or {}).get("generation") or 0)


def wait_replaced(raw, node_pod_uids, restarted, deadline, clock=time.monotonic, sleep=time.sleep):
    """Poll until every restarted Deployment is done (``replaced``) or ``deadline``.

    ``restarted``: ``{(namespace, name): (generation, original pod uids)}``; ``node_pod_uids()``:
    the UIDs of the pods on the node now. Returns ``(done, {(namespace, name): missing})``."""
    def check(_poll):
        uids = node_pod_uids()
        missing = {}
        for key, (generation, originals) in restarted.items():
            deployment = _get_by_name(raw, "deployments", key[0], key[1], deadline, "deployment")
            # deleted meanwhile: its pods are the garbage collector's, nothing is left to wait for
            missing[key] = [] if deployment is None else replaced(deployment, generation, originals, uids)
        return not any(missing.values()), missing

    done, missing, _poll = poll_until(check, max(0.0, deadline - clock()), POLL_SECONDS, clock=clock, sleep=sleep)
    return done, missing


def _missing_text(key, missing):
    return "Deployment %s/%s: %s" % (key[0], key[1], ", ".join(missing))


def replace_first(raw, api, node, entries, pods_by_key, run_default, cordoned, no_changes, deadline, warn,
                  clock=time.monotonic):
    """The drain's replacement-first step, before any eviction. Returns ``{deployments, replaced,
    planned, changed, failure}``: the result's ``replacement_first`` list; ``{pod key: reason}`` of
    the pods that left the node with their Deployment's restart (``replaced``) or would (``planned``,
    check mode); whether a Deployment was restarted; and, when the replacements were not ready by
    the deadline, the message (the caller stops the drain there, nothing evicted)."""
    out = {"deployments": [], "replaced": {}, "planned": {}, "changed": False, "failure": None}
    chosen = opted_in_entries(entries, pods_by_key, run_default)
    if not chosen:
        return out
    groups, deployments = owners(raw, chosen, pods_by_key, deadline)
    items = plan(groups, deployments)
    out["deployments"] = items
    todo = [item for item in items if "state" not in item]
    if todo and not cordoned:
        for item in todo:
            item.update(state=STATE_NOT_CORDONED, detail="the node is schedulable (cordon: false), so a replacement "
                                                         "could land on it; its pods are evicted as usual")
        todo = []
    for item in items:
        if item.get("state") in (STATE_NOT_POSSIBLE, STATE_NOT_CORDONED):
            warn("replacement first: Deployment %s/%s not restarted: %s" % (item["namespace"], item["name"], item["detail"]))
    if not todo:
        return out
    if no_changes:
        for item in todo:
            item["state"] = STATE_PLANNED
            for name in item["pods"]:
                out["planned"][(item["namespace"], name)] = "would be replaced first: Deployment %s/%s restarted (%s)" % (
                    item["namespace"], item["name"], item["reason"])
        return out
    started = clock()
    now_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    restarted = {}
    for item in todo:
        key = (item["namespace"], item["name"])
        generation = restart(raw, key[0], key[1], deadline, now_text)
        restarted[key] = (generation, [e["uid"] for e in groups[key]])
        out["changed"] = True

    def node_pod_uids():
        found = retry_transient(lambda: api.list_node_pod_metadata(node), deadline=deadline,
                                describe="pods on node/%s" % node)
        return [meta.get("uid") for meta in found]

    done, missing = wait_replaced(raw, node_pod_uids, restarted, deadline, clock=clock)
    seconds = round(clock() - started, 3)
    for item in todo:
        key = (item["namespace"], item["name"])
        item["seconds"] = seconds
        if missing.get(key):
            item.update(state=STATE_TIMED_OUT, detail="restarted, but not replaced by the drain's timeout: "
                                                      + ", ".join(missing[key]))
            continue
        item["state"] = STATE_REPLACED
        for name in item["pods"]:
            out["replaced"][(key[0], name)] = (
                "replaced first: Deployment %s/%s restarted (%s); its replacements were available elsewhere "
                "before this pod left" % (key[0], key[1], item["reason"]))
    if not done:
        out["failure"] = ("replacement first on node/%s: the restarted Deployments were not replaced within the "
                          "timeout: %s. Nothing was evicted; the restarts go on, so a re-run of the drain finds "
                          "them further along" % (node, "; ".join(
                              _missing_text(key, text) for key, text in sorted(missing.items()) if text)))
    return out
