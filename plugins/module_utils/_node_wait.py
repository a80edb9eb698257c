# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for a node (module k8s_node_wait): what is wanted, the poll loop, and the result.

``wait_for_node`` polls the API and hands each observation (the Node dict, or None when the node
object does not exist, as during a reimage) to ``observe``, which updates a ``WaitState`` carried
across polls and says which wishes are still unmet; ``observe`` and the ``describe_*`` functions
are pure (they neither sleep nor talk to the API). ``wanted_state`` checks the module's options
and ``wait_result`` turns the outcome into the module's result, or its failure.

Why "was NotReady first" also looks at ``lastTransitionTime``: a node that reboots faster than
the node controller's grace period may never be seen NotReady by a poller, and a short blip can
fall between two polls. A Ready condition whose ``lastTransitionTime`` moved past the one seen on
the first poll proves a transition happened, whether a poll saw it or not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._api_objects import status_condition
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._lease import parse_time
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import read_node
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import is_unschedulable, node_ready_status
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._retry import poll_until

CONDITION_STATUSES = ("True", "False", "Unknown")
ABSENT = "absent"  # pseudo status of Ready when the node object does not exist


def node_conditions(node):
    """The node's conditions as returned to the user (snake_case keys, every condition)."""
    out = []
    for cond in ((node or {}).get("status") or {}).get("conditions") or []:
        out.append({
            "type": cond.get("type"),
            "status": cond.get("status") or "Unknown",
            "reason": cond.get("reason"),
            "message": cond.get("message"),
            "last_heartbeat_time": cond.get("lastHeartbeatTime"),
            "last_transition_time": cond.get("lastTransitionTime"),
        })
    return out


def ready_status(node):
    """``True``/``False``/``Unknown`` from the Ready condition; ``absent`` when there is no node."""
    if node is None:
        return ABSENT
    return node_ready_status(node)


def boot_id(node):
    return (((node or {}).get("status") or {}).get("nodeInfo") or {}).get("bootID") or None


def node_uid(node):
    return ((node or {}).get("metadata") or {}).get("uid")


def validate_wanted(wanted):
    """Error texts for a wanted-state dict (empty when it is fine)."""
    errors = []
    for index, cond in enumerate(wanted.get("conditions") or []):
        if not cond.get("type"):
            errors.append("conditions[%d]: type is required" % index)
        if cond.get("status", "True") not in CONDITION_STATUSES:
            errors.append("conditions[%d]: status must be one of %s, not %r"
                          % (index, ", ".join(CONDITION_STATUSES), cond.get("status")))
    if wanted.get("require_not_ready_first") and not wanted.get("ready", True):
        errors.append("require_not_ready_first needs ready=true (it waits for NotReady, then Ready)")
    if wanted.get("boot_id_changed_from") == "":
        errors.append("boot_id_changed_from must not be empty (omit it to not check the boot ID)")
    return errors


WANTED_OPTIONS = ("ready", "boot_id_changed_from", "require_not_ready_first", "conditions")


def wanted_state(params):
    """The wanted-state dict ``observe`` takes, from the module's options; raises ``ModuleFailure``
    naming every bad option (so nothing is read with them)."""
    wanted = {key: params[key] for key in WANTED_OPTIONS}
    errors = validate_wanted(wanted)
    if params["timeout"] < 0:
        errors.append("timeout must not be negative")
    if params["poll_interval"] < 1:
        errors.append("poll_interval must be at least 1")
    if errors:
        raise ModuleFailure("; ".join(errors))
    return wanted


class WaitState(object):
    """What the wait has learned so far; ``observe`` updates it."""

    def __init__(self):
        self.polls = 0
        self.seen_not_ready = False
        self.first_ready_transition = None  # Ready.lastTransitionTime on the first poll that had one
        self.transition_proven = False
        self.last_ready = None
        self.last_boot_id = None
        self.last_uid = None
        self.last_node = None
        self.transitions = []

    def _record(self, elapsed, what, **details):
        entry = {"elapsed_seconds": round(elapsed, 1), "event": what}
        entry.update(details)
        self.transitions.append(entry)


