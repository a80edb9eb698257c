# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Evict (or delete) the pods of a node with bounded concurrency and wait until they are gone.

The engine (``Drainer``) works on ``PodTask`` objects and talks to the cluster only through a small
API object (``DrainApi``); the request outcomes it acts on are plain values (``Outcome``), so the
scheduling rules are tested without a cluster and without imitating the Kubernetes API.

What it does, compared with ``kubectl drain`` (k8s.io/kubectl/pkg/drain/drain.go):

- at most ``max_concurrency`` requests in flight (kubectl starts one goroutine per pod);
- a pod refused with 429 (PodDisruptionBudget) gives its worker back and is tried again as soon as
  the budget it waits for shows room in a fresh PDB list (polled every half second while pods
  wait), until the drain's deadline; pods whose budget is spent are held back before they collect
  a 429 at all. Without PDB information (no RBAC to list them) a 429 is retried every 5 s, as
  kubectl does from a goroutine that holds on to the pod;
- 500 "more than one PodDisruptionBudget" fails that pod with the PDBs named; 404 means gone;
  403 "namespace terminating" falls back to a delete, since an eviction there can never succeed;
- each eviction carries ``preconditions.uid``, so a retry never evicts a StatefulSet's replacement
  pod that took the old name;
- waiting for deletion costs one list call per poll for the whole node (field selector
  ``spec.nodeName``, metadata only), where kubectl GETs every pod every second; a pod is gone
  when its UID is no longer listed on the node;
- every pod ends with a result: action, reason, attempts, seconds, and for pods a budget held up,
  the PDB with ``disruptionsAllowed`` and healthy/desired counts;
- a pod labelled ``cluster.x-k8s.io/drain: wait-completed`` (method ``wait_completed``) is never
  evicted: it is done when it finishes (phase Succeeded or Failed) or is gone, which the poll sees
  in a second metadata list of the node's unfinished pods, made only while such pods wait;
- the node read every few seconds (deleted mid-drain?) also tells whether someone uncordoned it;
  ``on_uncordoned(node)`` is then called (the drain cordons it again), no extra request.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _pods
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    api_exception,
    api_path,
    describe_api_error,
    pods_on_node,
    request_timeout,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pod_rules import CAPI_DRAIN
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._selectors import label_selector_matches

# Outcome kinds of one eviction or delete request.
OK = "ok"                       # accepted; the pod is terminating (or gone already)
GONE = "gone"                   # 404, or the UID precondition failed: the pod we meant is gone
BUDGET = "budget"               # 429: a PodDisruptionBudget (or server throttling) says not now
MULTIPLE_PDBS = "multiple_pdbs"  # 500: the eviction API refuses pods under more than one PDB
NAMESPACE_TERMINATING = "namespace_terminating"  # 403: evictions never succeed there
TRANSIENT = "transient"         # connection error, timeout, 5xx, conflicts: try again
ERROR = "error"                 # anything else (RBAC, validation): this pod fails

ACTION_EVICTED = "evicted"
ACTION_DELETED = "deleted"
ACTION_SKIPPED = "skipped"
ACTION_WAITED = "waited"
ACTION_FAILED = "failed"
ACTION_NONE = "none"            # nothing done: check mode, or the drain was refused before it began
ACTION_REPLACED = "replaced"    # left with its Deployment's restart, its replacement available first (replacement first)
ACTIONS = (ACTION_EVICTED, ACTION_DELETED, ACTION_SKIPPED, ACTION_WAITED, ACTION_FAILED, ACTION_NONE, ACTION_REPLACED)

# Poll the node's pods quickly while evictions are landing, then back off: kubelets take seconds
# (the grace period) to stop containers, and a list every 2 s costs the API server little.
POLL_MIN_SECONDS = 0.25
POLL_MAX_SECONDS = 2.0
BUDGET_POLL_SECONDS = 0.5       # poll cap while pods wait for a budget: that wait is the drain's pace
POLL_GROWTH = 1.5
DEFAULT_RETRY_DELAY = 5.0       # same as kubectl's EvictErrorRetryDelay
# A pod held back by a budget our snapshot says is spent is still tried this often: the server
# decides with the same PDB status, so this only guards against a snapshot we misread.
HELD_FALLBACK_SECONDS = 30.0
MIN_RETRY_SPACING = 0.5         # a pod refused by a budget is never retried sooner than this
# How often a drain that is still going checks that its node exists: someone else may delete the
# Node object, and then its pods are the pod garbage collector's, whatever their budgets say.
NODE_CHECK_SECONDS = 5.0
TRANSIENT_BACKOFF_MAX = 5.0
# Answers to the pod poll that end the drain at once: credentials no longer accepted (a bound
# token expired), or the right to list pods taken away. Anything else is retried until the deadline.
STOP_STATUSES = (401, 403)
UNFINISHED = "status.phase!=Succeeded,status.phase!=Failed"


