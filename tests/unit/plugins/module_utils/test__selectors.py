"""Label selectors and node selector terms, as Kubernetes matches them (moved here from test__eviction
and test__preflight, where each had a copy)."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _selectors as sel


# --- from test__eviction -----------------------------------------------------------------------

@pytest.mark.parametrize("selector,labels,expected", [
    (None, {"a": "1"}, False),
    ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"}, False),
])
def test_selector_matches(selector, labels, expected):
    assert sel.label_selector_matches(selector, labels) is expected


@given(st.dictionaries(st.sampled_from("abc"), st.sampled_from(["1", "2"])),
       st.dictionaries(st.sampled_from("abc"), st.sampled_from(["1", "2"])))
def test_match_labels_is_subset(required, labels):
    assert sel.label_selector_matches({"matchLabels": required}, labels) == (required.items() <= labels.items())


# --- from test__preflight ----------------------------------------------------------------------

@pytest.mark.parametrize("expressions, expected", [
    ([{"key": "zone", "operator": "In", "values": ["a", "b"]}], True),
    ([{"key": "zone", "operator": "NotIn", "values": ["a"]}], False),
    ([{"key": "gpu", "operator": "DoesNotExist"}], True),
    ([{"key": "zone", "operator": "Exists"}, {"key": "cores", "operator": "Gt", "values": ["8"]}], True),
    ([{"key": "cores", "operator": "Lt", "values": ["8"]}], False),
    ([{"key": "missing", "operator": "Gt", "values": ["1"]}], False),
])
def test_node_affinity_expressions(expressions, expected):
    labels = {"kubernetes.io/hostname": "n", "zone": "a", "cores": "16"}
    assert sel.node_selector_terms_match([{"matchExpressions": expressions}], labels, "n") is expected


def test_node_affinity_terms_are_ored_and_empty_term_matches_nothing():
    labels = {"kubernetes.io/hostname": "n1", "zone": "a"}
    terms = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z"]}]},
             {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]
    assert sel.node_selector_terms_match(terms, labels, "n1")
    assert not sel.node_selector_terms_match([{}], labels, "n1")


def test_label_selector():
    labels = {"app": "web", "tier": "front"}
    assert sel.label_selector_matches({}, labels)
    assert not sel.label_selector_matches(None, labels)
    assert sel.label_selector_matches({"matchLabels": {"app": "web"}}, labels)
    assert not sel.label_selector_matches({"matchLabels": {"app": "db"}}, labels)
    assert sel.label_selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}, labels)


# --- where the copies differed -----------------------------------------------------------------

def test_a_label_selector_has_no_numeric_operators():
    # LabelSelectorAsSelector refuses Gt/Lt in a label selector, so it selects nothing.
    assert not sel.label_selector_matches({"matchExpressions": [{"key": "n", "operator": "Gt", "values": ["1"]}]},
                                          {"n": "5"})


@pytest.mark.parametrize("text, value", [
    ("16", 16), ("+16", 16), ("-3", -3), ("007", 7), (str(2 ** 63 - 1), 2 ** 63 - 1), (str(-2 ** 63), -2 ** 63),
    ("1_6", None), (" 16", None), ("16\n", None), ("", None), ("1e3", None), ("0x10", None), ("\u0661", None),
    (str(2 ** 63), None), (None, None),
])
def test_numbers_are_read_as_strconv_parseint_reads_them(text, value):
    assert sel.parse_int64(text) == value


def test_gt_and_lt_need_base_10_int64_on_both_sides():
    def gt(label, value):
        return sel.node_selector_terms_match(
            [{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": [value]}]}], {"cores": label}, "n")
    assert gt("16", "8") and not gt("8", "16") and not gt("8", "8")
    assert not gt("1_6", "8")  # Python's int() would read 16
    assert not gt("99999999999999999999", "8")  # past int64
    assert not gt("16", " 8")


# --- properties --------------------------------------------------------------------------------

label_sets = st.dictionaries(st.sampled_from("abc"), st.sampled_from(["1", "2", ""]), max_size=3)
value_lists = st.lists(st.sampled_from(["1", "2", ""]), min_size=1, max_size=3)


@given(label_sets, st.sampled_from("abc"), value_lists)
def test_in_and_notin_are_complements(labels, key, values):
    def one(operator):
        return sel.label_selector_matches(
            {"matchExpressions": [{"key": key, "operator": operator, "values": values}]}, labels)
    assert one("In") != one("NotIn")
    assert one("In") == (key in labels and labels[key] in values)


@given(label_sets, st.sampled_from("abc"))
def test_exists_and_doesnotexist_are_complements(labels, key):
    def one(operator):
        return sel.label_selector_matches({"matchExpressions": [{"key": key, "operator": operator}]}, labels)
    assert one("Exists") != one("DoesNotExist")
    assert one("Exists") == (key in labels)


@given(label_sets, label_sets, st.sampled_from("abc"), value_lists)
def test_match_labels_and_expressions_are_anded(labels, required, key, values):
    expression = {"key": key, "operator": "In", "values": values}
    both = sel.label_selector_matches({"matchLabels": required, "matchExpressions": [expression]}, labels)
    assert both == (sel.match_labels(required, labels)
                    and sel.label_selector_matches({"matchExpressions": [expression]}, labels))


expressions = st.builds(dict, key=st.sampled_from("abc"),
                        operator=st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]), values=value_lists)


@given(label_sets, st.lists(st.lists(expressions, max_size=2), max_size=3))
def test_node_selector_terms_are_ored(labels, term_expressions):
    terms = [{"matchExpressions": expressions} for expressions in term_expressions]
    each = [sel.node_selector_terms_match([term], labels, "n") for term in terms]
    assert sel.node_selector_terms_match(terms, labels, "n") == any(each)
    for term, matched in zip(terms, each):
        if not term["matchExpressions"]:
            assert not matched  # an empty term matches nothing


@given(st.integers(-2 ** 64, 2 ** 64), st.integers(-2 ** 64, 2 ** 64))
def test_gt_and_lt_compare_as_numbers_within_int64(mine, theirs):
    def match(operator):
        return sel.node_selector_terms_match(
            [{"matchExpressions": [{"key": "k", "operator": operator, "values": [str(theirs)]}]}],
            {"k": str(mine)}, "n")
    in_range = all(-2 ** 63 <= v < 2 ** 63 for v in (mine, theirs))
    assert match("Gt") == (in_range and mine > theirs)
    assert match("Lt") == (in_range and mine < theirs)


# --- from test__daemonset_placement ------------------------------------------------------------

dp_keys = st.sampled_from(["a", "b", "zone", "node-role.kubernetes.io/infra", "example.com/x"])
dp_values = st.sampled_from(["", "1", "2", "x", "y", "10"])
dp_labels = st.dictionaries(dp_keys, dp_values, max_size=4)


def expr(key, operator, *vals):
    requirement = {"key": key, "operator": operator}
    if vals:
        requirement["values"] = list(vals)
    return requirement


@given(dp_labels, dp_keys, st.lists(dp_values, min_size=1, max_size=3))
def test_in_and_notin_are_complements_and_exists_and_doesnotexist_too(node_labels, key, vals):
    def match(*requirement):
        return sel.requirement_matches(expr(*requirement), node_labels, numeric=True)

    assert match(key, "In", *vals) == (key in node_labels and node_labels[key] in vals)
    assert match(key, "NotIn", *vals) != match(key, "In", *vals)
    assert match(key, "Exists") == (key in node_labels)
    assert match(key, "DoesNotExist") != match(key, "Exists")


@pytest.mark.parametrize("requirement", [
    expr("a", "In"), expr("a", "NotIn"), expr("a", "Exists", "x"), expr("b", "DoesNotExist", "x"),
    expr("a", "Gt"), expr("a", "Gt", "1", "2"), expr("a", "Like", "x"),
])
def test_a_requirement_the_api_cannot_parse_matches_nothing(requirement):
    assert sel.requirement_matches(requirement, {"a": "5"}, numeric=True) is False
    assert sel.node_selector_terms_match([{"matchExpressions": [requirement]}], {"a": "5"}, "n") is False


@given(st.integers(-(2 ** 63), 2 ** 63 - 1), st.integers(-(2 ** 63), 2 ** 63 - 1))
def test_gt_and_lt_compare_as_64_bit_integers(mine, bound):
    node_labels = {"n": str(mine)}
    assert sel.requirement_matches(expr("n", "Gt", str(bound)), node_labels, numeric=True) == (mine > bound)
    assert sel.requirement_matches(expr("n", "Lt", str(bound)), node_labels, numeric=True) == (mine < bound)


@pytest.mark.parametrize("value", ["1_0", " 5", "0x10", "5.0", "", "9223372036854775808", "x"])
def test_gt_and_lt_parse_as_go_parseint_does(value):
    # strconv.ParseInt(s, 10, 64): no underscores, spaces, hex, fractions or overflow (Python's int() takes some)
    assert sel.requirement_matches(expr("n", "Gt", "-1"), {"n": value}, numeric=True) is False
    assert sel.requirement_matches(expr("n", "Lt", value), {"n": "0"}, numeric=True) is False
    assert sel.requirement_matches(expr("n", "Gt", "-1"), {"n": "+7"}, numeric=True) is True
