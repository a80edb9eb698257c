#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_maintenance_lock
short_description: Take, renew or release a cluster-wide maintenance lock held in a Kubernetes Lease
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Keeps at most one maintenance rollout at a time per cluster, with a C(coordination.k8s.io/v1)
    Lease as the lock, the same object Kubernetes components use for leader election.
  - The Lease records who holds the lock (C(spec.holderIdentity)), since when (C(acquireTime)), when
    the holder last confirmed it (C(renewTime)) and for how long a confirmation counts
    (C(leaseDurationSeconds)). C(kubectl get lease -n kube-system) shows the holder.
  - Every write carries the C(resourceVersion) that was read, so of two rollouts that try at the same
    moment exactly one wins; the other gets a conflict, reads the Lease again and finds it busy.
  - With O(state=present) the lock is taken when it is free, renewed when O(holder) holds it
    already, taken over when its holder let it expire (O(break_expired)), and otherwise waited for
    up to O(wait_timeout) seconds; after that the task fails, naming the holder and when its claim
    runs out.
  - With O(state=absent) the lock is released, but only by its holder unless O(force) is set.
  - Unless O(kured_check=false), the lock is not taken while kured holds its reboot lock (the
    C(weave.works/kured-node-lock) annotation on kured's DaemonSet), so a rollout does not start while
    kured reboots a node. kured itself does not know this Lease and may start a reboot while a rollout
    holds it; pause kured for the rollout, or keep its reboot window apart from maintenance windows.
  - Expiry is judged by the API server's clock (the C(Date) header of its answers), so a controller
    whose clock is off does not take over a lock that is still live.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
options:
  name:
    description:
      - Name of the Lease.
      - Rollouts that must exclude each other use the same O(name) and O(namespace).
    type: str
    default: kubeops-node-maintenance
  namespace:
    description:
      - Namespace of the Lease. It must exist.
    type: str
    default: kube-system
  holder:
    description:
      - Who holds the lock, written to C(spec.holderIdentity). Renewing and releasing need the same
        value, so pass something stable for the whole rollout, such as the rollout id.
      - When not set, V(<user>@<controller host>/ansible-<pid>) is used, with the process id of the
        C(ansible-playbook) (or C(ansible)) run that started the module when it can be found. That
        value is the same for all tasks of one run, but a re-run gets a new one and cannot renew or
        release the lock of the run before it; the task warns about this.
    type: str
  state:
    description:
      - V(present) takes the lock, or renews it when O(holder) holds it already.
      - V(absent) releases it when O(holder) holds it. Releasing a lock that someone else holds fails,
        unless O(force=true). A Lease that does not exist or that nobody holds is left as it is.
      - A released Lease stays in place with no holder, keeping C(leaseTransitions) as its history.
    type: str
    choices: [present, absent]
    default: present
  duration_seconds:
    description:
      - How long the claim lasts after each take or renewal (C(spec.leaseDurationSeconds)). When the
        holder neither renews nor releases within this time, others may take the lock over
        (O(break_expired)).
      - Choose it longer than the longest step between two renewals of the rollout (a drain, a
        reboot and the wait for the node), or renew between the steps.
    type: int
    default: 1800
  wait_timeout:
    description:
      - Seconds to wait for a busy lock to become free (released, or expired with
        O(break_expired=true)) before failing. V(0) fails at once.
      - The lock is polled every O(poll_interval) seconds; kured's lock is waited for the same way.
    type: int
    default: 0
  poll_interval:
    description:
      - Seconds between two looks at a busy lock while waiting.
    type: int
    default: 5
  break_expired:
    description:
      - Take over a lock whose holder's claim has run out (C(renewTime) + C(leaseDurationSeconds) is
        past), as Kubernetes leader election does. The previous holder is returned in
        RV(previous_holder) and the task warns.
      - With V(false) only a released lock is taken.
      - A Lease without C(renewTime), C(acquireTime) or a positive C(leaseDurationSeconds) never
        expires and is never broken.
    type: bool
    default: true
  force:
    description:
      - With O(state=absent), release the lock even when someone else holds it.
      - Use it to clean up after a rollout that died; a live holder goes on believing it holds the lock.
    type: bool
    default: false
  kured_check:
    description:
      - Refuse to take the lock while kured holds its reboot lock, that is while the
        C(weave.works/kured-node-lock) annotation on the DaemonSet O(kured_namespace)/O(kured_daemonset)
        names a node and its TTL has not run out (a TTL of 0 never runs out).
      - A missing DaemonSet means kured is not installed, which passes. An annotation that cannot be
        read counts as held.
      - A renewal by the current holder is not refused; it warns instead.
    type: bool
    default: true
  kured_daemonset:
    description:
      - Name of kured's DaemonSet.
    type: str
    default: kured
  kured_namespace:
    description:
      - Namespace of kured's DaemonSet.
    type: str
    default: kube-system
  timeout:
    description:
      - Seconds to keep retrying one API request when the API server is unreachable or answers with
        HTTP 5xx or 429.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the Lease (and kured's DaemonSet) and reports what would happen; writes nothing.
  diff_mode:
    support: none
    description: Returns the Lease after the task in RV(lease); there is no diff.
notes:
  - Renewing writes a new C(renewTime), so a renewal reports C(changed=true). To treat a rerun as
    unchanged, register the result as C(lock) and set C(changed_when) to C(lock.acquired or lock.released).
  - The identity running the module needs C(get), C(create) and C(update) on C(leases) in
    O(namespace), and C(get) on C(daemonsets) in O(kured_namespace) when O(kured_check=true).
seealso:
  - module: kubeops.node_maintenance.k8s_node_wait
  - module: kubeops.node_maintenance.k8s_node_drain
  - name: Leases in Kubernetes
    description: What a Lease is and how components use it for locks and leader election.
    link: https://kubernetes.io/docs/concepts/architecture/leases/
  - name: kured
    description: The Kubernetes Reboot Daemon, whose reboot lock this module respects.
    link: https://kured.dev/docs/
"""

EXAMPLES = r"""
- name: Take the maintenance lock for this rollout, waiting up to 10 minutes for another to finish
  kubeops.node_maintenance.k8s_maintenance_lock:
    holder: "rollout-{{ rollout_id }}"
    duration_seconds: 3600
    wait_timeout: 600
  delegate_to: localhost
  run_once: true
  register: lock

- name: Renew it between phases (same holder, so this extends the claim)
  kubeops.node_maintenance.k8s_maintenance_lock:
    holder: "rollout-{{ rollout_id }}"
    duration_seconds: 3600
  delegate_to: localhost
  run_once: true
  changed_when: false

- name: Release it at the end
  kubeops.node_maintenance.k8s_maintenance_lock:
    holder: "rollout-{{ rollout_id }}"
    state: absent
  delegate_to: localhost
  run_once: true

- name: Clean up after a rollout that died, whoever held the lock
  kubeops.node_maintenance.k8s_maintenance_lock:
    holder: "operator-{{ lookup('env', 'USER') }}"
    state: absent
    force: true
  delegate_to: localhost

- name: A lock of its own per node pool, with kured installed under another name
  kubeops.node_maintenance.k8s_maintenance_lock:
    name: maintenance-gpu-pool
    namespace: ops
    holder: "rollout-{{ rollout_id }}"
    kured_daemonset: kured-gpu
    kured_namespace: kured
    break_expired: false
  delegate_to: localhost
"""

RETURN = r"""
holder:
  description: The identity this task used (O(holder) or the default built for it).
  returned: always
  type: str
  sample: rollout-2024-05-01
outcome:
  description:
    - What the task did, or in check mode would do.
    - V(created) (no Lease existed), V(acquired) (it was free), V(broke) (took over an expired
      claim), V(renewed), V(released), V(force_released), or V(none) (nothing to release).
  returned: success
  type: str
  sample: acquired
acquired:
  description: Whether the task took the lock (V(created), V(acquired) or V(broke)).
  returned: success
  type: bool
  sample: true
renewed:
  description: Whether the task renewed a lock O(holder) held already.
  returned: success
  type: bool
  sample: false
released:
  description: Whether the task released the lock.
  returned: success
  type: bool
  sample: false
previous_holder:
  description:
    - Who held the lock before the task; V(null) when it was free or did not exist.
    - On failure because the lock is busy or held by someone else, that holder.
  returned: success, and failure because the lock is busy or held by someone else
  type: str
  sample: rollout-2024-04-28
lease:
  description:
    - The Lease after the task (in check mode, as it would be; on failure, as last read).
    - V(null) when it does not exist.
  returned: success, and failure because the lock is busy or held by someone else
  type: dict
  contains:
    name:
      description: Name of the Lease.
      type: str
      sample: kubeops-node-maintenance
    namespace:
      description: Namespace of the Lease.
      type: str
      sample: kube-system
    resource_version:
      description: C(metadata.resourceVersion).
      type: str
      sample: "48213"
    holder_identity:
      description: C(spec.holderIdentity), V(null) when nobody holds it.
      type: str
      sample: rollout-2024-05-01
    lease_duration_seconds:
      description: C(spec.leaseDurationSeconds).
      type: int
      sample: 1800
    acquire_time:
      description: C(spec.acquireTime), when the current holder took it.
      type: str
      sample: "2024-05-01T10:00:00.000000Z"
    renew_time:
      description: C(spec.renewTime), when the holder last confirmed it.
      type: str
      sample: "2024-05-01T10:20:00.000000Z"
    lease_transitions:
      description: C(spec.leaseTransitions), how many times the holder changed.
      type: int
      sample: 7
    expires_at:
      description: When the holder's claim runs out; V(null) when nobody holds it or it never expires.
      type: str
      sample: "2024-05-01T10:50:00Z"
    expires_in_seconds:
      description: Seconds until RV(lease.expires_at) by the API server's clock (negative when past).
      type: int
      sample: 1799
busy_reason:
  description: Why the lock could not be taken, when the task failed for that reason.
  returned: failure because the lock is busy
  type: str
  sample: lease
  choices: [lease, kured]
kured:
  description:
    - What kured's DaemonSet said, when O(kured_check=true) and it was read.
  returned: when O(kured_check=true)
  type: dict
  contains:
    daemonset:
      description: V(<namespace>/<name>) of the DaemonSet, or V(null) when it does not exist.
      type: str
      sample: kube-system/kured
    held:
      description: Whether kured holds its lock.
      type: bool
      sample: false
    holders:
      description: Nodes whose kured holds the lock.
      type: list
      elements: str
      sample: []
    locks:
      description: Each lock entry of the annotation, with C(node_id), C(created), C(ttl_seconds),
        C(expires_at), C(expired), C(held).
      type: list
      elements: dict
    error:
      description: Why the annotation could not be read, if it could not.
      type: str
waited_seconds:
  description: Seconds spent waiting for a busy lock.
  returned: success, and failure because the lock is busy or held by someone else
  type: float
  sample: 12.5
waited_for:
  description:
    - Who kept the lock busy while the task waited, in order, each holder once; empty when it did not
      wait. A task that got the lock after waiting also warns, naming them.
  returned: success, and failure because the lock is busy or held by someone else
  type: list
  elements: dict
  sample: [{reason: lease, holder: rollout-2024-04-28}]
  contains:
    reason:
      description: V(lease) (another holder) or V(kured) (kured's reboot lock).
      type: str
    holder:
      description: The Lease's holder, or V(kured).
      type: str
"""

import copy
import datetime
import getpass
import os
import socket
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    K8S_AUTH_ARG_SPEC,
    ApiException,
    K8sAccessError,
    RawApi,
    api_exception,
    api_path,
    build_api_client,
    describe_api_error,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _lease

_ACTION_NAMES = {
    _lease.CREATE: "created",
    _lease.ACQUIRE: "acquired",
    _lease.BREAK: "broke",
    _lease.RENEW: "renewed",
    _lease.RELEASE: "released",
    _lease.FORCE_RELEASE: "force_released",
    _lease.NOTHING: "none",
}
# Repeated 409s mean someone keeps writing the Lease under us; give up rather than spin.
MAX_CONFLICTS = 20


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARG_SPEC)
    spec.update(
        name={"type": "str", "default": "kubeops-node-maintenance"},
        namespace={"type": "str", "default": "kube-system"},
        holder={"type": "str"},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        duration_seconds={"type": "int", "default": 1800},
        wait_timeout={"type": "int", "default": 0},
        poll_interval={"type": "int", "default": 5},
        break_expired={"type": "bool", "default": True},
        force={"type": "bool", "default": False},
        kured_check={"type": "bool", "default": True},
        kured_daemonset={"type": "str", "default": "kured"},
        kured_namespace={"type": "str", "default": "kube-system"},
        timeout={"type": "int", "default": 60},
    )
    return spec


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
    """Reads and writes of the Lease and kured's DaemonSet, with transient retries."""

    def __init__(self, raw, name, namespace, timeout):
        self.raw = raw
        self.name = name
        self.namespace = namespace
        self.timeout = max(1, timeout)
        self.ref = "lease %s/%s" % (namespace, name)
        self.collection_path = api_path("/apis/coordination.k8s.io/v1/namespaces", namespace, "leases")
        self.path = api_path(self.collection_path, name)

    def _call(self, method, path, body=None, ref=None):
        deadline = time.monotonic() + self.timeout
        return retry_transient(
            lambda: raw_request(self.raw, method, path, body, request_timeout(deadline)),
            deadline=deadline, describe=ref or self.ref)

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
# The task
# ------------------------------------------------------------------------------------------------

class LockTask(object):
    def __init__(self, module, client, holder, sleep=time.sleep, clock=time.monotonic):
        self.module = module
        self.params = module.params
        self.client = client
        self.holder = holder
        self.sleep = sleep
        self.clock = clock
        self.started = clock()
        self.warnings = []
        self.waited_for = []

    def waited(self):
        return round(self.clock() - self.started, 1)

    def note_wait(self, busy, lease, now):
        """Remember who kept the lock busy (each holder once, in order, as first seen) for the output."""
        if busy[0] == "kured":
            holder, description = "kured", busy[1]
        else:
            holder = _lease.lease_holder(lease)
            description = "%s held by %s" % (self.client.ref, _lease.describe_holder(lease, now))
        if not self.waited_for or self.waited_for[-1]["holder"] != holder:
            self.waited_for.append({"reason": busy[0], "holder": holder, "description": description})

    def result(self, action, previous, lease, now, changed, **extra):
        if self.waited_for:
            # A module prints nothing while it runs: say afterwards whom the task waited for.
            self.warnings.append("waited %ss for the maintenance lock: %s (as first seen)" % (
                self.waited(), "; then ".join(entry["description"] for entry in self.waited_for)))
        out = {
            "changed": changed,
            "holder": self.holder,
            "outcome": _ACTION_NAMES.get(action, action),
            "acquired": action in (_lease.CREATE, _lease.ACQUIRE, _lease.BREAK),
            "renewed": action == _lease.RENEW,
            "released": action in (_lease.RELEASE, _lease.FORCE_RELEASE),
            "previous_holder": previous,
            "lease": _lease.lease_summary(lease, now),
            "waited_seconds": self.waited(),
            "waited_for": [dict((k, entry[k]) for k in ("reason", "holder")) for entry in self.waited_for],
        }
        out.update(extra)
        return out

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, holder=self.holder, waited_seconds=self.waited(),
                              waited_for=[dict((k, e[k]) for k in ("reason", "holder")) for e in self.waited_for],
                              **extra)

    def acquire(self):
        params = self.params
        deadline = self.started + max(0, params["wait_timeout"])
        conflicts = 0
        while True:
            lease, now = self.client.read()
            action, previous = _lease.decide_acquire(lease, self.holder, now, params["break_expired"])
            kured = None
            if params["kured_check"]:
                kured = self.client.read_kured(params["kured_daemonset"], params["kured_namespace"], now)
            busy = None
            if action == _lease.BUSY:
                busy = ("lease", "%s is held by %s" % (self.client.ref, _lease.describe_holder(lease, now)))
            elif kured and kured["held"]:
                text = _lease.describe_kured_lock(kured, kured["daemonset"])
                if action == _lease.RENEW:
                    self.warnings.append("renewing the lock although %s" % text)
                else:
                    busy = ("kured", text)
            extra = {"kured": kured} if kured is not None else {}
            if busy:
                remaining = deadline - self.clock()
                if remaining > 0:
                    self.note_wait(busy, lease, now)
                    self.sleep(min(max(1, params["poll_interval"]), remaining))
                    continue
                hint = ("; waited %ss (wait_timeout)" % self.waited()) if params["wait_timeout"] > 0 else \
                    "; set wait_timeout to wait for it"
                if busy[0] == "lease" and not params["break_expired"] and _lease.lease_expired(lease, now):
                    hint += "; its claim has expired, break_expired=true would take it over"
                elif busy[0] == "lease":
                    hint += ("; if that rollout died, release it with state=absent force=true, "
                             "or wait until it expires")
                self.fail("cannot take the maintenance lock: %s%s" % (busy[1], hint),
                          busy_reason=busy[0], previous_holder=_lease.lease_holder(lease),
                          lease=_lease.lease_summary(lease, now), **extra)
            if action == _lease.BREAK:
                self.warnings.append(
                    "took over %s from %s, whose claim had expired" % (
                        self.client.ref, _lease.describe_holder(lease, now)))
            body = _lease.acquire_body(lease, action, self.holder, params["duration_seconds"], now,
                                       params["name"], params["namespace"])
            if self.module.check_mode:
                return self.result(action, previous, body, now, True, **extra)
            try:
                written = self.client.create(body) if action == _lease.CREATE else self.client.replace(body)
            except ApiException as exc:
                if exc.status == 409 and conflicts < MAX_CONFLICTS:
                    conflicts += 1  # someone wrote in between (or created it first): look again
                    continue
                raise
            return self.result(action, previous, written, now, True, **extra)

    def release(self):
        conflicts = 0
        while True:
            lease, now = self.client.read()
            action, previous = _lease.decide_release(lease, self.holder, self.params["force"])
            if action == _lease.NOTHING:
                return self.result(action, None, lease, now, False)
            if action == _lease.REFUSE:
                self.fail("cannot release the maintenance lock: %s is held by %s, not by %r; only its "
                          "holder releases it (force=true releases it anyway)"
                          % (self.client.ref, _lease.describe_holder(lease, now), self.holder),
                          previous_holder=previous, lease=_lease.lease_summary(lease, now))
            if action == _lease.FORCE_RELEASE:
                self.warnings.append("released %s held by %s (force=true)"
                                     % (self.client.ref, _lease.describe_holder(lease, now)))
            body = _lease.release_body(lease, now)
            if self.module.check_mode:
                return self.result(action, previous, body, now, True)
            try:
                written = self.client.replace(body)
            except ApiException as exc:
                if exc.status == 409 and conflicts < MAX_CONFLICTS:
                    conflicts += 1
                    continue
                raise
            return self.result(action, previous, written, now, True)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    for option in ("duration_seconds", "poll_interval"):
        if params[option] < 1:
            module.fail_json(msg="%s must be at least 1, not %d" % (option, params[option]))
    if params["duration_seconds"] > 2147483647:
        module.fail_json(msg="duration_seconds must fit in 32 bits (leaseDurationSeconds is an int32)")
    holder = params["holder"]
    if holder is not None and not holder.strip():
        module.fail_json(msg="holder must not be empty")
    if holder is None:
        holder = default_holder()
        module.warn(
            "holder not given; using %r, which a later run cannot renew or release: pass holder (the "
            "rollout id) to keep the lock across runs" % holder)
    ref = "lease %s/%s" % (params["namespace"], params["name"])
    try:
        raw = RawApi(build_api_client(params), user_agent="kubeops.node_maintenance/k8s_maintenance_lock")
        client = LockClient(raw, params["name"], params["namespace"], params["timeout"])
        task = LockTask(module, client, holder)
        result = task.acquire() if params["state"] == "present" else task.release()
    except K8sAccessError as exc:
        module.fail_json(msg=exc.message, status=exc.status, holder=holder)
    except ApiException as exc:
        module.fail_json(msg=describe_api_error(exc, ref), status=exc.status, holder=holder)
    for warning in task.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
