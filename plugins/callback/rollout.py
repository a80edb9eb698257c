# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: rollout
type: stdout
short_description: One line per node per phase for the rolling maintenance playbook
version_added: 0.2.0
description:
  - A stdout callback for C(kubeops.node_maintenance.rolling_maintenance) that a person can follow
    during a long rollout. It prints one line per node per finished phase with the phase's duration
    and the node's elapsed time, one line when a node is done or failed with the nodes done, failed
    and left and an estimate of the time left (the mean time of the nodes done so far times the nodes
    left; with batches of several nodes an upper bound), and the play recap at the end.
  - Skipped tasks, successful tasks and the role's bookkeeping are not shown; their warnings are, and
    so are the role's own C(WARNING:) and C(ERROR:) messages (a webhook notification or a metrics
    push that was not delivered), as a line of the node. A failure that stops a
    node is shown in full (its task and result, as the default callback shows it) once, where it
    ends the node. A failure inside a block with a C(rescue) is left to the rescue, which in the
    role records it on the node and fails with what failed and what to do next; then a line with
    the node's recorded phase and how a re-run resumes it. Failures the role judges itself (tasks
    with C(ignore_errors) or C(ignore_unreachable)) are not shown on their own either; the check
    that judges them fails with the explanation.
  - The last line before the recap counts the nodes done, failed (with their names) and not
    reached.
  - The lines come from the node's maintenance record, read as data (the results of
    M(kubeops.node_maintenance.k8s_node_maintenance_state) and the C(phase_record) a module with the
    C(record) option returns after writing the phase (C(phase_records), one per node, of the pre-drain
    checks of a batch), so they say what the cluster records, not what a
    task is named).
  - Enable it with C(ANSIBLE_STDOUT_CALLBACK=kubeops.node_maintenance.rollout) or
    C(stdout_callback = kubeops.node_maintenance.rollout) in C(ansible.cfg). Any other playbook
    run with it shows its failures and recap only. At C(-vv) and more it shows everything the default
    callback shows. AWX and ansible-runner keep their job events whatever the stdout callback.
extends_documentation_fragment:
  - default_callback
  - result_format_callback
requirements:
  - set as stdout callback in configuration
"""

import time

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils._rollout_progress import RolloutProgress

STATE_MODULES = ("kubeops.node_maintenance.k8s_node_maintenance_state", "k8s_node_maintenance_state")
DEBUG_MODULES = ("ansible.builtin.debug", "debug")


def _result_of(result):
    """The task's result dict (``result.result`` from ansible-core 2.19, ``result._result`` before)."""
    data = getattr(result, "result", None)
    if not isinstance(data, dict):
        data = result._result  # pylint: disable=protected-access
    return data


