"""Unit tests for _prometheus_guard: the verdict on what ansible.builtin.uri registered for
<server>/api/v1/query, in the response format of Prometheus' HTTP API (docs/querying/api.md)."""
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils import _prometheus_guard as pg

QUERY = 'ALERTS{alertstate="firing",severity="critical"}'
URL = "https://prometheus.example:9090/"


def answer(result_type, result, status=200, **envelope):
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    body.update(envelope)
    return {"status": status, "json": body, "msg": "OK (%d bytes)" % len(str(body))}


def series(value, /, **labels):  # positional-only: a label may be called "value"
    return {"metric": labels, "value": [1435781451.781, value]}


FIRING = [series("1", __name__="ALERTS", alertname="EtcdNoLeader", alertstate="firing", severity="critical"),
          series("1", __name__="ALERTS", alertname="KubeAPIDown", alertstate="firing", severity="critical")]


# ------------------------------------------------------------------------------------------------
# healthy when empty (alert-style, the default)
# ------------------------------------------------------------------------------------------------

def test_an_empty_vector_is_healthy():
    verdict = pg.judge(answer("vector", []), QUERY, "empty", URL)
    assert verdict["healthy"] and verdict["series"] == 0 and verdict["result_type"] == "vector"
    assert QUERY in verdict["message"]


def test_firing_series_refuse_naming_the_query_the_series_and_what_to_do():
    verdict = pg.judge(answer("vector", FIRING), QUERY, "empty", URL)
    assert not verdict["healthy"] and verdict["retry"]
    assert verdict["series"] == 2
    message = verdict["message"]
    assert message.startswith("Prometheus query %s at https://prometheus.example:9090/: returned 2 series" % QUERY)
    assert 'ALERTS{alertname="EtcdNoLeader",alertstate="firing",severity="critical"} = 1' in message
    assert "KubeAPIDown" in message and "then re-run" in message
    assert [o["metric"]["alertname"] for o in verdict["offending"]] == ["EtcdNoLeader", "KubeAPIDown"]


def test_only_the_first_series_are_listed():
    many = [series("1", alertname="A%02d" % i) for i in range(12)]
    verdict = pg.judge(answer("vector", many), QUERY, "empty", URL)
    assert verdict["series"] == 12 and len(verdict["offending"]) == pg.SHOWN
    assert "A04" in verdict["message"] and "A05" not in verdict["message"]
    assert "and 7 more" in verdict["message"]


def test_a_matrix_lists_each_series_once_with_its_last_sample():
    matrix = [{"metric": {"job": "node"}, "values": [[1, "0"], [2, "3"]]}]
    verdict = pg.judge(answer("matrix", matrix), "up[5m]", "empty", URL)
    assert not verdict["healthy"] and verdict["series"] == 1
    assert verdict["offending"] == [{"metric": {"job": "node"}, "value": "3"}]
    assert pg.judge(answer("matrix", []), "up[5m]", "empty", URL)["healthy"]


def test_a_scalar_is_never_empty_and_is_refused_without_retrying():
    verdict = pg.judge(answer("scalar", [1435781451.781, "0"]), "scalar(count(ALERTS))", "empty", URL)
    assert not verdict["healthy"] and not verdict["retry"]
    assert "returned a scalar (0), which is never empty" in verdict["message"]
    assert pg.CONDITION_VARIABLE in verdict["message"]


def test_a_native_histogram_series_counts_as_a_series():
    result = [{"metric": {"__name__": "rpc_seconds"}, "histogram": [1, {"count": "3", "sum": "1.5"}]}]
    verdict = pg.judge(answer("vector", result), "rpc_seconds", "empty", URL)
    assert not verdict["healthy"] and "rpc_seconds{} = <native histogram>" in verdict["message"]
    assert not pg.judge(answer("vector", result), "rpc_seconds", "< 1", URL)["healthy"]


