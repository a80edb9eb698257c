# -*- coding: utf-8 -*-
"""_drain_order: a pod's tier (critical last, user rules' orders, priority), the rules' validation, and
the drain running one tier after another with the eviction engine (over a scripted ``DrainApi``
stand-in, as test__eviction.py does). Whole drains: test__drain.py; the real API server:
tests/integration/test_k8s_node_drain.py."""

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _drain_order as order
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _eviction as ev
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _pod_rules, _pods


def pod(name, priority=None, class_name=None, labels=None, namespace="shop", owner="ReplicaSet"):
    meta = {"name": name, "namespace": namespace, "uid": "uid-" + name, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner, "name": owner.lower() + "-1",
                                    "controller": True}]
    spec = {"containers": [{"name": "app"}]}
    if priority is not None:
        spec["priority"] = priority
    if class_name:
        spec["priorityClassName"] = class_name
    return {"metadata": meta, "spec": spec,
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}


def planned(pods, rules=(), mode=order.MODE_PRIORITY, namespace_labels=None, **options):
    entries = _pods.plan_drain(pods, **options)
    tiers = order.assign(entries, dict((_pods.pod_key(p), p) for p in pods), rules, mode, namespace_labels)
    return entries, tiers


# --- what a pod is ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec_pod,critical", [
    (pod("a"), False),
    (pod("a", priority=1000000000, class_name="highest-user-class"), False),   # user classes stop at 1e9
    (pod("a", priority=1999999999), False),
    (pod("a", priority=2000000000), True),                                      # SystemCriticalPriority
    (pod("a", priority=2000001000, class_name="system-node-critical"), True),
    (pod("a", class_name="system-cluster-critical"), True),                     # Priority admission off
    (pod("a", class_name="system-node-critical"), True),
    (pod("a", class_name="system-critical-but-not"), False),
])
def test_critical_is_the_two_system_classes_or_their_priority(spec_pod, critical):
    assert order.is_critical(spec_pod) is critical


def test_priority_unset_or_not_a_number_is_zero():
    assert order.pod_priority(pod("a")) == 0
    assert order.pod_priority(pod("a", priority=-5)) == -5
    assert order.pod_priority({"spec": {"priority": True}}) == 0
    assert order.pod_priority({"spec": {"priority": "7"}}) == 0
    assert order.pod_priority({}) == 0


# --- rules ------------------------------------------------------------------------------------

DB = {"selector": {"matchLabels": {"app": "db"}}, "order": 10}
ANY = {"order": -1}


def test_the_first_rule_that_selects_the_pod_gives_its_order():
    rules = [DB, {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}, "order": 5}]
    assert order.rule_for(pod("db-0", labels={"app": "db"}), rules) == 0
    assert order.rule_for(pod("web", labels={"app": "web"}), rules) == 1
    assert order.rule_for(pod("bare"), rules) is None
    assert order.tier_key(pod("db-0", labels={"app": "db"}), rules) == (0, 10, 0)
    assert order.tier_key(pod("bare"), rules) == (0, 0, 0)


def test_a_missing_selector_selects_every_pod_and_an_empty_one_too():
    assert order.rule_for(pod("x"), [ANY]) == 0
    assert order.rule_for(pod("x"), [{"selector": {}, "namespace_selector": None, "order": 3}]) == 0


def test_a_namespace_selector_reads_the_namespaces_labels():
    rule = {"namespace_selector": {"matchLabels": {"team": "data"}}, "order": 7}
    labels = {"warehouse": {"team": "data"}, "shop": {"team": "web"}}
    assert order.rule_for(pod("a", namespace="warehouse"), [rule], labels) == 0
    assert order.rule_for(pod("a", namespace="shop"), [rule], labels) is None
    assert order.rule_for(pod("a", namespace="unknown"), [rule], labels) is None
    # selector and namespace_selector are ANDed
    both = dict(rule, selector={"matchLabels": {"app": "db"}})
    assert order.rule_for(pod("a", namespace="warehouse", labels={"app": "db"}), [both], labels) == 0
    assert order.rule_for(pod("a", namespace="warehouse", labels={"app": "web"}), [both], labels) is None
    assert order.uses_namespace_labels([DB, rule]) and not order.uses_namespace_labels([DB, ANY])


