# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout's progress as a person follows it, from the per-node maintenance records.

The rollout callback (``kubeops.node_maintenance.rollout``) feeds every record that
``k8s_node_maintenance_state`` returns (the module's ``record``, ``done_in_rollout`` and
``resume_phase``, read as data) into a ``RolloutProgress``; it answers with the lines to print:
one per node per finished phase with its duration and the node's elapsed time, one when a node is
done or failed, with the nodes done / failed / left and an estimate of the time left from the
nodes already done. Plain logic on its inputs (``now`` included), no Ansible objects.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime


def parse_time(value):
    """Seconds since the epoch from a record's ISO 8601 UTC time (``2024-05-01T10:00:00.120Z``);
    None when absent or unreadable."""
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def format_seconds(seconds):
    """``42s``, ``3m05s``, ``1h02m``: short enough for one line per phase."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm%02ds" % (seconds // 60, seconds % 60)
    return "%dh%02dm" % (seconds // 3600, (seconds % 3600) // 60)


class _Node:
    def __init__(self):
        self.phases_reported = set()
        self.outcome = None  # "done" / "failed" / "already done"
        self.started = None
        self.seconds = None


class RolloutProgress:
    """What has been printed so far, per node, and the counts behind the summary.

    ``total`` is the number of nodes the rollout covers, when known (None: no "left" count and no
    estimate). ``since`` (seconds since the epoch) is when this run began: phases a record says
    finished before it (a resumed node's earlier run) are not reported again."""

    def __init__(self, total=None, since=None):
        self.total = total
        self.since = since
        self.nodes = {}

    def _node(self, name):
        return self.nodes.setdefault(name, _Node())

    def counts(self):
        outcomes = [node.outcome for node in self.nodes.values()]
        done = outcomes.count("done") + outcomes.count("already done")
        failed = outcomes.count("failed")
        left = None if self.total is None else max(0, self.total - done - failed)
        return done, failed, left

    def estimate_left(self):
        """Seconds left, from the mean time of the nodes done in this run (None without one);
        nodes done one after the other, so with batches of several nodes it is an upper bound."""
        times = [node.seconds for node in self.nodes.values() if node.outcome == "done" and node.seconds]
        _done, _failed, left = self.counts()
        if not times or left is None:
            return None
        return sum(times) / len(times) * left

    def summary(self):
        done, failed, left = self.counts()
        parts = ["%d done" % done, "%d failed" % failed]
        if left is not None:
            parts.append("%d left" % left)
            estimate = self.estimate_left()
            if left and estimate is not None:
                parts.append("about %s to go" % format_seconds(estimate))
        return ", ".join(parts)

    def final(self, failed_hosts=()):
        """The last line's counts: ``failed_hosts`` are the nodes the play recap counts as failed
        (also those that failed before they had a record, such as a node the cluster does not know)."""
        done = sorted(name for name, node in self.nodes.items() if node.outcome in ("done", "already done"))
        failed = sorted(set(name for name, node in self.nodes.items() if node.outcome == "failed")
                        | (set(failed_hosts) - set(done)))
        parts = ["%d done" % len(done), "%d failed%s" % (len(failed), " (%s)" % ", ".join(failed) if failed else "")]
        if self.total is not None:
            parts.append("%d not reached" % max(0, self.total - len(done) - len(failed)))
        return ", ".join(parts)

    def feed(self, name, record, done_in_rollout=False, resume_phase=None, changed=True):
        """The lines a new record of node ``name`` calls for (possibly none).

        ``changed`` false is a read of the record (the role's resume step): it only tells that the
        node is already done in this rollout, or where a re-run picks it up."""
        record = record if isinstance(record, dict) else {}
        node = self._node(name)
        lines = []
        if not changed:
            if done_in_rollout and node.outcome is None:
                node.outcome = "already done"
                lines.append("%s: already done in rollout %s, nothing to do [%s]"
                             % (name, record.get("rollout", "?"), self.summary()))
            elif resume_phase:
                lines.append("%s: resuming at phase %s (recorded %s)" % (name, resume_phase, record.get("status", "?")))
            return lines
        started = parse_time(record.get("started"))
        updated = parse_time(record.get("updated"))
        if started is not None:
            node.started = started
        elapsed = (updated - node.started) if updated is not None and node.started is not None else None
        phases = record.get("phases") if isinstance(record.get("phases"), dict) else {}
        finished = []
        for phase, info in phases.items():
            # "done" is the record's last phase, entered when the node is done: no phase of its own
            if not isinstance(info, dict) or info.get("status") != "done" or phase in node.phases_reported \
                    or phase == "done":
                continue
            finished_at = parse_time(info.get("finished")) or 0
            if self.since is not None and finished_at < self.since:
                continue
            finished.append((finished_at, phase, info))
        for finished_at, phase, info in sorted(finished, key=lambda item: item[0]):
            node.phases_reported.add(phase)
            seconds = info.get("seconds")
            line = "%s: %s done" % (name, phase)
            if isinstance(seconds, (int, float)):
                line += " in %s" % format_seconds(seconds)
            if finished_at and node.started is not None:
                line += " (node %s)" % format_seconds(finished_at - node.started)
            lines.append(line)
        status = record.get("status")
        if status == "done" and node.outcome != "done":
            node.outcome = "done"
            node.seconds = elapsed
            took = " in %s" % format_seconds(elapsed) if elapsed is not None else ""
            lines.append("%s: DONE%s [%s]" % (name, took, self.summary()))
        elif status == "failed" and node.outcome != "failed":
            node.outcome = "failed"
            phase = record.get("phase") or "?"
            lines.append("%s: FAILED in phase %s: %s" % (name, phase, record.get("message") or "(no message)"))
            lines.append("%s: fix the cause, then run the same rollout again (the same rollout id): "
                         "it resumes this node at phase %s [%s]" % (name, phase, self.summary()))
        return lines
