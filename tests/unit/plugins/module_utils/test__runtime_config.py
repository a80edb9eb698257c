from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _runtime_config as rc
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._runtime_config import (
    RuntimeConfigError,
    set_containerd_root,
    set_docker_data_root,
)

FIELD_NOTES = """{
    "graph": "/var/lib/docker",
    "exec-opts": ["native.cgroupdriver=systemd"],
    "log-driver": "json-file",
    "log-opts": {"max-size": "100m"}
}
"""


# --- daemon.json -----------------------------------------------------------------------------

def test_field_notes_daemon_json_graph_is_renamed_in_place():
    edit = set_docker_data_root(FIELD_NOTES, "/data/docker")
    assert edit.text == FIELD_NOTES.replace('"graph": "/var/lib/docker"', '"data-root": "/data/docker"')
    assert edit.changed and edit.previous_root == "/var/lib/docker"
    assert edit.actions == [
        "renamed the legacy 'graph' key to 'data-root'",
        "set 'data-root' to /data/docker (was /var/lib/docker)",
    ]
    again = set_docker_data_root(edit.text, "/data/docker")
    assert not again.changed and again.text == edit.text and again.actions == []


@pytest.mark.parametrize(
    "before, after",
    [
        ('{"log-driver":"json-file"}', '{"log-driver":"json-file","data-root":"/data/docker"}'),
        ('{\n\t"a": 1,\n\t"b" : 2\n}\n', '{\n\t"a": 1,\n\t"b" : 2,\n\t"data-root" : "/data/docker"\n}\n'),
        ("{}", '{\n  "data-root": "/data/docker"\n}'),
        ("{ }", '{ "data-root": "/data/docker" }'),
        ('  {\n  }\n', '  {\n    "data-root": "/data/docker"\n  }\n'),
        ('{"data-root": "/old"}', '{"data-root": "/data/docker"}'),
        ('{"a": 1, "graph": "/x", "data-root": "/x", "b": [1, 2]}', '{"a": 1, "data-root": "/data/docker", "b": [1, 2]}'),
        ('{"graph": "/x", "data-root": "/x"}', '{"data-root": "/data/docker"}'),
        ('{"data-root": "/x", "graph": "/x"}', '{"data-root": "/data/docker"}'),
        ('{"graph": "/data/docker", "data-root": "/data/docker"}', '{"data-root": "/data/docker"}'),
        ("\ufeff{}", '\ufeff{\n  "data-root": "/data/docker"\n}'),
    ],
)
def test_daemon_json_edits_touch_only_the_data_root(before, after):
    assert set_docker_data_root(before, "/data/docker").text == after


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_missing_or_empty_daemon_json_is_created(text):
    edit = set_docker_data_root(text, "/data/docker")
    assert json.loads(edit.text) == {"data-root": "/data/docker"}
    assert edit.changed and edit.previous_root is None


@pytest.mark.parametrize(
    "text, words",
    [
        ('{"graph": "/var/lib/docker",}', ["not valid JSON", "left as it was"]),
        ("{'graph': 1}", ["not valid JSON"]),
        ('["graph"]', ["not a JSON object"]),
        ('{"graph": "/a", "data-root": "/b"}', ["both", "/a", "/b", "different values", "left as it was"]),
        ('{"data-root": "/a", "data-root": "/a"}', ["'data-root' 2 times"]),
        ('{"data-root": 5}', ["not a path"]),
        ('{"a": 1} {"b": 2}', ["not valid JSON"]),
    ],
)
def test_bad_daemon_json_is_refused(text, words):
    with pytest.raises(RuntimeConfigError) as err:
        set_docker_data_root(text, "/data/docker")
    for word in words:
        assert word in str(err.value)


