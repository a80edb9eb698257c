# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Label and node selectors, as Kubernetes matches them (pure functions over the API's JSON).

- ``label_selector_matches(selector, labels)``: a ``metav1.LabelSelector`` (a PodDisruptionBudget's,
  a workload's): null selects nothing, ``{}`` selects everything, ``matchLabels`` and
  ``matchExpressions`` (In, NotIn, Exists, DoesNotExist) are ANDed; an operator a label selector
  does not have makes it select nothing, as ``LabelSelectorAsSelector`` refuses it;
- ``match_labels(required, labels)``: every key with its value (``matchLabels``, a pod's
  ``nodeSelector``);
- ``node_selector_terms_match(terms, labels, name)``: required node affinity (and a
  PersistentVolume's): terms ORed, a term's requirements ANDed, an empty term matches nothing;
  ``Gt`` / ``Lt`` compare one base-10 int64 value as ``strconv.ParseInt`` reads it;
  ``matchFields`` know ``metadata.name`` (``In`` / ``NotIn``, one value).

A requirement Kubernetes cannot turn into a selector (``In`` / ``NotIn`` without values,
``Exists`` / ``DoesNotExist`` with values, ``Gt`` / ``Lt`` without exactly one integer, an unknown
operator) matches nothing, as the selector it would be part of is refused (a node selector term
with one is dropped). The API server's validation refuses such objects, so this only matters for
objects from elsewhere (a template in a file, an old object).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

_SET_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_NUMERIC_OPERATORS = ("Gt", "Lt")
_INT64 = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def parse_int64(text):
    """The integer ``strconv.ParseInt(text, 10, 64)`` reads, or None (no spaces, no ``_``, in range)."""
    if not isinstance(text, str) or not _INT64.fullmatch(text):
        return None
    value = int(text)
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def match_labels(required, labels):
    """True when ``labels`` has every key of ``required`` with the same value."""
    labels = labels or {}
    return all(key in labels and labels[key] == value for key, value in (required or {}).items())


def requirement_matches(requirement, values_by_key, numeric=False):
    """One ``matchExpressions`` entry against ``{key: value}``; ``numeric`` allows ``Gt``/``Lt``
    (node selector requirements have them, label selectors do not)."""
    key = requirement.get("key")
    operator = requirement.get("operator")
    values = requirement.get("values") or ()
    present = key in values_by_key
    if operator in ("In", "NotIn") and not values:
        return False
    if operator in ("Exists", "DoesNotExist") and values:
        return False
    if operator == "In":
        return present and values_by_key[key] in values
    if operator == "NotIn":
        return not present or values_by_key[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if numeric and operator in _NUMERIC_OPERATORS and present and len(values) == 1:
        mine, theirs = parse_int64(values_by_key[key]), parse_int64(values[0])
        if mine is None or theirs is None:
            return False
        return mine > theirs if operator == "Gt" else mine < theirs
    return False


def label_selector_matches(selector, labels):
    """``metav1.LabelSelector`` semantics: None selects nothing, ``{}`` selects everything."""
    if selector is None:
        return False
    labels = labels or {}
    if not match_labels(selector.get("matchLabels"), labels):
        return False
    return all(requirement_matches(req, labels) for req in selector.get("matchExpressions") or ())


def _field_requirement_valid(requirement):
    """A node field requirement Kubernetes accepts: ``metadata.name``, ``In`` or ``NotIn``, one value."""
    return (requirement.get("key") == "metadata.name" and requirement.get("operator") in ("In", "NotIn")
            and len(requirement.get("values") or ()) == 1)


def node_selector_terms_match(terms, labels, name):
    """Required node affinity over a node's ``labels`` and ``name``: any term whose requirements
    all hold; a term with no requirements matches nothing."""
    labels = labels or {}
    fields = {"metadata.name": name}
    for term in terms or ():
        expressions = term.get("matchExpressions") or ()
        match_fields = term.get("matchFields") or ()
        if not expressions and not match_fields:
            continue
        if all(requirement_matches(r, labels, numeric=True) for r in expressions) and all(
                _field_requirement_valid(r) and requirement_matches(r, fields) for r in match_fields):
            return True
    return False