def test_the_modes_tier_by_less():
    critical = pod("dns", priority=2000000000, class_name="system-cluster-critical")
    assert order.tier_key(critical, (), order.MODE_PRIORITY) == (1, 0, 2000000000)
    assert order.tier_key(critical, (), order.MODE_CRITICAL_LAST) == (1, 0, 0)
    assert order.tier_key(critical, (), order.MODE_NONE) == (0, 0, 0)
    assert order.tier_fields((1, 0, 2000000000), order.MODE_PRIORITY) == {
        "order": 0, "critical": True, "priority": 2000000000}
    assert order.tier_fields((1, 0, 0), order.MODE_CRITICAL_LAST) == {"order": 0, "critical": True, "priority": None}
    assert order.tier_fields((0, 4, 0), order.MODE_NONE) == {"order": 4, "critical": None, "priority": None}


@pytest.mark.parametrize("rules,errors", [
    ([], []),
    ([DB, ANY, {"selector": None, "namespace_selector": {"matchLabels": {"a": "b"}}, "order": 2 ** 31 - 1}], []),
    (["db"], ["drain_rules[0] must be a dict with selector, namespace_selector and order"]),
    ([{"selector": {}, "order": None}], ["drain_rules[0]: order must be an integer from -2147483648 to 2147483647"]),
    ([ANY, {"order": 2 ** 31}], ["drain_rules[1]: order must be an integer from -2147483648 to 2147483647"]),
    ([{"order": True}], ["drain_rules[0]: order must be an integer from -2147483648 to 2147483647"]),
    ([{"order": 1, "priority": 3}], ["drain_rules[0]: unknown key(s) priority; a rule has selector, "
                                     "namespace_selector, order"]),
    ([{"order": 1, "selector": {"matchLabel": {"a": "b"}}}],
     ["drain_rules[0].selector: unknown key(s) matchLabel; a label selector has matchLabels and matchExpressions"]),
    ([{"order": 1, "selector": {"matchLabels": {"a": 1}}}],
     ["drain_rules[0].selector: matchLabels must map label keys to string values"]),
    ([{"order": 1, "selector": "app=db"}],
     ["drain_rules[0].selector: must be a label selector (matchLabels, matchExpressions)"]),
    ([{"order": 1, "namespace_selector": {"matchExpressions": [
        {"key": "a", "operator": "In"}, {"key": "b", "operator": "Exists", "values": ["x"]},
        {"key": "c", "operator": "Gt", "values": ["1"]}, {"operator": "Exists"}]}}],
     ["drain_rules[0].namespace_selector: matchExpressions[0]: In needs values",
      "drain_rules[0].namespace_selector: matchExpressions[1]: Exists takes no values",
      "drain_rules[0].namespace_selector: matchExpressions[2]: operator 'Gt' is not one of In, NotIn, Exists, "
      "DoesNotExist",
      "drain_rules[0].namespace_selector: matchExpressions[3] needs a key"]),
])
def test_rules_the_api_server_would_refuse_are_named(rules, errors):
    assert order.validate_rules(rules) == errors


# --- tiers over a node's pods -----------------------------------------------------------------