class Outcome:
    """What one request came back with, reduced to what the engine acts on."""

    __slots__ = ("kind", "status", "message", "retry_after")

    def __init__(self, kind, status=None, message="", retry_after=None):
        self.kind = kind
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def __repr__(self):
        return "Outcome(%s, %s, %r)" % (self.kind, self.status, self.message)


# --- pure helpers -----------------------------------------------------------------------------

def delete_options(grace_period=-1, dry_run=False, uid=None):
    """DeleteOptions as kubectl builds them: a negative grace period means "the pod's own"."""
    options = {}
    if grace_period is not None and grace_period >= 0:
        # 0 is honoured and sent as is (immediate deletion), as kubectl drain does.
        options["gracePeriodSeconds"] = int(grace_period)
    if dry_run:
        options["dryRun"] = ["All"]
    if uid:
        options["preconditions"] = {"uid": uid}
    return options


def eviction_body(namespace, name, grace_period=-1, dry_run=False, uid=None):
    return {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
        "deleteOptions": delete_options(grace_period, dry_run, uid),
    }


def _status_causes(body):
    return ((body or {}).get("details") or {}).get("causes") or []


def classify_response(status, body):
    """Turn an HTTP status and its decoded body (a ``Status`` or None) into an ``Outcome``."""
    body = body if isinstance(body, dict) else {}
    message = body.get("message") or ""
    causes = _status_causes(body)
    cause_text = "; ".join(cause.get("message") for cause in causes if cause.get("message"))
    text = message + (" (%s)" % cause_text if cause_text and cause_text not in message else "")
    # The eviction handler answers "more than one PDB" with a Status of code 500, which may come
    # back with a 2xx transport status on some versions; look at the body as well.
    if body.get("kind") == "Status" and body.get("status") == "Failure" and body.get("code"):
        status = body["code"] if not status or 200 <= status < 300 else status
    if status is None:
        return Outcome(TRANSIENT, None, text or "no response")
    if 200 <= status < 300:
        return Outcome(OK, status, text)
    if status == 404:
        return Outcome(GONE, status, text)
    if status == 409 and "precondition" in message.lower():
        return Outcome(GONE, status, text)
    if status == 429:
        retry_after = (body.get("details") or {}).get("retryAfterSeconds")
        return Outcome(BUDGET, status, text, retry_after)
    if status == 500 and "more than one poddisruptionbudget" in message.lower():
        return Outcome(MULTIPLE_PDBS, status, text)
    if status == 403 and any(cause.get("reason") == "NamespaceTerminating" for cause in causes):
        return Outcome(NAMESPACE_TERMINATING, status, text)
    if status in (409, 408) or status >= 500:
        return Outcome(TRANSIENT, status, text)
    return Outcome(ERROR, status, text)


def pdb_key(pdb):
    meta = pdb.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def pdbs_covering(pod, pdbs):
    """Keys of the PDBs in the pod's namespace whose selector selects the pod."""
    namespace = _pods.pod_key(pod)[0]
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return [pdb_key(pdb) for pdb in pdbs
            if pdb_key(pdb)[0] == namespace and label_selector_matches((pdb.get("spec") or {}).get("selector"), labels)]


def describe_pdb(pdb):
    """What a user needs to see about a budget that holds a pod up."""
    spec = pdb.get("spec") or {}
    status = pdb.get("status") or {}
    namespace, name = pdb_key(pdb)
    info = {
        "namespace": namespace,
        "name": name,
        "disruptions_allowed": status.get("disruptionsAllowed", 0),
        "current_healthy": status.get("currentHealthy", 0),
        "desired_healthy": status.get("desiredHealthy", 0),
        "expected_pods": status.get("expectedPods", 0),
    }
    for field in ("minAvailable", "maxUnavailable"):
        if field in spec:
            info["min_available" if field == "minAvailable" else "max_unavailable"] = spec[field]
    return info


