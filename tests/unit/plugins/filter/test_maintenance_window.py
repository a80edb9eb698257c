"""The maintenance_window filter turns a bad window into a filter error."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kubeops.node_maintenance.plugins.filter import maintenance_window as plugin


def test_the_filter_is_registered_and_answers():
    window = plugin.FilterModule().filters()["maintenance_window"]
    assert window({}, 0, 5)["fits"]


def test_a_bad_window_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match="maintenance window: window hours"):
        plugin.maintenance_window({"hours": "late"}, 0)
