# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark aid (not shipped in the collection): one JSON line per task result, to the file named
by ``KUBEOPS_TIMELINE``: host, task action, status, start and end (epoch seconds), and the
module's own ``seconds`` when it reports one. Used by benchmarks/bench_rollout_overhead.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: task_timeline
type: aggregate
short_description: write every task result's timing as JSON lines (benchmark aid)
description:
  - Writes one JSON line per task result to the file named by E(KUBEOPS_TIMELINE).
requirements:
  - the E(KUBEOPS_TIMELINE) environment variable
"""

import json
import os
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "task_timeline"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._path = os.environ.get("KUBEOPS_TIMELINE")
        self._started = {}

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = time.time()

    def _write(self, result, status):
        if not self._path:
            return
        host = result._host.get_name()
        task = result._task
        line = {"host": host, "action": task.action, "name": task.get_name(), "status": status,
                "start": self._started.pop((host, task._uuid), None), "end": time.time(),
                "delegated": bool(task.delegate_to)}
        seconds = result._result.get("seconds")
        if isinstance(seconds, (int, float)):
            line["seconds"] = seconds
        with open(self._path, "a") as handle:
            handle.write(json.dumps(line) + "\n")

    def v2_runner_on_ok(self, result):
        self._write(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._write(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._write(result, "unreachable")
