"""The pure parts of a runtime's root move (``_runtime_data``): which processes are containers,
the runtimes' CLI output, the drop-in, and the tree manifests that prove a copy faithful.

The orchestration that drives them runs in tests/unit/plugins/module_utils/test__disk_remount.py.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _runtime_data

KUBEPODS = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/cri-containerd-%s.scope" % ("0f" * 32)


# --- processes -------------------------------------------------------------------------------------

def test_shims_and_container_processes_are_found_and_the_node_itself_is_not():
    procs = [
        (1, "systemd", "/sbin/init", "0::/init.scope"),
        (310, "containerd", "/usr/local/bin/containerd", "0::/system.slice/containerd.service"),
        (311, "dockerd", "/usr/sbin/dockerd -H fd://", "0::/system.slice/docker.service"),
        (400, "kubelet", "/usr/local/bin/kubelet --config=/var/lib/kubelet/config.yaml", "0::/system.slice/kubelet.service"),
        (512, "containerd-shim", "/usr/local/bin/containerd-shim-runc-v2 -namespace k8s.io -id ab",
         "0::/system.slice/containerd.service"),
        (520, "pause", "/pause", KUBEPODS),
        (530, "nginx", "nginx: worker process", "0::/system.slice/docker-%s.scope" % ("a1" * 32)),
        (540, "sh", "sh -c sleep 1", "12:memory:/docker/%s\n0::/" % ("b2" * 32)),
        (2, "kthreadd", "", ""),
    ]
    found = _runtime_data.container_processes(procs)
    assert [f.split()[1] for f in found] == ["512", "520", "530", "540"]
    assert found[0].startswith("pid 512 shim (/usr/local/bin/containerd-shim-runc-v2")
    assert found[1] == "pid 520 container process (/pause)"


@given(st.lists(st.tuples(st.integers(1, 1 << 22), st.text(max_size=16), st.text(max_size=60),
                          st.sampled_from(["0::/system.slice/ssh.service", "0::/user.slice", KUBEPODS, ""])),
                max_size=20))
def test_a_process_is_reported_exactly_when_it_is_a_shim_or_in_a_container_cgroup(procs):
    found = _runtime_data.container_processes(procs)
    expected = [p for p in procs
                if p[1].startswith("containerd-shim") or os.path.basename(p[2].split(" ", 1)[0]).startswith("containerd-shim")
                or p[3] == KUBEPODS]
    assert [int(f.split()[1]) for f in found] == [p[0] for p in expected]


def test_processes_are_read_from_proc():
    procs = _runtime_data.read_processes()
    assert any(pid == os.getpid() for pid, comm, cmdline, cgroup in procs)


# --- the runtimes' output --------------------------------------------------------------------------

@given(st.lists(st.sampled_from(["a1", "b2", "c3", "d4"]), max_size=12), st.sampled_from(["\n", "\r\n", " \n"]))
def test_ids_keep_each_once_in_order(values, end):
    got = _runtime_data.ids("".join(v + end for v in values))
    assert got == list(dict.fromkeys(values))


def test_containerd_root_from_crictl_info():
    info = {"status": {"conditions": []},
            "config": {"containerdRootDir": "/data/containerd", "rootDir": "/data/containerd/io.containerd.grpc.v1.cri"}}
    assert _runtime_data.crictl_root(json.dumps(info)) == "/data/containerd"
    for text in ("", "not json", "[]", json.dumps({"config": {}}), json.dumps({"config": {"containerdRootDir": 3}})):
        assert _runtime_data.crictl_root(text) is None


def test_containerd_endpoint_comes_from_its_grpc_address():
    assert _runtime_data.containerd_address({"grpc": {"address": "/run/k3s/containerd.sock"}}) == "unix:///run/k3s/containerd.sock"
    assert _runtime_data.containerd_address(None) == "unix:///run/containerd/containerd.sock"
    assert _runtime_data.containerd_address({"grpc": "x"}) == "unix:///run/containerd/containerd.sock"


# --- the drop-in ---------------------------------------------------------------------------------

def _systemd_word(value):
    """One word of a unit-file list setting, read back as systemd does (quotes, then specifiers)."""
    if value.startswith('"'):
        assert value.endswith('"')
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    assert "%" not in value.replace("%%", "")
    return value.replace("%%", "%")


@given(st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=12).filter(
    lambda s: "/" not in s), min_size=1, max_size=4))
def test_the_drop_in_requires_exactly_the_mount_point(parts):
    mount_point = "/" + "/".join(parts)
    text = _runtime_data.dropin_text("containerd.service", mount_point, mount_point + "/containerd")
    lines = text.splitlines()
    assert lines[lines.index("[Unit]") + 1:] == [lines[-1]]  # one setting, under [Unit]
    key, value = lines[-1].split("=", 1)
    assert key == "RequiresMountsFor"
    assert _systemd_word(value) == mount_point
    assert all(line.startswith("#") for line in lines[:lines.index("[Unit]")])


def test_drop_in_path():
    assert _runtime_data.dropin_path("/etc/systemd/system", "docker.service") == \
        "/etc/systemd/system/docker.service.d/kubeops-data-disk.conf"


def test_is_below():
    assert _runtime_data.is_below("/data/containerd", "/data")
    assert not _runtime_data.is_below("/data", "/data") and not _runtime_data.is_below("/database", "/data")
    assert _runtime_data.is_below("/data/x/../y", "/data/")


# --- manifests: a faithful copy and every way one is not -----------------------------------------------

def _cp(source, dest):
    subprocess.run(["cp", "-a", "--preserve=links,xattr", "--sparse=auto", "--no-target-directory", source, dest],
                   check=True)


_NAMES = st.sampled_from(["a", "b", "c", "d", "e"])


@st.composite
def _trees(draw):
    """A list of (kind, relative path, payload) making a small tree."""
    ops = []
    dirs = [""]
    files = []
    for _entry in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["dir", "file", "file", "symlink", "hardlink", "xattr"]))
        parent = draw(st.sampled_from(dirs))
        path = os.path.join(parent, draw(_NAMES) + str(len(ops)))
        if kind == "dir":
            dirs.append(path)
            ops.append(("dir", path, None))
        elif kind == "file":
            files.append(path)
            ops.append(("file", path, draw(st.binary(max_size=64))))
        elif kind == "symlink":
            ops.append(("symlink", path, draw(st.sampled_from(["a", "../x", "/abs/path"]))))
        elif kind == "hardlink" and files:
            ops.append(("hardlink", path, draw(st.sampled_from(files))))
        elif kind == "xattr" and files:
            ops.append(("xattr", draw(st.sampled_from(files)), draw(st.binary(min_size=1, max_size=8))))
    return ops


def _build(root, ops):
    os.makedirs(root)
    for kind, path, payload in ops:
        full = os.path.join(root, path)
        if kind == "dir":
            os.makedirs(full)
        elif kind == "file":
            with open(full, "wb") as handle:
                handle.write(payload)
        elif kind == "symlink":
            os.symlink(payload, full)
        elif kind == "hardlink":
            os.link(os.path.join(root, payload), full)
        elif kind == "xattr":
            os.setxattr(full, "user.kubeops", payload)


_MUTATIONS = ["chmod", "content", "xattr", "unlink", "extra", "break-link", "retarget"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_trees(), st.sampled_from(_MUTATIONS))
def test_cp_a_is_a_faithful_copy_and_any_change_to_it_is_found(tmp_path_factory, ops, mutation):
    base = str(tmp_path_factory.mktemp("tree"))
    source, copy = os.path.join(base, "src"), os.path.join(base, "copy")
    _build(source, ops)
    _cp(source, copy)
    entries, used = _runtime_data.manifest(source)
    assert _runtime_data.manifest_differences(entries, _runtime_data.manifest(copy)[0]) == []
    assert _runtime_data.same_contents(source, copy, entries) is None
    assert used >= 0

    files = sorted(rel for rel, e in entries.items() if e[0] == 0o100000)
    links = sorted(rel for rel, e in entries.items() if e[9] not in (None, rel))
    symlinks = sorted(rel for rel, e in entries.items() if e[7] is not None)
    target = os.path.join(copy, files[0]) if files else None
    if mutation == "chmod" and files:
        os.chmod(target, 0o704)
    elif mutation == "content" and files and entries[files[0]][4]:
        st_ = os.stat(target)
        with open(target, "r+b") as handle:
            first = handle.read(1)
            handle.seek(0)
            handle.write(bytes([first[0] ^ 0xFF]))
        os.utime(target, ns=(st_.st_atime_ns, st_.st_mtime_ns))
        assert _runtime_data.same_contents(source, copy, entries) is not None
        return
    elif mutation == "xattr" and files:
        os.setxattr(target, "user.other", b"1")
    elif mutation == "unlink" and files:
        os.unlink(target)
    elif mutation == "extra":
        with open(os.path.join(copy, "zz-extra"), "w") as handle:
            handle.write("x")
    elif mutation == "break-link" and links:
        path = os.path.join(copy, links[0])
        data = open(path, "rb").read()
        st_ = os.stat(path)
        os.unlink(path)
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, st_.st_mode & 0o7777)
        os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns))
    elif mutation == "retarget" and symlinks:
        path = os.path.join(copy, symlinks[0])
        os.unlink(path)
        os.symlink("elsewhere", path)
    else:
        return  # nothing of that kind in this tree
    assert _runtime_data.manifest_differences(entries, _runtime_data.manifest(copy)[0]), mutation


def test_differences_are_named_and_limited():
    a = {"": (1,) * 10, "x": (1,) * 10}
    b = {"": (1,) * 10}
    assert _runtime_data.manifest_differences(a, b) == ["x is missing from the copy"]
    many = {str(i): (1,) * 10 for i in range(20)}
    out = _runtime_data.manifest_differences(dict(many, **{"": (1,) * 10}), {"": (1,) * 10}, limit=3)
    assert len(out) == 4 and out[-1] == "..."


def test_the_root_of_the_copy_may_differ_in_mtime_only():
    entry = (0o40000, 0o755, 0, 0, None, 5, None, None, (), None)
    assert _runtime_data.manifest_differences({"": entry}, {"": entry[:5] + (6,) + entry[6:]}) == []
    assert _runtime_data.manifest_differences({"": entry}, {"": entry[:1] + (0o700,) + entry[2:]}) == [". differs in mode"]


def test_a_sparse_file_counts_its_blocks_not_its_size(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    with open(root / "big", "wb") as handle:
        handle.truncate(64 << 20)
    entries, used = _runtime_data.manifest(str(root))
    assert entries["big"][4] == 64 << 20 and used < (1 << 20)


@pytest.mark.parametrize("name", ["trusted.overlay.opaque", "user.kubeops"])
def test_xattrs_are_in_the_manifest(tmp_path, name):
    root = tmp_path / "r"
    (root / "d").mkdir(parents=True)
    os.setxattr(str(root / "d"), name, b"y")
    assert (name, b"y") in _runtime_data.manifest(str(root))[0]["d"][8]
