"""Rules every API object follows: its controller owner reference and its status conditions."""
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _api_objects as objs


def test_node_condition():  # from test__nodes' test_node_condition_and_summary
    node = {"metadata": {"name": "n1"}, "status": {"conditions": [
        {"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]}}
    assert objs.status_condition(node, "MemoryPressure")["status"] == "False"
    assert objs.status_condition(node, "DiskPressure") is None


def test_no_status_no_condition():
    assert objs.status_condition({}, "Ready") is None and objs.status_condition(None, "Ready") is None
    assert objs.status_condition({"status": {"conditions": None}}, "Ready") is None


refs = st.lists(st.builds(dict, kind=st.sampled_from(["ReplicaSet", "DaemonSet", "Node"]),
                          name=st.sampled_from(["a", "b"]), controller=st.sampled_from([True, False, None])),
                max_size=4)


@given(refs)
def test_controller_is_the_first_reference_marked_controller(owner_refs):
    controllers = [ref for ref in owner_refs if ref["controller"]]
    found = objs.controller_of({"metadata": {"ownerReferences": owner_refs}})
    assert found is (controllers[0] if controllers else None)


@given(st.lists(st.builds(dict, type=st.sampled_from(["Ready", "Progressing"]), status=st.sampled_from(["True", "False"])),
                max_size=4))
def test_a_condition_is_the_first_of_its_type(conds):
    for cond_type in ("Ready", "Progressing"):
        same = [c for c in conds if c["type"] == cond_type]
        assert objs.status_condition({"status": {"conditions": conds}}, cond_type) is (same[0] if same else None)