def test_tiers_in_order_with_indexes_counts_and_each_pods_tier():
    pods = [pod("dns", priority=2000000000, class_name="system-cluster-critical"),
            pod("batch", priority=-10), pod("web-1"), pod("web-2"),
            pod("db-0", labels={"app": "db"}, priority=1000), pod("mirror", owner=None)]
    pods[-1]["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
    entries, tiers = planned(pods, [DB])
    assert [(t["index"], t["order"], t["critical"], t["priority"], t["pods"]) for t in tiers] == [
        (1, 0, False, -10, 1), (2, 0, False, 0, 2), (3, 10, False, 1000, 1), (4, 0, True, 2000000000, 1)]
    tier_of = dict((e["name"], e["tier"] and e["tier"]["index"]) for e in entries)
    assert tier_of == {"batch": 1, "web-1": 2, "web-2": 2, "db-0": 3, "dns": 4, "mirror": None}
    assert [e["drain_rule"] for e in entries] == [None, None, None, None, 0, None]
    assert entries[4]["tier"] == {"index": 3, "order": 10, "critical": False, "priority": 1000}


def test_a_flat_node_is_one_tier_as_before():
    pods = [pod("web-%d" % i) for i in range(300)]
    _entries, tiers = planned(pods)
    assert [(t["index"], t["pods"]) for t in tiers] == [(1, 300)]


def test_a_pod_waited_for_to_complete_holds_its_tier_as_an_evicted_one():
    """Cluster API's wait-completed pod is not evicted but waited for: it sits in its priority's
    tier, so the later tiers (here the critical one) start only once it has finished."""
    waiting = pod("job-0", labels={"cluster.x-k8s.io/drain": "wait-completed"})
    entries, tiers = planned([waiting, pod("dns", class_name="system-cluster-critical")])
    assert [e["plan"] for e in entries] == [_pods.PLAN_WAIT_COMPLETED, _pods.PLAN_EVICT]
    assert [(t["index"], t["critical"], t["pods"]) for t in tiers] == [(1, False, 1), (2, True, 1)]
    assert [e["tier"]["index"] for e in entries] == [1, 2]


PRIORITIES = st.sampled_from([None, -100, 0, 0, 1000, 1000000000, 2000000000, 2000001000])
CLASSES = st.sampled_from([None, None, "system-cluster-critical", "system-node-critical", "batch"])
OWNERS = st.sampled_from(["ReplicaSet", "ReplicaSet", "StatefulSet", "DaemonSet", None])
LABELS = st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(["db", "web"]), max_size=2)
RULES = st.lists(st.fixed_dictionaries({
    "selector": st.one_of(st.none(), st.builds(lambda labels: {"matchLabels": labels}, LABELS)),
    "order": st.integers(-3, 3)}), max_size=3)


