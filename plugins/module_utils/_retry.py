# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting with a deadline, the one way: polls until something holds, and writes redone after a conflict.

- ``Poll`` / ``poll_until(check, timeout=..., interval=...)``: ask again every ``interval`` seconds
  until ``check`` says done, ``timeout`` has passed (the last poll comes at the deadline, never
  after it), or once only (check mode); what ``k8s_node_wait``, ``k8s_cluster_guard`` and the
  maintenance lock's wait for a busy lock do.
- ``Conflicts``: a write guarded by ``resourceVersion`` that the API server refused because the
  object changed since it was read (409) is redone from a fresh read: after a short pause that grows
  with each conflict (20 ms doubling up to 1 s, jittered, so two writers racing in step fall out of
  step), until the deadline; then a ``K8sAccessError`` says the object kept changing and nothing
  was written. Transient errors of each request are ``_k8s_client.retry_transient``'s.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import random
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import K8sAccessError


class Poll:
    """One wait: ``started``, ``deadline`` (monotonic), ``polls`` so far; ``elapsed()``, ``remaining()``."""

    def __init__(self, timeout, interval, sleep=time.sleep, clock=time.monotonic, started=None):
        self.sleep = sleep
        self.clock = clock
        self.started = clock() if started is None else started
        self.deadline = self.started + max(0, timeout)
        self.interval = interval
        self.polls = 0

    def elapsed(self):
        return self.clock() - self.started

    def remaining(self):
        return self.deadline - self.clock()

    def wait(self, before=None):
        """Sleep until the next poll (``interval``, or what is left if less) and return True; return
        False at once when the deadline has passed. ``before()`` is called first when it waits."""
        remaining = self.remaining()
        if remaining <= 0:
            return False
        if before is not None:
            before()
        self.sleep(min(self.interval, remaining))
        return True


def poll_until(check, timeout, interval, once=False, sleep=time.sleep, clock=time.monotonic):
    """Call ``check(poll)`` until it returns ``(True, value)``; ``(done, value)`` of the last call and
    the ``Poll`` (``polls``, ``elapsed()``). ``once``: one call whatever it says (check mode)."""
    poll = Poll(timeout, interval, sleep=sleep, clock=clock)
    while True:
        poll.polls += 1
        done, value = check(poll)
        if done or once or not poll.wait():
            return done, value, poll


def conflict_pause(conflicts):
    """Seconds to pause before the read after the ``conflicts``-th conflicting write."""
    return min(1.0, 0.02 * 2 ** min(conflicts, 6)) * random.uniform(0.5, 1.0)


class Conflicts:
    """The conflicting writes of one task on one object (``ref``, e.g. ``node/worker-3``).

    ``again(exc)`` after a refused write: counts it, raises ``K8sAccessError`` (status 409, ``exc``
    as cause) once ``deadline`` has passed, else pauses; the caller then reads the object again and
    decides again. ``count`` is how many there were.
    """

    def __init__(self, ref, subject, writing, deadline, sleep=time.sleep, clock=time.monotonic):
        self.ref = ref
        self.subject = subject      # "the node", "the Lease"
        self.writing = writing      # "its taints were written", "the lock was written"
        self.deadline = deadline
        self.sleep = sleep
        self.clock = clock
        self.count = 0

    def again(self, exc):
        self.count += 1
        if self.clock() >= self.deadline:
            raise K8sAccessError(
                "%s: %s kept changing while %s (%d conflicting writes); nothing was changed, run the task again"
                % (self.ref, self.subject, self.writing, self.count), status=409, cause=exc)
        self.sleep(conflict_pause(self.count))
