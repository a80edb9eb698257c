# -*- coding: utf-8 -*-
"""Drain classification of pods: every rule, and the combinations kubectl reports only in part."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _pod_rules, _pods

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def make_pod(name="p", namespace="default", owner=None, phase="Running", emptydir=False, mirror=False,
             deleted_ago=None, uid="uid-1", labels=None):
    meta = {"name": name, "namespace": namespace, "uid": uid, "labels": labels or {}}
    if owner:
        kind, owner_name = owner
        api_version = "apps/v1" if kind in ("ReplicaSet", "DaemonSet", "StatefulSet") else "batch/v1"
        meta["ownerReferences"] = [{"apiVersion": api_version, "kind": kind, "name": owner_name,
                                    "uid": "owner-uid", "controller": True}]
    if mirror:
        meta["annotations"] = {_pod_rules.MIRROR_POD_ANNOTATION: "abc"}
    if deleted_ago is not None:
        import time
        meta["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - deleted_ago))
    volumes = [{"name": "cfg", "configMap": {"name": "x"}}]
    if emptydir:
        volumes.append({"name": "scratch", "emptyDir": {}})
    return {"metadata": meta, "spec": {"volumes": volumes}, "status": {"phase": phase}}


def classify(pod, **options):
    options.setdefault("now", NOW)
    return _pods.classify_pod(pod, **options)


def options_of(decision):
    return sorted(b["option"] for b in decision["blockers"])


# --- each rule --------------------------------------------------------------------------------

def test_replicaset_pod_is_evicted():
    decision = classify(make_pod(owner=("ReplicaSet", "web-1")))
    assert decision["plan"] == "evict"
    assert decision["blockers"] == [] and decision["warnings"] == []


def test_mirror_pod_is_skipped_even_without_any_option():
    decision = classify(make_pod(mirror=True))
    assert decision["plan"] == "skip"
    assert "mirror" in decision["reason"]


def test_daemonset_pod_refused_without_ignore_daemonsets():
    decision = classify(make_pod(owner=("DaemonSet", "agent")))
    assert decision["plan"] == "refuse"
    assert options_of(decision) == ["ignore_daemonsets"]


def test_daemonset_pod_skipped_with_ignore_daemonsets():
    decision = classify(make_pod(owner=("DaemonSet", "agent"), emptydir=True), ignore_daemonsets=True)
    assert decision["plan"] == "skip"


def test_daemonset_owner_needs_apps_v1_to_count_as_daemonset():
    pod = make_pod(owner=("DaemonSet", "agent"))
    pod["metadata"]["ownerReferences"][0]["apiVersion"] = "example.com/v1"
    assert classify(pod)["plan"] == "evict"


def test_orphaned_daemonset_pod_needs_force():
    pod = make_pod(owner=("DaemonSet", "gone"))
    missing = {("default", "gone")}
    refused = classify(pod, ignore_daemonsets=True, missing_daemonsets=missing)
    assert refused["plan"] == "refuse" and options_of(refused) == ["force"]
    forced = classify(pod, force=True, missing_daemonsets=missing)
    assert forced["plan"] == "evict"
    assert any("orphaned" in w for w in forced["warnings"])


def test_missing_daemonset_in_another_namespace_does_not_count():
    pod = make_pod(owner=("DaemonSet", "agent"), namespace="a")
    assert classify(pod, missing_daemonsets={("b", "agent")})["plan"] == "refuse"
    assert options_of(classify(pod, missing_daemonsets={("b", "agent")})) == ["ignore_daemonsets"]


def test_emptydir_pod_refused_without_delete_emptydir_data():
    decision = classify(make_pod(owner=("ReplicaSet", "web"), emptydir=True))
    assert decision["plan"] == "refuse"
    assert options_of(decision) == ["delete_emptydir_data"]


def test_emptydir_pod_evicted_with_warning_when_allowed():
    decision = classify(make_pod(owner=("ReplicaSet", "web"), emptydir=True), delete_emptydir_data=True)
    assert decision["plan"] == "evict"
    assert any("emptyDir" in w for w in decision["warnings"])


def test_unmanaged_pod_refused_without_force():
    decision = classify(make_pod())
    assert decision["plan"] == "refuse"
    assert options_of(decision) == ["force"]


def test_unmanaged_pod_evicted_with_force():
    decision = classify(make_pod(), force=True)
    assert decision["plan"] == "evict"
    assert decision["warnings"]


def test_owner_reference_without_controller_flag_is_unmanaged():
    pod = make_pod(owner=("ReplicaSet", "web"))
    pod["metadata"]["ownerReferences"][0]["controller"] = False
    assert options_of(classify(pod)) == ["force"]


def test_terminating_pod_is_waited_for_not_evicted():
    decision = classify(make_pod(owner=("ReplicaSet", "web"), deleted_ago=3))
    assert decision["plan"] == "wait"


def test_terminating_unmanaged_pod_is_waited_for_without_force():
    # It is leaving anyway; refusing the drain over it would help nobody.
    assert classify(make_pod(deleted_ago=3, emptydir=True))["plan"] == "wait"


def test_terminating_pod_past_skip_wait_timeout_is_skipped():
    pod = make_pod(owner=("ReplicaSet", "web"), deleted_ago=120)
    assert classify(pod, skip_wait_for_delete_timeout=60)["plan"] == "skip"
    assert classify(pod, skip_wait_for_delete_timeout=0)["plan"] == "wait"
    assert classify(pod, skip_wait_for_delete_timeout=600)["plan"] == "wait"


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_finished_pods_are_deleted_whatever_else_is_true(phase):
    pod = make_pod(phase=phase, emptydir=True)  # unmanaged + emptyDir, but finished
    decision = classify(pod)
    assert decision["plan"] == "delete"
    assert phase in decision["reason"]


def test_finished_daemonset_pod_is_deleted_without_ignore_daemonsets():
    assert classify(make_pod(owner=("DaemonSet", "agent"), phase="Succeeded"))["plan"] == "delete"


def test_pending_pod_is_evicted():
    assert classify(make_pod(owner=("ReplicaSet", "web"), phase="Pending"))["plan"] == "evict"


# --- combinations -----------------------------------------------------------------------------

def test_unmanaged_pod_with_emptydir_names_both_options():
    decision = classify(make_pod(emptydir=True))
    assert decision["plan"] == "refuse"
    assert options_of(decision) == ["delete_emptydir_data", "force"]
    only_force = classify(make_pod(emptydir=True), force=True)
    assert options_of(only_force) == ["delete_emptydir_data"]
    both = classify(make_pod(emptydir=True), force=True, delete_emptydir_data=True)
    assert both["plan"] == "evict" and len(both["warnings"]) == 2


@pytest.mark.parametrize("owner,emptydir,phase,mirror,deleted_ago", list(itertools.product(
    [None, ("ReplicaSet", "rs"), ("DaemonSet", "ds"), ("Job", "job")],
    [False, True],
    ["Running", "Succeeded"],
    [False, True],
    [None, 5],
)))
def test_every_combination_has_one_plan_and_refusals_name_their_options(owner, emptydir, phase, mirror,
                                                                        deleted_ago):
    pod = make_pod(owner=owner, emptydir=emptydir, phase=phase, mirror=mirror, deleted_ago=deleted_ago)
    for flags in itertools.product([False, True], repeat=3):
        opts = dict(zip(("ignore_daemonsets", "delete_emptydir_data", "force"), flags))
        decision = classify(pod, **opts)
        assert decision["plan"] in _pods.PLANS
        assert bool(decision["blockers"]) == (decision["plan"] == "refuse")
        if mirror:
            assert decision["plan"] == "skip"
        # Turning on the options a refusal names always lets the pod through.
        if decision["plan"] == "refuse":
            allowed = dict(opts, **dict((o, True) for o in options_of(decision)))
            assert classify(pod, **allowed)["plan"] != "refuse"


@given(
    kind=st.sampled_from([None, "ReplicaSet", "DaemonSet", "StatefulSet", "Job"]),
    emptydir=st.booleans(), phase=st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"]),
    deleted_ago=st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
    skip_wait=st.integers(min_value=0, max_value=1000),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_all_options_on_means_only_skip_wait_delete_or_evict(kind, emptydir, phase, deleted_ago, skip_wait,
                                                             flags):
    pod = make_pod(owner=(kind, "x") if kind else None, emptydir=emptydir, phase=phase,
                   deleted_ago=deleted_ago)
    decision = classify(pod, ignore_daemonsets=True, delete_emptydir_data=True, force=True,
                        skip_wait_for_delete_timeout=skip_wait)
    assert decision["plan"] in ("skip", "wait", "delete", "evict")
    # And with fewer options, a pod is never treated more permissively.
    opts = dict(zip(("ignore_daemonsets", "delete_emptydir_data", "force"), flags))
    fewer = classify(pod, skip_wait_for_delete_timeout=skip_wait, **opts)
    if decision["plan"] in ("wait", "delete", "skip"):
        assert fewer["plan"] in (decision["plan"], "refuse")


# --- helpers and messages ---------------------------------------------------------------------

def test_parse_timestamp_handles_fractions_and_garbage():
    assert _pods.parse_timestamp("2023-11-14T22:13:20Z") == NOW
    assert _pods.parse_timestamp("2023-11-14T22:13:20.123456Z") == NOW
    assert _pods.parse_timestamp("2023-11-14T22:13:20+00:00") == NOW
    assert _pods.parse_timestamp("2023-11-15T00:13:20.5+02:00") == NOW
    assert _pods.parse_timestamp("yesterday") is None
    assert _pods.parse_timestamp(None) is None


def test_describe_pod_names_owner():
    entry = _pods.describe_pod(make_pod(name="web-1", owner=("ReplicaSet", "web-abc"), uid="u1"))
    assert entry == {"namespace": "default", "name": "web-1", "uid": "u1", "owner_kind": "ReplicaSet",
                     "owner_name": "web-abc"}


def test_refusal_message_groups_pods_by_option_and_names_all():
    pods = [make_pod(name="solo"), make_pod(name="cache", owner=("ReplicaSet", "c"), emptydir=True),
            make_pod(name="agent", owner=("DaemonSet", "a")), make_pod(name="ok", owner=("ReplicaSet", "w")),
            make_pod(name="both", emptydir=True)]
    entries = _pods.plan_drain(pods, now=NOW)
    message = _pods.refusal_message("worker-3", entries)
    assert message.startswith("cannot drain node/worker-3, nothing was evicted: 4 pod(s) block it.")
    assert "set force: true" in message and "default/solo" in message and "default/both" in message
    assert "set delete_emptydir_data: true" in message and "default/cache" in message
    assert "set ignore_daemonsets: true" in message and "default/agent" in message
    assert "default/ok" not in message


def test_refusal_message_none_when_nothing_blocks():
    entries = _pods.plan_drain([make_pod(owner=("ReplicaSet", "w"))], now=NOW)
    assert _pods.refusal_message("n", entries) is None


# --- opt-outs of other tools (issue #20) ---------------------------------------------------------

def with_marks(pod, annotations=None, labels=None):
    pod["metadata"].setdefault("annotations", {}).update(annotations or {})
    pod["metadata"]["labels"].update(labels or {})
    return pod


DNDR = {_pod_rules.DO_NOT_DISRUPT: "true"}
NOT_SAFE = {_pod_rules.SAFE_TO_EVICT: "false"}


def test_do_not_disrupt_refuses_the_pod_naming_the_annotation_and_the_override():
    decision = classify(with_marks(make_pod(owner=("ReplicaSet", "web")), DNDR))
    assert decision["plan"] == "refuse" and options_of(decision) == ["ignore_opt_outs"]
    assert decision["blockers"][0]["override"] == "ignore_opt_outs: [karpenter]"
    assert "annotation karpenter.sh/do-not-disrupt=true protects it" in decision["reason"]
    assert decision["opt_outs"] == [{"vocabulary": "karpenter", "key": _pod_rules.DO_NOT_DISRUPT, "value": "true",
                                     "effect": "block"}]
    let_through = classify(with_marks(make_pod(owner=("ReplicaSet", "web")), DNDR), ignore_opt_outs=["karpenter"])
    assert let_through["plan"] == "evict"
    assert any("disregarded (ignore_opt_outs)" in w for w in let_through["warnings"])


def test_an_opt_out_refusal_also_names_every_other_rule_the_pod_breaks():
    decision = classify(with_marks(make_pod(emptydir=True), NOT_SAFE))
    assert options_of(decision) == ["delete_emptydir_data", "force", "ignore_opt_outs"]
    assert decision["blockers"][0]["override"] == "ignore_opt_outs: [cluster-autoscaler]"
    assert classify(with_marks(make_pod(emptydir=True), NOT_SAFE), ignore_opt_outs=["all"])["plan"] == "refuse"


def test_do_not_disrupt_protects_daemonset_and_mirror_pods_as_karpenter_does_safe_to_evict_does_not():
    daemonset = with_marks(make_pod(owner=("DaemonSet", "agent")), DNDR)
    assert classify(daemonset, ignore_daemonsets=True)["plan"] == "refuse"
    assert classify(with_marks(make_pod(mirror=True), DNDR))["plan"] == "refuse"
    assert classify(with_marks(make_pod(owner=("DaemonSet", "agent")), NOT_SAFE), ignore_daemonsets=True)["plan"] == "skip"
    assert classify(with_marks(make_pod(mirror=True), NOT_SAFE))["plan"] == "skip"


def test_finished_and_terminating_pods_are_not_protected():
    assert classify(with_marks(make_pod(owner=("ReplicaSet", "w"), phase="Succeeded"), DNDR))["plan"] == "delete"
    assert classify(with_marks(make_pod(owner=("ReplicaSet", "w"), deleted_ago=3), NOT_SAFE))["plan"] == "wait"


def test_cluster_api_skip_leaves_any_pod_alone_even_one_the_options_would_refuse():
    for pod in (make_pod(emptydir=True), make_pod(owner=("DaemonSet", "agent")),
                make_pod(owner=("ReplicaSet", "w"), phase="Succeeded")):
        decision = classify(with_marks(pod, labels={_pod_rules.CAPI_DRAIN: "skip"}))
        assert decision["plan"] == "skip" and "cluster.x-k8s.io/drain=skip" in decision["reason"]
    evicted = classify(with_marks(make_pod(owner=("ReplicaSet", "w")), labels={_pod_rules.CAPI_DRAIN: "skip"}),
                       ignore_opt_outs=["cluster-api"])
    assert evicted["plan"] == "evict"
    # Skip does not get around a protection: the node goes down for the maintenance with the pod on it.
    both = with_marks(make_pod(owner=("ReplicaSet", "w")), DNDR, {_pod_rules.CAPI_DRAIN: "skip"})
    assert classify(both)["plan"] == "refuse"


def test_cluster_api_wait_completed_is_waited_for_not_evicted_and_not_refused():
    running = with_marks(make_pod(emptydir=True), labels={_pod_rules.CAPI_DRAIN: "wait-completed"})
    decision = classify(running)
    assert decision["plan"] == "wait_completed" and decision["blockers"] == []
    finished = with_marks(make_pod(owner=("Job", "j"), phase="Succeeded"),
                          labels={_pod_rules.CAPI_DRAIN: "wait-completed"})
    assert classify(finished)["plan"] == "delete"
    terminating = with_marks(make_pod(owner=("Job", "j"), deleted_ago=3),
                             labels={_pod_rules.CAPI_DRAIN: "wait-completed"})
    assert classify(terminating)["plan"] == "wait"
    assert classify(running, ignore_opt_outs=["cluster-api"])["plan"] == "refuse"  # kubectl's rules again


def test_an_unknown_cluster_api_value_is_a_warning_and_the_pod_is_drained():
    decision = classify(with_marks(make_pod(owner=("ReplicaSet", "w")), labels={_pod_rules.CAPI_DRAIN: "later"}))
    assert decision["plan"] == "evict"
    assert any("cluster.x-k8s.io/drain=later" in w and "unknown value" in w for w in decision["warnings"])


def test_refusal_message_names_the_annotation_the_pods_and_how_to_override():
    pods = [with_marks(make_pod(name="db-0", owner=("StatefulSet", "db")), DNDR),
            with_marks(make_pod(name="batch", owner=("Job", "b")), NOT_SAFE),
            make_pod(name="solo")]
    message = _pods.refusal_message("worker-3", _pods.plan_drain(pods, now=NOW))
    assert "3 pod(s) block it" in message
    assert ("pods with annotation karpenter.sh/do-not-disrupt (set ignore_opt_outs: [karpenter] to drain them "
            "anyway): default/db-0") in message
    assert ("pods with annotation cluster-autoscaler.kubernetes.io/safe-to-evict (set ignore_opt_outs: "
            "[cluster-autoscaler] to drain them anyway): default/batch") in message
    assert "set force: true to drain them anyway): default/solo" in message


MARKS = st.fixed_dictionaries({}, optional={
    "annotations": st.dictionaries(st.sampled_from([_pod_rules.DO_NOT_DISRUPT, _pod_rules.SAFE_TO_EVICT]),
                                   st.sampled_from(["true", "false", "1h", "x"])),
    "labels": st.dictionaries(st.just(_pod_rules.CAPI_DRAIN), st.sampled_from(["skip", "wait-completed", "x"])),
})


@given(kind=st.sampled_from([None, "ReplicaSet", "DaemonSet", "Job"]), emptydir=st.booleans(),
       phase=st.sampled_from(["Pending", "Running", "Succeeded", "Failed"]), mirror=st.booleans(),
       deleted_ago=st.one_of(st.none(), st.integers(0, 100)), marks=MARKS,
       flags=st.tuples(st.booleans(), st.booleans(), st.booleans()))
def test_disregarding_every_vocabulary_gives_kubectls_plan(kind, emptydir, phase, mirror, deleted_ago, marks, flags):
    def build():
        return make_pod(owner=(kind, "x") if kind else None, emptydir=emptydir, phase=phase, mirror=mirror,
                        deleted_ago=deleted_ago)
    opts = dict(zip(("ignore_daemonsets", "delete_emptydir_data", "force"), flags))
    unmarked = classify(build(), **opts)
    pod = with_marks(build(), marks.get("annotations"), marks.get("labels"))
    disregarded = classify(pod, ignore_opt_outs=["all"], **opts)
    assert (disregarded["plan"], disregarded["blockers"]) == (unmarked["plan"], unmarked["blockers"])
    honoured = classify(pod, **opts)
    # Honouring them only ever protects a pod more: never an eviction or delete kubectl would refuse.
    if unmarked["plan"] == "refuse":
        assert honoured["plan"] in ("refuse", "skip", "wait_completed")
    if honoured["plan"] in ("evict", "delete"):
        assert honoured["plan"] == unmarked["plan"]
