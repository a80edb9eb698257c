"""phase_pending: the named gates of the role, and the one phase order they use."""
from __future__ import annotations

import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.filter.phase_pending import FilterModule
from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils._phases import PHASES
from tests.conftest import REPO_ROOT

phase_pending = FilterModule().filters()["phase_pending"]


def test_a_fresh_start_has_every_phase_to_do():
    for phase in PHASES:
        assert phase_pending("", phase) is True
        assert phase_pending(None, phase) is True


def test_a_node_resuming_at_return_does_not_drain_again_but_returns_and_verifies():
    assert phase_pending("return", "drain") is False
    assert phase_pending("return", "action") is False
    assert phase_pending("return", "return") is True
    assert phase_pending("return", "verify") is True


@given(st.sampled_from(PHASES), st.sampled_from(PHASES))
def test_a_phase_is_pending_exactly_when_it_is_not_before_the_resume_phase(resume, phase):
    assert phase_pending(resume, phase) == (PHASES.index(phase) >= PHASES.index(resume))


@pytest.mark.parametrize("resume, phase", [("drian", "drain"), ("drain", "drian"), ("", "reboot")])
def test_an_unknown_phase_fails_naming_the_phases(resume, phase):
    with pytest.raises(AnsibleFilterError) as info:
        phase_pending(resume, phase)
    assert "is not a maintenance phase" in str(info.value)
    assert "preflight, drain, action" in str(info.value)


def test_the_role_and_the_report_use_the_same_order():
    with open(os.path.join(REPO_ROOT, "roles", "node_maintenance", "vars", "main.yml")) as handle:
        role_vars = yaml.safe_load(handle)
    assert tuple(role_vars["__node_maintenance_phase_order"]) == PHASES