def pdb_text(info):
    """``pdb ns/name (disruptionsAllowed 0, healthy 2/3)``."""
    return "pdb %s/%s (disruptionsAllowed %s, healthy %s/%s)" % (
        info["namespace"], info["name"], info["disruptions_allowed"], info["current_healthy"],
        info["desired_healthy"])


def next_poll_interval(current, progressed, cap=POLL_MAX_SECONDS):
    if progressed or current is None:
        return POLL_MIN_SECONDS
    return min(cap, current * POLL_GROWTH)


def transient_backoff(attempts):
    return min(TRANSIENT_BACKOFF_MAX, 0.2 * (2 ** max(0, attempts - 1)))


def count_actions(results):
    counts = dict((action, 0) for action in ACTIONS)
    for result in results:
        counts[result["action"]] = counts.get(result["action"], 0) + 1
    counts["total"] = len(results)
    return counts


# --- the engine -------------------------------------------------------------------------------

class PodTask:
    """One pod the drain has to get off the node, and what happened to it so far."""

    QUEUED, INFLIGHT, WAITING, DONE = "queued", "inflight", "waiting", "done"

    def __init__(self, entry, method, ready=True, pdbs=(), labels=None):
        self.entry = entry              # describe_pod() fields + plan/reason/warnings
        self.method = method            # "evict", "delete", "wait" or "wait_completed"
        self.ready = ready
        self.pdbs = list(pdbs)          # keys of the PDBs that cover it
        # The pod's labels, to find the budgets that cover it again when budgets are re-listed
        # (one may be created, replaced or deleted mid-drain). None: keep ``pdbs`` as given.
        self.labels = labels
        self.state = self.QUEUED
        self.attempts = 0
        self.started = None
        self.finished = None
        self.not_before = 0.0
        self.last = None                # last Outcome
        self.last_attempt = None
        self.accepted_at = None         # when the eviction/delete was accepted
        self.budget_blocked = False     # last refused by a budget (429)
        self.fallback_delete = False    # eviction impossible (terminating namespace): delete
        self.action = None
        self.reason = None
        self.detail = {}

    @property
    def key(self):
        return self.entry["namespace"], self.entry["name"]

    @property
    def uid(self):
        return self.entry.get("uid")

    def result(self, now):
        out = dict(self.entry)
        out.pop("blockers", None)
        out.update({
            "action": self.action or ACTION_NONE,
            "reason": self.reason or self.entry.get("reason"),
            "attempts": self.attempts,
            "seconds": round(((self.finished or now) - self.started), 3) if self.started else 0.0,
        })
        out.update(self.detail)
        return out


