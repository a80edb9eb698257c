#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rollout_metrics
short_description: Write the rollout's metrics to a node-exporter textfile and push them to a Pushgateway
version_added: 0.2.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Renders the rollout's metrics in the Prometheus text exposition format (HELP and TYPE lines, label
    values escaped, every family a gauge, no sample timestamps) from the per-node results the role
    M(kubeops.node_maintenance.node_maintenance) keeps.
  - Writes them to O(textfile) on the controller atomically (a temporary file beside it, renamed into
    place, so node-exporter's textfile collector never reads half a file), and/or pushes them with
    C(PUT) to O(pushgateway_url) as the group C(job=<job>), C(rollout=<rollout>), replacing what an
    earlier push of the same rollout left there.
  - "Metrics: C(kubeops_node_maintenance_rollout_in_progress{rollout}) (1 or 0),
    C(kubeops_node_maintenance_rollout_nodes{rollout,result}) (every result, zeros included),
    C(kubeops_node_maintenance_rollout_last_update_timestamp_seconds{rollout}), and per node (labels
    C(rollout), C(cluster), C(node)): C(kubeops_node_maintenance_node_result{result}),
    C(kubeops_node_maintenance_node_duration_seconds), C(kubeops_node_maintenance_node_phase_duration_seconds{phase}),
    C(kubeops_node_maintenance_node_pods_evicted), and when recorded C(kubeops_node_maintenance_node_drain_retries)
    and C(kubeops_node_maintenance_node_drain_escalations)."
  - A push that gets no answer, or an answer that asking again may fix (HTTP 408, 429, 5xx), is retried
    O(attempts) times. What could not be delivered is returned in RV(errors) and does not fail the task.
  - It runs in the controller's own process (an action plugin), so it costs no module process per node.
options:
  rollout:
    description: The rollout id; label C(rollout) of every series and part of the Pushgateway group.
    type: str
    required: true
  nodes:
    description:
      - The per-node results (C(node), C(status), C(seconds), C(phases), C(pods_evicted), and optional
        C(cluster), C(drain_retries), C(drain_stages)). A node named twice counts once, with its last entry.
    type: list
    elements: dict
    default: []
  in_progress:
    description: Whether the rollout is still running (V(false) once it finished or stopped).
    type: bool
    required: true
  phase_order:
    description: The phases in the order their series are written.
    type: list
    elements: str
    default: []
  labels:
    description: More labels on every series (name to value), such as C(site).
    type: dict
    default: {}
  textfile:
    description:
      - Path of the textfile on the controller, in node-exporter's C(--collector.textfile.directory) and
        ending in C(.prom) (empty for none). The directory must exist. Written with mode C(0644).
    type: str
    default: ""
  pushgateway_url:
    description:
      - Base URL of the Pushgateway, such as C(http://pushgateway.monitoring:9091) (empty for none).
        Credentials in it are used and never shown.
    type: str
    default: ""
  job:
    description: The C(job) label of the Pushgateway group.
    type: str
    default: kubeops_node_maintenance
  headers:
    description: HTTP headers of the push, such as C(Authorization); never shown.
    type: dict
    default: {}
  timeout:
    description: Seconds per push attempt.
    type: float
    default: 10
  validate_certs:
    description: Verify the Pushgateway's certificate.
    type: bool
    default: true
  attempts:
    description: Push attempts at most.
    type: int
    default: 3
  delay:
    description: Seconds between two push attempts.
    type: float
    default: 2
attributes:
  check_mode:
    support: full
    description: Writes and pushes nothing.
  diff_mode:
    support: none
    description: Returns no diff.
  action:
    support: full
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    details: All the work happens on the controller.
notes:
  - The textfile is always written on the controller, whatever the task's C(delegate_to).
  - Use C(no_log) on the task when the URL or the headers hold a credential; RV(errors) names neither.
  - A Pushgateway keeps a group until it is deleted; each rollout id is its own group.
"""

EXAMPLES = r"""
- name: Push the rollout metrics and write them for node-exporter
  kubeops.node_maintenance.rollout_metrics:
    rollout: patch-2026-11
    nodes: "{{ nodes }}"
    in_progress: false
    textfile: /var/lib/node_exporter/textfile/kubeops_node_maintenance.prom
    pushgateway_url: http://pushgateway.monitoring:9091
  no_log: true
  register: metrics
"""

RETURN = r"""
series:
  description: Number of samples rendered.
  returned: success
  type: int
  sample: 24
textfile_written:
  description: Whether O(textfile) was written by this task.
  returned: success
  type: bool
  sample: true
pushed:
  description: Whether the Pushgateway took the push.
  returned: success
  type: bool
  sample: true
push_status:
  description: HTTP status of the last push attempt, or null (no push, or no answer).
  returned: success
  type: int
  sample: 200
errors:
  description: What could not be delivered, in words, without the URL or the headers.
  returned: success
  type: list
  elements: str
  sample: ["no answer from the Pushgateway ([Errno 111] Connection refused) after 3 attempts"]
"""
