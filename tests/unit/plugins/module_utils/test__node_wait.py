"""Unit tests for _node_wait: one observation at a time, state carried across polls; the poll loop
against a scripted API server (fake_k8s_server) on a fake clock; the module's result and failure."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _node_wait
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import ModuleFailure
from tests.unit.fake_k8s_server import not_found
from tests.unit.plugins.module_utils.test__k8s_client import FakeClock

T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T10:05:00Z"


def node(ready="True", transition=T0, boot="boot-1", uid="uid-1", extra=None, heartbeat="2024-05-01T10:06:00Z"):
    conditions = [{"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                   "lastHeartbeatTime": heartbeat, "lastTransitionTime": T0}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready, "reason": "KubeletReady" if ready == "True"
                           else "NodeStatusUnknown", "lastHeartbeatTime": heartbeat,
                           "lastTransitionTime": transition})
    conditions += extra or []
    return {"metadata": {"name": "w1", "uid": uid},
            "status": {"conditions": conditions, "nodeInfo": {"bootID": boot} if boot else {}}}


def want(**kwargs):
    wanted = {"ready": True, "boot_id_changed_from": None, "require_not_ready_first": False, "conditions": []}
    wanted.update(kwargs)
    return wanted


def run(observations, wanted):
    state = _node_wait.WaitState()
    results = [_node_wait.observe(state, obs, wanted, float(i)) for i, obs in enumerate(observations)]
    return state, results


def run_results(observations, wanted):
    return run(observations, wanted)[1]


def run_state(observations, wanted):
    return run(observations, wanted)[0]


def test_ready_node_is_done_at_once():
    state, results = run([node()], want())
    assert results == [[]]
    assert state.transitions[0]["event"] == "first seen"


@pytest.mark.parametrize("ready", ["False", "Unknown", None])
def test_not_ready_node_is_waited_for(ready):
    results = run_results([node(ready=ready)], want())
    assert results[0] == ["Ready=True (is %s)" % (ready or "Unknown")]


def test_waiting_for_not_ready():
    results = run_results([node(), node(ready="Unknown")], want(ready=False))
    assert results == [["Ready to be False or Unknown (is True)"], []]


def test_require_not_ready_first_seen_on_a_poll():
    state, results = run([node(), node(ready="Unknown", transition=T1), node(transition=T1)],
                         want(require_not_ready_first=True))
    assert results[0] and "NotReady first" in results[0][0]
    assert results[1] == ["Ready=True (is Unknown)"]
    assert results[2] == []
    assert [t["event"] for t in state.transitions] == ["first seen", "Ready True -> Unknown",
                                                       "Ready Unknown -> True"]


def test_require_not_ready_first_proven_by_transition_time():
    # the blip fell between two polls: Ready both times, but the transition time moved
    state, results = run([node(transition=T0), node(transition=T1)], want(require_not_ready_first=True))
    assert results[0] and results[1] == []
    assert _node_wait.result_fields(state)["seen_not_ready"] is True


def test_require_not_ready_first_not_fooled_by_a_steady_node():
    results = run_results([node()] * 5, want(require_not_ready_first=True))
    assert all(results)


def test_absent_node_counts_as_not_ready_and_recreation_is_recorded():
    state, results = run([node(), None, node(ready="False", uid="uid-2", transition=T1),
                          node(uid="uid-2", boot="boot-2", transition=T1)],
                         want(require_not_ready_first=True, boot_id_changed_from="boot-1"))
    assert results[1] == ["the node object to exist"]
    assert results[3] == []
    events = [t["event"] for t in state.transitions]
    assert "Ready True -> absent" in events
    assert "node object recreated (uid uid-1 -> uid-2)" in events
    assert "bootID boot-1 -> boot-2" in events


def test_boot_id_changed():
    results = run_results([node(boot="boot-1"), node(boot=None), node(boot="boot-2")],
                          want(boot_id_changed_from="boot-1"))
    assert results[0] == ["a bootID different from boot-1 (still the same)"]
    assert results[1] == ["a bootID different from boot-1 (the node reports none)"]
    assert results[2] == []


def test_listed_conditions():
    disk = {"type": "DiskPressure", "status": "True", "reason": "KubeletHasDiskPressure"}
    wanted = want(conditions=[{"type": "DiskPressure", "status": "False"},
                              {"type": "MemoryPressure", "status": "False"},
                              {"type": "example.com/Healthy", "status": "True"}])
    results = run_results([node(extra=[disk])], wanted)
    assert results[0] == ["DiskPressure=False (is True)", "example.com/Healthy=True (is missing)"]
    ok = [dict(disk, status="False"), {"type": "example.com/Healthy", "status": "True"}]
    assert run([node(extra=ok)], wanted)[1] == [[]]


@given(st.lists(st.sampled_from(["True", "False", "Unknown", None]), min_size=1, max_size=30))
def test_ready_after_not_ready_is_accepted_exactly_when_a_not_ready_was_seen(statuses):
    """With steady transition times, require_not_ready_first holds on the first Ready poll that
    follows a poll where the node was not Ready, and never before."""
    observations = [None if s is None else node(ready=s) for s in statuses]
    results = run_results(observations, want(require_not_ready_first=True))
    seen_bad = False
    for status, unmet in zip(statuses, results):
        if status != "True":
            seen_bad = True
        assert (unmet == []) is (status == "True" and seen_bad)


def test_describe_last_seen_names_each_condition_and_boot_id():
    state = run_state([node(ready="Unknown")], want())
    text = _node_wait.describe_last_seen(state, "w1")
    assert "Ready=Unknown (NodeStatusUnknown, heartbeat 2024-05-01T10:06:00Z, since 2024-05-01T10:00:00Z)" in text
    assert "MemoryPressure=False" in text and "bootID boot-1" in text
    assert _node_wait.describe_transitions(state) == "0.0s: first seen"


def test_describe_last_seen_when_the_node_is_gone():
    state = run_state([None], want())
    assert "did not exist" in _node_wait.describe_last_seen(state, "w1")
    assert "kubectl get nodes" in _node_wait.describe_last_seen(state, "w1")
    state = run_state([node(), None], want())
    assert "before that: MemoryPressure=False" in _node_wait.describe_last_seen(state, "w1")
    assert _node_wait.describe_last_seen(_node_wait.WaitState(), "w1") == "node/w1 was never read"


def test_result_fields():
    state = run_state([node(ready="False"), node()], want())
    fields = _node_wait.result_fields(state)
    assert fields["ready"] == "True" and fields["boot_id"] == "boot-1" and fields["uid"] == "uid-1"
    assert fields["polls"] == 2 and fields["seen_not_ready"] is True
    assert {c["type"] for c in fields["conditions"]} == {"MemoryPressure", "Ready"}
    assert fields["conditions"][1]["last_transition_time"] == T0
    assert fields["unschedulable"] is False
    cordoned = dict(node(), spec={"unschedulable": True})
    assert _node_wait.result_fields(run_state([cordoned, None], want()))["unschedulable"] is True
    assert _node_wait.result_fields(run_state([None], want()))["unschedulable"] is None


@pytest.mark.parametrize("wanted, message", [
    (want(conditions=[{"type": "", "status": "True"}]), "type is required"),
    (want(conditions=[{"type": "X", "status": "yes"}]), "status must be one of"),
    (want(ready=False, require_not_ready_first=True), "needs ready=true"),
    (want(boot_id_changed_from=""), "must not be empty"),
])
def test_validate_wanted(wanted, message):
    errors = _node_wait.validate_wanted(wanted)
    assert len(errors) == 1 and message in errors[0]


def test_validate_wanted_accepts_defaults():
    assert _node_wait.validate_wanted(want(conditions=[{"type": "X"}])) == []


@pytest.mark.parametrize("first, later", [
    ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00+00:00"),        # API server vs isoformat() text
    ("2024-05-01T10:00:00+00:00", "2024-05-01T10:00:00Z"),
    ("2024-05-01T10:00:00.123456+00:00", "2024-05-01T10:00:00.123456Z"),
    ("2024-05-01T10:00:00Z", "2024-05-01T12:00:00+02:00"),
])
def test_one_instant_written_two_ways_is_no_transition(first, later):
    """lastTransitionTime is compared as a time, not as text: the same instant in another form
    must not pass for a NotReady blip."""
    state, results = run([node(transition=first), node(transition=later)], want(require_not_ready_first=True))
    assert not state.transition_proven and not state.seen_not_ready
    assert results[1] == ["the node to go NotReady first (it has been Ready on every poll so far, and its Ready "
                          "lastTransitionTime has not moved)"]


@pytest.mark.parametrize("first, later", [
    ("2024-05-01T10:00:00+00:00", "2024-05-01T10:00:01Z"),
    ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000001+00:00"),
])
def test_a_later_transition_in_either_form_proves_one(first, later):
    state, results = run([node(transition=first), node(transition=later)], want(require_not_ready_first=True))
    assert state.transition_proven and results[1] == []


# ------------------------------------------------------------------------------------------------
# options, the poll loop, the module's result
# ------------------------------------------------------------------------------------------------

def params(**kwargs):
    options = dict(want(), timeout=600, poll_interval=5)
    options.update(kwargs)
    return options


def test_wanted_state_takes_the_wishes_from_the_options():
    assert _node_wait.wanted_state(params(ready=False, conditions=[{"type": "X", "status": "True"}])) == want(
        ready=False, conditions=[{"type": "X", "status": "True"}])


def test_wanted_state_refuses_every_bad_option_at_once():
    with pytest.raises(ModuleFailure) as refused:
        _node_wait.wanted_state(params(timeout=-1, poll_interval=0, boot_id_changed_from=""))
    assert refused.value.msg == ("boot_id_changed_from must not be empty (omit it to not check the boot ID); "
                                 "timeout must not be negative; poll_interval must be at least 1")
    assert refused.value.fields == {}
    assert _node_wait.wanted_state(params(timeout=0, poll_interval=1)) == want()


def node_server(k8s_server, *nodes):
    """A server answering the n-th read of node w1 with the n-th of ``nodes`` (then the last one);
    None: the node does not exist."""
    def answer(request):
        assert (request["method"], request["path"]) == ("GET", "/api/v1/nodes/w1")
        current = nodes[min(len(server.requests), len(nodes)) - 1]
        return not_found("nodes", "w1") if current is None else (200, current)
    server = k8s_server(answer)
    return server


def test_wait_for_node_polls_until_met_sleeping_the_interval(k8s_server):
    server = node_server(k8s_server, node(ready="Unknown"), None, node(boot="boot-2"))
    clock = FakeClock()
    met, unmet, state, waited = _node_wait.wait_for_node(
        server.raw(), "w1", want(boot_id_changed_from="boot-1"), 600, 5, False, sleep=clock.sleep, clock=clock)
    assert met is True and unmet == [] and state.polls == 3 and len(server.requests) == 3
    assert clock.sleeps == [5, 5] and waited == 10
    assert [t["event"] for t in state.transitions] == [
        "first seen", "Ready Unknown -> absent", "Ready absent -> True", "bootID boot-1 -> boot-2"]


@pytest.mark.parametrize("timeout, check_mode, polls, sleeps", [
    (12, False, 4, [5, 5, 2]),  # never sleeps past the timeout
    (600, True, 1, []),         # check mode reads once, whatever the timeout
])
def test_wait_for_node_that_is_not_met_stops_at_the_timeout(k8s_server, timeout, check_mode, polls, sleeps):
    server = node_server(k8s_server, node(ready="False"))
    clock = FakeClock()
    met, unmet, state, waited = _node_wait.wait_for_node(
        server.raw(), "w1", want(), timeout, 5, check_mode, sleep=clock.sleep, clock=clock)
    assert met is False and unmet == ["Ready=True (is False)"] and state.polls == polls == len(server.requests)
    assert clock.sleeps == sleeps and waited == sum(sleeps)


def test_wait_result_when_met_and_in_check_mode():
    state, results = run([node()], want())
    result = _node_wait.wait_result("w1", (True, results[-1], state, 0.04), check_mode=False)
    assert result == dict(_node_wait.result_fields(state), changed=False, name="w1", met=True, unmet=[],
                          waited_seconds=0.0)
    state, results = run([node(ready="False")], want())
    result = _node_wait.wait_result("w1", (False, results[-1], state, 0.0), check_mode=True)
    assert result["changed"] is False and result["met"] is False and result["unmet"] == ["Ready=True (is False)"]


def test_wait_result_of_a_timed_out_wait_fails_with_what_it_saw():
    state, results = run([node(ready="False"), node(ready="Unknown")], want())
    with pytest.raises(ModuleFailure) as failed:
        _node_wait.wait_result("w1", (False, results[-1], state, 600.26), check_mode=False)
    assert failed.value.msg == (
        "node/w1: still waiting after 600s for: Ready=True (is Unknown). Last seen: %s. Transitions: %s"
        % (_node_wait.describe_last_seen(state, "w1"), _node_wait.describe_transitions(state)))
    assert failed.value.msg.startswith("node/w1: still waiting after 600s for: Ready=True (is Unknown). Last seen: "
                                       "node/w1: MemoryPressure=False (KubeletHasSufficientMemory, heartbeat ")
    assert failed.value.fields == dict(_node_wait.result_fields(state), name="w1", met=False,
                                       unmet=["Ready=True (is Unknown)"], waited_seconds=600.3)