class Drainer:
    """Runs the evictions/deletions of one node's pods to completion or to the deadline."""

    def __init__(self, api, node, deadline, max_concurrency=20, grace_period=-1, dry_run=False,
                 skip_wait_for_delete_timeout=0, retry_delay=DEFAULT_RETRY_DELAY, pdbs=None,
                 clock=time.monotonic, wall_clock=time.time, on_uncordoned=None):
        self.api = api
        self.node = node
        self.deadline = deadline
        self.max_concurrency = max(1, int(max_concurrency))
        self.grace_period = grace_period
        self.dry_run = dry_run
        self.skip_wait = skip_wait_for_delete_timeout or 0
        self.retry_delay = retry_delay
        self.clock = clock
        self.wall_clock = wall_clock
        # PDBs by key (None when they could not be listed: then 429s are retried blindly).
        self.pdbs = None if pdbs is None else dict((pdb_key(p), p) for p in pdbs)
        self.budget = {}
        self._reset_budget()
        self.poll_interval = None
        self.next_poll = None
        self.polls = 0
        self.node_deleted = False
        self.next_node_check = None
        # Called with the node read when it is found schedulable (someone uncordoned it mid-drain);
        # None: the drain did not cordon it, so whether it is schedulable is not its business.
        self.on_uncordoned = on_uncordoned
        # Why the drain stopped before its deadline (the API server no longer accepts our
        # credentials or rights for the node's pods), or None.
        self.stopped = None
        self.poll_failures = 0          # consecutive failed polls
        self.poll_error = None          # what the last failed poll said

    # budgets -------------------------------------------------------------------------------
    def _reset_budget(self):
        self.budget = {} if self.pdbs is None else dict(
            (key, (pdb.get("status") or {}).get("disruptionsAllowed", 0)) for key, pdb in self.pdbs.items())

    def _budget_known(self, task):
        """True when our PDB snapshot says something about this eviction.

        Pods that are not Ready are left to the server: it may evict them with no budget left
        (``unhealthyPodEvictionPolicy``, or enough healthy pods), which a snapshot cannot tell.
        """
        return (self.pdbs is not None and bool(task.pdbs) and task.ready and not self.dry_run
                and task.method == "evict" and not task.fallback_delete)

    def _budget_allows(self, task):
        return all(self.budget.get(key, 1) > 0 for key in task.pdbs)

    def _take_budget(self, task):
        if self._budget_known(task):
            for key in task.pdbs:
                if key in self.budget:
                    self.budget[key] -= 1

    def _refresh_pdbs(self, tasks=()):
        try:
            pdbs = self.api.list_pdbs()
        except Exception:  # noqa: BLE001 - budgets are an optimisation; retries still happen by time
            return
        self.pdbs = dict((pdb_key(p), p) for p in pdbs)
        self._reset_budget()
        for task in tasks:
            if task.labels is not None and task.state != PodTask.DONE:
                task.pdbs = pdbs_covering({"metadata": {"namespace": task.key[0], "labels": task.labels}}, pdbs)

    def refresh_pdbs(self, tasks):
        """List the budgets again before ``tasks`` start (a later tier of the drain: the tier before
        used up or freed disruptions, and budgets may have come or gone)."""
        self._refresh_pdbs(tasks)

    def _node_is_gone(self):
        """True only when the API server says the node is not found; any other answer or
        error keeps the drain going (it has its own retries and deadline). The same read tells
        whether the node is still cordoned (``on_uncordoned``)."""
        try:
            node = self.api.get_node(self.node)
        except Exception:  # noqa: BLE001 - unknown is not gone
            return False
        if node is None:
            return True
        if self.on_uncordoned is not None and not (node.get("spec") or {}).get("unschedulable"):
            try:
                self.on_uncordoned(node)
            except Exception:  # noqa: BLE001 - the next check tries again; the drain goes on
                pass
        return False

    # one request, run in a worker thread -----------------------------------------------------
    def _attempt(self, task, method):
        namespace, name = task.key
        try:
            if method == "evict":
                return self.api.evict(namespace, name, eviction_body(
                    namespace, name, self.grace_period, self.dry_run, task.uid))
            return self.api.delete(namespace, name, delete_options(self.grace_period, self.dry_run, task.uid))
        except Exception as exc:  # noqa: BLE001 - a worker must always hand back an outcome
            return Outcome(TRANSIENT, None, "%s: %s" % (type(exc).__name__, exc))

    # outcomes --------------------------------------------------------------------------------
    def _finish(self, task, action, reason, now, **detail):
        task.state = PodTask.DONE
        task.action = action
        task.reason = reason
        task.finished = now
        task.detail.update(detail)

    def _done_action(self, task):
        if task.method in ("wait", "wait_completed"):
            return ACTION_WAITED
        return ACTION_DELETED if task.method == "delete" else ACTION_EVICTED

    def _handle(self, task, method, outcome, now):
        task.last = outcome
        kind = outcome.kind
        if kind == OK:
            task.budget_blocked = False
            task.accepted_at = now
            if self.dry_run:
                infos = self._pdb_infos(task)
                self._finish(task, ACTION_NONE, "server dry run: the %s would be accepted%s" % (
                    "eviction" if method == "evict" else "deletion",
                    "; " + "; ".join(pdb_text(info) for info in infos) if infos else ""), now)
                return
            if method == "delete" and task.method == "evict":
                task.method = "delete"   # the namespace-terminating fallback
            task.state = PodTask.WAITING
            self._want_poll(now)
            return
        if kind == GONE:
            self._finish(task, ACTION_WAITED, "already gone from the node (%s on %s)"
                         % (outcome.status, "eviction" if method == "evict" else "delete"), now)
            return
        if kind == BUDGET:
            if self.dry_run:
                self._finish(task, ACTION_NONE, "server dry run: the eviction would be refused now: %s"
                             % outcome.message, now, pdb=self._pdb_infos(task))
                return
            task.budget_blocked = True
            for key in task.pdbs:
                self.budget[key] = 0
            task.state = PodTask.QUEUED
            delay = HELD_FALLBACK_SECONDS if self._budget_known(task) else self.retry_delay
            task.not_before = now + delay * (0.8 + 0.4 * random.random())
            self._want_poll(now)
            return
        if kind == MULTIPLE_PDBS:
            names = ", ".join("%s/%s" % key for key in task.pdbs) or "see kubectl get pdb -n %s" % task.key[0]
            self._finish(task, ACTION_FAILED, "covered by more than one PodDisruptionBudget (%s); the "
                         "eviction API refuses such pods: make the PDB selectors disjoint, or set "
                         "disable_eviction: true to delete it without checking budgets" % names, now,
                         pdb=self._pdb_infos(task))
            return
        if kind == NAMESPACE_TERMINATING and method == "evict":
            # An eviction in a terminating namespace never succeeds; delete it as kubectl does.
            task.state = PodTask.QUEUED
            task.not_before = now
            task.fallback_delete = True
            task.method = "delete"
            return
        if kind == TRANSIENT:
            task.state = PodTask.QUEUED
            task.not_before = now + (outcome.retry_after or transient_backoff(task.attempts))
            return
        self._finish(task, ACTION_FAILED, "%s refused (%s): %s" % (
            "eviction" if method == "evict" else "delete", outcome.status, outcome.message), now)

    def _pdb_infos(self, task):
        if not self.pdbs:
            return []
        return [describe_pdb(self.pdbs[key]) for key in task.pdbs if key in self.pdbs]

    # polling ---------------------------------------------------------------------------------
    def _want_poll(self, now):
        if self.next_poll is None:
            self.poll_interval = POLL_MIN_SECONDS
            self.next_poll = now + self.poll_interval

    def _poll(self, tasks, now):
        waiting = [t for t in tasks if t.state == PodTask.WAITING]
        progressed = False
        if waiting:
            try:
                unfinished = (self.api.list_node_pod_metadata(self.node, unfinished=True)
                              if any(t.method == "wait_completed" for t in waiting) else None)
                listed = (self.api.list_node_pod_metadata(self.node)
                          if any(t.method != "wait_completed" for t in waiting) else [])
            except Exception as exc:  # noqa: BLE001 - classified: stop, or try again at the next poll
                listed = None
                self.poll_failures += 1
                self.poll_error = describe_api_error(exc, "pods on node/%s" % self.node)
                if isinstance(exc, ApiException) and getattr(exc, "status", None) in STOP_STATUSES:
                    # A token that expired mid-drain (401) or rights taken away (403) will not come
                    # back by waiting: say so now instead of at the timeout.
                    self.stopped = self.poll_error
                    return
            if listed is not None:
                self.poll_failures = 0
                self.polls += 1
                present = {}
                for meta in listed:
                    present[(meta.get("namespace"), meta.get("name"))] = meta
                running = dict(((meta.get("namespace"), meta.get("name")), meta) for meta in unfinished or ())
                wall = self.wall_clock()
                for task in waiting:
                    meta = (running if task.method == "wait_completed" else present).get(task.key)
                    if meta is None or meta.get("uid") != task.uid:
                        self._finish(task, self._done_action(task), task.reason or self._gone_reason(task), now)
                        progressed = True
                    elif self.skip_wait and _pods.past_skip_wait({"metadata": meta}, self.skip_wait, wall):
                        self._finish(task, self._done_action(task),
                                     "still terminating after skip_wait_for_delete_timeout (%ds); not waited for"
                                     % self.skip_wait, now)
                        progressed = True
        if any(t.state == PodTask.QUEUED and t.budget_blocked for t in tasks) and self.pdbs is not None:
            before = dict(self.budget)
            self._refresh_pdbs(tasks)
            progressed = progressed or any(self.budget.get(k, 0) > before.get(k, 0) for k in self.budget)
        held = any(t.state == PodTask.QUEUED and t.budget_blocked for t in tasks)
        self.poll_interval = next_poll_interval(self.poll_interval, progressed,
                                                BUDGET_POLL_SECONDS if held else POLL_MAX_SECONDS)
        active = held or any(t.state == PodTask.WAITING for t in tasks)
        self.next_poll = now + self.poll_interval if active else None

    def _gone_reason(self, task):
        if task.method == "wait":
            return "was already terminating; gone now"
        if task.method == "wait_completed":
            return "finished or gone, as its label %s=wait-completed asks (not evicted)" % CAPI_DRAIN
        return "%s and gone from the node" % ("deleted" if task.method == "delete" else "evicted")

    # the loop --------------------------------------------------------------------------------
    def _dispatchable(self, task, now):
        if task.state != PodTask.QUEUED:
            return False
        if not self._budget_known(task):
            return task.not_before <= now
        if self._budget_allows(task):
            # Room in the budget: go now, even before a 429's retry time, but not in a hot loop
            # when the snapshot says yes and the server keeps saying no (stale PDB status).
            if task.budget_blocked:
                return task.last_attempt is None or now - task.last_attempt >= MIN_RETRY_SPACING
            return task.not_before <= now
        if not task.budget_blocked:
            # Our books say the budget is spent: hold the pod instead of collecting a 429.
            task.budget_blocked = True
            task.not_before = max(task.not_before, now + HELD_FALLBACK_SECONDS)
            self._want_poll(now)
        # Try anyway now and then, in case the snapshot is wrong.
        return task.not_before <= now

    def run(self, tasks):
        """Drive every task to DONE or to the deadline; returns the per-pod results."""
        start = self.clock()
        for task in tasks:
            task.started = start
            if task.method in ("wait", "wait_completed"):
                task.state = PodTask.WAITING
                self._want_poll(start)
        inflight = {}
        pool = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="drain")
        try:
            while True:
                now = self.clock()
                for future in [f for f in inflight if f.done()]:
                    task, method = inflight.pop(future)
                    self._handle(task, method, future.result(), now)
                if now >= self.deadline:
                    break
                for task in tasks:
                    if len(inflight) >= self.max_concurrency:
                        break
                    if self._dispatchable(task, now):
                        method = "delete" if task.method == "delete" else "evict"
                        self._take_budget(task)
                        task.state = PodTask.INFLIGHT
                        task.attempts += 1
                        task.last_attempt = now
                        inflight[pool.submit(self._attempt, task, method)] = (task, method)
                if self.next_poll is not None and now >= self.next_poll:
                    self._poll(tasks, now)
                    now = self.clock()
                    if self.stopped:
                        break
                if not inflight and all(t.state == PodTask.DONE for t in tasks):
                    break
                if self.next_node_check is None:
                    self.next_node_check = start + NODE_CHECK_SECONDS
                elif now >= self.next_node_check:
                    self.next_node_check = now + NODE_CHECK_SECONDS
                    if self._node_is_gone():
                        self.node_deleted = True
                        break
                wake = [self.deadline]
                if self.next_poll is not None:
                    wake.append(self.next_poll)
                wake.extend(t.not_before for t in tasks if t.state == PodTask.QUEUED and t.not_before > now)
                timeout = max(0.0, min(wake) - now)
                if inflight:
                    wait(list(inflight), timeout=timeout, return_when=FIRST_COMPLETED)
                elif timeout > 0:
                    time.sleep(timeout)
        finally:
            try:
                pool.shutdown(wait=False, cancel_futures=True)
            except TypeError:  # Python < 3.9
                pool.shutdown(wait=False)
        end = self.clock()
        if self.stopped:
            for task in tasks:
                if task.state != PodTask.DONE:
                    self._finish(task, ACTION_FAILED, "not confirmed gone: the drain stopped (%s)" % self.stopped, end)
        elif self.node_deleted:
            for task in tasks:
                if task.state != PodTask.DONE:
                    self._finish(task, ACTION_FAILED, "still on node/%s when the node was deleted; left to the "
                                 "pod garbage collector" % self.node, end)
        elif any(t.state != PodTask.DONE for t in tasks):
            self._timeout(tasks, end)
        return [task.result(end) for task in tasks]

    def _timeout(self, tasks, now):
        if self.pdbs is not None and any(t.budget_blocked for t in tasks if t.state != PodTask.DONE):
            self._refresh_pdbs(tasks)
        for task in tasks:
            if task.state == PodTask.DONE:
                continue
            if task.state == PodTask.WAITING:
                if task.method == "wait":
                    reason = "was already terminating; still on the node at the timeout"
                elif task.method == "wait_completed":
                    reason = ("labelled %s=wait-completed: not evicted, and still running at the timeout; let it "
                              "finish (or raise timeout), or set ignore_opt_outs: [cluster-api] to evict it"
                              % CAPI_DRAIN)
                else:
                    reason = "%s %ds before the timeout but still on the node (terminating)" % (
                        "deleted" if task.method == "delete" else "evicted",
                        int(round(now - (task.accepted_at or task.started))))
                if self.poll_failures:
                    reason += "; the last %d poll(s) of the node's pods failed: %s" % (self.poll_failures, self.poll_error)
                self._finish(task, ACTION_FAILED, reason, now)
            elif task.budget_blocked:
                infos = self._pdb_infos(task)
                if infos:
                    why = "; ".join(pdb_text(info) for info in infos)
                else:
                    why = task.last.message if task.last else "a PodDisruptionBudget"
                if task.attempts:
                    reason = "eviction refused until the timeout by %s" % why
                else:
                    # Never sent: the budget was spent every time we looked, and the server
                    # decides with the same PDB status.
                    reason = "held back until the timeout, no disruption allowed by %s" % why
                self._finish(task, ACTION_FAILED, reason, now, pdb=infos)
            elif task.state == PodTask.INFLIGHT:
                self._finish(task, ACTION_FAILED, "request still in flight at the timeout", now)
            elif task.last is not None:
                self._finish(task, ACTION_FAILED, "not done at the timeout; last answer: %s %s"
                             % (task.last.status, task.last.message), now)
            else:
                self._finish(task, ACTION_FAILED, "not attempted before the timeout", now)