# ------------------------------------------------------------------------------------------------
# healthy when every sample satisfies a comparison
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("condition, values, healthy", [
    ("< 0.05", ["0", "0.049"], True),
    ("< 0.05", ["0", "0.05"], False),
    ("<= 0.05", ["0.05"], True),
    ("== 1", ["1", "1"], True),
    ("== 1", ["1", "0"], False),
    ("!= 0", ["2", "-1"], True),
    (">= 3", ["3", "+Inf"], True),
    ("> 3", ["3"], False),
    ("<0", ["-Inf"], True),
    ("< 1e-3", ["0.0001"], True),
])
def test_comparisons(condition, values, healthy):
    result = [series(v, instance="node-%d" % i) for i, v in enumerate(values)]
    assert pg.judge(answer("vector", result), "x", condition, URL)["healthy"] is healthy


@pytest.mark.parametrize("condition", ["< 1", "> 1", "== 1", "!= 1", ">= -Inf", "<= +Inf"])
def test_nan_satisfies_no_comparison_not_even_not_equal(condition):
    verdict = pg.judge(answer("vector", [series("NaN", instance="a")]), "x", condition, URL)
    assert not verdict["healthy"]
    assert '{instance="a"} = NaN' in verdict["message"]


def test_a_comparison_names_the_samples_that_fail_it():
    result = [series("0.01", instance="a"), series("0.2", instance="b"), series("0.3", instance="c")]
    verdict = pg.judge(answer("vector", result), "error_ratio", "< 0.05", URL)
    assert "2 of 3 samples not < 0.05" in verdict["message"]
    assert '{instance="b"} = 0.2' in verdict["message"] and 'instance="a"' not in verdict["message"]


def test_no_data_is_not_proof_of_health():
    verdict = pg.judge(answer("vector", []), "up{job=\"ingress\"}", "== 1", URL)
    assert not verdict["healthy"] and verdict["retry"]
    assert "returned no samples, nothing to compare with == 1" in verdict["message"]


def test_a_scalar_is_compared():
    assert pg.judge(answer("scalar", [1, "2"]), "scalar(x)", ">= 2", URL)["healthy"]
    assert not pg.judge(answer("scalar", [1, "NaN"]), "scalar(x)", ">= 2", URL)["healthy"]


def test_a_string_is_not_a_number():
    verdict = pg.judge(answer("string", [1, "hello"]), '"hello"', "== 1", URL)
    assert not verdict["healthy"] and not verdict["retry"] and "not a number" in verdict["message"]


@pytest.mark.parametrize("text", ["", "below 3", "< three", "=< 3", "< NaN", "3", "<"])
def test_a_condition_that_cannot_be_understood_is_refused_without_asking_again(text):
    with pytest.raises(pg.ConditionError):
        pg.parse_condition(text)
    verdict = pg.judge(answer("vector", []), "x", text, URL)
    assert not verdict["healthy"] and not verdict["retry"]
    assert pg.CONDITION_VARIABLE in verdict["message"]


def test_empty_is_the_default_condition():
    assert pg.parse_condition(None) == ("empty", None)
    assert pg.parse_condition(" Empty ") == ("empty", None)
    assert pg.parse_condition(">=  -2.5") == (">=", -2.5)


def test_an_empty_query_is_refused():
    verdict = pg.judge(answer("vector", []), "  ", "empty", URL)
    assert not verdict["healthy"] and pg.QUERY_VARIABLE in verdict["message"]


# ------------------------------------------------------------------------------------------------
# errors: none is ever healthy
# ------------------------------------------------------------------------------------------------

def test_no_answer_is_retried():
    response = {"status": -1, "msg": "Status code was -1 and not [200]: Request failed: <urlopen error "
                                     "[Errno 111] Connection refused>"}
    verdict = pg.judge(response, QUERY, "empty", URL)
    assert not verdict["healthy"] and verdict["retry"]
    assert "no answer (" in verdict["message"] and "Connection refused" in verdict["message"]
    assert pg.URL_VARIABLE in verdict["message"]


