# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: prometheus_guard
short_description: Judge a Prometheus instant query's answer for the cluster guard
version_added: 0.2.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Takes what M(ansible.builtin.uri) registered for C(GET) or C(POST <server>/api/v1/query) and says
    whether it is healthy, whether asking again may help, and, when it is not healthy, what came back
    (the first series with their labels and values) and what to do.
  - V(empty) (the default) is healthy when the query returns no series, the way alerting rules work
    (C(ALERTS{alertstate="firing",severity="critical"})); a scalar or string result is refused, as it is
    never empty.
  - A comparison such as V(< 0.05) or V(== 1) (C(<), C(<=), C(==), C(!=), C(>=), C(>)) is healthy when
    there is at least one sample and every sample satisfies it; C(NaN) satisfies none.
  - No answer, an HTTP error, Prometheus' C(status=error) envelope and an answer of another shape are
    never healthy. Never fails on its input.
options:
  _input:
    description: The registered result of M(ansible.builtin.uri) (C(status), C(json), C(msg)).
    type: dict
    required: true
  query:
    description: The PromQL expression that was asked, for the message.
    type: str
    required: true
  healthy_when:
    description: V(empty), or a comparison every sample must satisfy such as V(< 0.05).
    type: str
    default: empty
  url:
    description: The server's URL, for the message (credentials and query string are left out).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Ask Prometheus
  ansible.builtin.uri:
    url: "http://prometheus.monitoring:9090/api/v1/query?query={{ 'ALERTS{severity=\"critical\"}' | urlencode }}"
    status_code: [200, 400, 422, 503]
  register: answer

- name: Nothing critical fires
  ansible.builtin.assert:
    that: verdict.healthy
    fail_msg: "{{ verdict.message }}"
  vars:
    verdict: "{{ answer | kubeops.node_maintenance.prometheus_guard('ALERTS{severity=\"critical\"}') }}"
"""

RETURN = r"""
_value:
  description: The verdict.
  type: dict
  contains:
    healthy:
      description: Whether the answer is healthy.
      type: bool
    retry:
      description:
        - Whether asking again may help (false for a query Prometheus cannot parse, a wrong URL or
          credential, a condition that does not fit the result).
      type: bool
    http_status:
      description: The HTTP status (-1 when there was no answer).
      type: int
    result_type:
      description: C(vector), C(matrix), C(scalar) or C(string); null when there was no result.
      type: str
    series:
      description: Series (or, for a scalar, values) the query returned.
      type: int
    offending:
      description: Up to 5 samples that make it unhealthy, each C(metric) (labels) and C(value).
      type: list
      elements: dict
    warnings:
      description: Prometheus' warnings.
      type: list
      elements: str
    message:
      description: The verdict in words, naming the query and what came back.
      type: str
"""

from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils._prometheus_guard import judge


def prometheus_guard(response, query, healthy_when="empty", url=""):
    return judge(response, query, healthy_when, url)


class FilterModule(object):
    def filters(self):
        return {"prometheus_guard": prometheus_guard}
