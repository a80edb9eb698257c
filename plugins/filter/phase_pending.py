# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: phase_pending
short_description: Whether a maintenance phase is still to do for a node that resumes at a given phase
version_added: 0.2.0
author:
  - kubeops maintainers (@kubeops)
description:
  - A node's maintenance record (M(kubeops.node_maintenance.k8s_node_maintenance_state)) names the phase
    the node is in; a re-run of the same rollout resumes there. This filter answers whether O(phase) is
    at or after that phase, so still to do.
  - "The phases, in order: V(preflight), V(drain), V(action), V(data_disks), V(return), V(verify),
    V(after_node_hook), V(done)."
  - An unknown phase name fails the task, naming the phases.
options:
  _input:
    description:
      - The phase the node resumes at (the state module's
        RV(kubeops.node_maintenance.k8s_node_maintenance_state#module:resume_phase)); empty or null for a fresh start.
    type: str
    required: true
  phase:
    description: The phase to ask about.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Drain, unless a run before already got past the drain
  ansible.builtin.include_tasks: drain.yml
  when: node_record.resume_phase | default('') | kubeops.node_maintenance.phase_pending('drain')
"""

RETURN = r"""
_value:
  description: V(true) when O(phase) is still to do.
  type: bool
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils._phases import PhaseError, pending


def phase_pending(resume_phase, phase):
    try:
        return pending(resume_phase, phase)
    except PhaseError as exc:
        raise AnsibleFilterError("phase_pending: %s" % exc)


class FilterModule(object):
    def filters(self):
        return {"phase_pending": phase_pending}
