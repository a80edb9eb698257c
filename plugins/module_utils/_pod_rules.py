# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a pod is, read from its JSON dict (the API server's camelCase keys): the one home of these
rules for the drain (``_pods``, ``_eviction``), the preflight, the cluster guard and node removal.

- ``is_ready``: the pod's first ``Ready`` condition is ``True`` (``podutil.IsPodReady``); what a
  PodDisruptionBudget counts as healthy and the eviction API as not "unhealthy";
- ``is_serving`` / ``serving``: Ready, Running and not being deleted, as the EndpointSlice
  controller marks an endpoint ready: a pod that serves now and keeps serving;
- ``is_mirror_pod``: the kubelet's mirror of a static pod (annotation ``kubernetes.io/config.mirror``);
- ``is_daemonset_pod``: controlled by an ``apps/v1`` DaemonSet (``_api_objects.controller_of``);
- ``is_finished`` (phase Succeeded or Failed), ``is_terminating`` (has a ``deletionTimestamp``);
- ``opt_outs`` / ``pod_opt_outs``: the opt-outs other tools' users put on pods, as those tools read
  them (``opt_out_marks`` picks the raw values, so a caller that keeps records passes those):

  ============================================  =================  ====================================
  mark                                          effect             applies to
  ============================================  =================  ====================================
  annotation ``karpenter.sh/do-not-disrupt``    ``block``          running pods, DaemonSet and mirror
  ``"true"``, or a Go duration the pod has      (nothing moves)    pods included (Karpenter blocks a
  not yet run for (from ``status.startTime``)                      node's disruption for those too)
  annotation ``cluster-autoscaler.kubernetes    ``block``          running pods that are neither
  .io/safe-to-evict: "false"`` (exactly)                           DaemonSet nor mirror pods (the
                                                                   autoscaler's rule order)
  label ``cluster.x-k8s.io/drain: skip``        ``skip``           every pod (left alone)
  label ``cluster.x-k8s.io/drain:               ``wait_completed`` pods not finished (not evicted;
  wait-completed``                                                 waited for until finished or gone)
  ============================================  =================  ====================================

  Values compare as those tools compare them: Karpenter's ``"true"`` and the autoscaler's
  ``"false"`` exactly, Cluster API's label without regard to case (``Skip``, ``WaitCompleted``).
  A value the tool would ignore (an unknown label value, a do-not-disrupt that is neither ``"true"``
  nor a positive duration, a duration the pod has outlived) comes back with effect ``ignored`` and
  a note, and changes nothing. Finished and terminating pods block nothing: they are not moved.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._api_objects import (
    controller_of,
    status_condition,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._lease import parse_time

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
FINISHED_PHASES = ("Succeeded", "Failed")
RUNNING = "Running"


def is_ready(pod):
    """True when the pod's (first) ``Ready`` condition has status ``True``."""
    return (status_condition(pod, "Ready") or {}).get("status") == "True"


def serving(phase, terminating, ready):
    """The serving rule over the three facts it needs (for records that keep only those)."""
    return phase == RUNNING and not terminating and bool(ready)


def is_serving(pod):
    """Ready, Running and not being deleted."""
    return serving(((pod or {}).get("status") or {}).get("phase"), is_terminating(pod), is_ready(pod))


def is_mirror_pod(pod):
    return MIRROR_POD_ANNOTATION in (((pod or {}).get("metadata") or {}).get("annotations") or {})


def is_daemonset_ref(ref):
    """True when the owner reference ``ref`` (a pod's controller) is an ``apps/v1`` DaemonSet; an
    owner of another group that is also called DaemonSet is some other controller's, and its pods
    are treated like any controlled pod."""
    return bool(ref) and ref.get("kind") == "DaemonSet" and ref.get("apiVersion") == "apps/v1"


def is_daemonset_pod(pod):
    """Controlled by an ``apps/v1`` DaemonSet."""
    return is_daemonset_ref(controller_of(pod))


def is_finished(pod):
    return (((pod or {}).get("status") or {}).get("phase")) in FINISHED_PHASES


def is_terminating(pod):
    return bool(((pod or {}).get("metadata") or {}).get("deletionTimestamp"))


def volume_claim_name(pod_name, volume):
    """The PersistentVolumeClaim a pod's volume uses: a ``persistentVolumeClaim`` volume's
    ``claimName``, or a generic ephemeral volume's claim, which Kubernetes names
    ``<pod>-<volume>`` and deletes with the pod; None for any other kind of volume."""
    if "persistentVolumeClaim" in volume:
        return (volume["persistentVolumeClaim"] or {}).get("claimName") or ""
    if "ephemeral" in volume:
        return "%s-%s" % (pod_name or "", volume.get("name") or "")
    return None


# --- opt-outs other tools' users put on pods ----------------------------------------------------

DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"                    # annotation
SAFE_TO_EVICT = "cluster-autoscaler.kubernetes.io/safe-to-evict"  # annotation
CAPI_DRAIN = "cluster.x-k8s.io/drain"                             # label
KARPENTER = "karpenter"
CLUSTER_AUTOSCALER = "cluster-autoscaler"
CLUSTER_API = "cluster-api"
VOCABULARIES = (KARPENTER, CLUSTER_AUTOSCALER, CLUSTER_API)
# (the mark's key, whether it is a label, the vocabulary it belongs to)
OPT_OUT_MARKS = ((DO_NOT_DISRUPT, False, KARPENTER), (SAFE_TO_EVICT, False, CLUSTER_AUTOSCALER),
                 (CAPI_DRAIN, True, CLUSTER_API))
BLOCK = "block"
SKIP = "skip"
WAIT_COMPLETED = "wait_completed"
IGNORED = "ignored"

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
             "h": 3600.0}
_GO_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def go_duration_seconds(text):
    """Seconds of a Go ``time.ParseDuration`` string (``90s``, ``1h30m``, ``1.5h``, ``-2m``; ``0``
    alone needs no unit), or None when Go would refuse it."""
    if not isinstance(text, str):
        return None
    rest = text
    sign = 1.0
    if rest[:1] in ("-", "+"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        return None
    total = 0.0
    position = 0
    while position < len(rest):
        match = _GO_PART.match(rest, position)
        if not match:
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    return sign * total


def opt_out_marks(pod):
    """``{key: value}`` of the opt-out annotations and label the pod carries (the keys of
    ``OPT_OUT_MARKS``), for ``opt_outs``; empty for most pods."""
    metadata = (pod or {}).get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    return dict((key, (labels if is_label else annotations)[key]) for key, is_label, _vocabulary in OPT_OUT_MARKS
                if key in (labels if is_label else annotations))


def _opt_out(vocabulary, key, value, effect, note=None):
    where = "label" if key == CAPI_DRAIN else "annotation"
    out = {"vocabulary": vocabulary, "key": key, "value": value, "effect": effect,
           "text": "%s %s=%s" % (where, key, value)}
    if note:
        out["note"] = note
    return out


def _karpenter(value, started, now):
    if value == "true":
        return BLOCK, None
    seconds = go_duration_seconds(value)
    if seconds is None or seconds <= 0:
        return IGNORED, "neither \"true\" nor a positive duration, so Karpenter ignores it too"
    start = parse_time(started)
    if start is None:
        return BLOCK, "the pod has not started, so its %s grace period has not begun" % value
    left = seconds - (now - start.timestamp())
    if left > 0:
        return BLOCK, "for %ds more (%s from the pod's start)" % (int(left + 0.999), value)
    return IGNORED, "the pod has run longer than %s, so the grace period is over" % value


def _capi(value):
    folded = (value or "").lower()
    if folded == "skip":
        return SKIP, None
    if folded.replace("-", "", 1) == "waitcompleted":
        return WAIT_COMPLETED, None
    return IGNORED, "unknown value (Cluster API knows skip and wait-completed), so the pod is drained as usual"


def opt_outs(marks, started=None, now=None, finished=False, terminating=False, daemonset=False, mirror=False,
             ignore=()):
    """The opt-outs among ``marks`` (``opt_out_marks``) that speak about this pod, each
    ``{"vocabulary", "key", "value", "effect", "text"[, "note"]}``, effect one of ``BLOCK``, ``SKIP``,
    ``WAIT_COMPLETED``, ``IGNORED`` (see the module's docstring).

    ``started``: the pod's ``status.startTime`` (RFC 3339), for Karpenter's grace periods; ``now``:
    seconds since the epoch; ``ignore``: vocabularies the caller disregards (``VOCABULARIES`` or
    ``"all"``), whose marks come back ``IGNORED`` with a note saying so.
    """
    now = time.time() if now is None else now
    active = not finished and not terminating
    found = []
    for key, _is_label, vocabulary in OPT_OUT_MARKS:
        if key not in marks:
            continue
        value = marks[key]
        if key == DO_NOT_DISRUPT:
            if not active:
                continue
            effect, note = _karpenter(value, started, now)
        elif key == SAFE_TO_EVICT:
            if value != "false" or not active or daemonset or mirror:
                continue
            effect, note = BLOCK, None
        else:
            effect, note = _capi(value)
            if effect == WAIT_COMPLETED and finished:
                continue
        found.append(_opt_out(vocabulary, key, value, effect, note))
    return disregarded(found, ignore)


def disregarded(found, ignore):
    """``found`` (``opt_outs``) with the marks of the vocabularies in ``ignore`` (or all, with
    ``"all"``) turned ``IGNORED``, noted as disregarded by ``ignore_opt_outs``."""
    if not ignore:
        return found
    return [dict(opt_out, effect=IGNORED, note="disregarded (ignore_opt_outs)")
            if opt_out["effect"] != IGNORED and (opt_out["vocabulary"] in ignore or "all" in ignore) else opt_out
            for opt_out in found]


def pod_opt_outs(pod, now=None, ignore=()):
    """``opt_outs`` of a pod's JSON dict."""
    marks = opt_out_marks(pod)
    if not marks:
        return []
    return opt_outs(marks, ((pod.get("status") or {}).get("startTime")), now, is_finished(pod), is_terminating(pod),
                    is_daemonset_pod(pod), is_mirror_pod(pod), ignore)