def test_prometheus_error_envelopes():
    timeout = {"status": 503, "json": {"status": "error", "errorType": "timeout",
                                       "error": "query timed out in expression evaluation"}}
    verdict = pg.judge(timeout, QUERY, "empty", URL)
    assert not verdict["healthy"] and verdict["retry"]
    assert "HTTP 503, timeout: query timed out in expression evaluation" in verdict["message"]

    bad = {"status": 400, "json": {"status": "error", "errorType": "bad_data",
                                   "error": 'invalid parameter "query": 1:7: parse error: unexpected "}"'}}
    verdict = pg.judge(bad, "ALERTS}", "empty", URL)
    assert not verdict["healthy"] and not verdict["retry"], "a query Prometheus cannot parse is not retried"
    assert "bad_data" in verdict["message"] and "fix %s" % pg.QUERY_VARIABLE in verdict["message"]

    execution = {"status": 422, "json": {"status": "error", "errorType": "execution", "error": "too many samples"}}
    assert pg.judge(execution, QUERY, "empty", URL)["retry"]


@pytest.mark.parametrize("status, retry, hint", [
    (401, False, pg.HEADERS_VARIABLE), (403, False, pg.HEADERS_VARIABLE), (404, False, "/api/v1/query"),
    (502, True, "a Prometheus server"), (200, True, "a Prometheus server")])
def test_an_answer_that_is_not_the_prometheus_api(status, retry, hint):
    response = {"status": status, "msg": "HTML", "content": "<html>proxy</html>"}
    verdict = pg.judge(response, QUERY, "empty", URL)
    assert not verdict["healthy"] and verdict["retry"] is retry
    assert "HTTP %d, not a Prometheus API answer" % status in verdict["message"] and hint in verdict["message"]


def test_an_error_status_with_a_success_envelope_is_not_healthy():
    assert not pg.judge(answer("vector", [], status=500), QUERY, "empty", URL)["healthy"]


def test_warnings_are_kept():
    verdict = pg.judge(answer("vector", [], warnings=["partial data: store down"]), QUERY, "empty", URL)
    assert verdict["healthy"] and verdict["warnings"] == ["partial data: store down"]


@pytest.mark.parametrize("data", [None, {}, {"resultType": "vector"}, {"resultType": "vector", "result": [1]},
                                  {"resultType": "vector", "result": [{"metric": {}}]},
                                  {"resultType": "matrix", "result": "x"}, {"resultType": "nonsense", "result": []},
                                  {"resultType": "scalar", "result": [1]}])
def test_an_answer_of_another_shape_is_not_understood(data):
    verdict = pg.judge({"status": 200, "json": {"status": "success", "data": data}}, QUERY, "empty", URL)
    assert not verdict["healthy"] and "answer not understood" in verdict["message"]


def test_the_url_in_messages_has_no_credentials_or_query_string():
    assert pg.display_url("https://user:s3cret@prom.example/prometheus?token=abc#x") == \
        "https://prom.example/prometheus"
    verdict = pg.judge({"status": -1, "msg": "refused"}, QUERY, "empty", "http://u:pw@127.0.0.1:9/?k=v")
    assert "pw" not in verdict["message"] and "k=v" not in verdict["message"]
    assert pg.query_url("http://p:9090/prefix//") == "http://p:9090/prefix/api/v1/query"


def test_label_values_are_quoted_the_way_prometheus_prints_them():
    assert pg.describe_series({"__name__": "m", "path": 'a"b\\c'}, "1") == 'm{path="a\\"b\\\\c"} = 1'


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------

LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
SAMPLE = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr).map(
    lambda r: {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}.get(r, r)),
    st.integers(-10 ** 6, 10 ** 6).map(str))
METRICS = st.lists(st.dictionaries(LABEL, st.text(max_size=10), max_size=4), max_size=12, unique_by=lambda m: tuple(
    sorted(m.items())))
OPS = st.sampled_from(["<", "<=", "==", "!=", ">=", ">"])
THRESHOLD = st.floats(allow_nan=False, allow_infinity=True, width=32)


def vector_of(metrics, values):
    return [series(values[i % len(values)], **metric) for i, metric in enumerate(metrics)]