class CallbackModule(DefaultCallback):
    """The default callback with its per-task output replaced by the rollout's progress lines."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "kubeops.node_maintenance.rollout"

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._progress = RolloutProgress(since=time.time())
        # inventory host -> the node its records are about, as k8s_node_maintenance_state named it
        self._node_of_host = {}

    def _everything(self):
        return self._display.verbosity >= 2

    def _say(self, line):
        self._display.display("%s %s" % (time.strftime("%H:%M:%S"), line))

    # --- plays and tasks: no banners, only a line per play ------------------------------------
    def v2_playbook_on_start(self, playbook):
        if self._everything():
            super(CallbackModule, self).v2_playbook_on_start(playbook)

    def v2_playbook_on_play_start(self, play):
        # called once per batch (serial) of the same play
        same_play = self._play is not None and getattr(self._play, "_uuid", None) == getattr(play, "_uuid", None)
        self._play = play
        if self._everything():
            super(CallbackModule, self).v2_playbook_on_play_start(play)
            return
        hosts, batch = self._play_hosts(play)
        nodes = hosts and hosts != ["localhost"]
        if nodes and self._progress.total is None:
            self._progress.total = len(hosts)
        if not same_play:
            self._say("PLAY %s%s" % (play.get_name().strip(), " (%d nodes)" % len(hosts) if nodes else ""))
        if nodes and batch and batch != hosts:
            self._say("batch: %s" % ", ".join(batch))

    @staticmethod
    def _play_hosts(play):
        """The hosts of the whole play and of this batch, or [] when they cannot be read."""
        try:
            play_vars = play.get_variable_manager().get_vars(play=play)
        except Exception:  # pylint: disable=broad-except  # a count is a nicety, never a failure
            return [], []
        return list(play_vars.get("ansible_play_hosts_all") or []), list(play_vars.get("ansible_play_batch") or [])

    def v2_playbook_on_task_start(self, task, is_conditional):
        if self._everything():
            super(CallbackModule, self).v2_playbook_on_task_start(task, is_conditional)

    def v2_playbook_on_handler_task_start(self, task):
        if self._everything():
            super(CallbackModule, self).v2_playbook_on_handler_task_start(task)

    def v2_playbook_on_include(self, included_file):
        if self._everything():
            super(CallbackModule, self).v2_playbook_on_include(included_file)

    def v2_runner_on_start(self, host, task):
        if self._everything():
            super(CallbackModule, self).v2_runner_on_start(host, task)

    # --- results ----------------------------------------------------------------------------
    def v2_runner_on_ok(self, result):
        self._progress_of(result)
        if self._everything():
            super(CallbackModule, self).v2_runner_on_ok(result)
            return
        data = _result_of(result)
        # what a task warns about is never hidden: module warnings as ansible-core shows them, and
        # the role's own "WARNING: ..." / "ERROR: ..." messages (a webhook or a metrics push that was
        # not delivered) as a line of the node
        self._handle_warnings(data)
        if result.task.action in DEBUG_MODULES:
            message = data.get("msg")
            if isinstance(message, str) and message.startswith(("WARNING:", "ERROR:")):
                self._say("%s: %s" % (result.host.get_name(), " ".join(message.split())))

    def _progress_of(self, result):
        data = _result_of(result)
        host = result.host.get_name()
        if result.task.action in STATE_MODULES:
            record = data.get("record")
            if not isinstance(record, dict) or not record:
                return
            node = data.get("name") or host
            self._node_of_host[host] = node
            lines = self._progress.feed(node, record, done_in_rollout=bool(data.get("done_in_rollout")),
                                        resume_phase=data.get("resume_phase"), changed=bool(data.get("changed")))
        elif isinstance(data.get("phase_records"), dict):
            # the pre-drain checks of a batch, run once, wrote each node's phase record (`records`)
            lines = []
            for node, record in data["phase_records"].items():
                if isinstance(record, dict) and record:
                    lines.extend(self._progress.feed(node, record))
        else:
            # a phase's first module wrote the phase record itself (its `record` option); the node is
            # the one this host's record was read for (the role reads it before any phase)
            record = data.get("phase_record")
            if not isinstance(record, dict) or not record:
                return
            lines = self._progress.feed(self._node_of_host.get(host, host), record)
        for line in lines:
            self._say(line)

    def v2_runner_on_skipped(self, result):
        if self._everything():
            super(CallbackModule, self).v2_runner_on_skipped(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if (ignore_errors or _will_be_rescued(result.task)) and not self._everything():
            return
        super(CallbackModule, self).v2_runner_on_failed(result, ignore_errors=ignore_errors)

    def v2_runner_on_unreachable(self, result):
        if result.task.ignore_unreachable and not self._everything():
            return
        super(CallbackModule, self).v2_runner_on_unreachable(result)

    def v2_runner_item_on_ok(self, result):
        if self._everything():
            super(CallbackModule, self).v2_runner_item_on_ok(result)

    def v2_runner_item_on_skipped(self, result):
        if self._everything():
            super(CallbackModule, self).v2_runner_item_on_skipped(result)

    def v2_runner_item_on_failed(self, result):
        if result.task.ignore_errors and not self._everything():
            return
        super(CallbackModule, self).v2_runner_item_on_failed(result)

    def v2_runner_retry(self, result):
        if self._everything():
            super(CallbackModule, self).v2_runner_retry(result)

    def v2_on_file_diff(self, result):
        if self._everything():
            super(CallbackModule, self).v2_on_file_diff(result)

    def v2_playbook_on_stats(self, stats):
        if self._progress.nodes or self._progress.total:
            totals = {host: stats.summarize(host) for host in stats.processed if host != "localhost"}
            failed = [host for host, total in totals.items() if total["failures"] or total["unreachable"]]
            self._say("ROLLOUT %s" % self._progress.final(failed))
        super(CallbackModule, self).v2_playbook_on_stats(stats)


def _will_be_rescued(task):
    """Whether a failure of ``task`` is handled by the ``rescue`` of a block around it (the role
    then reports it, with what to do next): the task, or an include or block it is part of, sits
    in the ``block`` section of a block that has a ``rescue``. False when that cannot be told."""
    from ansible.playbook.block import Block

    try:
        node, parent = task, task._parent  # pylint: disable=protected-access
        while parent is not None:
            if isinstance(parent, Block) and parent.rescue:
                handlers = [entry._uuid for entry in list(parent.rescue) + list(parent.always or [])]  # pylint: disable=protected-access
                if node._uuid not in handlers:  # pylint: disable=protected-access
                    return True
            node, parent = parent, getattr(parent, "_parent", None)
    except Exception:  # pylint: disable=broad-except  # when in doubt, show the failure
        return False
    return False
