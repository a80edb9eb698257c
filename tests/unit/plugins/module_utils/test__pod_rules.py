"""What a pod is: Ready, serving, mirror, DaemonSet, finished, terminating (one home for the rules the
drain, the preflight, the cluster guard and node removal each had a copy of)."""
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _pod_rules as rules

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
STATUSES = ("True", "False", "Unknown")
conditions = st.lists(st.builds(dict, type=st.sampled_from(["Ready", "ContainersReady", "PodScheduled"]),
                                status=st.sampled_from(STATUSES)), max_size=4)


def pod(phase="Running", conds=(), deleting=False, owner=None, annotations=None):
    meta = {"name": "p", "namespace": "ns", "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    if owner:
        meta["ownerReferences"] = [owner]
    return {"metadata": meta, "status": {"phase": phase, "conditions": list(conds)}}


@given(conditions)
def test_ready_is_the_first_ready_condition(conds):
    ready = [c for c in conds if c["type"] == "Ready"]
    assert rules.is_ready(pod(conds=conds)) == bool(ready and ready[0]["status"] == "True")


@given(conditions, st.lists(st.builds(dict, type=st.just("ContainersReady"), status=st.sampled_from(STATUSES))))
def test_other_conditions_do_not_change_readiness(conds, others):
    assert rules.is_ready(pod(conds=conds)) == rules.is_ready(pod(conds=others + conds + others))


@given(st.sampled_from(PHASES), conditions, st.booleans())
def test_serving_is_ready_running_and_not_being_deleted(phase, conds, deleting):
    p = pod(phase, conds, deleting)
    assert rules.is_serving(p) == (rules.is_ready(p) and phase == "Running" and not deleting)
    assert rules.is_serving(p) == rules.serving(phase, rules.is_terminating(p), rules.is_ready(p))


def test_a_pod_without_status_is_not_ready():
    assert not rules.is_ready({}) and not rules.is_serving({}) and not rules.is_ready({"status": None})


def test_mirror_daemonset_finished_and_terminating():
    assert rules.is_mirror_pod(pod(annotations={rules.MIRROR_POD_ANNOTATION: "x"}))
    assert not rules.is_mirror_pod(pod())
    ds = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": True}
    assert rules.is_daemonset_pod(pod(owner=ds))
    assert not rules.is_daemonset_pod(pod(owner=dict(ds, controller=False)))
    assert not rules.is_daemonset_pod(pod(owner=dict(ds, apiVersion="apps.kruise.io/v1alpha1")))
    assert rules.is_finished(pod("Succeeded")) and rules.is_finished(pod("Failed")) and not rules.is_finished(pod())
    assert rules.is_terminating(pod(deleting=True)) and not rules.is_terminating(pod())


# --- opt-outs other tools' users put on pods (issue #20) ----------------------------------------

NOW = 1_700_000_000.0
GO_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(GO_UNITS))), min_size=1, max_size=4),
       st.sampled_from(["", "+", "-"]))
def test_go_durations_are_the_sum_of_their_parts(parts, sign):
    text = sign + "".join("%d%s" % (number, unit) for number, unit in parts)
    expected = sum(number * GO_UNITS[unit] for number, unit in parts) * (-1 if sign == "-" else 1)
    assert abs(rules.go_duration_seconds(text) - expected) < 1e-6


def test_go_durations_as_go_parses_them():
    assert rules.go_duration_seconds("1h30m") == 5400
    assert rules.go_duration_seconds("1.5h") == 5400
    assert rules.go_duration_seconds(".5s") == 0.5 and rules.go_duration_seconds("5.s") == 5
    assert rules.go_duration_seconds("0") == 0 and rules.go_duration_seconds("-0") == 0
    for refused in ("", "5", "s", "1x", "1.2.3s", "+", "1h 30m", "true", ".s", "\u0661s", None, 5):
        assert rules.go_duration_seconds(refused) is None, refused


def marked(annotations=None, labels=None, phase="Running", deleting=False, owner=None, started=None, mirror=False):
    p = pod(phase, deleting=deleting, owner=owner, annotations=dict(annotations or {}))
    p["metadata"]["labels"] = dict(labels or {})
    if mirror:
        p["metadata"]["annotations"][rules.MIRROR_POD_ANNOTATION] = "x"
    if started:
        p["status"]["startTime"] = started
    return p


DS = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": True}


def effects(p, **kwargs):
    return [(o["vocabulary"], o["effect"]) for o in rules.pod_opt_outs(p, now=NOW, **kwargs)]


def test_do_not_disrupt_true_blocks_every_running_pod_daemonset_and_mirror_included():
    annotations = {rules.DO_NOT_DISRUPT: "true"}
    for p in (marked(annotations), marked(annotations, owner=DS), marked(annotations, mirror=True)):
        assert effects(p) == [("karpenter", "block")]
    for p in (marked(annotations, phase="Succeeded"), marked(annotations, phase="Failed"),
              marked(annotations, deleting=True)):
        assert effects(p) == []  # not moved: nothing to protect
    for value in ("True", "yes", "false", "", "0s", "-5m", "soon"):
        assert effects(marked({rules.DO_NOT_DISRUPT: value})) == [("karpenter", "ignored")], value


def test_do_not_disrupt_duration_blocks_until_the_pod_has_run_that_long():
    ten_minutes_ago = "2023-11-14T22:03:20Z"
    blocking = rules.pod_opt_outs(marked({rules.DO_NOT_DISRUPT: "1h"}, started=ten_minutes_ago), now=NOW)
    assert blocking[0]["effect"] == "block" and "3000s more" in blocking[0]["note"]
    over = rules.pod_opt_outs(marked({rules.DO_NOT_DISRUPT: "5m"}, started=ten_minutes_ago), now=NOW)
    assert over[0]["effect"] == "ignored" and "grace period is over" in over[0]["note"]
    # Not started yet: the grace period has not begun, so it protects (Karpenter fails safe).
    assert effects(marked({rules.DO_NOT_DISRUPT: "5m"})) == [("karpenter", "block")]


