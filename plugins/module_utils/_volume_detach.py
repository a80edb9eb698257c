# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The volumes of a drained node detached before it goes down (k8s_node_drain's
``wait_for_volume_detach``): the pure rule over the API's JSON dicts, and the wait.

A pod is gone from the API server before its volumes are unmounted by the kubelet and detached by
the attach/detach controller and the CSI driver's attacher. A node rebooted, powered off or
reimaged with volumes still attached leaves them attached to it, and the pods that moved away wait
for them with multi-attach errors. Cluster API's machine controller and Karpenter's terminator
therefore wait, after the drain, until the node's volumes are detached; so does this.

What is waited for (``volume_state``):

- every VolumeAttachment (storage.k8s.io/v1) whose ``spec.nodeName`` is the node, attached or not
  (one that is not attached but still exists is being detached, or failed to detach:
  ``status.detachError``), and
- every entry of the node's ``status.volumesAttached`` (the attach/detach controller's own list),

except the volumes of the pods the drain leaves on the node: pods still bound to it that are neither
finished nor being deleted nor among the pods the drain moves (``moving``, by UID: in check mode
they are still there) - DaemonSet pods with ``ignore_daemonsets``, mirror pods, pods outside
``pod_selector``. Their volumes stay attached until those pods go and are not waited for
(``kept``), as Cluster API ignores the volumes of the pods its drain skipped and Karpenter those of
the pods it does not drain. A volume is theirs when its PersistentVolume's ``claimRef`` is one of
their claims (``persistentVolumeClaim``, or a generic ephemeral volume's claim ``<pod>-<volume>``);
a ``status.volumesAttached`` entry is matched to a CSI PersistentVolume by the name the controller
gives it, ``kubernetes.io/csi/<driver>^<volumeHandle>``. A VolumeAttachment of an inline volume
(no ``persistentVolumeName``) and an entry no PersistentVolume matches cannot be tied to a pod and
are waited for.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    pods_on_node,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import read_node
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pod_rules import is_finished, is_terminating, volume_claim_name
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._retry import poll_until

VOLUME_ATTACHMENTS = "/apis/storage.k8s.io/v1/volumeattachments"
PERSISTENT_VOLUMES = "/api/v1/persistentvolumes"
POLL_INTERVAL = 2.0
# How many volumes a message names before it says "and N more" (all are in the result).
MESSAGE_LIMIT = 10

KIND_ATTACHMENT = "VolumeAttachment"
KIND_NODE_STATUS = "volumesAttached"


def csi_volume_name(pv):
    """The name the attach/detach controller gives a CSI PersistentVolume in a node's
    ``status.volumesAttached``, or None for a PV that is not CSI."""
    csi = (pv.get("spec") or {}).get("csi") or {}
    if csi.get("driver") and csi.get("volumeHandle"):
        return "kubernetes.io/csi/%s^%s" % (csi["driver"], csi["volumeHandle"])
    return None


def pod_claims(pod):
    """``(namespace, claim name)`` of each PersistentVolumeClaim the pod's volumes use: a
    ``persistentVolumeClaim`` volume's, or a generic ephemeral volume's (named ``<pod>-<volume>``)."""
    metadata = pod.get("metadata") or {}
    namespace, name = metadata.get("namespace") or "", metadata.get("name") or ""
    claims = [volume_claim_name(name, volume) for volume in (pod.get("spec") or {}).get("volumes") or ()]
    return [(namespace, claim) for claim in claims if claim is not None]


def held_claims(pods, moving=()):
    """{(namespace, claim): ["namespace/pod", ...]} of the pods that keep their volumes on the node:
    neither finished nor being deleted, nor one of the pods the drain moves (UIDs ``moving``)."""
    held = {}
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if is_finished(pod) or is_terminating(pod) or metadata.get("uid") in moving:
            continue
        for claim in pod_claims(pod):
            held.setdefault(claim, []).append("%s/%s" % (metadata.get("namespace"), metadata.get("name")))
    return held


def _claim_of(pv):
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    if not ref.get("name") or ref.get("kind") not in (None, "PersistentVolumeClaim"):
        return None
    return (ref.get("namespace") or "", ref["name"])


def volume_state(node, attachments, pvs, pods, moving=()):
    """``{"pending": [...], "kept": [...]}``: the node's attached volumes still to be detached, and
    those of the pods left on the node (each with ``pods``), not waited for.

    ``node``: the Node; ``attachments``: VolumeAttachments (any node's); ``pvs``: PersistentVolumes;
    ``pods``: the pods bound to the node; ``moving``: UIDs of the pods the drain moves. Each volume: ``kind`` (``VolumeAttachment`` or
    ``volumesAttached``), ``name``, ``persistent_volume`` (None when no PV is known), and for a
    VolumeAttachment ``attacher``, ``attached`` and ``detach_error``.
    """
    name = (node.get("metadata") or {}).get("name")
    held = held_claims(pods, moving)
    claim_of_pv = dict((pv["metadata"]["name"], _claim_of(pv)) for pv in pvs)
    pv_of_volume = dict((csi_volume_name(pv), pv["metadata"]["name"]) for pv in pvs if csi_volume_name(pv))
    volumes = []
    for va in attachments:
        spec = va.get("spec") or {}
        if spec.get("nodeName") != name:
            continue
        status = va.get("status") or {}
        volumes.append({"kind": KIND_ATTACHMENT, "name": va["metadata"]["name"],
                        "persistent_volume": (spec.get("source") or {}).get("persistentVolumeName"),
                        "attacher": spec.get("attacher"), "attached": bool(status.get("attached")),
                        "detach_error": (status.get("detachError") or {}).get("message")})
    for entry in (node.get("status") or {}).get("volumesAttached") or ():
        volumes.append({"kind": KIND_NODE_STATUS, "name": entry.get("name"),
                        "persistent_volume": pv_of_volume.get(entry.get("name"))})
    state = {"pending": [], "kept": []}
    for volume in volumes:
        pods_holding = held.get(claim_of_pv.get(volume["persistent_volume"]))
        if pods_holding:
            state["kept"].append(dict(volume, pods=sorted(pods_holding)))
        else:
            state["pending"].append(volume)
    return state


def volume_text(volume):
    """``volumeattachment/csi-1 (pv/data-1, attacher ebs.csi.aws.com, attached)`` and the like."""
    pv = "pv/%s" % volume["persistent_volume"] if volume["persistent_volume"] else None
    if volume["kind"] == KIND_ATTACHMENT:
        details = [pv or "an inline volume, no PersistentVolume", "attacher %s" % volume["attacher"],
                   "attached" if volume["attached"] else "detaching"]
        if volume.get("detach_error"):
            details.append("detach error: %s" % volume["detach_error"])
        return "volumeattachment/%s (%s)" % (volume["name"], ", ".join(details))
    return "status.volumesAttached %s (%s)" % (volume["name"], pv or "no PersistentVolume matches it")


def timeout_message(node, volumes, timeout):
    """What a drain whose volumes did not detach within ``timeout`` says."""
    pending = volumes["pending"]
    names = [volume_text(v) for v in pending[:MESSAGE_LIMIT]]
    if len(pending) > MESSAGE_LIMIT:
        names.append("and %d more (see volumes.pending)" % (len(pending) - MESSAGE_LIMIT))
    return ("drain of node/%s: the pods are gone, but %d volume(s) were still attached to the node after "
            "%ds (volume_detach_timeout): %s. The node stays cordoned and must not go down yet, or the pods "
            "that moved wait for these volumes with multi-attach errors; find out why they are not detached "
            "(`kubectl describe volumeattachment NAME`, the CSI driver's controller logs, the kubelet's "
            "unmounts) and run the drain again" % (node, len(pending), timeout, "; ".join(names)))


def read_state(raw, node, deadline, moving=()):
    """The node's volumes now (``volume_state``): the node and the VolumeAttachments read; the pods
    and PersistentVolumes only when something is attached."""
    def listed(path, what, query=()):
        return retry_transient(lambda: raw.list_all(path, query, timeout=request_timeout(deadline), count_as="list " + what),
                               deadline=deadline, describe=what)

    current = read_node(raw, node, deadline)
    attachments = listed(VOLUME_ATTACHMENTS, "volumeattachments")
    attached = (current.get("status") or {}).get("volumesAttached")
    if not attached and not any((va.get("spec") or {}).get("nodeName") == node for va in attachments):
        return {"pending": [], "kept": []}
    pods = retry_transient(lambda: pods_on_node(raw, node, timeout=request_timeout(deadline)),
                           deadline=deadline, describe="pods on node/%s" % node)
    return volume_state(current, attachments, listed(PERSISTENT_VOLUMES, "persistentvolumes"), pods, moving)


def wait_detached(raw, node, timeout, moving=(), once=False, sleep=time.sleep, clock=time.monotonic):
    """Poll ``read_state`` every ``POLL_INTERVAL`` seconds until nothing is pending, for at most
    ``timeout`` seconds (``once``: one look, check mode); ``moving``: UIDs of the pods the drain
    moves (their volumes are waited for even while they are still listed). The result's ``volumes``: ``detached``
    (nothing pending at the last look), ``pending``, ``kept``, ``polls``, ``seconds``."""
    def check(poll):
        # a request may still finish a little after the wait's deadline (the last look comes at it)
        state = read_state(raw, node, time.monotonic() + max(0, poll.remaining()) + 10, moving)
        return not state["pending"], state

    done, state, poll = poll_until(check, timeout, POLL_INTERVAL, once=once, sleep=sleep, clock=clock)
    return dict(state, detached=done, polls=poll.polls, seconds=round(poll.elapsed(), 3))
