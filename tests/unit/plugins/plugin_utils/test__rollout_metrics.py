"""Unit tests for _rollout_metrics: the rollout's metrics in the Prometheus text exposition format.

Every output is checked against a strict reading of the format (version 0.0.4) written here, and,
when prometheus_client is installed (tests/requirements.txt has it), parsed by its parser too.
"""
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils import _rollout_metrics as rm

PHASES = ("preflight", "drain", "action", "data_disks", "return", "verify", "after_node_hook")
NOW = 1796180000.25

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # the strict reading below still runs
    text_string_to_metric_families = None

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_SAMPLE = re.compile(r"^(%s)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*=%s)(?:,[a-zA-Z_][a-zA-Z0-9_]*=%s)*)\})? "
                     r"([-+]?(?:[0-9]+(?:\.[0-9]*)?(?:e[-+]?[0-9]+)?|Inf)|NaN)$" % (_NAME, _VALUE, _VALUE))
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)=(%s)' % _VALUE)


def _unescape(quoted):
    body = quoted[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], body)


def strict_parse(text):
    """{(name, frozenset(labels)): value} of an exposition text, asserting the format strictly:
    a final newline; for each family HELP then TYPE then its samples, contiguous, never again;
    names, label pairs, escapes and values as the format defines them; no series twice; no timestamp."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    series, seen_families, family, state = {}, set(), None, None
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            name, _space, help_text = line[len("# HELP "):].partition(" ")
            assert re.match("^%s$" % _NAME, name) and name not in seen_families, line
            assert re.match(r"^(?:[^\\]|\\\\|\\n)*$", help_text), line
            family, state = name, "help"
            seen_families.add(name)
        elif line.startswith("# TYPE "):
            assert state == "help" and line == "# TYPE %s gauge" % family, line
            state = "type"
        else:
            match = _SAMPLE.match(line)
            assert match, "not a sample line: %r" % line
            assert state in ("type", "sample") and match.group(1) == family, line
            state = "sample"
            labels = {}
            if match.group(2):
                pairs = _PAIR.findall(match.group(2))
                assert ",".join("%s=%s" % pair for pair in pairs) == match.group(2), line
                for name, quoted in pairs:
                    assert name not in labels, line
                    labels[name] = _unescape(quoted)
            key = (family, frozenset(labels.items()))
            assert key not in series, "series twice: %r" % line
            raw = match.group(3)
            series[key] = float(raw.replace("Inf", "inf"))
    return series


def client_parse(text):
    found = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
            assert sample.timestamp is None
    return found


def parse(text):
    strict = strict_parse(text)
    if text_string_to_metric_families is not None:
        client = client_parse(text)
        assert set(client) == set(strict)
        for key, value in strict.items():
            assert client[key] == value or (math.isnan(client[key]) and math.isnan(value))
    return strict


def value(series, family, **labels):
    return series[(rm.PREFIX + family, frozenset(labels.items()))]


def node(name, status="done", seconds=12.5, phases=None, pods=0, cluster="default", **extra):
    entry = {"node": name, "status": status, "seconds": seconds, "pods_evicted": pods, "cluster": cluster,
             "phases": phases if phases is not None else {"preflight": 0.4, "drain": 3.2, "verify": 1.0}}
    entry.update(extra)
    return entry


def test_a_rollout_with_a_done_and_a_failed_node():
    nodes = [node("w1", pods=4, drain_retries=2, drain_stages=[{"stage": "evict"}, {"stage": "delete"}]),
             node("w2", status="failed", seconds=3, phases={"preflight": 0.5}, failed_phase="drain")]
    text = rm.render(nodes, "r1", False, NOW, phase_order=PHASES)
    series = parse(text)
    assert value(series, "rollout_in_progress", rollout="r1") == 0
    assert value(series, "rollout_nodes", rollout="r1", result="done") == 1
    assert value(series, "rollout_nodes", rollout="r1", result="failed") == 1
    assert value(series, "rollout_nodes", rollout="r1", result="deferred") == 0
    assert value(series, "rollout_last_update_timestamp_seconds", rollout="r1") == NOW
    w1 = {"rollout": "r1", "cluster": "default", "node": "w1"}
    assert value(series, "node_phase_duration_seconds", phase="drain", **w1) == 3.2
    assert value(series, "node_duration_seconds", **w1) == 12.5
    assert value(series, "node_pods_evicted", **w1) == 4
    assert value(series, "node_drain_retries", **w1) == 2
    assert value(series, "node_drain_escalations", **w1) == 1
    assert value(series, "node_result", result="failed", rollout="r1", cluster="default", node="w2") == 1
    assert (rm.PREFIX + "node_drain_retries", frozenset(dict(w1, node="w2").items())) not in series
    # phases in the role's order, then the families in the documented order
    drain_lines = [line for line in text.splitlines() if line.startswith(rm.PREFIX + "node_phase_duration_seconds{")]
    assert [re.search(r'phase="(\w+)"', line).group(1) for line in drain_lines] == [
        "preflight", "drain", "verify", "preflight"]
    assert text.startswith("# HELP kubeops_node_maintenance_rollout_in_progress ")
    assert "# TYPE kubeops_node_maintenance_node_pods_evicted gauge\n" in text


def test_no_nodes_yet_is_a_valid_exposition_with_zero_counts():
    series = parse(rm.render([], "r0", True, NOW))
    assert value(series, "rollout_in_progress", rollout="r0") == 1
    assert {labels for (name, labels) in series if name == rm.PREFIX + "rollout_nodes"} == {
        frozenset({"rollout": "r0", "result": result}.items()) for result in rm.RESULTS}
    assert not [name for name, _labels in series if name.startswith(rm.PREFIX + "node_")]


def test_label_values_are_escaped():
    nasty = 'a"b\\c\nd}{,='
    series = parse(rm.render([node(nasty, cluster="x\\\"y")], 'id"1', True, NOW, labels={"site": "\n"}))
    assert value(series, "node_pods_evicted", rollout='id"1', site="\n", cluster="x\\\"y", node=nasty) == 0


def test_a_node_named_twice_counts_once_with_its_last_result():
    series = parse(rm.render([node("w1", status="failed"), node("w1", status="done")], "r1", True, NOW))
    assert value(series, "rollout_nodes", rollout="r1", result="done") == 1
    assert value(series, "rollout_nodes", rollout="r1", result="failed") == 0
    # the same name in two clusters is two nodes
    series = parse(rm.render([node("w1", cluster="a"), node("w1", cluster="b")], "r1", True, NOW))
    assert value(series, "rollout_nodes", rollout="r1", result="done") == 2


def test_an_unknown_status_is_counted_under_its_own_name():
    series = parse(rm.render([node("w1", status="rebooting")], "r1", True, NOW))
    assert value(series, "rollout_nodes", rollout="r1", result="rebooting") == 1


def test_missing_and_odd_numbers():
    nodes = [node("w1", seconds=None, pods=None, phases={"drain": "2.5", "verify": None, "action": float("nan")}),
             node("w2", seconds="soon", phases={})]
    series = parse(rm.render(nodes, "r1", True, NOW, phase_order=PHASES))
    who = {"rollout": "r1", "cluster": "default", "node": "w1"}
    assert value(series, "node_phase_duration_seconds", phase="drain", **who) == 2.5
    assert (rm.PREFIX + "node_phase_duration_seconds", frozenset(dict(who, phase="verify").items())) not in series
    assert (rm.PREFIX + "node_duration_seconds", frozenset(who.items())) not in series
    assert value(series, "node_pods_evicted", **who) == 0


@pytest.mark.parametrize("given_value, text", [(3, "3"), (3.0, "3"), (0.1, "0.1"), (True, "1"), (-2.5, "-2.5"),
                                               (float("inf"), "+Inf"), (float("-inf"), "-Inf"),
                                               (float("nan"), "NaN"), (1e20, "1e+20"), ("4", "4")])
def test_format_value(given_value, text):
    assert rm.format_value(given_value) == text


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(rm.MetricsError, match="not a valid label name"):
        rm.render([], "r1", True, NOW, labels={"bad-name": "x"})
    with pytest.raises(rm.MetricsError, match="also a common label"):
        rm.render([node("w1")], "r1", True, NOW, labels={"node": "x"})
    with pytest.raises(rm.MetricsError, match="must be a dict"):
        rm.render(["w1"], "r1", True, NOW)
    with pytest.raises(rm.MetricsError, match="not a number"):
        rm.format_value("many")


def test_push_url():
    assert rm.push_url("http://pg:9091/", "kubeops", [("rollout", "r-1.2")]) == \
        "http://pg:9091/metrics/job/kubeops/rollout/r-1.2"
    assert rm.push_url("http://pg:9091", "a/b c", [("rollout", "")]) == \
        "http://pg:9091/metrics/job@base64/YS9iIGM=/rollout@base64/="
    assert rm.push_url("http://pg", "j k", []) == "http://pg/metrics/job/j%20k"
    with pytest.raises(rm.MetricsError):
        rm.push_url("http://pg", "", [])
    with pytest.raises(rm.MetricsError):
        rm.push_url("http://pg", "j", [("bad-label", "x")])


_text = st.text(max_size=30)
_number = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10 ** 6, 10 ** 6))
_node = st.fixed_dictionaries({
    "node": _text, "cluster": _text,
    "status": st.one_of(st.sampled_from(rm.RESULTS), _text),
    "seconds": _number, "pods_evicted": _number,
    "phases": st.dictionaries(st.one_of(st.sampled_from(PHASES), _text), _number, max_size=8),
}, optional={"drain_retries": _number,
             "drain_stages": st.lists(st.fixed_dictionaries({"stage": st.sampled_from(["evict", "delete"])}),
                                      max_size=3)})


@settings(max_examples=300, deadline=None)
@given(nodes=st.lists(_node, max_size=6), rollout=_text, in_progress=st.booleans(),
       now=st.floats(min_value=0, max_value=4e9))
def test_any_input_renders_a_valid_exposition_that_says_what_it_was_given(nodes, rollout, in_progress, now):
    series = parse(rm.render(nodes, rollout, in_progress, now, phase_order=PHASES))
    latest = {}
    for entry in nodes:
        latest.pop((entry["cluster"], entry["node"]), None)
        latest[(entry["cluster"], entry["node"])] = entry
    counted = sum(v for (name, labels), v in series.items() if name == rm.PREFIX + "rollout_nodes")
    assert counted == len(latest)
    assert value(series, "rollout_in_progress", rollout=rollout) == (1 if in_progress else 0)
    for (cluster, name), entry in latest.items():
        who = {"rollout": rollout, "cluster": cluster, "node": name}
        assert value(series, "node_result", result=entry["status"] or "in_progress", **who) == 1
        for phase, seconds in entry["phases"].items():
            key = (rm.PREFIX + "node_phase_duration_seconds", frozenset(dict(who, phase=phase).items()))
            if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
                assert key not in series
            else:
                assert series[key] == float(seconds)
