# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What k8s_maintenance_lock does: read, take, renew, release or just look at the Lease.

The rules (who may take the Lease, the bodies written, kured's annotation) are the pure functions
of ``_lease``; this drives them against the API server: ``LockClient`` reads and writes the Lease
and kured's DaemonSet as raw JSON, ``LockTask`` waits for a busy lock and writes with the
``resourceVersion`` it read, and ``run_lock`` is the whole module run.

Failures are raised as ``ModuleFailure`` (``_k8s_module``); API errors as the client raises them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import datetime
import functools
import getpass
import os
import socket
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    K8sAccessError,
    api_exception,
    api_path,
    describe_api_error,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _lease
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._retry import Conflicts, Poll

_ACTION_NAMES = {
    _lease.CREATE: "created",
    _lease.ACQUIRE: "acquired",
    _lease.BREAK: "broke",
    _lease.RENEW: "renewed",
    _lease.RELEASE: "released",
    _lease.FORCE_RELEASE: "force_released",
    _lease.NOTHING: "none",
    _lease.BUSY: "busy",
}


def lease_ref(namespace, name):
    """``lease kube-system/kubeops-node-maintenance``: the object every message and failure names."""
    return "lease %s/%s" % (namespace, name)


# ------------------------------------------------------------------------------------------------
# Default holder identity
# ------------------------------------------------------------------------------------------------

_ANSIBLE_COMMANDS = ("ansible", "ansible-playbook", "ansible-console", "ansible-pull")


def _proc_command(pid):
    """Base names of the first two argv words of ``pid`` (a Python script shows as its second)."""
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
        argv = handle.read().split(b"\0")
    return [os.path.basename(a.decode("utf-8", "replace")) for a in argv[:2]]


def _proc_parent(pid):
    with open("/proc/%d/stat" % pid) as handle:
        stat = handle.read()
    return int(stat.rsplit(")", 1)[1].split()[1])


def ansible_run_pid():
    """Pid of the outermost ansible / ansible-playbook process above this one, or None.

    Ansible forks a worker per task from its main process, and workers keep its command line, so the
    outermost match is the run itself: the same for every task of one run.
    """
    found = None
    pid = os.getppid()
    try:
        for _depth in range(32):
            if pid <= 1:
                break
            if any(word in _ANSIBLE_COMMANDS for word in _proc_command(pid)):
                found = pid
            elif found is not None:
                break
            pid = _proc_parent(pid)
    except (IOError, OSError, ValueError, IndexError):
        pass
    return found


def default_holder():
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    run_pid = ansible_run_pid()
    return "%s@%s/ansible-%s" % (user, socket.gethostname(), run_pid if run_pid else os.getpid())


def holder_identity(holder, warn):
    """``holder`` as given, or the default identity (with a warning through ``warn``) when None."""
    if holder is not None:
        return holder
    holder = default_holder()
    warn("holder not given; using %r, which a later run cannot renew or release: pass holder (the "
         "rollout id) to keep the lock across runs" % holder)
    return holder


def check_options(params, holder):
    """Raise ``ModuleFailure`` for option values the API server would refuse or that make no sense."""
    for option in ("duration_seconds", "poll_interval"):
        if params[option] < 1:
            raise ModuleFailure("%s must be at least 1, not %d" % (option, params[option]))
    if params["duration_seconds"] > 2147483647:
        raise ModuleFailure("duration_seconds must fit in 32 bits (leaseDurationSeconds is an int32)")
    if not holder.strip():
        raise ModuleFailure("holder must not be empty")


def lock_deadline(started, wait_timeout, timeout):
    """The one monotonic deadline of every request and retry: ``started`` + ``wait_timeout`` (the
    time the task may wait for a busy lock) + ``timeout`` (at least 1 s, the module's own API work)."""
    return started + max(0, wait_timeout) + max(1, timeout)


# ------------------------------------------------------------------------------------------------
# API access: raw JSON, so MicroTime values go out exactly as formatted
# ------------------------------------------------------------------------------------------------

def raw_request(raw, method, path, body=None, timeout=None):
    """``(object dict, Date header)`` for one request over ``raw`` (a ``_k8s_client.RawApi``).

    The body is sent as it is: the generated client would turn it into model objects and back,
    writing times with ``isoformat()``, which drops the fraction at a whole second; the API server
    rejects such a MicroTime. Raises ``ApiException`` for non-2xx answers (with the answer's headers,
    so a 404 still tells the server's time).
    """
    status, data, headers = raw.request(method, path, body=body, timeout=timeout)
    if not 200 <= status <= 299:
        raise api_exception(status, data, headers)
    return data, (headers or {}).get("Date")


def _error_date(exc):
    headers = getattr(exc, "headers", None) or {}
    try:
        return headers.get("Date")
    except AttributeError:
        return None


def _now(date_header):
    return _lease.server_now(date_header, datetime.datetime.now(_lease.UTC))


class LockClient(object):
    """Reads and writes of the Lease and kured's DaemonSet, transient errors retried until
    ``deadline`` (a ``time.monotonic()`` value shared by every request of the run)."""

    def __init__(self, raw, name, namespace, deadline):
        self.raw = raw
        self.name = name
        self.namespace = namespace
        self.deadline = deadline
        self.ref = lease_ref(namespace, name)
        self.collection_path = api_path("/apis/coordination.k8s.io/v1/namespaces", namespace, "leases")
        self.path = api_path(self.collection_path, name)

    def _call(self, method, path, body=None, ref=None):
        return retry_transient(
            lambda: raw_request(self.raw, method, path, body, request_timeout(self.deadline)),
            deadline=self.deadline, describe=ref or self.ref)

    def read(self):
        """``(lease or None, server now)``."""
        try:
            lease, date = self._call("GET", self.path)
        except ApiException as exc:
            if exc.status == 404:
                return None, _now(_error_date(exc))
            raise
        return lease, _now(date)

    def create(self, body):
        return self._call("POST", self.collection_path, body)[0]

    def replace(self, body):
        return self._call("PUT", self.path, body)[0]

    def read_kured(self, name, namespace, now):
        ref = "daemonset %s/%s" % (namespace, name)
        try:
            daemonset, _date = self._call(
                "GET", api_path("/apis/apps/v1/namespaces", namespace, "daemonsets", name), ref=ref)
        except ApiException as exc:
            if exc.status == 404:
                return dict(_lease.parse_kured_lock({}, now), daemonset=None)
            if exc.status == 403:
                raise K8sAccessError(
                    "%s; or set kured_check=false if kured is not used in this cluster"
                    % describe_api_error(exc, ref), status=403, cause=exc)
            raise
        annotations = (daemonset.get("metadata") or {}).get("annotations") or {}
        return dict(_lease.parse_kured_lock(annotations, now), daemonset="%s/%s" % (namespace, name))


# ------------------------------------------------------------------------------------------------
# Who keeps the lock busy, as data
# ------------------------------------------------------------------------------------------------

def busy_fields(reason, lease, kured):
    """``busy_reason``, ``busy_holder`` and ``busy_until`` for a lock that ``reason`` (V(lease),
    V(kured) or None when it is not busy) keeps from being taken.

    For the Lease: its holder and when its claim runs out (None when it never does). For kured:
    the nodes it holds its reboot lock for, comma-separated, and when the last of those locks runs
    out (None when one has no TTL or the annotation could not be read, then also no holder).
    """
    holder = until = None
    if reason == "lease":
        holder = _lease.lease_holder(lease)
        until = _lease.format_time(_lease.lease_expiry(lease))
    elif reason == "kured" and not kured.get("error"):
        held = [lock for lock in kured["locks"] if lock["held"]]
        holder = ", ".join(lock["node_id"] for lock in held) or None
        if held and all(lock["expires_at"] for lock in held):
            until = max(lock["expires_at"] for lock in held)  # same RFC 3339 form: text order is time order
    return {"busy_reason": reason, "busy_holder": holder, "busy_until": until}


class _Look(collections.namedtuple("_Look", "lease now action previous kured busy")):
    """One look at the lock: the Lease, the server's clock, what ``state=present`` would do (and the
    previous holder it names), kured's lock (None unless checked) and ``busy`` (``(reason,
    description)``, or None when ``holder`` could take the lock)."""

    __slots__ = ()

    def extra(self):
        return {"kured": self.kured} if self.kured is not None else {}

    def busy_result(self):
        return busy_fields(self.busy[0] if self.busy else None, self.lease, self.kured)


# ------------------------------------------------------------------------------------------------
# The task
# ------------------------------------------------------------------------------------------------

class LockTask(object):
    """One ``state`` of the module over a ``LockClient``; ``params`` are the module's options.

    ``warnings`` collects what the task has to say once it succeeded; failures raise ``ModuleFailure``.
    """

    def __init__(self, params, client, holder, check_mode=False, sleep=time.sleep, clock=time.monotonic,
                 started=None):
        self.params = params
        self.client = client
        self.holder = holder
        self.check_mode = check_mode
        self.sleep = sleep
        self.clock = clock
        self.started = clock() if started is None else started
        self.warnings = []
        self.waited_for = []

    def waited(self):
        return round(self.clock() - self.started, 1)

    def waited_for_fields(self):
        return [dict((k, entry[k]) for k in ("reason", "holder")) for entry in self.waited_for]

    def note_wait(self, busy, lease, now):
        """Remember who kept the lock busy (each holder once, in order, as first seen) for the output."""
        if busy[0] == "kured":
            holder, description = "kured", busy[1]
        else:
            holder = _lease.lease_holder(lease)
            description = "%s held by %s" % (self.client.ref, _lease.describe_holder(lease, now))
        if not self.waited_for or self.waited_for[-1]["holder"] != holder:
            self.waited_for.append({"reason": busy[0], "holder": holder, "description": description})

    def result(self, action, previous, lease, now, changed, done=True, **extra):
        """The module's result; ``done=False`` (state=query) reports ``action`` as what
        ``state=present`` would do, without claiming it was done."""
        if self.waited_for:
            # A module prints nothing while it runs: say afterwards whom the task waited for.
            self.warnings.append("waited %ss for the maintenance lock: %s (as first seen)" % (
                self.waited(), "; then ".join(entry["description"] for entry in self.waited_for)))
        out = {
            "changed": changed,
            "holder": self.holder,
            "outcome": _ACTION_NAMES.get(action, action),
            "acquired": done and action in (_lease.CREATE, _lease.ACQUIRE, _lease.BREAK),
            "renewed": done and action == _lease.RENEW,
            "released": done and action in (_lease.RELEASE, _lease.FORCE_RELEASE),
            "previous_holder": previous,
            "lease": _lease.lease_summary(lease, now),
            "waited_seconds": self.waited(),
            "waited_for": self.waited_for_fields(),
        }
        out.update(extra)
        return out

    def conflicts(self):
        """The policy for a write the API server refused because the Lease changed since it was
        read (``_retry.Conflicts``), within the run's deadline."""
        return Conflicts(self.client.ref, "the Lease", "the lock was written",
                         lock_deadline(self.started, self.params["wait_timeout"], self.params["timeout"]),
                         sleep=self.sleep, clock=self.clock)

    def failure(self, msg, **extra):
        return ModuleFailure(msg, holder=self.holder, waited_seconds=self.waited(),
                             waited_for=self.waited_for_fields(), **extra)

    def look(self):
        """Read the Lease (and kured's DaemonSet when ``kured_check``) and judge whether ``holder``
        could take the lock now."""
        params = self.params
        lease, now = self.client.read()
        action, previous = _lease.decide_acquire(lease, self.holder, now, params["break_expired"])
        kured = None
        if params["kured_check"]:
            kured = self.client.read_kured(params["kured_daemonset"], params["kured_namespace"], now)
        busy = None
        if action == _lease.BUSY:
            busy = ("lease", "%s is held by %s" % (self.client.ref, _lease.describe_holder(lease, now)))
        elif kured and kured["held"] and action != _lease.RENEW:
            busy = ("kured", _lease.describe_kured_lock(kured, kured["daemonset"]))
        return _Look(lease, now, action, previous, kured, busy)

    def query(self):
        """``state=query``: one look, nothing written, never a failure because the lock is busy."""
        look = self.look()
        action = _lease.BUSY if look.busy else look.action  # busy for kured too, with the Lease free
        result = self.result(action, look.previous, look.lease, look.now, False, done=False, **look.extra())
        result.update(look.busy_result(), available=look.busy is None, waited_seconds=0.0)
        return result

    def acquire(self):
        params = self.params
        wait = Poll(params["wait_timeout"], max(1, params["poll_interval"]), sleep=self.sleep, clock=self.clock,
                    started=self.started)
        conflicts = self.conflicts()
        while True:
            look = self.look()
            lease, now, action, busy = look.lease, look.now, look.action, look.busy
            if action == _lease.RENEW and look.kured and look.kured["held"]:
                self.warnings.append("renewing the lock although %s"
                                     % _lease.describe_kured_lock(look.kured, look.kured["daemonset"]))
            extra = look.extra()
            if busy:
                if wait.wait(before=functools.partial(self.note_wait, busy, lease, now)):
                    continue
                hint = ("; waited %ss (wait_timeout)" % self.waited()) if params["wait_timeout"] > 0 else \
                    "; set wait_timeout to wait for it"
                if busy[0] == "lease" and not params["break_expired"] and _lease.lease_expired(lease, now):
                    hint += "; its claim has expired, break_expired=true would take it over"
                elif busy[0] == "lease":
                    hint += ("; if that rollout died, release it with state=absent force=true, "
                             "or wait until it expires")
                extra.update(look.busy_result())
                raise self.failure("cannot take the maintenance lock: %s%s" % (busy[1], hint),
                                   previous_holder=_lease.lease_holder(lease),
                                   lease=_lease.lease_summary(lease, now), **extra)
            if action == _lease.BREAK:
                self.warnings.append(
                    "took over %s from %s, whose claim had expired" % (
                        self.client.ref, _lease.describe_holder(lease, now)))
            body = _lease.acquire_body(lease, action, self.holder, params["duration_seconds"], now,
                                       params["name"], params["namespace"])
            if self.check_mode:
                return self.result(action, look.previous, body, now, True, **extra)
            try:
                written = self.client.create(body) if action == _lease.CREATE else self.client.replace(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                conflicts.again(exc)  # someone wrote in between (or created it first): look again
                continue
            return self.result(action, look.previous, written, now, True, **extra)

    def renew(self):
        """Renew the lock when ``holder`` holds it, else write nothing: never take it (``acquire``
        does, and may wait for it). ``renewed`` says which; ``outcome`` is what ``state=present``
        would do when it was not renewed."""
        conflicts = self.conflicts()
        while True:
            look = self.look()
            if look.action != _lease.RENEW:
                return self.result(look.action, look.previous, look.lease, look.now, False, done=False,
                                   **look.extra())
            if look.kured and look.kured["held"]:
                self.warnings.append("renewing the lock although %s"
                                     % _lease.describe_kured_lock(look.kured, look.kured["daemonset"]))
            body = _lease.acquire_body(look.lease, look.action, self.holder, self.params["duration_seconds"],
                                       look.now, self.params["name"], self.params["namespace"])
            if self.check_mode:
                return self.result(look.action, look.previous, body, look.now, True, **look.extra())
            try:
                written = self.client.replace(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                conflicts.again(exc)  # someone wrote in between: look again
                continue
            return self.result(look.action, look.previous, written, look.now, True, **look.extra())

    def release(self):
        conflicts = self.conflicts()
        while True:
            lease, now = self.client.read()
            action, previous = _lease.decide_release(lease, self.holder, self.params["force"])
            if action == _lease.NOTHING:
                return self.result(action, None, lease, now, False)
            if action == _lease.REFUSE:
                raise self.failure("cannot release the maintenance lock: %s is held by %s, not by %r; only its "
                                   "holder releases it (force=true releases it anyway)"
                                   % (self.client.ref, _lease.describe_holder(lease, now), self.holder),
                                   previous_holder=previous, lease=_lease.lease_summary(lease, now))
            if action == _lease.FORCE_RELEASE:
                self.warnings.append("released %s held by %s (force=true)"
                                     % (self.client.ref, _lease.describe_holder(lease, now)))
            body = _lease.release_body(lease, now)
            if self.check_mode:
                return self.result(action, previous, body, now, True)
            try:
                written = self.client.replace(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                conflicts.again(exc)
                continue
            return self.result(action, previous, written, now, True)


def run_lock(raw, params, holder, check_mode, warn, started, sleep=time.sleep, clock=time.monotonic):
    """One run of k8s_maintenance_lock: ``params`` are its options, ``raw`` a ``RawApi``, ``started``
    the monotonic time the module started (``wait_timeout`` and ``timeout`` count from it). Returns
    the result; the task's warnings go to ``warn`` once it succeeded."""
    client = LockClient(raw, params["name"], params["namespace"],
                        lock_deadline(started, params["wait_timeout"], params["timeout"]))
    task = LockTask(params, client, holder, check_mode, sleep=sleep, clock=clock, started=started)
    result = {"present": task.acquire, "absent": task.release, "query": task.query}[params["state"]]()
    for warning in task.warnings:
        warn(warning)
    return result


# The suboptions of k8s_node_maintenance_state's ``renew_lock``: the lock's own options of the same names.
RENEW_LOCK_SPEC = {"type": "dict", "options": {
    "name": {"type": "str", "default": "kubeops-node-maintenance"},
    "namespace": {"type": "str", "default": "kube-system"},
    "holder": {"type": "str", "required": True},
    "duration_seconds": {"type": "int", "default": 1800},
    "kured_check": {"type": "bool", "default": True},
    "kured_daemonset": {"type": "str", "default": "kured"},
    "kured_namespace": {"type": "str", "default": "kube-system"},
}}


def renew_if_held(raw, options, check_mode, warn, started, deadline):
    """``renew_lock`` of k8s_node_maintenance_state: renew the rollout's lock in the same run when
    its holder holds it (``LockTask.renew``); the lock module's result fields."""
    # timeout: the run's own deadline is the one its conflicting writes are redone within
    params = dict(options, break_expired=False, wait_timeout=0, poll_interval=5, timeout=max(1, deadline - started))
    check_options(dict(params, state="present", timeout=60), options["holder"])
    client = LockClient(raw, params["name"], params["namespace"], deadline)
    task = LockTask(params, client, options["holder"], check_mode, started=started)
    result = task.renew()
    for warning in task.warnings:
        warn(warning)
    return result
