#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rollout_report
short_description: Write the rollout report's files on the controller
version_added: 0.2.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Writes each of O(json) and O(text) into O(dir) on the controller (the machine running C(ansible-playbook)),
    atomically (a temporary file renamed into place), and only when its content or mode differs.
  - The role M(kubeops.node_maintenance.node_maintenance) rewrites its report after every node with it;
    it runs in the controller's own process (an action plugin), so it costs no module process per node.
  - Creates O(dir) (mode V(0755)) when it is missing.
options:
  dir:
    description: The directory the files are written to, on the controller.
    type: path
    required: true
  json:
    description:
      - File name (a plain name, no C(/)) to the data it holds, written as JSON indented by 4 with sorted
        keys (as C(to_nice_json) writes it).
    type: dict
    default: {}
  text:
    description:
      - File name (a plain name, no C(/)) to its text, written as given (UTF-8).
    type: dict
    default: {}
  mode:
    description: Permissions of the files written, as an octal string.
    type: raw
    default: "0644"
attributes:
  check_mode:
    support: full
    description: Writes nothing; reports every file as one it would write.
  diff_mode:
    support: none
    description: Returns no diff.
  action:
    support: full
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    details: All the work happens on the controller.
notes:
  - The files are always written on the controller, whatever the task's C(delegate_to).
"""

EXAMPLES = r"""
- name: Write the rollout report
  kubeops.node_maintenance.rollout_report:
    dir: "{{ node_maintenance_report_dir }}/{{ node_maintenance_rollout_id }}"
    json:
      report.json: "{{ report }}"
    text:
      report.md: "{{ lookup('ansible.builtin.template', 'report.md.j2') }}"
"""

RETURN = r"""
dir:
  description: The directory the files are in.
  returned: success
  type: str
  sample: /var/tmp/kubeops-reports/patch-2026-11
written:
  description: Names of the files written by this task (those whose content or mode changed).
  returned: always
  type: list
  elements: str
  sample: [report.json, report.md]
"""
