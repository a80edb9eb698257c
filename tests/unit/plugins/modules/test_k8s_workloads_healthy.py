"""k8s_workloads_healthy's poll loop and list grouping, with a fake reader and clock.

The real API server is exercised by tests/integration/test_k8s_workloads_healthy.py.
"""
from __future__ import annotations

from ansible_collections.kubeops.node_maintenance.plugins.modules import k8s_workloads_healthy as module


def deployment(name, ready, replicas=3):
    return {"metadata": {"name": name, "namespace": "shop", "generation": 1},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": name}}}},
            "status": {"observedGeneration": 1, "replicas": replicas, "readyReplicas": ready,
                       "availableReplicas": ready, "updatedReplicas": replicas}}


class FakeReader:
    """Deployments whose ready count grows by one per poll; records every list call."""

    def __init__(self, start_ready, grow=1):
        self.ready = dict(start_ready)
        self.grow = grow
        self.calls = []

    def list(self, kind, namespace, names=None):
        self.calls.append((kind, namespace, None if names is None else tuple(sorted(names))))
        if kind == "Deployment":
            items = [deployment(name, ready) for name, ready in self.ready.items()]
            self.ready = {name: min(3, ready + self.grow) for name, ready in self.ready.items()}
            return [i for i in items if names is None or i["metadata"]["name"] in names]
        if kind == "PodDisruptionBudget":
            return [{"metadata": {"name": "web", "namespace": namespace, "generation": 1},
                     "spec": {"selector": {"matchLabels": {"app": "web"}}},
                     "status": {"observedGeneration": 1, "currentHealthy": 3, "desiredHealthy": 2}}]
        return []


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


REFS = [{"kind": "Deployment", "namespace": "shop", "name": "web"},
        {"kind": "Deployment", "namespace": "shop", "name": "api"}]


def test_one_list_per_kind_and_namespace_per_poll_until_healthy():
    reader = FakeReader({"web": 1, "api": 2})
    clock = Clock()
    result = module.wait_healthy(reader, REFS, [], True, timeout=60, poll_interval=2,
                                 sleep=clock.sleep, clock=clock)
    assert result["healthy"] is True and result["polls"] == 3 and result["seconds"] == 4.0
    deployment_calls = [c for c in reader.calls if c[0] == "Deployment"]
    assert deployment_calls == [("Deployment", "shop", ("api", "web"))] * 3
    # PDBs of the namespace listed once per poll, unfiltered, to match selectors
    assert [c for c in reader.calls if c[0] == "PodDisruptionBudget"] == [("PodDisruptionBudget", "shop", None)] * 3
    assert result["pdbs"][0]["matched_workloads"] == ["deployment shop/web"]


def test_timeout_reports_what_is_missing():
    reader = FakeReader({"web": 2}, grow=0)
    clock = Clock()
    result = module.wait_healthy(reader, REFS[:1], [], False, timeout=5, poll_interval=2,
                                 sleep=clock.sleep, clock=clock)
    assert result["healthy"] is False
    assert result["unhealthy"] == ["deployment shop/web: 2/3 ready, 2/3 available"]
    assert clock.now == 5.0 and result["polls"] == 4
    assert result["pdbs"] == []
    assert not [c for c in reader.calls if c[0] == "PodDisruptionBudget"]


def test_timeout_zero_polls_once():
    reader = FakeReader({"web": 3})
    clock = Clock()
    result = module.wait_healthy(reader, REFS[:1], [], False, timeout=0, poll_interval=2,
                                 sleep=clock.sleep, clock=clock)
    assert result["healthy"] is True and result["polls"] == 1