@st.composite
def node_pods(draw):
    count = draw(st.integers(0, 12))
    pods = []
    for i in range(count):
        made = pod("p%d" % i, draw(PRIORITIES), draw(CLASSES), draw(LABELS), draw(st.sampled_from(["a", "b"])),
                   draw(OWNERS))
        if draw(st.booleans()) and i % 5 == 0:
            made["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "x"}
        if draw(st.booleans()) and i % 4 == 0:
            made["status"]["phase"] = "Succeeded"
        pods.append(made)
    return pods


@settings(max_examples=300)
@given(node_pods(), RULES, st.sampled_from(order.MODES), st.booleans())
def test_the_tiers_are_a_total_preorder_critical_last_and_daemonset_pods_in_none(pods, rules, mode, ignore_ds):
    entries, tiers = planned(pods, rules, mode, ignore_daemonsets=ignore_ds, force=True)
    by_name = dict((p["metadata"]["name"], p) for p in pods)
    tiered = [e for e in entries if e["tier"] is not None]
    # the tiers: numbered from 1, each a distinct key, in increasing order, counting their pods
    assert [t["index"] for t in tiers] == list(range(1, len(tiers) + 1))
    assert sum(t["pods"] for t in tiers) == len(tiered)
    assert all(t["pods"] > 0 for t in tiers)
    keys = [(t["critical"] or False, t["order"], t["priority"] or 0) for t in tiers]
    assert keys == sorted(set(keys))
    # only the pods the drain moves are in a tier; DaemonSet pods whose DaemonSet exists never are
    for entry in entries:
        assert (entry["tier"] is not None) == (entry["plan"] in order.TIERED_PLANS)
        source = by_name[entry["name"]]
        if _pod_rules.is_mirror_pod(source) or (
                _pod_rules.is_daemonset_pod(source) and not _pod_rules.is_finished(source)):
            assert entry["tier"] is None
    for one in tiered:
        for other in tiered:
            a, b = by_name[one["name"]], by_name[other["name"]]
            ka = order.tier_key(a, rules, mode)
            kb = order.tier_key(b, rules, mode)
            # the same key is the same tier; a lower key a lower tier (a total preorder on pods)
            assert (ka == kb) == (one["tier"]["index"] == other["tier"]["index"])
            assert (ka < kb) == (one["tier"]["index"] < other["tier"]["index"])
            if mode != order.MODE_NONE and order.is_critical(a) and not order.is_critical(b):
                assert one["tier"]["index"] > other["tier"]["index"]   # critical after every other pod
            if ka[0] == kb[0] and ka[1] < kb[1]:
                assert one["tier"]["index"] < other["tier"]["index"]   # lower order first
            if mode == order.MODE_PRIORITY and ka[:2] == kb[:2] and order.pod_priority(a) < order.pod_priority(b):
                assert one["tier"]["index"] < other["tier"]["index"]   # lower priority first
            if mode == order.MODE_NONE and not rules:
                assert one["tier"]["index"] == other["tier"]["index"] == 1  # kubectl: all at once


# --- running the tiers ------------------------------------------------------------------------

class NodeApi:
    """A node's pods for the engine: an accepted eviction leaves the pod terminating for ``linger``
    seconds (``hold``: until released) before it is gone; records when each eviction came and
    each pod went."""

    def __init__(self, pods, linger=0.2, refuse=None, hold=()):
        self.lock = threading.Lock()
        self.present = dict((p["metadata"]["name"], p["metadata"]["uid"]) for p in pods)
        self.linger = linger
        self.refuse = refuse or {}        # name -> Outcome kind answered every time
        self.hold = set(hold)
        self.evicted_at = {}
        self.gone_at = {}
        self.inflight = self.max_inflight = 0
        self.pdb_lists = 0

    def evict(self, namespace, name, body):
        with self.lock:
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        time.sleep(0.01)
        with self.lock:
            self.inflight -= 1
            kind = self.refuse.get(name)
            if kind:
                return ev.Outcome(kind, {ev.BUDGET: 429, ev.ERROR: 403}[kind], "scripted " + kind)
            self.evicted_at.setdefault(name, time.monotonic())
        if not (body.get("deleteOptions") or {}).get("dryRun") and name not in self.hold:
            threading.Timer(self.linger, self._gone, (name,)).start()
        return ev.Outcome(ev.OK, 201, "")

    def _gone(self, name):
        with self.lock:
            self.present.pop(name, None)
            self.gone_at[name] = time.monotonic()

    def delete(self, namespace, name, options):
        return self.evict(namespace, name, {"deleteOptions": options})

    def list_node_pod_metadata(self, node):
        with self.lock:
            return [{"namespace": "shop", "name": n, "uid": u} for n, u in self.present.items()]

    def list_pdbs(self):
        self.pdb_lists += 1
        return []

    def node_exists(self, name):
        return True


def tiered_run(pods, rules=(), timeout=10.0, dry_run=False, pdbs=None, **api_options):
    entries, tiers = planned(pods, rules)
    api = NodeApi(pods, **api_options)
    tasks = [ev.PodTask(e, "evict") for e in entries if e["tier"] is not None]
    drainer = ev.Drainer(api, "n1", time.monotonic() + timeout, max_concurrency=3, dry_run=dry_run, pdbs=pdbs)
    results = order.run_tiers(drainer, tasks, tiers, dry_run)
    return api, tiers, dict((r["name"], r) for r in results)


def test_a_tier_is_evicted_only_when_the_pods_of_the_tiers_before_it_are_gone():
    pods = [pod("low-%d" % i, priority=-1) for i in range(5)] + [pod("mid-%d" % i) for i in range(4)] + [
        pod("db", labels={"app": "db"}), pod("dns", class_name="system-cluster-critical", priority=2000000000)]
    api, tiers, results = tiered_run(pods, [DB], pdbs=[])
    assert all(r["action"] == "evicted" for r in results.values())
    assert [(t["index"], t["pods"], t["state"]) for t in tiers] == [
        (1, 5, "drained"), (2, 4, "drained"), (3, 1, "drained"), (4, 1, "drained")]
    groups = [["low-%d" % i for i in range(5)], ["mid-%d" % i for i in range(4)], ["db"], ["dns"]]
    for before, after in zip(groups, groups[1:]):
        last_gone = max(api.gone_at[name] for name in before)
        assert min(api.evicted_at[name] for name in after) >= last_gone
    assert api.max_inflight <= 3            # max_concurrency holds within a tier
    assert api.pdb_lists == 3               # the budgets read again before each later tier
    assert results["db"]["tier"]["index"] == 3 and results["db"]["drain_rule"] == 0
    assert all(t["seconds"] >= 0.2 for t in tiers)   # each waited for its pods to go


def test_a_tier_that_does_not_finish_holds_the_later_tiers_and_says_so():
    pods = [pod("batch", priority=-1), pod("web-1"), pod("web-2"), pod("dns", class_name="system-node-critical")]
    api, tiers, results = tiered_run(pods, refuse={"web-1": ev.ERROR})
    assert results["batch"]["action"] == "evicted" and results["web-2"]["action"] == "evicted"
    assert results["web-1"]["action"] == "failed"
    assert [t["state"] for t in tiers] == ["drained", "unfinished", "not_started"]
    assert tiers[1]["held_by"] == ["shop/web-1"]
    assert "dns" not in api.evicted_at
    dns = results["dns"]
    assert dns["action"] == "failed" and dns["attempts"] == 0
    assert dns["reason"] == ("not evicted: tier 3 (order 0, system-critical, priority 0) starts only when "
                             "tier 2 (order 0, priority 0) is gone, which still had shop/web-1")
    assert order.progress_text(tiers) == ("tier 2 of 3 (order 0, priority 0) was in progress, held by shop/web-1; "
                                          "1 later tier(s) with 1 pod(s) not started")


def test_one_deadline_over_all_tiers_names_the_tier_in_progress():
    pods = [pod("slow-%d" % i) for i in range(7)] + [pod("dns", class_name="system-cluster-critical")]
    started = time.monotonic()
    api, tiers, results = tiered_run(pods, timeout=0.8, hold={"slow-%d" % i for i in range(7)})
    assert time.monotonic() - started < 3
    assert [t["state"] for t in tiers] == ["unfinished", "not_started"]
    assert all(results["slow-%d" % i]["reason"].startswith("evicted 1s before the timeout") or
               results["slow-%d" % i]["reason"].startswith("evicted 0s before the timeout") for i in range(7))
    assert order.progress_text(tiers) == (
        "tier 1 of 2 (order 0, priority 0) was in progress, held by shop/slow-0, shop/slow-1, shop/slow-2, "
        "shop/slow-3, shop/slow-4 and 2 more; 1 later tier(s) with 1 pod(s) not started")
    assert "dns" not in api.evicted_at and results["dns"]["action"] == "failed"


def test_a_server_dry_run_asks_for_every_tier():
    pods = [pod("web"), pod("dns", class_name="system-cluster-critical")]
    api, tiers, results = tiered_run(pods, dry_run=True, refuse={"web": ev.ERROR})
    assert results["web"]["action"] == "failed" and results["dns"]["action"] == "none"
    assert [t["state"] for t in tiers] == ["drained", "drained"] and "dns" in api.evicted_at
    assert order.progress_text(tiers) is None


def test_summary_and_progress_of_a_drain_that_did_not_run():
    _entries, tiers = planned([pod("web"), pod("dns", class_name="system-cluster-critical")])
    assert [t["state"] for t in order.summary(tiers, order.TIER_PLANNED)] == ["planned", "planned"]
    assert order.progress_text(tiers) is None
    assert order.tier_text(dict(tiers[1], priority=None)) == "tier 2 (order 0, system-critical)"
