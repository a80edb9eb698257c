"""Unit tests for _rollout_progress: the rollout callback's lines from the per-node records."""
import datetime

from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils import _rollout_progress as rp

T0 = datetime.datetime(2026, 12, 1, 10, 0, 0, tzinfo=datetime.timezone.utc)


def stamp(seconds):
    moment = T0 + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def record(status, phase, phases, started=0, updated=None, message="", rollout="r1"):
    """A record as k8s_node_maintenance_state returns it; phases: name -> (start, end or None[,
    status of the closed phase, default done])."""
    entries = {}
    ends = [started]
    for name, spec in phases.items():
        begin, end = spec[:2]
        entry = {"started": stamp(begin), "status": "in_progress", "attempts": 1}
        if end is not None:
            entry.update(finished=stamp(end), seconds=float(end - begin), status=spec[2] if len(spec) > 2 else "done")
            ends.append(end)
        entries[name] = entry
    last = max(ends)
    return {"version": 1, "rollout": rollout, "phase": phase, "status": status, "message": message,
            "started": stamp(started), "updated": stamp(updated if updated is not None else last), "phases": entries}


def test_parse_time_reads_the_records_format_and_refuses_the_rest():
    assert rp.parse_time("2026-12-01T10:00:00.500Z") == T0.timestamp() + 0.5
    assert rp.parse_time("2026-12-01T10:00:00") == T0.timestamp()
    for bad in (None, "", "yesterday", 17, "2026-13-01T00:00:00Z"):
        assert rp.parse_time(bad) is None


def test_format_seconds():
    assert [rp.format_seconds(s) for s in (0, 4.4, 59.6, 61, 3599, 3600, 7325, -3)] == \
        ["0s", "4s", "1m00s", "1m01s", "59m59s", "1h00m", "2h02m", "0s"]


def test_one_line_per_finished_phase_then_done_with_counts_and_estimate():
    progress = rp.RolloutProgress(total=3)
    assert progress.feed("n1", record("in_progress", "preflight", {"preflight": (0, None)})) == []
    lines = progress.feed("n1", record("in_progress", "drain", {"preflight": (0, 2), "drain": (2, None)}))
    assert lines == ["n1: preflight done in 2s (node 2s)"]
    # the same record again (a re-report): nothing new
    assert progress.feed("n1", record("in_progress", "drain", {"preflight": (0, 2), "drain": (2, None)})) == []
    lines = progress.feed("n1", record("done", "done", {"preflight": (0, 2), "drain": (2, 62), "return": (62, 90),
                                                        "done": (90, 90)}))
    assert lines == ["n1: drain done in 1m00s (node 1m02s)", "n1: return done in 28s (node 1m30s)",
                     "n1: DONE in 1m30s [1 done, 0 failed, 2 left, about 3m00s to go]"]
    assert progress.counts() == (1, 0, 2)


def test_a_failure_names_the_phase_the_message_and_the_resume():
    progress = rp.RolloutProgress(total=2)
    lines = progress.feed("n2", record("failed", "drain", {"preflight": (0, 1), "drain": (1, 301, "failed")},
                                       message="Cordon and drain: PDB web blocks the eviction"))
    assert lines[0] == "n2: preflight done in 1s (node 1s)"
    assert lines[1] == "n2: FAILED in phase drain: Cordon and drain: PDB web blocks the eviction"
    assert "resumes this node at phase drain" in lines[2] and lines[2].endswith("[0 done, 1 failed, 1 left]")
    assert progress.feed("n2", record("failed", "drain", {"preflight": (0, 1), "drain": (1, 301, "failed")})) == []


def test_reads_of_the_record_report_already_done_and_resume_points_only():
    progress = rp.RolloutProgress(total=2)
    done = record("done", "done", {"drain": (0, 10), "done": (10, 10)})
    assert progress.feed("n1", done, done_in_rollout=True, changed=False) == [
        "n1: already done in rollout r1, nothing to do [1 done, 0 failed, 1 left]"]
    failed = record("failed", "drain", {"drain": (0, 10)})
    assert progress.feed("n2", failed, resume_phase="drain", changed=False) == [
        "n2: resuming at phase drain (recorded failed)"]
    # no estimate from nodes this run did not do
    assert progress.estimate_left() is None


def test_phases_finished_before_this_run_are_not_reported_again():
    progress = rp.RolloutProgress(total=1, since=T0.timestamp() + 100)
    earlier = {"drain": (0, 50), "reboot": (50, 99)}
    lines = progress.feed("n1", record("in_progress", "data_disks", dict(earlier, data_disks=(150, None))))
    assert lines == []
    lines = progress.feed("n1", record("in_progress", "return", dict(earlier, data_disks=(150, 160),
                                                                     **{"return": (160, None)})))
    assert lines == ["n1: data_disks done in 10s (node 2m40s)"]


def test_without_a_total_there_is_no_left_count():
    progress = rp.RolloutProgress()
    lines = progress.feed("n1", record("done", "done", {"drain": (0, 5), "done": (5, 5)}))
    assert lines[-1] == "n1: DONE in 5s [1 done, 0 failed]"


def test_garbage_records_give_no_lines_and_no_error():
    progress = rp.RolloutProgress(total=1)
    for bad in (None, {}, [], {"phases": "x"}, {"phases": {"drain": "x"}}, {"status": 3}):
        assert progress.feed("n1", bad) == []
    assert progress.counts() == (0, 0, 1)


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["done", "failed", "in_progress"]),
                          st.integers(min_value=0, max_value=5000)), max_size=40),
       st.integers(min_value=0, max_value=6))
def test_counts_stay_within_the_total_and_an_end_is_reported_once_per_change(events, total):
    progress = rp.RolloutProgress(total=total)
    ends, changes, last = {}, {}, {}
    for node, status, seconds in events:
        closed = "failed" if status == "failed" else "done"
        phases = {"drain": (0, seconds, closed)} if status != "in_progress" else {"drain": (0, None)}
        for line in progress.feed(node, record(status, "drain", phases)):
            if ": DONE" in line or ": FAILED" in line:
                ends[node] = ends.get(node, 0) + 1
        if status != "in_progress" and last.get(node) != status:
            changes[node] = changes.get(node, 0) + 1
            last[node] = status
        done, failed, left = progress.counts()
        assert done + failed <= len(progress.nodes)
        assert left == max(0, total - done - failed)
    assert ends == changes


def test_the_final_line_counts_nodes_that_failed_before_they_had_a_record():
    progress = rp.RolloutProgress(total=4)
    progress.feed("n1", record("done", "done", {"drain": (0, 5), "done": (5, 5)}))
    progress.feed("n2", record("failed", "drain", {"drain": (0, 5, "failed")}))
    # n3 failed before any record (a node the cluster does not know); n1 is in the recap's
    # failures too when a later task of it failed, but its record says done
    assert progress.final(["n3", "n2", "n1"]) == "1 done, 2 failed (n2, n3), 1 not reached"
    assert rp.RolloutProgress().final([]) == "0 done, 0 failed"
