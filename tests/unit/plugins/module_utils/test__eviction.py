# -*- coding: utf-8 -*-
"""Eviction: request bodies, answer classification, PDB matching, and the engine's scheduling rules.

The engine is driven through a scripted stand-in for ``DrainApi`` that answers in ``Outcome``
terms (what the engine acts on), not an imitation of the Kubernetes API; the real API is covered
by tests/integration/test_k8s_node_drain.py.
"""

import threading
import time

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _eviction as ev
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _pod_rules, _pods


# --- bodies -----------------------------------------------------------------------------------

def test_grace_period_minus_one_is_left_out_zero_is_sent():
    assert ev.delete_options(-1) == {}
    assert ev.delete_options(0) == {"gracePeriodSeconds": 0}
    assert ev.delete_options(30, dry_run=True, uid="u") == {
        "gracePeriodSeconds": 30, "dryRun": ["All"], "preconditions": {"uid": "u"}}


def test_eviction_body_is_policy_v1_with_uid_precondition():
    body = ev.eviction_body("ns", "web-0", 10, False, "uid-1")
    assert body["apiVersion"] == "policy/v1" and body["kind"] == "Eviction"
    assert body["metadata"] == {"name": "web-0", "namespace": "ns"}
    assert body["deleteOptions"] == {"gracePeriodSeconds": 10, "preconditions": {"uid": "uid-1"}}


# --- answers ----------------------------------------------------------------------------------

PDB_429 = {"kind": "Status", "status": "Failure", "code": 429, "reason": "TooManyRequests",
           "message": "Cannot evict pod as it would violate the pod's disruption budget.",
           "details": {"causes": [{"reason": "DisruptionBudget",
                                   "message": "The disruption budget web needs 3 healthy pods and has 3 currently"}]}}


@pytest.mark.parametrize("status,body,kind", [
    (201, {"kind": "Status", "status": "Success"}, ev.OK),
    (200, None, ev.OK),
    (404, {"message": "pods \"x\" not found"}, ev.GONE),
    (409, {"message": "Precondition failed: UID in precondition: a, UID in object meta: b"}, ev.GONE),
    (409, {"message": "the object has been modified"}, ev.TRANSIENT),
    (429, PDB_429, ev.BUDGET),
    (500, {"message": "This pod has more than one PodDisruptionBudget, which the eviction subresource "
                      "does not support."}, ev.MULTIPLE_PDBS),
    (201, {"kind": "Status", "status": "Failure", "code": 500,
           "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource "
                      "does not support."}, ev.MULTIPLE_PDBS),
    (403, {"message": "forbidden: namespace x is being terminated",
           "details": {"causes": [{"reason": "NamespaceTerminating", "message": "ns terminating"}]}},
     ev.NAMESPACE_TERMINATING),
    (403, {"message": "pods \"x\" is forbidden: User \"bob\" cannot create resource \"pods/eviction\""}, ev.ERROR),
    (500, {"message": "etcdserver: request timed out"}, ev.TRANSIENT),
    (503, None, ev.TRANSIENT),
    (422, {"message": "invalid"}, ev.ERROR),
    (None, None, ev.TRANSIENT),
])
def test_classify_response(status, body, kind):
    assert ev.classify_response(status, body).kind == kind


def test_budget_refusal_keeps_the_servers_explanation():
    outcome = ev.classify_response(429, PDB_429)
    assert "needs 3 healthy pods and has 3 currently" in outcome.message


# --- PDB selection ----------------------------------------------------------------------------

def pdb(name, selector, namespace="default", allowed=1, healthy=3, desired=2, expected=3):
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": selector, "maxUnavailable": 1},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired,
                       "expectedPods": expected}}


