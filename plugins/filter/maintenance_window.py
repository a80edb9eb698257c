# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: maintenance_window
short_description: Whether a node's maintenance fits in the maintenance window now
version_added: 0.2.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Takes a window specification and answers whether the window is open at O(now) and whether a node
    expected to take O(expected_seconds) finishes before it closes.
  - The window is open when every part given holds; C(end) is an absolute end, C(days) and C(hours)
    a recurring window (hours over midnight, such as C(22:00-06:00), belong to the day they start on).
options:
  _input:
    description:
      - The window, a dictionary with C(end) (ISO 8601 date and time; without an offset it is in
        C(timezone)), C(days) (list of C(mon) ... C(sun)), C(hours) (C(HH:MM-HH:MM)) and C(timezone)
        (an IANA name such as C(Europe/Berlin), default C(UTC)). Empty parts do not restrict.
    type: dict
    required: true
  now:
    description: The time to judge, as a POSIX timestamp (C(now(utc=true\).timestamp(\))).
    type: float
    required: true
  expected_seconds:
    description: How long the node is expected to take.
    type: float
    default: 0
"""

EXAMPLES = r"""
- name: Does the next node fit before 06:00 UTC?
  ansible.builtin.debug:
    msg: "{{ {'end': '2026-11-14T06:00:00Z'} | kubeops.node_maintenance.maintenance_window(now(utc=true).timestamp(), 900) }}"

- name: Saturday and Sunday nights, Berlin time
  ansible.builtin.set_fact:
    window: >-
      {{ {'days': ['sat', 'sun'], 'hours': '22:00-06:00', 'timezone': 'Europe/Berlin'}
         | kubeops.node_maintenance.maintenance_window(now(utc=true).timestamp(), 1200) }}
"""

RETURN = r"""
_value:
  description: Where O(now) stands in the window.
  type: dict
  contains:
    open:
      description: Whether the window is open at O(now).
      type: bool
    fits:
      description: Whether the window is open and stays open for O(expected_seconds).
      type: bool
    closes_at:
      description: When the open window closes (ISO 8601, UTC), or null (closed, or no end).
      type: str
    seconds_left:
      description: Seconds until it closes, or null.
      type: float
    expected_seconds:
      description: O(expected_seconds), rounded.
      type: float
    reason:
      description: The answer in words.
      type: str
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils._maintenance_window import (
    WindowError,
    window_status,
)


def maintenance_window(spec, now, expected_seconds=0):
    try:
        return window_status(spec, now, expected_seconds)
    except WindowError as exc:
        raise AnsibleFilterError("maintenance window: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"maintenance_window": maintenance_window}