# --- talking to the API server ----------------------------------------------------------------

class DrainApi:
    """The handful of calls a drain makes, each one request (lists page through ``continue``),
    over ``_k8s_client.RawApi`` (made with ``retries=False``: the engine retries by its own rules)."""

    def __init__(self, raw, deadline):
        self.raw = raw
        self.deadline = deadline

    def _timeout(self):
        return request_timeout(self.deadline)

    def _get(self, path, count_as):
        """True when the object exists, False on 404."""
        status, body, headers = self.raw.request("GET", path, timeout=self._timeout(), count_as=count_as)
        if status == 404:
            return False
        if not 200 <= status < 300:
            raise api_exception(status, body, headers)
        return True

    def list_node_pods(self, node, label_selector=None):
        return pods_on_node(self.raw, node, timeout=self._timeout(), label_selector=label_selector)

    def list_node_pod_metadata(self, node, unfinished=False):
        """Names and UIDs of the node's pods (``unfinished``: only those not Succeeded or Failed)."""
        items = pods_on_node(self.raw, node, timeout=self._timeout(), metadata_only=True,
                             field_selector=UNFINISHED if unfinished else None)
        return [item.get("metadata") or {} for item in items]

    def list_pdbs(self):
        return self.raw.list_all("/apis/policy/v1/poddisruptionbudgets", timeout=self._timeout(),
                                 count_as="list pdbs")

    def get_node(self, name):
        """The Node, or None when it is not found."""
        status, body, headers = self.raw.request("GET", api_path("/api/v1/nodes", name), timeout=self._timeout(),
                                                 count_as="get node")
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise api_exception(status, body, headers)
        return body if isinstance(body, dict) else {}

    def daemonset_exists(self, namespace, name):
        return self._get(api_path("/apis/apps/v1/namespaces", namespace, "daemonsets", name), "get daemonset")

    def evict(self, namespace, name, body):
        status, answer, _headers = self.raw.request(
            "POST", api_path("/api/v1/namespaces", namespace, "pods", name, "eviction"), body=body,
            timeout=self._timeout(), count_as="evict")
        return classify_response(status, answer)

    def delete(self, namespace, name, options):
        status, answer, _headers = self.raw.request(
            "DELETE", api_path("/api/v1/namespaces", namespace, "pods", name), body=options,
            timeout=self._timeout(), count_as="delete")
        return classify_response(status, answer)
