"""The roles' meta/argument_specs.yml describe every variable a job template can set.

AWX surveys and `ansible-doc -t role` are built from these specs, and role argument validation runs
them, so each variable of defaults/main.yml needs an entry with a type, a description and the same
default; the playbook-level variables of playbooks/rolling_maintenance.yml are documented in the
node_maintenance role's spec with the defaults the playbook really uses.
"""
import glob
import os
import re

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from tests.conftest import REPO_ROOT

ROLES = sorted(os.path.basename(os.path.dirname(os.path.dirname(path)))
               for path in glob.glob(os.path.join(REPO_ROOT, "roles", "*", "meta", "argument_specs.yml")))
PLAYBOOK = os.path.join(REPO_ROOT, "playbooks", "rolling_maintenance.yml")
# Option keys ansible-core's role argument specs accept (module argument spec keys + documentation).
KNOWN_KEYS = {"type", "elements", "default", "required", "choices", "description", "options", "aliases",
              "no_log", "version_added", "apply_defaults", "mutually_exclusive", "required_together",
              "required_one_of", "required_if", "required_by"}


def _load(*parts):
    with open(os.path.join(REPO_ROOT, *parts)) as handle:
        return yaml.safe_load(handle) or {}


def _options(role):
    return _load("roles", role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]


def _defaults(role):
    return _load("roles", role, "defaults", "main.yml")


def _playbook_defaults():
    """{variable: default expression} for the ``var | default(...)`` uses in the rolling playbook."""
    with open(PLAYBOOK) as handle:
        text = handle.read()
    found = {}
    for name, default in re.findall(r"\b(node_maintenance_\w+) \| default\(([^()]*(?:\([^()]*\))?[^()]*)\)", text):
        found.setdefault(name, default)
    return found


def test_there_are_roles_with_specs():
    assert {"node_maintenance", "data_disk"} <= set(ROLES)


@pytest.mark.parametrize("role", ROLES)
def test_every_default_has_a_spec_entry_with_type_and_description(role):
    options = _options(role)
    missing = sorted(set(_defaults(role)) - set(options))
    assert not missing, "%s: defaults/main.yml variables without an argument_specs entry: %s" % (role, missing)
    for name, spec in options.items():
        assert spec.get("type"), "%s.%s has no type" % (role, name)
        description = spec.get("description")
        if isinstance(description, list):
            description = " ".join(description)
        assert isinstance(description, str) and description.strip(), "%s.%s has no description" % (role, name)
        assert set(spec) <= KNOWN_KEYS, "%s.%s: unknown keys %s" % (role, name, set(spec) - KNOWN_KEYS)
        if spec.get("type") == "list":
            assert spec.get("elements"), "%s.%s: a list needs elements" % (role, name)


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_are_the_role_defaults(role):
    """A survey shows the spec's default; it must be what the role really uses."""
    defaults = _defaults(role)
    for name, value in defaults.items():
        spec = _options(role)[name]
        if spec.get("required"):
            assert "default" not in spec, "%s.%s: required and default exclude each other" % (role, name)
            continue
        assert "default" in spec, "%s.%s: no default in argument_specs (defaults/main.yml has %r)" % (role, name, value)
        assert spec["default"] == value, "%s.%s: spec default %r, defaults/main.yml %r" % (
            role, name, spec["default"], value)


@pytest.mark.parametrize("role", ROLES)
def test_spec_entries_without_a_role_default_are_required_or_playbook_variables(role):
    playbook = _playbook_defaults()
    for name, spec in _options(role).items():
        if name in _defaults(role) or spec.get("required"):
            continue
        assert role == "node_maintenance" and name in playbook, (
            "%s.%s is neither in defaults/main.yml nor required nor read by the playbook" % (role, name))
        assert "default" in spec, "%s.%s has no default" % (role, name)
        assert yaml.safe_load(playbook[name].strip("'\"")) == spec["default"] or \
            playbook[name].strip("'\"") == str(spec["default"]), (
                "%s: the playbook defaults to %s, the spec says %r" % (name, playbook[name], spec["default"]))


def test_every_variable_the_playbook_reads_is_documented():
    options = _options("node_maintenance")
    undocumented = sorted(set(_playbook_defaults()) - set(options))
    assert not undocumented, "playbook variables missing from node_maintenance's argument_specs: %s" % undocumented


@pytest.mark.parametrize("role", ROLES)
def test_the_defaults_pass_the_spec(role):
    """ansible-core's own validator (what role argument validation runs) accepts the defaults:
    types, elements and choices agree with the values."""
    options = _options(role)
    spec = {}
    for name, option in options.items():
        spec[name] = {k: v for k, v in option.items() if k not in ("description", "version_added")}
        spec[name].pop("required", None)
    values = dict(_defaults(role))
    values.update({name: option["default"] for name, option in options.items()
                   if name not in values and "default" in option})
    result = ArgumentSpecValidator(spec).validate(values)
    assert not result.error_messages, "%s: %s" % (role, result.error_messages)


def _survey_spec():
    """The example survey in docs/awx.md (the JSON block after the ``survey-spec`` marker)."""
    import json

    with open(os.path.join(REPO_ROOT, "docs", "awx.md")) as handle:
        text = handle.read()
    block = re.search(r"<!-- survey-spec -->\s*```json\n(.*?)\n```", text, re.S)
    assert block, "docs/awx.md has no survey spec block"
    return json.loads(block.group(1))


SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


def _survey_value(question, option):
    """The survey default as the role receives it, converted to the option's type."""
    value = question["default"]
    if question["type"] == "multiselect":
        value = [line for line in value.split("\n") if line]
    if option["type"] == "bool":
        value = {"true": True, "false": False}[str(value).lower()]
    return value


def test_the_example_survey_matches_the_role_spec():
    options = _options("node_maintenance")
    survey = _survey_spec()
    assert survey["name"] and survey["description"]
    seen = set()
    for question in survey["spec"]:
        name = question["variable"]
        assert name not in seen, "%s asked twice" % name
        seen.add(name)
        assert name in options, "survey variable %s is not in the role's argument_specs" % name
        option = options[name]
        assert question["type"] in SURVEY_TYPES, question
        assert question["question_name"] and question["question_description"], name
        assert isinstance(question["required"], bool), name
        if question["type"] in ("multiplechoice", "multiselect"):
            choices = [line for line in question["choices"].split("\n") if line]
            allowed = option.get("choices")
            if option["type"] == "bool":
                allowed = ["true", "false"]
            assert allowed and set(choices) <= {str(c) for c in allowed}, (name, choices, allowed)
            defaults = question["default"].split("\n") if question["type"] == "multiselect" else [question["default"]]
            assert set(d for d in defaults if d) <= set(choices), name
        if question["type"] == "integer":
            assert option["type"] in ("int", "raw"), name
            assert question["min"] <= question["default"] <= question["max"], name
        if question["default"] == "" and question["required"]:
            continue  # the operator must answer (the rollout id: one per rollout)
        assert _survey_value(question, option) == option["default"], (
            "%s: survey default %r, role default %r" % (name, question["default"], option["default"]))
    assert {"node_maintenance_rollout_id", "node_maintenance_action"} <= seen
