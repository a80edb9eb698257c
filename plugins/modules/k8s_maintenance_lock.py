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
  - With O(state=query) the Lease (and kured's lock) is only read, to learn whether O(holder) could
    take the lock now and, when not, who keeps it busy and until when (RV(available),
    RV(busy_reason), RV(busy_holder), RV(busy_until)). Nothing is written and a busy lock is no failure.
  - Unless O(kured_check=false), the lock is not taken while kured holds its reboot lock (the
    C(weave.works/kured-node-lock) annotation on kured's DaemonSet), so a rollout does not start while
    kured reboots a node. kured itself does not know this Lease and may start a reboot while a rollout
    holds it; pause kured for the rollout, or keep its reboot window apart from maintenance windows.
  - Expiry is judged by the API server's clock (the C(Date) header of its answers), so a controller
    whose clock is off does not take over a lock that is still live.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
  - kubeops.node_maintenance.k8s_options.timeout
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
      - V(query) reads the Lease, and kured's lock when O(kured_check=true), and returns what
        V(present) would do now (RV(outcome), RV(available)) and who keeps the lock busy; it writes
        nothing, reports no change and does not wait. O(duration_seconds) and O(force) play no part.
    type: str
    choices: [present, absent, query]
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
      - The module's own API work may take O(timeout) seconds on top of this time.
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
      - Seconds the module's own API work may take on top of O(wait_timeout). Every request, and
        every retry of an API error that may pass (no connection, HTTP 5xx, 429), must end within
        O(wait_timeout) + O(timeout) seconds of the module's start, or the task fails.
      - Values below V(1) count as V(1).
    default: 60
attributes:
  check_mode:
    support: full
    description:
      - Reads the Lease (and kured's DaemonSet) and reports what would happen; writes nothing.
      - O(state=query) writes nothing in any mode.
  diff_mode:
    support: none
    description: Returns the Lease after the task in RV(lease); there is no diff.
notes:
  - Renewing writes a new C(renewTime), so a renewal reports C(changed=true). To treat a rerun as
    unchanged, register the result as C(lock) and set C(changed_when) to C(lock.acquired or lock.released).
  - The identity running the module needs C(get), C(create) and C(update) on C(leases) in
    O(namespace), and C(get) on C(daemonsets) in O(kured_namespace) when O(kured_check=true).
    O(state=query) needs only the C(get)s.
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

- name: Look at the lock without taking it
  kubeops.node_maintenance.k8s_maintenance_lock:
    holder: "rollout-{{ rollout_id }}"
    state: query
  delegate_to: localhost
  run_once: true
  register: lock_state

- name: Say who keeps the lock busy
  ansible.builtin.debug:
    msg: "the maintenance lock is busy ({{ lock_state.busy_reason }}): {{ lock_state.busy_holder }} until {{ lock_state.busy_until }}"
  when: not lock_state.available

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
    - With O(state=query), what O(state=present) would do now, or V(busy) when it could not take the lock.
  returned: success
  type: str
  sample: acquired
available:
  description:
    - Whether O(holder) could take (or renew) the lock now, that is whether O(state=present) would
      succeed without waiting.
  returned: success with O(state=query)
  type: bool
  sample: false
acquired:
  description:
    - Whether the task took the lock (V(created), V(acquired) or V(broke)). V(false) with O(state=query).
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
    - Who held the lock before the task (with O(state=query), who holds it); V(null) when it was
      free or did not exist.
    - On failure because the lock is busy or held by someone else, that holder.
  returned: success, and failure because the lock is busy or held by someone else
  type: str
  sample: rollout-2024-04-28
lease:
  description:
    - The Lease after the task (in check mode, as it would be; on failure, and with O(state=query), as
      last read).
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
  description:
    - Why the lock could not be taken, when the task failed for that reason.
    - With O(state=query), why O(holder) could not take it now; V(null) when it could.
    - V(lease) (another holder's live claim, or an expired one with O(break_expired=false)) or
      V(kured) (kured's reboot lock).
  returned: failure because the lock is busy, and success with O(state=query)
  type: str
  sample: lease
  choices: [lease, kured]
busy_holder:
  description:
    - Who keeps the lock busy. For V(lease), the Lease's holder (C(spec.holderIdentity)). For
      V(kured), the nodes kured holds its reboot lock for, comma-separated (V(null) when its
      annotation could not be read; RV(kured.error) says why).
    - V(null) when the lock is not busy.
  returned: failure because the lock is busy, and success with O(state=query)
  type: str
  sample: rollout-2024-04-28
busy_until:
  description:
    - When the claim that keeps the lock busy runs out, by the API server's clock. For V(lease),
      RV(lease.expires_at) (in the past for an expired claim with O(break_expired=false)); for
      V(kured), when the last of its held locks runs out.
    - V(null) when the lock is not busy, or when the claim never runs out on its own (a Lease without
      times or duration, a kured lock with a TTL of 0, an annotation that cannot be read).
  returned: failure because the lock is busy, and success with O(state=query)
  type: str
  sample: "2024-05-01T10:50:00Z"
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
  description: Seconds spent waiting for a busy lock (V(0) with O(state=query), which does not wait).
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


from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import (
    K8sModule,
    timeout_spec,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._maintenance_lock import (
    check_options,
    holder_identity,
    lease_ref,
    run_lock,
)


def argument_spec():
    return {
        "name": {"type": "str", "default": "kubeops-node-maintenance"},
        "namespace": {"type": "str", "default": "kube-system"},
        "holder": {"type": "str"},
        "state": {"type": "str", "choices": ["present", "absent", "query"], "default": "present"},
        "duration_seconds": {"type": "int", "default": 1800},
        "wait_timeout": {"type": "int", "default": 0},
        "poll_interval": {"type": "int", "default": 5},
        "break_expired": {"type": "bool", "default": True},
        "force": {"type": "bool", "default": False},
        "kured_check": {"type": "bool", "default": True},
        "kured_daemonset": {"type": "str", "default": "kured"},
        "kured_namespace": {"type": "str", "default": "kube-system"},
        "timeout": timeout_spec(60),
    }


def main():
    module = K8sModule("k8s_maintenance_lock", argument_spec())
    params = module.params
    holder = holder_identity(params["holder"], module.warn)
    module.about(lease_ref(params["namespace"], params["name"]), holder=holder)

    def lock():
        check_options(params, holder)
        return run_lock(module.raw, params, holder, module.check_mode, module.warn, module.started)

    module.run(lock)


if __name__ == "__main__":
    main()