@given(METRICS, st.lists(SAMPLE, min_size=1, max_size=12))
def test_empty_mode_is_healthy_exactly_when_there_are_no_series(metrics, values):
    verdict = pg.judge(answer("vector", vector_of(metrics, values)), QUERY, "empty", URL)
    assert verdict["healthy"] is (not metrics)
    assert verdict["series"] == len(metrics)
    assert len(verdict["offending"]) == min(len(metrics), pg.SHOWN)
    assert QUERY in verdict["message"]


@given(METRICS, st.lists(SAMPLE, min_size=1, max_size=12), OPS, THRESHOLD)
def test_a_comparison_is_healthy_exactly_when_every_sample_satisfies_it(metrics, values, op, threshold):
    result = vector_of(metrics, values)
    verdict = pg.judge(answer("vector", result), "q", "%s %r" % (op, threshold), URL)
    numbers = [float(s["value"][1]) for s in result]
    expected = bool(numbers) and all(
        not math.isnan(n) and {"<": n < threshold, "<=": n <= threshold, "==": n == threshold,
                               "!=": n != threshold, ">=": n >= threshold, ">": n > threshold}[op]
        for n in numbers)
    assert verdict["healthy"] is expected
    # what it names as offending is in the result, and fails the comparison
    for item in verdict["offending"]:
        assert {"metric": item["metric"], "value": [1435781451.781, item["value"]]} in result
        assert not pg.satisfies(pg.sample_number(item["value"]), op, threshold)


@given(METRICS, st.lists(SAMPLE, min_size=1, max_size=12), OPS, THRESHOLD, st.randoms())
def test_the_order_of_the_series_does_not_change_the_verdict(metrics, values, op, threshold, rnd):
    result = vector_of(metrics, values)
    shuffled = list(result)
    rnd.shuffle(shuffled)
    condition = "%s %r" % (op, threshold)
    assert pg.judge(answer("vector", result), "q", condition)["healthy"] is \
        pg.judge(answer("vector", shuffled), "q", condition)["healthy"]


@given(st.lists(SAMPLE, min_size=1, max_size=12), st.floats(allow_nan=False, allow_infinity=False),
       st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_a_higher_upper_bound_never_turns_healthy_into_unhealthy(values, threshold, more):
    result = [series(v, i=str(i)) for i, v in enumerate(values)]
    if pg.judge(answer("vector", result), "q", "< %r" % threshold)["healthy"]:
        assert pg.judge(answer("vector", result), "q", "< %r" % (threshold + more))["healthy"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(
                        st.sampled_from(["status", "data", "resultType", "result", "metric", "value", "values",
                                         "json", "msg", "error", "errorType", "x"]), children, max_size=4),
                    max_leaves=20)


@given(JSON, st.sampled_from(["empty", "< 1", "== 0", "bogus"]))
def test_any_input_gives_a_verdict_and_garbage_is_never_healthy(response, condition):
    verdict = pg.judge(response, QUERY, condition, URL)
    assert set(verdict) == {"healthy", "retry", "http_status", "result_type", "series", "offending",
                            "warnings", "message"}
    assert verdict["message"].startswith("Prometheus query %s" % QUERY)
    if verdict["healthy"]:
        # only a 2xx success envelope with a vector/matrix/scalar result can be healthy
        assert isinstance(response, dict) and 200 <= response.get("status") < 300
        assert response["json"]["status"] == "success"
        assert response["json"]["data"]["resultType"] in ("vector", "matrix", "scalar")


def test_random_real_shaped_answers_never_crash():
    rnd = random.Random(7)
    for _round in range(200):
        kind = rnd.choice(["vector", "matrix", "scalar"])
        if kind == "vector":
            result = [series(rnd.choice(["1", "NaN", "-Inf", "0.5"]), a=str(i)) for i in range(rnd.randint(0, 6))]
        elif kind == "matrix":
            result = [{"metric": {"a": str(i)}, "values": [[t, str(rnd.random())] for t in range(rnd.randint(1, 4))]}
                      for i in range(rnd.randint(0, 4))]
        else:
            result = [1.0, rnd.choice(["1", "NaN"])]
        for condition in ("empty", "< 0.5", "!= 1"):
            assert isinstance(pg.judge(answer(kind, result), "q", condition)["healthy"], bool)
