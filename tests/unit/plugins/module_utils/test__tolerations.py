"""Tolerations against taints: ``Toleration.ToleratesTaint``, the scheduler's untolerated taint, and the
taint eviction controller's delay (moved here from test__nodes and test__preflight, where each had a copy)."""
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _tolerations as tol

NOEXEC = {"key": "maint", "value": "now", "effect": "NoExecute"}
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def make_toleration(key, operator, value, effect):
    """A toleration dict from the (key, operator, value, effect) the preflight's copy took."""
    return {"key": key, "operator": operator, "value": value, "effect": effect}


def make_taint(key, value, effect):
    return {"key": key, "value": value, "effect": effect}


# --- from test__nodes --------------------------------------------------------------------------

@pytest.mark.parametrize("toleration, expected", [
    ({"key": "maint", "operator": "Exists"}, True),
    ({"key": "maint", "operator": "Equal", "value": "now"}, True),
    ({"key": "maint", "value": "now"}, True),
    ({"key": "maint", "value": "later"}, False),
    ({"operator": "Exists"}, True),
    ({"operator": "Exists", "effect": "NoSchedule"}, False),
    ({"key": "maint", "operator": "Exists", "effect": "NoExecute"}, True),
    ({"key": "other", "operator": "Exists"}, False),
    ({"key": "maint", "operator": "Lt", "value": "5"}, False),
])
def test_toleration_tolerates_taint(toleration, expected):
    assert tol.tolerates(toleration, NOEXEC) is expected


# --- from test__preflight ----------------------------------------------------------------------

@pytest.mark.parametrize("toleration, taint, expected", [
    (("dedicated", "Equal", "db", "NoSchedule"), ("dedicated", "db", "NoSchedule"), True),
    (("dedicated", "Equal", "web", "NoSchedule"), ("dedicated", "db", "NoSchedule"), False),
    (("dedicated", "Exists", "", ""), ("dedicated", "db", "NoExecute"), True),
    (("", "Exists", "", ""), ("anything", "x", "NoSchedule"), True),
    (("dedicated", "Equal", "db", "NoExecute"), ("dedicated", "db", "NoSchedule"), False),
    (("other", "Exists", "", ""), ("dedicated", "db", "NoSchedule"), False),
])
def test_tolerates(toleration, taint, expected):
    assert tol.tolerates(make_toleration(*toleration), make_taint(*taint)) is expected


def test_prefer_no_schedule_taint_does_not_block():
    assert tol.untolerated_taint((), [{"key": "soft", "effect": "PreferNoSchedule"}]) is None


# --- properties --------------------------------------------------------------------------------

words = st.sampled_from(["", "a", "b", "dedicated", "5", "12"])
taints = st.builds(make_taint, words, words, st.sampled_from(EFFECTS))
tolerations = st.builds(make_toleration, words, st.sampled_from(["", "Equal", "Exists", "Lt", "Gt", "Bogus"]), words,
                        st.sampled_from(("",) + EFFECTS))


@given(taints)
def test_exists_without_key_or_effect_tolerates_every_taint(t):
    assert tol.tolerates({"operator": "Exists"}, t)


@given(taints)
def test_the_toleration_written_from_a_taint_tolerates_it(t):
    assert tol.tolerates(make_toleration(t["key"], "Equal", t["value"], t["effect"]), t)
    assert tol.tolerates({"key": t["key"], "value": t["value"]}, t)  # empty operator means Equal


@given(tolerations, taints)
def test_a_toleration_tolerates_only_its_effect_and_key(tl, t):
    if tol.tolerates(tl, t):
        assert tl["effect"] in ("", t["effect"]) and tl["key"] in ("", t["key"])
        assert tl["operator"] in ("", "Equal", "Exists")
        assert tl["operator"] == "Exists" or tl["value"] == t["value"]


@given(tolerations, taints)
def test_comparison_operators_never_tolerate_while_their_feature_gate_is_off(tl, t):
    if tl["operator"] in ("Lt", "Gt", "Bogus"):
        assert not tol.tolerates(tl, t)


@given(st.lists(tolerations, max_size=4), st.lists(taints, max_size=4))
def test_untolerated_taint_is_the_first_scheduling_taint_nothing_tolerates(tls, ts):
    found = tol.untolerated_taint(tls, ts)
    blocking = [t for t in ts if t["effect"] != "PreferNoSchedule" and not any(tol.tolerates(x, t) for x in tls)]
    assert found == (blocking[0] if blocking else None)
    assert found is None or found["effect"] in tol.SCHEDULING_EFFECTS


@given(st.lists(tolerations, max_size=4), st.lists(taints, min_size=1, max_size=3),
       st.lists(st.none() | st.integers(-5, 600), min_size=4, max_size=4))
def test_noexecute_delay_is_set_by_the_first_matching_tolerations(tls, ts, seconds):
    for tl, value in zip(tls, seconds):
        if value is not None:
            tl["tolerationSeconds"] = value
    delay = tol.noexecute_delay(tls, ts)
    firsts = [tol.first_toleration(tls, t) for t in ts]
    if any(first is None for first in firsts):
        assert delay == 0
        return
    limits = [first["tolerationSeconds"] for first in firsts if "tolerationSeconds" in first]
    assert delay == (max(0, min(limits)) if limits else None)
    # A toleration added after the others never changes which one counts.
    assert tol.noexecute_delay(tls + [{"operator": "Exists", "tolerationSeconds": 1}], ts) == delay


# --- from test__daemonset_placement ------------------------------------------------------------

dp_keys = st.sampled_from(["a", "b", "zone", "node-role.kubernetes.io/infra", "example.com/x"])
dp_taints = st.builds(lambda k, v, e: {"key": k, "value": v, "effect": e} if v else {"key": k, "effect": e},
                      dp_keys, st.sampled_from(["", "1", "2", "x", "y", "10"]), st.sampled_from(EFFECTS))


@given(dp_taints)
def test_a_toleration_made_from_a_taint_tolerates_it_and_only_its_value(taint):
    equal = {"key": taint["key"], "operator": "Equal", "value": taint.get("value", ""), "effect": taint["effect"]}
    assert tol.tolerates(equal, taint)
    assert not tol.tolerates(dict(equal, value=taint.get("value", "") + "-other"), taint)
    assert tol.tolerates({"key": taint["key"], "operator": "Exists", "effect": taint["effect"]}, taint)
    # no operator means Equal; no effect means every effect
    assert tol.tolerates({"key": taint["key"], "value": taint.get("value", "")}, taint)


@given(dp_taints)
def test_an_empty_key_with_exists_tolerates_every_taint(taint):
    assert tol.tolerates({"operator": "Exists"}, taint)
    assert tol.tolerates({"operator": "Exists", "effect": taint["effect"]}, taint)


@given(dp_taints, st.sampled_from(EFFECTS), dp_keys)
def test_another_effect_or_key_is_never_tolerated(taint, effect, key):
    assume(effect != taint["effect"])
    assert not tol.tolerates({"key": taint["key"], "operator": "Exists", "effect": effect}, taint)
    assume(key != taint["key"])
    assert not tol.tolerates({"key": key, "operator": "Exists"}, taint)


@given(dp_taints)
def test_an_unknown_operator_tolerates_nothing(taint):
    assert not tol.tolerates({"key": taint["key"], "operator": "Gt", "value": "0"}, taint)
