# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Prometheus-query cluster guard: is the answer of ``GET/POST <server>/api/v1/query`` healthy?

Controller-side, plain functions of their inputs. The input is what ``ansible.builtin.uri``
registered (``status``, ``json``, ``msg``), so every way the request can go wrong (no answer, a proxy's
HTML error page, Prometheus' own error envelope, an answer of an unexpected shape) is judged here, once,
and never reported as healthy.

What counts as healthy (``healthy_when``):

- ``empty`` (the default): the query returns no series, the way alerting rules work: a query such as
  ``ALERTS{alertstate="firing",severity="critical"}`` is healthy when nothing fires. A scalar or string
  result is never empty, so it is refused as a query that does not fit this condition.
- ``<op> <number>`` (``< 0.05``, ``== 1``, ``>= 3``; ops ``< <= == != >= >``): every sample of the result
  satisfies the comparison, and there is at least one sample (no data is not evidence of health). A
  ``NaN`` sample satisfies no comparison, ``!=`` included; a native-histogram sample is not a number.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import operator
import re

SHOWN = 5  # offending series named in a refusal

CONDITION_VARIABLE = "node_maintenance_guard_prometheus_healthy_when"
QUERY_VARIABLE = "node_maintenance_guard_prometheus_query"
URL_VARIABLE = "node_maintenance_guard_prometheus_url"
HEADERS_VARIABLE = "node_maintenance_guard_prometheus_headers"

_OPERATORS = {"<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
              ">=": operator.ge, ">": operator.gt}
_CONDITION = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$")
# Client errors that asking again will not fix (a wrong query, path or credential).
_FINAL_STATUSES = (400, 401, 403, 404, 405)


class ConditionError(ValueError):
    """A ``healthy_when`` that cannot be understood."""


def parse_condition(text):
    """``("empty", None)`` or ``(op, threshold)`` from ``healthy_when``."""
    if text is None or str(text).strip().lower() == "empty":
        return "empty", None
    match = _CONDITION.match(str(text))
    if not match:
        raise ConditionError(
            "%s is %r: use empty (healthy when the query returns no series) or a comparison every "
            "sample must satisfy, such as '< 0.05' or '== 1' (one of %s)"
            % (CONDITION_VARIABLE, text, " ".join(sorted(_OPERATORS))))
    try:
        threshold = float(match.group(2))
    except ValueError:
        raise ConditionError("%s is %r: %r is not a number" % (CONDITION_VARIABLE, text, match.group(2)))
    if math.isnan(threshold):
        raise ConditionError("%s is %r: NaN compares false with everything" % (CONDITION_VARIABLE, text))
    return match.group(1), threshold


def sample_number(value):
    """A sample's value as a float (Prometheus sends ``"1"``, ``"NaN"``, ``"+Inf"``); None if not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def satisfies(number, op, threshold):
    """Whether one sample satisfies the comparison; NaN (and no number at all) satisfies none."""
    if number is None or math.isnan(number):
        return False
    return _OPERATORS[op](number, threshold)


def display_url(url):
    """The server's URL for messages: scheme, host and path only (no user:password@, query or fragment)."""
    text = str(url or "")
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^@/?#]*@)?([^?#]*)", text)
    if not match:
        return text.split("?", 1)[0].split("#", 1)[0]
    return match.group(1) + match.group(2)


def query_url(url):
    """``<server>/api/v1/query`` (the server's URL may carry a path prefix such as ``/prometheus``)."""
    return str(url or "").rstrip("/") + "/api/v1/query"


def describe_series(metric, value):
    """``name{label="value",...} = value``, the way Prometheus shows a series."""
    metric = metric if isinstance(metric, dict) else {}
    name = str(metric.get("__name__", ""))
    labels = ",".join('%s="%s"' % (key, str(metric[key]).replace("\\", "\\\\").replace('"', '\\"'))
                      for key in sorted(metric) if key != "__name__")
    return "%s{%s} = %s" % (name, labels, value)


def _samples(result_type, result):
    """``[(metric, value)]`` of the result, one entry per sample; None when the result has another shape.

    A value is the sample's string (``"1"``, ``"NaN"``) or ``"<native histogram>"``."""
    def point(pair):
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            return pair[1]
        raise ValueError("not a [time, value] pair")

    try:
        if result_type == "vector":
            out = []
            for series in result:
                if not isinstance(series, dict):
                    return None
                if "value" in series:
                    out.append((series.get("metric") or {}, point(series["value"])))
                elif "histogram" in series:
                    out.append((series.get("metric") or {}, "<native histogram>"))
                else:
                    return None
            return out
        if result_type == "matrix":
            out = []
            for series in result:
                if not isinstance(series, dict):
                    return None
                values = series.get("values") or []
                histograms = series.get("histograms") or []
                if not values and not histograms:
                    out.append((series.get("metric") or {}, "<no samples>"))
                out += [(series.get("metric") or {}, point(pair)) for pair in values]
                out += [(series.get("metric") or {}, "<native histogram>") for _pair in histograms]
            return out
        if result_type in ("scalar", "string"):
            return [({}, point(result))]
    except (TypeError, ValueError):
        return None
    return None


def _series_count(result_type, result):
    return len(result) if result_type in ("vector", "matrix") else 1


def _last_per_series(samples):
    """One ``(metric, value)`` per series, its last sample (a matrix has several per series)."""
    out = []
    index = {}
    for metric, value in samples:
        key = tuple(sorted((str(k), str(v)) for k, v in metric.items())) if isinstance(metric, dict) else ()
        if key in index:
            out[index[key]] = (metric, value)
        else:
            index[key] = len(out)
            out.append((metric, value))
    return out


def _listing(samples, shown):
    text = "; ".join(describe_series(metric, value) for metric, value in samples[:shown])
    if len(samples) > shown:
        text += "; and %d more" % (len(samples) - shown)
    return text


def judge(response, query, healthy_when="empty", url="", shown=SHOWN):
    """The guard's verdict on a registered ``ansible.builtin.uri`` result.

    Returns ``healthy``, ``retry`` (whether asking again within the wait timeout may help),
    ``http_status``, ``result_type``, ``series`` (how many the query returned), ``offending`` (up to
    ``shown`` samples that make it unhealthy, as ``{metric, value}``), ``warnings`` and ``message``
    (one line that names the query, what came back and what to do). Never raises.
    """
    verdict = {"healthy": False, "retry": True, "http_status": None, "result_type": None, "series": 0,
               "offending": [], "warnings": [], "message": ""}
    where = display_url(url) or "the Prometheus server"
    named = "Prometheus query %s at %s" % (query, where)

    def refuse(text, retry=True):
        verdict["retry"] = retry
        verdict["message"] = "%s: %s" % (named, text)
        return verdict

    try:
        op, threshold = parse_condition(healthy_when)
    except ConditionError as exc:
        return refuse(str(exc), retry=False)
    if not str(query or "").strip():
        return refuse("%s is empty; give the PromQL expression to check" % QUERY_VARIABLE, retry=False)

    response = response if isinstance(response, dict) else {}
    status = response.get("status")
    status = status if isinstance(status, int) and not isinstance(status, bool) else -1
    verdict["http_status"] = status
    envelope = response.get("json")
    if status <= 0:
        reason = str(response.get("msg") or "no response").strip()
        return refuse("no answer (%s); check %s and that the controller can reach the server"
                      % (reason, URL_VARIABLE))
    if not isinstance(envelope, dict) or envelope.get("status") not in ("success", "error"):
        hint = {401: "check the credentials in %s" % HEADERS_VARIABLE,
                403: "check the credentials in %s" % HEADERS_VARIABLE,
                404: "check that %s is the server's base URL (the guard adds /api/v1/query)" % URL_VARIABLE,
                }.get(status, "is %s a Prometheus server (or a proxy in front of one)?" % URL_VARIABLE)
        return refuse("HTTP %d, not a Prometheus API answer; %s" % (status, hint),
                      retry=status not in _FINAL_STATUSES)
    warnings = envelope.get("warnings")
    verdict["warnings"] = [str(w) for w in warnings if w] if isinstance(warnings, list) else []
    if envelope["status"] == "error" or not 200 <= status < 300:
        kind = str(envelope.get("errorType") or "error")
        error = str(envelope.get("error") or "no error text")
        advice = ("fix %s" % QUERY_VARIABLE) if kind == "bad_data" or status == 400 else \
            "the server could not answer it now"
        return refuse("HTTP %d, %s: %s; %s" % (status, kind, error, advice),
                      retry=kind != "bad_data" and status not in _FINAL_STATUSES)

    data = envelope.get("data")
    result_type = data.get("resultType") if isinstance(data, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    samples = _samples(result_type, result)
    if samples is None:
        return refuse("answer not understood (resultType %r); expected a vector, matrix or scalar result"
                      % (result_type,))
    verdict["result_type"] = result_type
    verdict["series"] = _series_count(result_type, result)

    if op == "empty":
        if result_type in ("scalar", "string"):
            return refuse("returned a %s (%s), which is never empty; healthy when empty fits a query that "
                          "returns series, such as ALERTS{alertstate=\"firing\"}, or set %s to a comparison "
                          "such as '== 0'" % (result_type, samples[0][1], CONDITION_VARIABLE), retry=False)
        if not result:
            verdict["healthy"] = True
            verdict["message"] = "%s returned no series: healthy" % named
            return verdict
        listed = _last_per_series(samples)
        verdict["offending"] = [{"metric": m, "value": v} for m, v in listed[:shown]]
        return refuse("returned %d series, healthy only when it returns none: %s. Resolve what they report "
                      "(or wait for it with node_maintenance_guard_wait_timeout), then re-run"
                      % (verdict["series"], _listing(listed, shown)))

    wanted = "%s %s" % (op, ("%g" % threshold))
    if result_type == "string":
        return refuse("returned a string (%s), not a number to compare with %s" % (samples[0][1], wanted),
                      retry=False)
    if not samples:
        return refuse("returned no samples, nothing to compare with %s (no data is not proof of health); "
                      "check the query, or use healthy when empty for an alert-style query" % wanted)
    bad = [(metric, value) for metric, value in samples
           if not satisfies(sample_number(value), op, threshold)]
    if not bad:
        verdict["healthy"] = True
        verdict["message"] = "%s: all %d samples %s: healthy" % (named, len(samples), wanted)
        return verdict
    verdict["offending"] = [{"metric": m, "value": v} for m, v in bad[:shown]]
    return refuse("%d of %d samples not %s: %s. Resolve what they report (or wait for it with "
                  "node_maintenance_guard_wait_timeout), then re-run"
                  % (len(bad), len(samples), wanted, _listing(bad, shown)))
