"""The rollout stdout callback's progress lines from module results (the lines themselves are
tested in tests/unit/plugins/plugin_utils/test__rollout_progress.py)."""
from types import SimpleNamespace

from ansible_collections.kubeops.node_maintenance.plugins.callback.rollout import CallbackModule
from tests.unit.plugins.plugin_utils.test__rollout_progress import record


def result(host, action, data):
    return SimpleNamespace(host=SimpleNamespace(get_name=lambda: host), task=SimpleNamespace(action=action),
                           result=data, _result=data)


def test_the_records_of_a_batch_written_by_one_run_give_each_node_its_lines():
    callback = CallbackModule()
    lines = []
    callback._say = lines.append
    callback._progress.since = 0  # the records below were written before this run started
    # the batch's pre-drain checks ran once (on w1's turn) and wrote w1's and w2's records; their
    # earlier phase (here a lock) shows as finished for each node
    records = {name: record("in_progress", "preflight", {"lock": (0, 2), "preflight": (2, None)})
               for name in ("w1", "w2")}
    callback._progress_of(result("w1", "kubeops.node_maintenance.k8s_node_preflight", {"phase_records": records}))
    assert [line.split(":")[0] for line in lines] == ["w1", "w2"], lines
    assert all("lock done" in line for line in lines), lines
    # one node's record (the `record` option) still goes to the host's node
    lines.clear()
    callback._progress_of(result("w3", "kubeops.node_maintenance.k8s_node_taint",
                                 {"phase_record": record("in_progress", "drain", {"preflight": (0, 1),
                                                                                  "drain": (1, None)})}))
    assert len(lines) == 1 and lines[0].startswith("w3: preflight done"), lines
