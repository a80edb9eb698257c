# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writes the rollout report's files on the controller, in the controller's own process.

The role rewrites the report after every node (so a rollout stopped at any point leaves one):
with ``file`` + ``copy`` + ``template`` that was three module processes per node for a few
kilobytes of text. The documentation is in plugins/modules/rollout_report.py.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from ansible.module_utils.common.text.converters import to_bytes
from ansible.plugins.action import ActionBase

from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils._report_files import write_if_changed

ARGS = {"dir": {"type": "path", "required": True},
        "json": {"type": "dict", "default": {}},
        "text": {"type": "dict", "default": {}},
        "mode": {"type": "raw", "default": "0644"}}


def _mode(value):
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 8)
    except ValueError:
        raise ValueError("mode must be an octal string such as '0644', not %r" % (value,))


def _check_name(name):
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise ValueError("file name %r must be a plain file name inside dir (no '/', not '.' or '..')" % (name,))


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGS)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGS)
        directory = os.path.expanduser(args["dir"])
        files = {}
        try:
            mode = _mode(args["mode"])
            for name, data in args["json"].items():
                _check_name(name)
                # as to_nice_json writes it
                files[name] = json.dumps(data, indent=4, sort_keys=True, ensure_ascii=False) + "\n"
            for name, content in args["text"].items():
                _check_name(name)
                if name in files:
                    raise ValueError("file name %r is given in both json and text" % name)
                if not isinstance(content, str):
                    raise ValueError("text of %s must be a string, not %s (pass data in json)"
                                     % (name, type(content).__name__))
                files[name] = content
        except (TypeError, ValueError) as exc:
            result.update(failed=True, msg="rollout_report: %s" % exc)
            return result
        written = []
        if self._play_context.check_mode:
            result.update(changed=bool(files), dir=directory, written=sorted(files))
            return result
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            for name in sorted(files):
                if write_if_changed(os.path.join(directory, name), to_bytes(files[name], errors="surrogate_or_strict"),
                                    mode):
                    written.append(name)
        except OSError as exc:
            result.update(failed=True, msg="rollout_report: cannot write the report in %s: %s; make the directory "
                                           "writable or set node_maintenance_report_dir" % (directory, exc),
                          written=written)
            return result
        result.update(changed=bool(written), dir=directory, written=written)
        return result
