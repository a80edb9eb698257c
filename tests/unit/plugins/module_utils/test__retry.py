"""Waiting with a deadline: the poll loop k8s_node_wait, k8s_cluster_guard and the lock's wait share, and
the one policy for writes refused as conflicts (fake clock: sleeping moves it)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _retry
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import ApiException, K8sAccessError
from tests.unit.plugins.module_utils.test__k8s_client import FakeClock as Clock  # starts at 1000.0


def test_polls_until_done_every_interval():
    clock = Clock()
    answers = iter([False, False, True])
    done, value, poll = _retry.poll_until(lambda poll: (next(answers), poll.polls), 60, 5,
                                          sleep=clock.sleep, clock=clock)
    assert (done, value, poll.polls) == (True, 3, 3)
    assert clock.sleeps == [5, 5] and poll.elapsed() == 10


def test_the_last_poll_is_at_the_deadline_never_after_it():
    clock = Clock()
    done, _value, poll = _retry.poll_until(lambda poll: (False, None), 12, 5, sleep=clock.sleep, clock=clock)
    assert not done and clock.sleeps == [5, 5, 2] and poll.polls == 4 and poll.elapsed() == 12


def test_once_polls_once_whatever_it_sees_and_timeout_zero_too():
    for kwargs in ({"once": True, "timeout": 60}, {"timeout": 0}):
        clock = Clock()
        done, _value, poll = _retry.poll_until(lambda poll: (False, None), interval=5, sleep=clock.sleep,
                                               clock=clock, **kwargs)
        assert not done and poll.polls == 1 and clock.sleeps == []


@given(st.integers(0, 100), st.integers(1, 30), st.integers(0, 20))
def test_a_poll_never_waits_past_its_deadline(timeout, interval, done_at):
    clock = Clock()
    done, _value, poll = _retry.poll_until(lambda poll: (poll.polls > done_at, None), timeout, interval,
                                           sleep=clock.sleep, clock=clock)
    assert poll.elapsed() <= timeout
    assert done or poll.elapsed() == timeout  # it gives up only at the deadline
    assert all(0 < s <= interval for s in clock.sleeps)


def test_wait_calls_before_only_when_it_waits():
    clock = Clock()
    poll = _retry.Poll(3, 5, sleep=clock.sleep, clock=clock, started=999.0)
    calls = []
    assert poll.wait(before=lambda: calls.append(clock())) and calls == [1000.0] and clock.sleeps == [2.0]
    assert not poll.wait(before=lambda: calls.append(clock())) and calls == [1000.0]


def test_conflicts_pause_growing_then_give_up_at_the_deadline():
    clock = Clock()
    conflicts = _retry.Conflicts("node/n1", "the node", "its taints were written", deadline=1001.0,
                                 sleep=clock.sleep, clock=clock)
    exc = ApiException(status=409)
    with pytest.raises(K8sAccessError) as failed:
        while True:
            conflicts.again(exc)
    assert failed.value.status == 409 and failed.value.cause is exc
    assert failed.value.message == ("node/n1: the node kept changing while its taints were written (%d conflicting "
                                    "writes); nothing was changed, run the task again" % conflicts.count)
    assert clock() >= 1001.0 and conflicts.count == len(clock.sleeps) + 1


@given(st.integers(1, 50))
def test_the_pause_after_a_conflict_is_short_and_jittered(conflicts):
    pause = _retry.conflict_pause(conflicts)
    ceiling = min(1.0, 0.02 * 2 ** min(conflicts, 6))
    assert ceiling / 2 <= pause <= ceiling
