# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout's metrics in the Prometheus text exposition format (version 0.0.4).

Plain functions of their inputs: the per-node results the role keeps (``__node_maintenance_result``,
with ``cluster`` and, when the drain ran, ``drain_retries`` added by the role's report task) become
gauges a Pushgateway accepts and node-exporter's textfile collector reads:

- ``kubeops_node_maintenance_rollout_in_progress{rollout}``: 1 while the rollout runs, 0 once it
  finished or stopped;
- ``kubeops_node_maintenance_rollout_nodes{rollout,result}``: nodes by result (every known result,
  zeros included, so an alert on ``result="failed"`` always has a series);
- ``kubeops_node_maintenance_rollout_last_update_timestamp_seconds{rollout}``;
- per node (``{rollout,cluster,node}``): ``node_result`` (1 for its result), ``node_duration_seconds``,
  ``node_phase_duration_seconds{phase}``, ``node_pods_evicted``, and when recorded
  ``node_drain_retries`` and ``node_drain_escalations``.

Every family has HELP and TYPE lines, label values are escaped (backslash, double quote, newline),
and a series appears once (a node named twice keeps its last result), since a Pushgateway refuses a
push with duplicate series. No sample carries a timestamp: a Pushgateway refuses those.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import math
import re
from urllib.parse import quote

PREFIX = "kubeops_node_maintenance_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# The results a node can have in a rollout, in the order they are listed.
RESULTS = ("done", "failed", "in_progress", "skipped", "deferred")

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# name (without PREFIX) -> help; all gauges
FAMILIES = (
    ("rollout_in_progress", "1 while the rollout runs, 0 once it finished or stopped (a failed node, "
                            "or nodes left for the next run)."),
    ("rollout_nodes", "Nodes of the rollout by result (done, failed, in_progress, skipped: done in an "
                      "earlier run, deferred: left for the next run)."),
    ("rollout_last_update_timestamp_seconds", "Unix time at which these metrics were written."),
    ("node_result", "1 for the node's result in the rollout."),
    ("node_duration_seconds", "Seconds the node's maintenance took, until it was done or failed."),
    ("node_phase_duration_seconds", "Seconds each finished phase of the node took."),
    ("node_pods_evicted", "Pods the drain moved off the node (evicted, or deleted by the escalation)."),
    ("node_drain_retries", "Eviction or delete requests the drain repeated (refused by a "
                           "PodDisruptionBudget or the API server, then sent again)."),
    ("node_drain_escalations", "Drain stages past eviction (the pods left deleted, bypassing their "
                               "PodDisruptionBudgets)."),
)


class MetricsError(ValueError):
    pass


def escape_label_value(value):
    """A label value as the text format writes it between double quotes."""
    return str(value).replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def escape_help(text):
    return str(text).replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value):
    """A sample value: integers without a fraction, floats as Python's shortest repr, NaN and +/-Inf
    as the format spells them. Booleans are 1 and 0; anything else not a number is refused."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise MetricsError("metric value %r is not a number" % (value,))
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    return repr(number)


def _labels(pairs):
    for name, _value in pairs:
        if not _LABEL.match(name) or name.startswith("__"):
            raise MetricsError("%r is not a valid label name" % (name,))
    if not pairs:
        return ""
    return "{" + ",".join('%s="%s"' % (name, escape_label_value(value)) for name, value in pairs) + "}"


def _number(value, default=None):
    """A node field as a float, or ``default`` when it is missing or not a number."""
    if value is None or isinstance(value, bool):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return default if math.isnan(number) else number


def render(nodes, rollout, in_progress, now, phase_order=(), labels=None):
    """The exposition text for the rollout ``rollout`` with the per-node results ``nodes``.

    ``phase_order``: the phases in the order their series are written (others follow, sorted);
    ``labels``: extra labels on every series (name -> value), such as a site or an environment.
    """
    common = [("rollout", rollout)] + sorted((str(k), v) for k, v in (labels or {}).items())
    names = [name for name, _value in common]
    if len(set(names)) != len(names):
        raise MetricsError("label names repeat: %s" % ", ".join(names))
    samples = {name: {} for name, _help in FAMILIES}  # family -> {label string: value}

    def add(family, extra, value):
        pairs = common + [(k, v) for k, v in extra if k not in names]
        if len(pairs) != len(common) + len(extra):
            raise MetricsError("label %s of %s is also a common label" % (
                ", ".join(k for k, _v in extra if k in names), family))
        samples[family][_labels(pairs)] = value

    latest = {}
    for node in nodes or []:
        if not isinstance(node, dict):
            raise MetricsError("each node must be a dict, not %s" % type(node).__name__)
        key = (str(node.get("cluster") or ""), str(node.get("node") or ""))
        latest.pop(key, None)
        latest[key] = node  # a node named twice: its last result, listed where it came last

    counts = dict((result, 0) for result in RESULTS)
    order = list(phase_order)
    for (cluster, name), node in latest.items():
        status = str(node.get("status") or "in_progress")
        counts[status] = counts.get(status, 0) + 1
        who = [("cluster", cluster), ("node", name)]
        add("node_result", who + [("result", status)], 1)
        seconds = _number(node.get("seconds"))
        if seconds is not None:
            add("node_duration_seconds", who, seconds)
        phases = node.get("phases") or {}
        for phase in [p for p in order if p in phases] + sorted(str(p) for p in phases if p not in order):
            value = _number(phases.get(phase))
            if value is not None:
                add("node_phase_duration_seconds", who + [("phase", phase)], value)
        add("node_pods_evicted", who, _number(node.get("pods_evicted"), 0))
        retries = _number(node.get("drain_retries"))
        if retries is not None:
            add("node_drain_retries", who, retries)
        stages = node.get("drain_stages")
        if isinstance(stages, list):
            add("node_drain_escalations", who,
                sum(1 for stage in stages if isinstance(stage, dict) and stage.get("stage") != "evict"))

    add("rollout_in_progress", [], 1 if in_progress else 0)
    for result in list(RESULTS) + sorted(r for r in counts if r not in RESULTS):
        add("rollout_nodes", [("result", result)], counts[result])
    add("rollout_last_update_timestamp_seconds", [], round(float(now), 3))

    lines = []
    for family, help_text in FAMILIES:
        if not samples[family]:
            continue
        name = PREFIX + family
        lines += ["# HELP %s %s" % (name, escape_help(help_text)), "# TYPE %s gauge" % name]
        lines += ["%s%s %s" % (name, label_text, format_value(value)) for label_text, value in samples[family].items()]
    return "\n".join(lines) + "\n"


def _segment(name, value):
    """One ``/<label>/<value>`` pair of a Pushgateway grouping key (base64 when the value has a '/'
    or is empty, as the Pushgateway's API defines)."""
    value = str(value)
    if "/" in value or value == "":
        encoded = base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii") or "="
        return "/%s@base64/%s" % (name, encoded)
    return "/%s/%s" % (name, quote(value, safe=""))


def push_url(base_url, job, grouping):
    """The Pushgateway URL of the group ``job`` + ``grouping`` (list of (label, value) pairs):
    ``<base>/metrics/job/<job>/<label>/<value>...``."""
    for name, _value in grouping:
        if not _LABEL.match(name):
            raise MetricsError("%r is not a valid grouping label name" % (name,))
    if not str(job):
        raise MetricsError("the Pushgateway job name must not be empty")
    return str(base_url).rstrip("/") + "/metrics" + _segment("job", job) + "".join(
        _segment(name, value) for name, value in grouping)
