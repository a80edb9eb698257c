# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Writes the rollout's metrics to a node-exporter textfile and/or pushes them to a Pushgateway,
in the controller's own process (the role does it after every node). The rendering is
plugin_utils/_rollout_metrics; the documentation is in plugins/modules/rollout_metrics.py.

Delivery problems (no answer, an HTTP error, a textfile that cannot be written) never fail the
task: they are returned in ``errors``, without the URL or the headers (either may hold a
credential), and the role decides (node_maintenance_metrics_required).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time
from urllib.error import HTTPError, URLError

from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.module_utils.urls import open_url
from ansible.plugins.action import ActionBase

from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils import _rollout_metrics as metrics
from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils._report_files import write_if_changed

ARGS = {"rollout": {"type": "str", "required": True},
        "nodes": {"type": "list", "elements": "dict", "default": []},
        "in_progress": {"type": "bool", "required": True},
        "phase_order": {"type": "list", "elements": "str", "default": []},
        "labels": {"type": "dict", "default": {}},
        "textfile": {"type": "str", "default": ""},
        "pushgateway_url": {"type": "str", "default": "", "no_log": True},
        "job": {"type": "str", "default": "kubeops_node_maintenance"},
        "headers": {"type": "dict", "default": {}, "no_log": True},
        "timeout": {"type": "float", "default": 10},
        "validate_certs": {"type": "bool", "default": True},
        "attempts": {"type": "int", "default": 3},
        "delay": {"type": "float", "default": 2}}

TEXTFILE_MODE = 0o644
# Answers that asking again may fix: the Pushgateway (or a proxy before it) is busy or restarting.
_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


def push(url, body, headers, timeout, validate_certs, attempts, delay, sleep=time.sleep, opener=open_url):
    """PUT ``body`` to ``url`` (replacing the whole group), retried on no answer and on the statuses
    asking again may fix. Returns (HTTP status or None, error or None); the error names neither the
    URL nor a header."""
    all_headers = {"Content-Type": metrics.CONTENT_TYPE}
    all_headers.update(headers or {})
    status, error = None, None
    for attempt in range(max(attempts, 1)):
        if attempt:
            sleep(delay)
        try:
            response = opener(url, data=body, headers=all_headers, method="PUT", timeout=timeout,
                              validate_certs=validate_certs, http_agent="kubeops.node_maintenance")
            status = response.getcode()
            if 200 <= status < 300:
                return status, None
            error = "the Pushgateway answered HTTP %d" % status
        except HTTPError as exc:
            status = exc.code
            try:
                said = to_text(exc.read()[:300], errors="replace").strip()
            except (OSError, AttributeError, ValueError):  # the answer's body is only for the message
                said = ""
            error = "the Pushgateway answered HTTP %d%s" % (status, (": " + said) if said else "")
            if status not in _RETRY_STATUSES:
                break
        except (URLError, OSError, ValueError) as exc:
            status = None
            reason = getattr(exc, "reason", None) or exc
            error = "no answer from the Pushgateway (%s)" % to_text(reason)
    return status, "%s after %d attempt%s" % (error, attempt + 1, "" if attempt == 0 else "s")


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGS)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec=ARGS)
        url = args["pushgateway_url"]
        try:
            text = metrics.render(args["nodes"], args["rollout"], args["in_progress"], time.time(),
                                  phase_order=args["phase_order"], labels=args["labels"])
            target = metrics.push_url(url, args["job"], [("rollout", args["rollout"])]) if url else None
        except metrics.MetricsError as exc:
            result.update(failed=True, msg="rollout_metrics: %s" % exc)
            return result
        textfile = os.path.expanduser(args["textfile"]) if args["textfile"] else ""
        result.update(changed=False, errors=[], series=sum(1 for line in text.splitlines() if not line.startswith("#")),
                      textfile_written=False, pushed=False, push_status=None)
        if self._play_context.check_mode:
            result.update(changed=bool(textfile))
            return result
        if textfile:
            try:
                result["textfile_written"] = write_if_changed(textfile, to_bytes(text), TEXTFILE_MODE)
                result["changed"] = result["textfile_written"]
            except OSError as exc:
                result["errors"].append("cannot write the textfile %s: %s; make its directory (node-exporter's "
                                        "--collector.textfile.directory) writable" % (textfile, exc.strerror or exc))
        if target:
            status, error = push(target, to_bytes(text), args["headers"], args["timeout"], args["validate_certs"],
                                 args["attempts"], args["delay"])
            result.update(pushed=error is None, push_status=status)
            if error:
                result["errors"].append(error)
        return result