def pod(name="p", labels=None, namespace="default", ready=True):
    return {"metadata": {"name": name, "namespace": namespace, "uid": "uid-" + name, "labels": labels or {}},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_pdbs_covering_only_same_namespace():
    pdbs = [pdb("web", {"matchLabels": {"app": "web"}}), pdb("all", {}),
            pdb("other-ns", {"matchLabels": {"app": "web"}}, namespace="prod")]
    assert ev.pdbs_covering(pod(labels={"app": "web"}), pdbs) == [("default", "web"), ("default", "all")]


def test_pdb_text_and_description():
    info = ev.describe_pdb(pdb("web", {}, allowed=0, healthy=2, desired=2))
    assert info["disruptions_allowed"] == 0 and info["max_unavailable"] == 1
    assert ev.pdb_text(info) == "pdb default/web (disruptionsAllowed 0, healthy 2/2)"


def test_poll_interval_backs_off_and_resets():
    interval = ev.next_poll_interval(None, False)
    assert interval == ev.POLL_MIN_SECONDS
    for _step in range(20):
        interval = ev.next_poll_interval(interval, False)
    assert interval == ev.POLL_MAX_SECONDS
    assert ev.next_poll_interval(interval, True) == ev.POLL_MIN_SECONDS


def test_count_actions():
    counts = ev.count_actions([{"action": "evicted"}, {"action": "evicted"}, {"action": "skipped"}])
    assert counts["evicted"] == 2 and counts["skipped"] == 1 and counts["failed"] == 0 and counts["total"] == 3


# --- the engine -------------------------------------------------------------------------------

class ScriptedApi:
    """Answers evictions from a script, keeps a node's pod list, and records concurrency."""

    def __init__(self, pods, answers=None, delay=0.0, pdbs=None, vanish_after_accept=True):
        self.present = dict((p["metadata"]["name"], p["metadata"]["uid"]) for p in pods)
        self.answers = answers or {}       # name -> list of Outcome kinds, consumed in order
        self.delay = delay
        self.pdbs = pdbs or []
        self.vanish = vanish_after_accept
        self.lock = threading.Lock()
        self.inflight = 0
        self.max_inflight = 0
        self.calls = []
        self.lists = 0
        self.pdb_lists = 0

    def _answer(self, verb, namespace, name, body):
        with self.lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.calls.append((verb, name, body))
        time.sleep(self.delay)
        with self.lock:
            self.inflight -= 1
            script = self.answers.get(name) or []
            kind = script.pop(0) if script else ev.OK
            if kind == ev.OK and self.vanish and not (body.get("dryRun") or body.get("deleteOptions", {}).get("dryRun")):
                self.present.pop(name, None)
        return ev.Outcome(kind, {ev.OK: 201, ev.BUDGET: 429, ev.GONE: 404, ev.MULTIPLE_PDBS: 500,
                                 ev.NAMESPACE_TERMINATING: 403, ev.TRANSIENT: 503, ev.ERROR: 403}[kind],
                          "scripted " + kind)

    def evict(self, namespace, name, body):
        return self._answer("evict", namespace, name, body)

    def delete(self, namespace, name, options):
        return self._answer("delete", namespace, name, options)

    def list_node_pod_metadata(self, node):
        with self.lock:
            self.lists += 1
            return [{"namespace": "default", "name": n, "uid": u} for n, u in self.present.items()]

    def list_pdbs(self):
        self.pdb_lists += 1
        return self.pdbs


def tasks_for(pods, method="evict", pdb_keys=()):
    return [ev.PodTask(dict(_pods.describe_pod(p), plan="evict", reason="evictable", warnings=[]), method,
                       ready=_pod_rules.is_ready(p), pdbs=pdb_keys) for p in pods]


def run(api, tasks, timeout=10.0, **kwargs):
    drainer = ev.Drainer(api, "node-1", time.monotonic() + timeout, **kwargs)
    return drainer, drainer.run(tasks)


def test_concurrency_is_bounded_and_every_pod_ends_evicted():
    pods = [pod("p%d" % i) for i in range(30)]
    api = ScriptedApi(pods, delay=0.02)
    _drainer, results = run(api, tasks_for(pods), max_concurrency=4)
    assert api.max_inflight <= 4
    assert api.max_inflight == 4  # and the pool is actually used
    assert [r["action"] for r in results] == ["evicted"] * 30
    assert all(r["attempts"] == 1 for r in results)


def test_waiting_costs_one_list_per_poll_not_one_get_per_pod():
    pods = [pod("p%d" % i) for i in range(50)]
    api = ScriptedApi(pods)
    drainer, results = run(api, tasks_for(pods), max_concurrency=10)
    assert api.lists == drainer.polls
    assert api.lists < 10


def test_pod_replaced_under_the_same_name_counts_as_gone():
    pods = [pod("web-0")]
    api = ScriptedApi(pods, vanish_after_accept=False)
    tasks = tasks_for(pods)

    def replace_later():
        time.sleep(0.3)
        with api.lock:
            api.present["web-0"] = "new-uid"
    threading.Thread(target=replace_later).start()
    _drainer, results = run(api, tasks)
    assert results[0]["action"] == "evicted"


def test_429_is_retried_until_accepted_and_attempts_counted():
    pods = [pod("a")]
    api = ScriptedApi(pods, answers={"a": [ev.BUDGET, ev.BUDGET]})
    _drainer, results = run(api, tasks_for(pods), retry_delay=0.05)
    assert results[0]["action"] == "evicted" and results[0]["attempts"] == 3


def test_budget_refusal_does_not_hold_a_worker():
    # One worker; pod a is refused for a while; b and c must not wait behind it.
    pods = [pod("a"), pod("b"), pod("c")]
    api = ScriptedApi(pods, answers={"a": [ev.BUDGET] * 3})
    _drainer, results = run(api, tasks_for(pods), max_concurrency=1, retry_delay=0.2)
    order = [name for _verb, name, _body in api.calls]
    assert order[:3] == ["a", "b", "c"]
    assert [r["action"] for r in results] == ["evicted"] * 3


def test_timeout_names_the_blocking_pdb_with_its_numbers():
    pods = [pod("a", labels={"app": "web"})]
    budget = pdb("web", {"matchLabels": {"app": "web"}}, allowed=0, healthy=3, desired=3)
    api = ScriptedApi(pods, answers={"a": [ev.BUDGET] * 100}, pdbs=[budget])
    start = time.monotonic()
    _drainer, results = run(api, tasks_for(pods, pdb_keys=[("default", "web")]), timeout=0.6, retry_delay=0.1,
                            pdbs=[budget])
    assert time.monotonic() - start < 2
    result = results[0]
    assert result["action"] == "failed"
    assert "pdb default/web (disruptionsAllowed 0, healthy 3/3)" in result["reason"]
    assert result["pdb"][0]["name"] == "web"


def test_spent_budget_holds_evictions_back_instead_of_collecting_429s():
    pods = [pod("p%d" % i, labels={"app": "web"}) for i in range(5)]
    budget = pdb("web", {"matchLabels": {"app": "web"}}, allowed=1)
    api = ScriptedApi(pods, pdbs=[budget])
    _drainer, results = run(api, tasks_for(pods, pdb_keys=[("default", "web")]), pdbs=[budget], retry_delay=30)
    # The scripted budget never shrinks, so each fresh PDB list lets exactly one more pod go.
    assert [r["action"] for r in results] == ["evicted"] * 5
    assert all(r["attempts"] == 1 for r in results)
    assert api.pdb_lists >= 4


def test_unready_pods_are_not_held_back_by_a_spent_budget():
    pods = [pod("p%d" % i, labels={"app": "web"}, ready=False) for i in range(3)]
    budget = pdb("web", {"matchLabels": {"app": "web"}}, allowed=0)
    api = ScriptedApi(pods, pdbs=[budget])
    _drainer, results = run(api, tasks_for(pods, pdb_keys=[("default", "web")]), pdbs=[budget], retry_delay=30,
                            timeout=5)
    assert [r["action"] for r in results] == ["evicted"] * 3


def test_multiple_pdbs_fails_that_pod_only():
    pods = [pod("a"), pod("b")]
    api = ScriptedApi(pods, answers={"a": [ev.MULTIPLE_PDBS]})
    _drainer, results = run(api, tasks_for(pods))
    assert results[0]["action"] == "failed" and "more than one PodDisruptionBudget" in results[0]["reason"]
    assert results[1]["action"] == "evicted"


def test_gone_on_eviction_is_not_counted_as_our_change():
    pods = [pod("a")]
    api = ScriptedApi(pods, answers={"a": [ev.GONE]})
    tasks = tasks_for(pods)
    _drainer, results = run(api, tasks)
    assert results[0]["action"] == "waited"
    assert tasks[0].accepted_at is None


def test_terminating_namespace_falls_back_to_delete():
    pods = [pod("a")]
    api = ScriptedApi(pods, answers={"a": [ev.NAMESPACE_TERMINATING]})
    _drainer, results = run(api, tasks_for(pods))
    assert [verb for verb, _n, _b in api.calls] == ["evict", "delete"]
    assert results[0]["action"] == "deleted"


def test_transient_errors_are_retried_with_backoff():
    pods = [pod("a")]
    api = ScriptedApi(pods, answers={"a": [ev.TRANSIENT, ev.TRANSIENT]})
    _drainer, results = run(api, tasks_for(pods))
    assert results[0]["action"] == "evicted" and results[0]["attempts"] == 3


def test_other_errors_fail_the_pod_with_the_servers_words():
    pods = [pod("a")]
    api = ScriptedApi(pods, answers={"a": [ev.ERROR]})
    _drainer, results = run(api, tasks_for(pods))
    assert results[0]["action"] == "failed" and "scripted error" in results[0]["reason"]


def test_disable_eviction_deletes():
    pods = [pod("a")]
    api = ScriptedApi(pods)
    _drainer, results = run(api, tasks_for(pods, method="delete"), grace_period=0)
    assert api.calls[0][0] == "delete" and api.calls[0][2]["gracePeriodSeconds"] == 0
    assert results[0]["action"] == "deleted"


def test_wait_tasks_send_nothing_and_time_out_with_a_reason():
    pods = [pod("a")]
    api = ScriptedApi(pods)
    _drainer, results = run(api, tasks_for(pods, method="wait"), timeout=0.5)
    assert api.calls == []
    assert results[0]["action"] == "failed" and "still on the node" in results[0]["reason"]


def test_dry_run_sends_dry_run_and_waits_for_nothing():
    pods = [pod("a"), pod("b")]
    api = ScriptedApi(pods, answers={"b": [ev.BUDGET]})
    _drainer, results = run(api, tasks_for(pods), dry_run=True)
    assert all(body["deleteOptions"]["dryRun"] == ["All"] for _v, _n, body in api.calls)
    assert api.lists == 0
    assert results[0]["action"] == "none" and "would be accepted" in results[0]["reason"]
    assert results[1]["action"] == "none" and "would be refused" in results[1]["reason"]


# --- found by the fault suite (tests/integration/test_faults_drain.py) -------------------------

class NodeDeletingApi(ScriptedApi):
    """Refuses every eviction (a budget) and answers that the node is gone once ``gone`` is set."""

    def __init__(self, pods):
        super().__init__(pods, answers=dict((p["metadata"]["name"], [ev.BUDGET] * 1000) for p in pods))
        self.gone = False
        self.node_checks = 0

    def get_node(self, name):
        self.node_checks += 1
        return None if self.gone else {"metadata": {"name": name}, "spec": {"unschedulable": True}}


def test_a_node_deleted_mid_drain_stops_it_at_once(monkeypatch):
    monkeypatch.setattr(ev, "NODE_CHECK_SECONDS", 0.1)
    pods = [pod("a"), pod("b")]
    api = NodeDeletingApi(pods)
    threading.Timer(0.3, lambda: setattr(api, "gone", True)).start()
    started = time.monotonic()
    drainer, results = run(api, tasks_for(pods), timeout=20, retry_delay=0.05)
    assert time.monotonic() - started < 5, "stopped long before the timeout"
    assert drainer.node_deleted
    assert [r["action"] for r in results] == ["failed", "failed"]
    assert all("when the node was deleted" in r["reason"] for r in results)


def test_node_check_errors_do_not_stop_the_drain(monkeypatch):
    monkeypatch.setattr(ev, "NODE_CHECK_SECONDS", 0.05)
    pods = [pod("a")]
    api = ScriptedApi(pods, answers={"a": [ev.BUDGET] * 4})

    def broken(name):
        raise ConnectionError("refused")
    api.get_node = broken
    drainer, results = run(api, tasks_for(pods), retry_delay=0.1)
    assert not drainer.node_deleted and results[0]["action"] == "evicted"


def test_a_budget_created_mid_drain_is_found_when_budgets_are_listed_again():
    # The pod was under "web" when the drain began; "web" was replaced by "freeze" meanwhile.
    pods = [pod("a", labels={"app": "web"})]
    freeze = pdb("freeze", {"matchLabels": {"app": "web"}}, allowed=0, healthy=3, desired=3)
    api = ScriptedApi(pods, answers={"a": [ev.BUDGET] * 100}, pdbs=[freeze])
    old = pdb("web", {"matchLabels": {"app": "web"}}, allowed=1)
    task = ev.PodTask(dict(_pods.describe_pod(pods[0]), plan="evict", reason="evictable", warnings=[]), "evict",
                      ready=True, pdbs=[("default", "web")], labels={"app": "web"})
    _drainer, results = run(api, [task], timeout=1.0, retry_delay=0.1, pdbs=[old])
    assert results[0]["action"] == "failed"
    assert "pdb default/freeze (disruptionsAllowed 0, healthy 3/3)" in results[0]["reason"]
    assert results[0]["pdb"][0]["name"] == "freeze"
    # Once the fresh list showed the spent budget, the pod was held back, not sent for more 429s.
    assert len(api.calls) < 5


class PollFailingApi(ScriptedApi):
    """Evictions are accepted but the pods never leave; every poll after the first fails with
    ``error`` (an exception instance)."""

    def __init__(self, pods, error):
        super().__init__(pods, vanish_after_accept=False)
        self.error = error

    def list_node_pod_metadata(self, node):
        listed = super().list_node_pod_metadata(node)
        if self.lists > 1:
            raise self.error
        return listed


def status_error(status, message):
    from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import api_exception

    return api_exception(status, {"kind": "Status", "message": message, "code": status})


@pytest.mark.parametrize("status, words", [(401, "unauthorized (401)"), (403, "forbidden (403)")])
def test_credentials_refused_while_waiting_stop_the_drain_at_once(status, words):
    pods = [pod("a"), pod("b")]
    api = PollFailingApi(pods, status_error(status, "Unauthorized" if status == 401 else
                                            'pods is forbidden: User "x" cannot list resource "pods"'))
    started = time.monotonic()
    drainer, results = run(api, tasks_for(pods), timeout=20)
    assert time.monotonic() - started < 5, "stopped long before the 20 s timeout"
    assert drainer.stopped and words in drainer.stopped and "pods on node/node-1" in drainer.stopped
    assert [r["action"] for r in results] == ["failed", "failed"]
    assert all(r["reason"].startswith("not confirmed gone: the drain stopped (pods on node/node-1: ")
               for r in results)


def test_other_poll_failures_are_retried_and_quoted_at_the_timeout():
    pods = [pod("a")]
    api = PollFailingApi(pods, status_error(503, "etcd leader changed"))
    drainer, results = run(api, tasks_for(pods), timeout=1.5)
    assert drainer.stopped is None
    assert api.lists > 2, "kept polling after the 503s"
    assert results[0]["action"] == "failed"
    assert "evicted" in results[0]["reason"] and "still on the node" in results[0]["reason"]
    assert "poll(s) of the node's pods failed: pods on node/node-1: service unavailable (503): etcd leader changed" \
        in results[0]["reason"]


# --- Cluster API's wait-completed, and the re-cordon guard (issue #20) ---------------------------

class PhasedApi(ScriptedApi):
    """Pods that stay on the node and finish (phase Succeeded) when told to; lists with
    ``unfinished`` leave finished pods out, as the field selector does."""

    def __init__(self, pods):
        super().__init__(pods, vanish_after_accept=False)
        self.finished = set()
        self.unfinished_lists = 0

    def list_node_pod_metadata(self, node, unfinished=False):
        listed = super().list_node_pod_metadata(node)
        if unfinished:
            self.unfinished_lists += 1
            return [meta for meta in listed if meta["name"] not in self.finished]
        return listed


def test_wait_completed_pods_are_never_evicted_and_done_when_they_finish():
    pods = [pod("job-a"), pod("job-b")]
    api = PhasedApi(pods)
    threading.Timer(0.3, lambda: api.finished.add("job-a")).start()
    threading.Timer(0.6, lambda: api.present.pop("job-b")).start()   # deleted by its owner instead
    _drainer, results = run(api, tasks_for(pods, method="wait_completed"), timeout=10)
    assert api.calls == [], "not one eviction or delete"
    assert [r["action"] for r in results] == ["waited", "waited"]
    assert all("wait-completed" in r["reason"] for r in results)
    # Only the unfinished list is needed while only such pods wait: one list per poll.
    assert api.unfinished_lists >= 2 and api.lists == api.unfinished_lists


def test_a_wait_completed_pod_still_running_at_the_timeout_is_named_with_the_way_out():
    pods = [pod("job-a")]
    _drainer, results = run(PhasedApi(pods), tasks_for(pods, method="wait_completed"), timeout=0.5)
    assert results[0]["action"] == "failed"
    assert "cluster.x-k8s.io/drain=wait-completed" in results[0]["reason"]
    assert "still running at the timeout" in results[0]["reason"] and "ignore_opt_outs" in results[0]["reason"]


class UncordoningApi(ScriptedApi):
    """Every eviction is refused (a budget) until ``relax``; the node reads as uncordoned while
    ``uncordoned`` is set."""

    def __init__(self, pods):
        super().__init__(pods, answers=dict((p["metadata"]["name"], [ev.BUDGET] * 1000) for p in pods))
        self.uncordoned = False
        self.node_reads = 0

    def get_node(self, name):
        self.node_reads += 1
        return {"metadata": {"name": name}, "spec": {} if self.uncordoned else {"unschedulable": True}}


def test_the_periodic_node_read_calls_on_uncordoned_when_someone_uncordoned_the_node(monkeypatch):
    monkeypatch.setattr(ev, "NODE_CHECK_SECONDS", 0.1)
    pods = [pod("a")]
    api = UncordoningApi(pods)
    seen = []

    def recordon(node):
        seen.append(node["metadata"]["name"])
        api.uncordoned = False   # what the guard's patch does

    def uncordon_then_relax():
        api.uncordoned = True
        time.sleep(0.5)
        api.answers["a"] = []
    threading.Timer(0.25, uncordon_then_relax).start()
    drainer, results = run(api, tasks_for(pods), timeout=10, retry_delay=0.05, on_uncordoned=recordon)
    assert seen == ["node-1"], "called once, for the one uncordon"
    assert results[0]["action"] == "evicted" and not drainer.node_deleted
    # One node read per check, as before the guard: it costs no request of its own.
    assert api.node_reads >= 2


def test_without_on_uncordoned_a_schedulable_node_is_left_as_it_is(monkeypatch):
    monkeypatch.setattr(ev, "NODE_CHECK_SECONDS", 0.05)
    pods = [pod("a")]
    api = UncordoningApi(pods)
    api.uncordoned = True
    threading.Timer(0.3, lambda: api.answers.__setitem__("a", [])).start()
    drainer, results = run(api, tasks_for(pods), timeout=10, retry_delay=0.05)
    assert results[0]["action"] == "evicted" and api.node_reads >= 1 and not drainer.node_deleted