def observe(state, node, wanted, elapsed):
    """Fold one observation into ``state``; return the list of unmet wishes (empty: done).

    ``wanted``: ``ready`` (bool), ``boot_id_changed_from`` (str or None), ``require_not_ready_first``
    (bool), ``conditions`` (list of ``{type, status}``). ``elapsed`` is seconds since the wait began.
    """
    state.polls += 1
    status = ready_status(node)
    ready_cond = status_condition(node, "Ready") or {}
    transition = parse_time(ready_cond.get("lastTransitionTime"))

    if state.polls == 1:
        state._record(elapsed, "first seen", ready=status, reason=ready_cond.get("reason"),
                      boot_id=boot_id(node))
    elif status != state.last_ready:
        state._record(elapsed, "Ready %s -> %s" % (state.last_ready, status),
                      ready=status, reason=ready_cond.get("reason"))
    if status != "True":
        state.seen_not_ready = True
    if transition is not None:
        if state.first_ready_transition is None:
            state.first_ready_transition = transition
        elif transition > state.first_ready_transition:
            state.transition_proven = True

    current_boot = boot_id(node)
    if node is not None and current_boot and state.last_boot_id and current_boot != state.last_boot_id:
        state._record(elapsed, "bootID %s -> %s" % (state.last_boot_id, current_boot), boot_id=current_boot)
    uid = node_uid(node)
    if uid and state.last_uid and uid != state.last_uid:
        state._record(elapsed, "node object recreated (uid %s -> %s)" % (state.last_uid, uid))

    state.last_ready = status
    if node is not None:
        state.last_node = node
        state.last_boot_id = current_boot or state.last_boot_id
        state.last_uid = uid or state.last_uid

    unmet = []
    if node is None:
        unmet.append("the node object to exist")
        return unmet
    if wanted.get("ready", True):
        if status != "True":
            unmet.append("Ready=True (is %s)" % status)
        elif wanted.get("require_not_ready_first") and not (state.seen_not_ready or state.transition_proven):
            unmet.append("the node to go NotReady first (it has been Ready on every poll so far, and "
                         "its Ready lastTransitionTime has not moved)")
    elif status == "True":
        unmet.append("Ready to be False or Unknown (is True)")
    previous_boot = wanted.get("boot_id_changed_from")
    if previous_boot:
        if not current_boot:
            unmet.append("a bootID different from %s (the node reports none)" % previous_boot)
        elif current_boot == previous_boot:
            unmet.append("a bootID different from %s (still the same)" % previous_boot)
    for cond in wanted.get("conditions") or []:
        want_status = cond.get("status", "True")
        seen = (status_condition(node, cond["type"]) or {}).get("status") or "missing"
        if seen != want_status:
            unmet.append("%s=%s (is %s)" % (cond["type"], want_status, seen))
    return unmet


def describe_last_seen(state, name):
    """What the wait saw on its last poll, every condition with its times, for the timeout message."""
    if state.polls == 0:
        return "node/%s was never read" % name
    if state.last_ready == ABSENT:
        seen = "node/%s did not exist on the last poll" % name
        if state.last_node is not None:
            seen += " (before that: %s)" % _conditions_text(state.last_node)
        else:
            seen += " nor on any before it; `kubectl get nodes` lists the names"
        return seen
    return "node/%s: %s" % (name, _conditions_text(state.last_node))


def _conditions_text(node):
    parts = []
    for cond in node_conditions(node):
        text = "%s=%s" % (cond["type"], cond["status"])
        details = []
        if cond["reason"]:
            details.append(cond["reason"])
        if cond["last_heartbeat_time"]:
            details.append("heartbeat %s" % cond["last_heartbeat_time"])
        if cond["last_transition_time"]:
            details.append("since %s" % cond["last_transition_time"])
        if details:
            text += " (%s)" % ", ".join(details)
        parts.append(text)
    if not parts:
        parts.append("no conditions reported")
    parts.append("bootID %s" % (boot_id(node) or "not reported"))
    return "; ".join(parts)


def describe_transitions(state):
    return ", ".join("%ss: %s" % (t["elapsed_seconds"], t["event"]) for t in state.transitions) or "none"


def result_fields(state):
    """Return values about the node from the last observation that had one."""
    node = state.last_node
    return {
        "ready": state.last_ready,
        "conditions": node_conditions(node),
        "boot_id": boot_id(node),
        "uid": node_uid(node),
        "seen_not_ready": state.seen_not_ready or state.transition_proven,
        "transitions": list(state.transitions),
        "polls": state.polls,
        "unschedulable": is_unschedulable(node) if node is not None else None,
    }


def wait_for_node(raw, name, wanted, timeout, poll_interval, check_mode,
                  sleep=time.sleep, clock=time.monotonic):
    """Poll until ``wanted`` holds; ``(met, unmet, state, waited seconds)``. ``raw`` is a
    ``_k8s_client.RawApi``. Check mode reads once and does not wait."""
    state = WaitState()

    def check(poll):
        node = read_node(raw, name, max(poll.deadline, clock() + 5), missing_ok=True)
        unmet = observe(state, node, wanted, poll.elapsed())
        return not unmet, unmet

    met, unmet, poll = poll_until(check, timeout, poll_interval, once=check_mode, sleep=sleep, clock=clock)
    return met, unmet, state, poll.elapsed()


def wait_result(name, outcome, check_mode):
    """What k8s_node_wait returns for the ``outcome`` of ``wait_for_node``; a wait that ran out of
    time (outside check mode) raises ``ModuleFailure`` with what it saw last and still waited for,
    and the same fields."""
    met, unmet, state, waited = outcome
    result = dict(result_fields(state), changed=False, name=name, met=met, unmet=unmet,
                  waited_seconds=round(waited, 1))
    if met or check_mode:
        return result
    result.pop("changed")
    raise ModuleFailure(
        "node/%s: still waiting after %ds for: %s. Last seen: %s. Transitions: %s"
        % (name, round(waited), "; ".join(unmet), describe_last_seen(state, name), describe_transitions(state)),
        **result)