def test_safe_to_evict_false_blocks_running_pods_but_not_daemonset_or_mirror_pods():
    annotations = {rules.SAFE_TO_EVICT: "false"}
    assert effects(marked(annotations)) == [("cluster-autoscaler", "block")]
    assert effects(marked(annotations, owner=DS)) == [] and effects(marked(annotations, mirror=True)) == []
    assert effects(marked(annotations, phase="Succeeded")) == [] and effects(marked(annotations, deleting=True)) == []
    for value in ("False", "true", "no", ""):
        assert effects(marked({rules.SAFE_TO_EVICT: value})) == [], value


def test_cluster_api_label_any_case_and_wait_completed_spellings():
    for value in ("skip", "Skip", "SKIP"):
        assert effects(marked(labels={rules.CAPI_DRAIN: value})) == [("cluster-api", "skip")]
        assert effects(marked(labels={rules.CAPI_DRAIN: value}, phase="Succeeded")) == [("cluster-api", "skip")]
    for value in ("wait-completed", "WaitCompleted", "waitcompleted", "Wait-Completed"):
        assert effects(marked(labels={rules.CAPI_DRAIN: value})) == [("cluster-api", "wait_completed")], value
    # A finished pod has completed: nothing left to wait for.
    assert effects(marked(labels={rules.CAPI_DRAIN: "wait-completed"}, phase="Failed")) == []
    for value in ("wait--completed", "drain", "", "skip-it"):
        assert effects(marked(labels={rules.CAPI_DRAIN: value})) == [("cluster-api", "ignored")], value
    # Cluster API reads a label: the same key as an annotation is nobody's mark.
    assert effects(marked(annotations={rules.CAPI_DRAIN: "skip"})) == []


def test_ignored_vocabularies_are_reported_as_disregarded():
    p = marked({rules.DO_NOT_DISRUPT: "true", rules.SAFE_TO_EVICT: "false"}, labels={rules.CAPI_DRAIN: "skip"})
    assert effects(p) == [("karpenter", "block"), ("cluster-autoscaler", "block"), ("cluster-api", "skip")]
    assert effects(p, ignore=("karpenter",)) == [("karpenter", "ignored"), ("cluster-autoscaler", "block"),
                                                 ("cluster-api", "skip")]
    found = rules.pod_opt_outs(p, now=NOW, ignore=("all",))
    assert [o["effect"] for o in found] == ["ignored"] * 3 and all("ignore_opt_outs" in o["note"] for o in found)


MARK_VALUES = st.sampled_from(["true", "false", "skip", "Skip", "wait-completed", "1h", "5m", "x", ""])


@given(st.dictionaries(st.sampled_from([rules.DO_NOT_DISRUPT, rules.SAFE_TO_EVICT, rules.CAPI_DRAIN]), MARK_VALUES),
       st.sampled_from(PHASES), st.booleans(), st.booleans(), st.booleans(),
       st.lists(st.sampled_from(rules.VOCABULARIES + ("all",)), max_size=2))
def test_opt_outs_over_fields_and_over_the_pod_agree(marks, phase, deleting, daemonset, mirror, ignore):
    labels = {k: v for k, v in marks.items() if k == rules.CAPI_DRAIN}
    annotations = {k: v for k, v in marks.items() if k != rules.CAPI_DRAIN}
    p = marked(annotations, labels, phase=phase, deleting=deleting, owner=DS if daemonset else None,
               started="2023-11-14T22:03:20Z", mirror=mirror)
    found = rules.pod_opt_outs(p, now=NOW, ignore=ignore)
    assert found == rules.opt_outs(rules.opt_out_marks(p), "2023-11-14T22:03:20Z", NOW, rules.is_finished(p),
                                   deleting, daemonset, mirror, ignore)
    for opt_out in found:
        assert opt_out["effect"] in (rules.BLOCK, rules.SKIP, rules.WAIT_COMPLETED, rules.IGNORED)
        if opt_out["effect"] == rules.BLOCK:
            # Only pods that run and are not on their way out are protected; never a disregarded vocabulary.
            assert not rules.is_finished(p) and not deleting
            assert opt_out["vocabulary"] not in ignore and "all" not in ignore


@given(st.text(max_size=20), st.one_of(st.none(), st.text(max_size=30)))
def test_any_mark_text_is_read_without_raising(value, started):
    seconds = rules.go_duration_seconds(value)
    assert seconds is None or isinstance(seconds, float)
    for key in (rules.DO_NOT_DISRUPT, rules.SAFE_TO_EVICT, rules.CAPI_DRAIN):
        (found,) = rules.opt_outs({key: value}, started, NOW) or [{"effect": rules.IGNORED}]
        assert found["effect"] in (rules.BLOCK, rules.SKIP, rules.WAIT_COMPLETED, rules.IGNORED)


def test_volume_claim_name_is_the_claim_a_volume_uses_and_none_for_other_volumes():
    assert rules.volume_claim_name("db-0", {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}}) == "data-db-0"
    # a generic ephemeral volume's claim is named after the pod and the volume
    assert rules.volume_claim_name("web-1", {"name": "cache", "ephemeral": {"volumeClaimTemplate": {}}}) == "web-1-cache"
    assert rules.volume_claim_name("web-1", {"name": "tmp", "emptyDir": {}}) is None
    assert rules.volume_claim_name("web-1", {"name": "host", "hostPath": {"path": "/x"}}) is None
