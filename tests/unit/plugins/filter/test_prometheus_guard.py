"""The prometheus_guard filter is registered and passes its arguments through to the verdict."""
from ansible_collections.kubeops.node_maintenance.plugins.filter import prometheus_guard as plugin


def test_the_filter_is_registered_and_judges():
    judge = plugin.FilterModule().filters()["prometheus_guard"]
    empty = {"status": 200, "json": {"status": "success", "data": {"resultType": "vector", "result": []}}}
    assert judge(empty, "ALERTS")["healthy"]
    firing = {"status": 200, "json": {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"alertname": "X"}, "value": [1, "1"]}]}}}
    verdict = judge(firing, "ALERTS", "empty", "http://prom:9090")
    assert not verdict["healthy"] and "at http://prom:9090: returned 1 series" in verdict["message"]
    assert judge(firing, "ALERTS", "== 1")["healthy"]