json_keys = st.text(min_size=1, max_size=8).filter(lambda k: k not in ("graph", "data-root"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@given(
    st.lists(st.tuples(json_keys, json_values), max_size=6, unique_by=lambda kv: kv[0]),
    st.sampled_from([None, "graph", "data-root", "both"]),
    st.integers(0, 6),
    st.sampled_from([None, 0, 2, 4, "\t"]),
    st.text(alphabet="/abc", min_size=1, max_size=10),
)
@settings(max_examples=300)
def test_daemon_json_merge_keeps_unknown_keys_and_order(pairs, legacy, position, indent, data_root):
    pairs = list(pairs)
    old_root = "/var/lib/docker"
    if legacy in ("graph", "both"):
        pairs.insert(min(position, len(pairs)), ("graph", old_root))
    if legacy in ("data-root", "both"):
        pairs.insert(min(position + 1, len(pairs)), ("data-root", old_root))
    text = json.dumps(dict(pairs), indent=indent)
    edit = set_docker_data_root(text, data_root)
    got = json.loads(edit.text, object_pairs_hook=list)
    unknown = [(k, v) for k, v in json.loads(text, object_pairs_hook=list) if k not in ("graph", "data-root")]
    assert [(k, v) for k, v in got if k not in ("graph", "data-root")] == unknown
    assert [v for k, v in got if k in ("graph", "data-root")] == [data_root]
    assert [k for k, dummy in got].count("data-root") == 1 and "graph" not in [k for k, dummy in got]
    if legacy is not None:
        # data-root takes the place of the key it replaces
        keys = [k for k, dummy in json.loads(text, object_pairs_hook=list)]
        first = min(keys.index(k) for k in ("graph", "data-root") if k in keys)
        assert [k for k, dummy in got].index("data-root") == first
    # a second run is a no-op
    assert not set_docker_data_root(edit.text, data_root).changed


def test_docker_data_root_reader():
    assert rc.docker_data_root(FIELD_NOTES) == "/var/lib/docker"
    assert rc.docker_data_root('{"data-root": "/d"}') == "/d"
    assert rc.docker_data_root(None) is None and rc.docker_data_root("") is None


# --- containerd config.toml ------------------------------------------------------------------

CONTAINERD = """# containerd config, managed by hand
version = 2
root = "/var/lib/containerd"   # images and snapshots
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.internal.v1.opt",
]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.grpc.v1.cri".containerd]
  root = "not the top level"
"""


def test_containerd_root_value_is_replaced_in_place():
    edit = set_containerd_root(CONTAINERD, "/data/containerd")
    assert edit.text == CONTAINERD.replace('root = "/var/lib/containerd"', 'root = "/data/containerd"')
    assert edit.previous_root == "/var/lib/containerd"
    assert not set_containerd_root(edit.text, "/data/containerd").changed


@pytest.mark.parametrize(
    "before, after",
    [
        ('version = 2\n\n[grpc]\n  address = "x"\n', 'version = 2\nroot = "/d"\n\n[grpc]\n  address = "x"\n'),
        (
            'disabled_plugins = [\n  "cri",\n]\n[a]\nroot = "/no"\n',
            'disabled_plugins = [\n  "cri",\n]\nroot = "/d"\n[a]\nroot = "/no"\n',
        ),
        ('# intro\n\n# the grpc table\n[grpc]\n', '# intro\n\nroot = "/d"\n\n# the grpc table\n[grpc]\n'),
        ("# only a comment", '# only a comment\nroot = "/d"\n'),
        ("", 'root = "/d"\n'),
        ("root = '/old' # literal\n", 'root = "/d" # literal\n'),
        ('"root"="/old"\r\nversion = 2\r\n', '"root"="/d"\r\nversion = 2\r\n'),
        ('x = """\n[not a table]\nroot = "no"\n"""\n[t]\n', 'x = """\n[not a table]\nroot = "no"\n"""\nroot = "/d"\n[t]\n'),
        ('version = 2\r\n[t]\r\n', 'version = 2\r\nroot = "/d"\r\n[t]\r\n'),
    ],
)
def test_containerd_edits_touch_only_the_top_level_root(before, after):
    assert set_containerd_root(before, "/d").text == after


def test_missing_containerd_config_is_created():
    edit = set_containerd_root(None, '/data/con"tainerd')
    assert edit.text == 'root = "/data/con\\"tainerd"\n'
    assert rc.containerd_root(edit.text) == '/data/con"tainerd'


@pytest.mark.parametrize(
    "text, words",
    [
        ("root = \n", ["not valid TOML", "left as it was"]),
        ('root = """/x"""\n', ["form this module does not edit"]),
        ("root.x = 1\n", ["not valid TOML"]),  # root is a table here; adding root = "..." would clash
    ],
)
def test_bad_containerd_config_is_refused(text, words):
    with pytest.raises(RuntimeConfigError) as err:
        set_containerd_root(text, "/d")
    for word in words:
        assert word in str(err.value)


@pytest.mark.skipif(rc.tomllib is None, reason="tomllib needs Python 3.11")
@given(
    st.dictionaries(
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True).filter(lambda k: k != "root"),
        st.one_of(st.integers(), st.text(max_size=8), st.booleans(), st.lists(st.integers(), max_size=3)),
        max_size=5,
    ),
    st.booleans(),
    st.booleans(),
)
@settings(max_examples=200)
def test_containerd_merge_keeps_every_other_setting(top, with_root, with_table):
    def toml_value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return rc._toml_string(v)
        if isinstance(v, list):
            return "[\n  " + ",\n  ".join(map(str, v)) + "\n]" if v else "[]"
        return str(v)

    lines = ["%s = %s" % (k, toml_value(v)) for k, v in top.items()]
    if with_root:
        lines.insert(len(lines) // 2, 'root = "/var/lib/containerd"')
    text = "\n".join(lines) + "\n"
    if with_table:
        text += '\n[plugins."io.containerd.grpc.v1.cri"]\n  root = "/nested"\n'
    edit = set_containerd_root(text, "/data/containerd")
    expected = rc.tomllib.loads(text)
    expected["root"] = "/data/containerd"
    assert rc.tomllib.loads(edit.text) == expected
    assert not set_containerd_root(edit.text, "/data/containerd").changed


def test_a_key_added_after_a_comma_that_starts_its_line_keeps_the_json_valid():
    """Found by the fuzzing: a comma at the start of a line was copied into the new member's lead."""
    text = '{\n "debug": {\n  "": null\n }\n, \n "": null\n}'
    edit = set_docker_data_root(text, "/data/docker")
    assert json.loads(edit.text, object_pairs_hook=list) == [
        ("debug", [("", None)]), ("", None), ("data-root", "/data/docker")]


def test_a_nested_object_with_a_duplicate_key_reads_back_as_written():
    """JSON allows duplicate keys; the read-back check must not fold them (and refuse a good edit)."""
    text = '{"opts": {"a": 1, "a": 2}, "data-root": "/old"}'
    edit = set_docker_data_root(text, "/data/docker")
    assert edit.text == '{"opts": {"a": 1, "a": 2}, "data-root": "/data/docker"}'
