"""Every plugin's DOCUMENTATION, EXAMPLES and RETURN is YAML that loads, and a module's DOCUMENTATION
and RETURN are mappings. Ansible reads none of them when a module runs, so a broken one (a plain
scalar with ``: `` in it, the usual slip) passes every runtime test and breaks only ``ansible-doc``
and ansible-test sanity; this names the file and line in a second."""
import ast
import os

import pytest
import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGINS = os.path.join(REPO_ROOT, "plugins")
DOC_NAMES = ("DOCUMENTATION", "EXAMPLES", "RETURN")


def _doc_strings():
    found = []
    for kind in sorted(os.listdir(PLUGINS)):
        folder = os.path.join(PLUGINS, kind)
        if kind in ("module_utils", "doc_fragments") or not os.path.isdir(folder):
            continue
        for filename in sorted(os.listdir(folder)):
            if not filename.endswith(".py") or filename == "__init__.py":
                continue
            path = os.path.join(folder, filename)
            with open(path) as handle:
                tree = ast.parse(handle.read(), path)
            for node in tree.body:
                if (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and getattr(node.targets[0], "id", None) in DOC_NAMES
                        and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                    found.append(pytest.param(kind, path, node.targets[0].id, node.value.value, node.lineno,
                                              id="%s/%s:%s" % (kind, filename, node.targets[0].id)))
    return found


DOC_STRINGS = _doc_strings()


def test_the_collection_has_docs_to_check():
    kinds = {param.values[0] for param in DOC_STRINGS}
    assert {"modules", "callback", "filter"} <= kinds, kinds


@pytest.mark.parametrize("kind, path, name, text, lineno", DOC_STRINGS)
def test_the_doc_string_is_yaml(kind, path, name, text, lineno):
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = "line %d" % (lineno + mark.line) if mark else "somewhere"
        problem = getattr(exc, "problem", exc)
        pytest.fail("%s: %s is not YAML (%s of the file): %s" % (os.path.relpath(path, REPO_ROOT), name, where, problem))
    where = os.path.relpath(path, REPO_ROOT)
    if kind == "modules" and name in ("DOCUMENTATION", "RETURN"):
        assert isinstance(doc, dict), "%s: %s is not a mapping" % (where, name)
    if name != "EXAMPLES":
        # ``- text: more`` in a list of lines is valid YAML but a mapping, not a line of text
        bad = [trail for trail, value in _descriptions(doc, []) if not _is_text(value)]
        assert not bad, "%s: %s: descriptions that are not text (a ': ' in a plain line?): %s" % (where, name, bad)


def _is_text(value):
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(line, str) for line in value))


def _descriptions(value, trail):
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "description":
                yield ".".join(trail + [key]), item
            else:
                yield from _descriptions(item, trail + [str(key)])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _descriptions(item, trail + [str(index)])


def test_the_records_fragment_has_the_record_fragments_fields_with_node_required():
    from ansible_collections.kubeops.node_maintenance.plugins.doc_fragments.k8s_options import ModuleDocFragment
    from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import RECORDS_SPEC

    record = yaml.safe_load(ModuleDocFragment.RECORD)["options"]["record"]["suboptions"]
    records = yaml.safe_load(ModuleDocFragment.RECORDS)["options"]["records"]["suboptions"]
    assert records.pop("node")["required"] is True and record.pop("node")
    assert records == record
    assert sorted(RECORDS_SPEC["options"]) == sorted(list(records) + ["node"])
