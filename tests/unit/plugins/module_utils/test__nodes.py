"""Unit tests for _nodes: cordon patch, readiness, taint merge rules, NoExecute fallout."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _nodes


# ------------------------------------------------------------------------------------------------
# cordon and readiness
# ------------------------------------------------------------------------------------------------

def test_cordon_patch_touches_only_unschedulable():
    assert _nodes.cordon_patch(True) == {"spec": {"unschedulable": True}}
    assert _nodes.cordon_patch(False) == {"spec": {"unschedulable": False}}


@pytest.mark.parametrize("node, expected", [
    ({}, False),
    ({"spec": {}}, False),
    ({"spec": None}, False),
    ({"spec": {"unschedulable": False}}, False),
    ({"spec": {"unschedulable": True}}, True),
])
def test_is_unschedulable(node, expected):
    assert _nodes.is_unschedulable(node) is expected


def _node(ready=None, **spec):
    conditions = [{"type": "MemoryPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": ready, "reason": "KubeletReady"})
    return {"metadata": {"name": "n1", "resourceVersion": "7"}, "spec": spec,
            "status": {"conditions": conditions}}


@pytest.mark.parametrize("ready, status, is_ready", [
    ("True", "True", True), ("False", "False", False), ("Unknown", "Unknown", False), (None, "Unknown", False),
])
def test_node_readiness(ready, status, is_ready):
    node = _node(ready)
    assert _nodes.node_ready_status(node) == status
    assert _nodes.node_is_ready(node) is is_ready


def test_node_summary():
    node = _node("True", unschedulable=True, taints=[{"key": "a", "effect": "NoSchedule"}])
    assert _nodes.node_summary(node) == {
        "name": "n1", "unschedulable": True, "resource_version": "7",
        "taints": [{"key": "a", "effect": "NoSchedule"}], "ready": "True", "ready_reason": "KubeletReady"}


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("taints, state", [
    ([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}], "present"),
    ([{"key": "example.com/maint", "effect": "NoExecute"}], "present"),
    ([{"key": "a", "value": None, "effect": "PreferNoSchedule"}], "present"),
    ([{"key": "dedicated"}], "absent"),
    ([{"key": "x", "effect": "NoSchedule"}, {"key": "x", "effect": "NoExecute"}], "present"),
    ([{"key": "x", "value": "1", "effect": "NoSchedule"}, {"key": "x", "value": "1", "effect": "NoSchedule"}],
     "present"),
])
def test_validate_accepts(taints, state):
    assert _nodes.validate_taints(taints, state) == []


@pytest.mark.parametrize("taints, state, fragment", [
    ([{"key": "", "effect": "NoSchedule"}], "present", "key is empty"),
    ([{"key": None, "effect": "NoSchedule"}], "absent", "key is empty"),
    ([{"key": "a", "effect": "NoSchedul"}], "present", "effect 'NoSchedul' is not one of"),
    ([{"key": "a"}], "present", "needs an effect"),
    ([{"key": "a b", "effect": "NoSchedule"}], "present", "name part"),
    ([{"key": "Bad_Prefix/x", "effect": "NoSchedule"}], "present", "DNS subdomain"),
    ([{"key": "/x", "effect": "NoSchedule"}], "present", "prefix"),
    ([{"key": "x" * 64, "effect": "NoSchedule"}], "present", "1-63"),
    ([{"key": "a", "value": "has space", "effect": "NoSchedule"}], "present", "value"),
    ([{"key": "a", "value": "1", "effect": "NoSchedule"}, {"key": "a", "value": "2", "effect": "NoSchedule"}],
     "present", "listed twice"),
    (["a=b:NoSchedule"], "present", "must be a dictionary"),
])
def test_validate_rejects(taints, state, fragment):
    errors = _nodes.validate_taints(taints, state)
    assert errors and any(fragment in e for e in errors), errors


# ------------------------------------------------------------------------------------------------
# merge rules: examples
# ------------------------------------------------------------------------------------------------

T_DB = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
T_NOTREADY = {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute", "timeAdded": "2024-05-01T10:00:00Z"}
T_CP = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def test_present_adds_and_is_idempotent():
    first = _nodes.merge_taints([], [T_DB], "present")
    assert first == {"taints": [T_DB], "added": [T_DB], "removed": [], "changed": True}
    second = _nodes.merge_taints(first["taints"], [T_DB], "present")
    assert second["changed"] is False and second["taints"] == [T_DB]


def test_present_new_value_replaces_in_place():
    current = [T_NOTREADY, T_DB, T_CP]
    new = dict(T_DB, value="web")
    out = _nodes.merge_taints(current, [new], "present")
    assert out["taints"] == [T_NOTREADY, new, T_CP]
    assert out["added"] == [new] and out["removed"] == [T_DB]


def test_present_same_key_other_effect_is_another_taint():
    out = _nodes.merge_taints([T_DB], [dict(T_DB, effect="NoExecute")], "present")
    assert out["taints"] == [T_DB, dict(T_DB, effect="NoExecute")]


def test_empty_value_is_no_value():
    out = _nodes.merge_taints([{"key": "a", "effect": "NoSchedule"}],
                              [{"key": "a", "value": "", "effect": "NoSchedule"}], "present")
    assert out["changed"] is False
    out = _nodes.merge_taints([], [{"key": "a", "value": None, "effect": "NoSchedule"}], "present")
    assert out["taints"] == [{"key": "a", "effect": "NoSchedule"}]


def test_added_noexecute_gets_time_added_like_kubectl():
    now = "2024-05-01T10:00:00Z"
    out = _nodes.merge_taints([], [T_DB, {"key": "m", "effect": "NoExecute"}], "present", now=now)
    assert out["taints"] == [T_DB, {"key": "m", "effect": "NoExecute", "timeAdded": now}]
    again = _nodes.merge_taints(out["taints"], [{"key": "m", "effect": "NoExecute"}], "present", now="later")
    assert again["changed"] is False and again["taints"] == out["taints"]


def test_untouched_taints_keep_time_added():
    out = _nodes.merge_taints([T_NOTREADY], [T_DB], "present")
    assert out["taints"][0] is not T_NOTREADY and out["taints"][0] == T_NOTREADY


def test_absent_without_effect_removes_every_effect():
    current = [T_DB, dict(T_DB, effect="NoExecute"), T_CP]
    out = _nodes.merge_taints(current, [{"key": "dedicated"}], "absent")
    assert out["taints"] == [T_CP]
    assert out["removed"] == [T_DB, dict(T_DB, effect="NoExecute")]


def test_absent_with_effect_and_any_value():
    current = [T_DB, dict(T_DB, effect="NoExecute")]
    out = _nodes.merge_taints(current, [{"key": "dedicated", "value": "other", "effect": "NoSchedule"}], "absent")
    assert out["taints"] == [dict(T_DB, effect="NoExecute")]


def test_absent_missing_is_no_change():
    out = _nodes.merge_taints([T_DB], [{"key": "nope"}], "absent")
    assert out == {"taints": [T_DB], "added": [], "removed": [], "changed": False}


def test_replace_keeps_system_taints():
    mine = {"key": "team", "value": "a", "effect": "NoSchedule"}
    current = [T_NOTREADY, T_DB, T_CP, mine]
    out = _nodes.merge_taints(current, [mine], "present", replace=True)
    assert out["taints"] == [T_NOTREADY, T_CP, mine]
    assert out["removed"] == [T_DB] and out["added"] == []


def test_replace_with_empty_list_clears_user_taints_only():
    out = _nodes.merge_taints([T_NOTREADY, T_DB], [], "present", replace=True)
    assert out["taints"] == [T_NOTREADY]


def test_replace_with_absent_is_refused():
    with pytest.raises(ValueError):
        _nodes.merge_taints([], [], "absent", replace=True)


def test_json_patch_tests_resource_version_first():
    patch = _nodes.taints_json_patch("42", [T_DB])
    assert patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "42"}
    assert patch[1] == {"op": "add", "path": "/spec/taints", "value": [T_DB]}


def test_taint_ref():
    assert _nodes.taint_ref(T_DB) == "dedicated=db:NoSchedule"
    assert _nodes.taint_ref({"key": "a", "effect": "NoExecute"}) == "a:NoExecute"
    assert _nodes.taint_ref({"key": "a"}) == "a"


# ------------------------------------------------------------------------------------------------
# merge rules: properties
# ------------------------------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "example.com/c", "node.kubernetes.io/unreachable",
                        "node-role.kubernetes.io/control-plane"])
VALUES = st.sampled_from(["", "1", "2", "x"])
EFFECTS = st.sampled_from(list(_nodes.TAINT_EFFECTS))
TAINT = st.builds(lambda k, v, e: {"key": k, "value": v, "effect": e}, KEYS, VALUES, EFFECTS)


def _unique(taints):
    seen, out = set(), []
    for taint in taints:
        if (taint["key"], taint["effect"]) not in seen:
            seen.add((taint["key"], taint["effect"]))
            out.append(taint)
    return out


PRESENT_OP = st.lists(TAINT, max_size=4).map(_unique).map(lambda ts: ("present", ts))
ABSENT_OP = st.lists(st.builds(lambda k, e: {"key": k, "effect": e}, KEYS, st.one_of(st.none(), EFFECTS)),
                     max_size=3).map(lambda ts: ("absent", ts))
OPS = st.lists(st.one_of(PRESENT_OP, ABSENT_OP), max_size=8)
NODE_TAINTS = st.lists(TAINT, max_size=5).map(_unique).map(
    lambda ts: [dict((k, v) for k, v in t.items() if v != "") for t in ts])


def _as_model(taints):
    return {(t["key"], t["effect"]): t.get("value") or "" for t in taints}


def _model_apply(model, state, taints):
    """The reference: a set of taints keyed by key + effect."""
    model = dict(model)
    for taint in taints:
        if state == "present":
            model[(taint["key"], taint["effect"])] = taint.get("value") or ""
        elif taint.get("effect"):
            model.pop((taint["key"], taint["effect"]), None)
        else:
            for ident in [i for i in model if i[0] == taint["key"]]:
                del model[ident]
    return model


@settings(max_examples=300, deadline=None)
@given(NODE_TAINTS, OPS)
def test_any_sequence_matches_the_keyed_set(start, ops):
    taints, model = start, _as_model(start)
    for state, requested in ops:
        out = _nodes.merge_taints(taints, requested, state)
        taints = out["taints"]
        model = _model_apply(model, state, requested)
        ids = [_nodes.taint_id(t) for t in taints]
        assert len(ids) == len(set(ids)), "duplicate key+effect in %r" % taints
        assert _as_model(taints) == model


@settings(max_examples=300, deadline=None)
@given(NODE_TAINTS, OPS)
def test_one_taint_at_a_time_equals_all_at_once(start, ops):
    for state, requested in ops:
        together = _nodes.merge_taints(start, requested, state)["taints"]
        one_by_one = start
        for taint in requested:
            one_by_one = _nodes.merge_taints(one_by_one, [taint], state)["taints"]
        assert _as_model(together) == _as_model(one_by_one)
        start = together


@settings(max_examples=300, deadline=None)
@given(NODE_TAINTS, st.one_of(PRESENT_OP, ABSENT_OP), st.booleans())
def test_second_application_changes_nothing(start, op, replace):
    state, requested = op
    replace = replace and state == "present"
    first = _nodes.merge_taints(start, requested, state, replace)
    second = _nodes.merge_taints(first["taints"], requested, state, replace)
    assert second["changed"] is False and second["taints"] == first["taints"]
    assert second["added"] == [] and second["removed"] == []


@settings(max_examples=300, deadline=None)
@given(NODE_TAINTS, st.one_of(PRESENT_OP, ABSENT_OP), st.booleans())
def test_added_and_removed_account_for_the_difference(start, op, replace):
    state, requested = op
    replace = replace and state == "present"
    out = _nodes.merge_taints(start, requested, state, replace)

    def keyed(ts):
        return set((t["key"], t.get("value") or "", t["effect"]) for t in ts)

    assert keyed(out["taints"]) == (keyed(start) - keyed(out["removed"])) | keyed(out["added"])
    assert out["changed"] == (keyed(out["taints"]) != keyed(start))


@settings(max_examples=300, deadline=None)
@given(NODE_TAINTS, PRESENT_OP)
def test_replace_leaves_exactly_requested_plus_system(start, op):
    requested = op[1]
    out = _nodes.merge_taints(start, requested, "present", replace=True)
    expected = _as_model([t for t in start if _nodes.is_system_taint(t)])
    expected.update(_as_model(requested))
    assert _as_model(out["taints"]) == expected
    assert not any(_nodes.is_system_taint(t) for t in out["removed"]
                   if (t["key"], t["effect"]) not in _as_model(requested))


@settings(max_examples=200, deadline=None)
@given(NODE_TAINTS, st.one_of(PRESENT_OP, ABSENT_OP))
def test_untouched_taints_keep_order_and_fields(start, op):
    state, requested = op
    out = _nodes.merge_taints(start, requested, state)
    touched = set((t["key"], t.get("effect")) for t in requested)
    touched_keys = set(t["key"] for t in requested if not t.get("effect"))
    kept = [t for t in start if (t["key"], t["effect"]) not in touched and t["key"] not in touched_keys]
    assert [t for t in out["taints"] if t in kept] == kept


# ------------------------------------------------------------------------------------------------
# NoExecute
# ------------------------------------------------------------------------------------------------

NOEXEC = {"key": "maint", "value": "now", "effect": "NoExecute"}


def _pod(name, tolerations=None, phase="Running"):
    return {"metadata": {"namespace": "ns", "name": name, "uid": "uid-" + name},
            "spec": {"nodeName": "n1", "tolerations": tolerations or []}, "status": {"phase": phase}}


def test_noexecute_evictions():
    pods = [
        _pod("plain"),
        _pod("tolerates", [{"key": "maint", "operator": "Exists", "effect": "NoExecute"}]),
        _pod("for-a-while", [{"key": "maint", "operator": "Exists", "tolerationSeconds": 300}]),
        _pod("wrong-value", [{"key": "maint", "value": "later", "effect": "NoExecute"}]),
        _pod("done", phase="Succeeded"),
        dict(_pod("leaving"), metadata={"namespace": "ns", "name": "leaving", "deletionTimestamp": "2024-01-01T00:00:00Z"}),
        _pod("everything", [{"operator": "Exists"}]),
    ]
    out = _nodes.noexecute_evictions(pods, [T_DB, NOEXEC])
    assert [(e["name"], e["after_seconds"], e["taints"]) for e in out] == [
        ("plain", 0, ["maint=now:NoExecute"]),
        ("wrong-value", 0, ["maint=now:NoExecute"]),
        ("for-a-while", 300, ["maint=now:NoExecute"]),
    ]
    assert out[0]["uid"] == "uid-plain" and out[0]["namespace"] == "ns"


def test_noexecute_evictions_without_noexecute_taint():
    assert _nodes.noexecute_evictions([_pod("plain")], [T_DB]) == []


def test_noexecute_first_matching_toleration_counts():
    # Kubernetes takes the first toleration that matches a taint, as the taint eviction controller does.
    pod = _pod("p", [{"key": "maint", "operator": "Exists", "tolerationSeconds": 60},
                     {"operator": "Exists"}])
    assert _nodes.noexecute_evictions([pod], [NOEXEC])[0]["after_seconds"] == 60


def test_noexecute_warning_names_ten_pods_and_counts_the_rest():
    pods = [_pod("p%02d" % i) for i in range(11)] + [
        _pod("patient", [{"key": "maint", "operator": "Exists", "tolerationSeconds": 30}])]
    evictions = _nodes.noexecute_evictions(pods, [T_DB, NOEXEC])
    text = _nodes.noexecute_warning("n1", [T_DB, NOEXEC], evictions)
    assert text == ("The added NoExecute taint maint=now:NoExecute on node/n1 deletes 11 pod(s) at once and 1 more "
                    "after their tolerationSeconds, without regard to PodDisruptionBudgets: %s and 2 more. Drain the "
                    "node first (kubeops.node_maintenance.k8s_node_drain) to respect the budgets."
                    % ", ".join("ns/p%02d" % i for i in range(10)))
    planned = _nodes.noexecute_warning("n1", [NOEXEC], evictions[:1], check_mode=True)
    assert planned.startswith("The NoExecute taint maint=now:NoExecute on node/n1 would delete 1 pod(s) at once and 0 "
                              "more after their tolerationSeconds, without regard to PodDisruptionBudgets: ns/p00. ")
