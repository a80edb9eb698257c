# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The phases a node goes through, in order: the one home of that order.

A node's maintenance record names the phase it is in; a re-run resumes there, so every phase at
or after it is still to do, and those before it were done. The role gates each phase on
``resume_phase | kubeops.node_maintenance.phase_pending('<phase>')`` and never on positions.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

PHASES = ("preflight", "drain", "action", "data_disks", "return", "verify", "after_node_hook", "done")


class PhaseError(ValueError):
    pass


def _position(phase, what):
    try:
        return PHASES.index(phase)
    except ValueError:
        raise PhaseError("%s %r is not a maintenance phase; the phases are: %s" % (what, phase, ", ".join(PHASES)))


def pending(resume_phase, phase):
    """Whether ``phase`` is still to do for a node that resumes at ``resume_phase``.

    ``resume_phase`` empty or None: a fresh start, every phase is to do. Both names must be phases
    (a typo in a gate must fail loudly, not skip or repeat a phase).
    """
    wanted = _position(phase, "phase")
    if resume_phase in (None, ""):
        return True
    return _position(resume_phase, "resume phase") <= wanted
