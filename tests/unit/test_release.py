"""Release hygiene: galaxy.yml's version, the plugins' ``version_added`` and the changelog agree.

- galaxy.yml's version is the changelog's latest release, or the release being prepared after it;
- no plugin (nor any of its options) says it was added in a version newer than galaxy.yml's;
- a plugin added in a released version is one of the new plugins that release lists in
  changelogs/changelog.yaml (``antsibull-changelog release`` lists them from ``version_added``), and
  every plugin a release lists says it was added then;
- a plugin added after the latest release says galaxy.yml's version (no release in between).

The documentation is read from the files (the DOCUMENTATION string), so this needs no ansible-core
and runs on every line of the version matrix.
"""
import ast
import os
import re

import pytest
import yaml

from tests.conftest import REPO_ROOT

PLUGINS = os.path.join(REPO_ROOT, "plugins")
# Plugin directories without documentation of their own: shared code, doc fragments, and the action
# plugins, which the module of the same name documents.
UNDOCUMENTED = {"module_utils", "plugin_utils", "doc_fragments", "action"}
VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def _version(text, where):
    match = VERSION.match(str(text))
    assert match, "%s: %r is not a version X.Y.Z" % (where, text)
    return tuple(int(part) for part in match.groups())


def _yaml(*path):
    with open(os.path.join(REPO_ROOT, *path)) as handle:
        return yaml.safe_load(handle)


def _documentation(path):
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DOCUMENTATION" for t in node.targets):
            return yaml.safe_load(node.value.value)
    raise AssertionError("%s has no DOCUMENTATION" % path)


def _nested_versions(doc, where):
    """(where, version_added) of every option, suboption and return value below the top level."""
    found = []

    def walk(value, trail):
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "version_added" and trail:
                    found.append(("%s %s" % (where, ".".join(trail)), item))
                else:
                    walk(item, trail + [str(key)])
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, trail + [str(index)])

    walk(doc, [])
    return found


def _plugins():
    """{(type, name): documentation} of every documented plugin of the collection."""
    plugins = {}
    for kind in sorted(os.listdir(PLUGINS)):
        folder = os.path.join(PLUGINS, kind)
        if kind in UNDOCUMENTED or not os.path.isdir(folder):
            continue
        for filename in sorted(os.listdir(folder)):
            if filename.endswith(".py") and filename != "__init__.py":
                plugins[("module" if kind == "modules" else kind, filename[:-3])] = _documentation(
                    os.path.join(folder, filename))
    return plugins


GALAXY = _yaml("galaxy.yml")["version"]
RELEASES = _yaml("changelogs", "changelog.yaml")["releases"]
PLUGIN_DOCS = _plugins()


def _listed(release):
    """(type, name) of the new plugins a release of changelog.yaml lists."""
    entry = RELEASES[release]
    listed = {("module", item["name"]) for item in entry.get("modules") or []}
    for kind, items in (entry.get("plugins") or {}).items():
        listed |= {(kind, item["name"]) for item in items}
    return listed


def _latest():
    return max(RELEASES, key=lambda release: _version(release, "changelogs/changelog.yaml"))


def test_the_collection_has_plugins_of_every_kind_this_test_reads():
    kinds = {kind for kind, _name in PLUGIN_DOCS}
    assert {"module", "callback", "filter"} <= kinds, kinds
    assert len(PLUGIN_DOCS) >= 15, sorted(PLUGIN_DOCS)


def test_galaxy_version_is_the_latest_release_or_the_one_after_it():
    latest = _latest()
    assert _version(GALAXY, "galaxy.yml") >= _version(latest, "changelog.yaml"), (
        "galaxy.yml says %s, older than the changelog's latest release %s" % (GALAXY, latest))


@pytest.mark.parametrize("plugin", sorted(PLUGIN_DOCS), ids=lambda plugin: "%s-%s" % plugin)
def test_no_version_added_is_newer_than_galaxy_yml(plugin):
    doc = PLUGIN_DOCS[plugin]
    where = "%s %s" % plugin
    assert "version_added" in doc, "%s has no version_added" % where
    released = {_version(release, "changelog.yaml") for release in RELEASES}
    for place, added in [(where, doc["version_added"])] + _nested_versions(doc, where):
        version = _version(added, place)
        assert version <= _version(GALAXY, "galaxy.yml"), (
            "%s: version_added %s is newer than galaxy.yml's version %s" % (place, added, GALAXY))
        assert version in released or str(added) == str(GALAXY), (
            "%s: version_added %s is neither a release of changelogs/changelog.yaml (%s) nor galaxy.yml's "
            "version %s" % (place, added, ", ".join(sorted(RELEASES)), GALAXY))


@pytest.mark.parametrize("plugin", sorted(PLUGIN_DOCS), ids=lambda plugin: "%s-%s" % plugin)
def test_a_plugin_added_in_a_release_is_listed_as_new_in_that_release(plugin):
    added = str(PLUGIN_DOCS[plugin]["version_added"])
    if _version(added, "%s %s" % plugin) > _version(_latest(), "changelog.yaml"):
        # not released yet: it must come with galaxy.yml's version (checked above); the release lists it
        assert added == str(GALAXY)
        return
    assert added in RELEASES, "%s %s: version_added %s is no release of the changelog" % (plugin + (added,))
    assert plugin in _listed(added), (
        "%s %s says version_added %s, but the changelog's %s does not list it as new: it was added after "
        "%s was released, so version_added is the next version (with galaxy.yml's), or, while %s is not "
        "published yet, `antsibull-changelog release --update-existing` adds it" % (plugin + (added, added, added, added)))


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_every_plugin_a_release_lists_as_new_says_it_was_added_then(release):
    for plugin in sorted(_listed(release)):
        assert plugin in PLUGIN_DOCS, "changelog %s lists %s %s, which the collection does not have" % (
            (release,) + plugin)
        assert str(PLUGIN_DOCS[plugin]["version_added"]) == release, (
            "changelog %s lists %s %s as new, but its version_added is %s" % (
                (release,) + plugin + (PLUGIN_DOCS[plugin]["version_added"],)))
