"""node_disk_remount's run (``_disk_remount.remount``) against temporary files, without an AnsibleModule.

Only the host's disk commands (blkid, findmnt, mount, mkfs, systemctl) are faked, by ``FakeHost``
standing in for ``HostSystem``, and the module run by ``FakeContext`` (check and diff mode,
warnings, backups); fstab and daemon.json are real files in a temporary directory. The fake
``mount`` reads the fstab the run wrote, so a line that would not mount fails here.
The module file itself runs end to end in tests/unit/plugins/modules/test_node_disk_remount.py.
"""
from __future__ import annotations

import json
import os
import shutil

import pytest

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _disk_remount, _file_edit, _fstab
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._block_devices import BlockDeviceError

UUID = "5e256bce-a9b7-431d-986a-9aeef664fcb3"
OTHER_UUID = "0f0f0f0f-1111-4222-8333-444444444444"
FSTAB = (
    "# /etc/fstab: static file system information.\n"
    "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n"
    "UUID=0a1b2c3d-0000-4000-8000-000000000001 /               ext4    errors=remount-ro 0       1\n"
    "//nas/My\\040Share /mnt/my\\040share cifs credentials=/root/.smb,nofail 0 0\n"
)
DAEMON_JSON = '{\n    "graph": "/var/lib/docker",\n    "log-driver": "json-file",\n    "exec-opts": ["native.cgroupdriver=systemd"]\n}\n'
# The module's option defaults (its argument spec; the module's own test checks they agree).
DEFAULTS = dict(
    device=None, path=None, fstype=None, opts="defaults,nofail", dump=0, passno=2, identify_by="uuid",
    state="mounted", fstab="/etc/fstab", runtime="none", runtime_config=None, data_root=None,
    format_if_blank=False, backup=False, carry_over=False, runtime_units=None, kubelet_service="kubelet.service",
    require_mount=True, stop_timeout=120,
)


class FakeContext:
    """The module run, as ``ModuleContext`` gives it: modes, warnings, backups, file attributes."""

    def __init__(self, check_mode=False, diff=False):
        self.check_mode = check_mode
        self.diff = diff
        self.warnings = []
        self.backups = []
        self.attributes_set = []  # the files given their SELinux context before the rename

    def warn(self, msg):
        self.warnings.append(msg)

    def backup(self, path):
        dest = "%s.%d~" % (path, len(self.backups))
        shutil.copy2(path, dest)
        self.backups.append(dest)
        return dest

    def set_attributes(self, tmp, dest):
        self.attributes_set.append(dest)

    def run_command(self, argv):
        raise AssertionError("the fake host runs no command: %s" % argv)


class FakeHost:
    """In-memory disks and mounts with the interface of ``HostSystem``."""

    def __init__(self, system_fstab):
        self.system_fstab = system_fstab
        self.devices = {
            "/dev/vdb": {"DEVNAME": "/dev/vdb", "UUID": UUID, "LABEL": "data", "TYPE": "ext4", "USAGE": "filesystem"},
            "/dev/vdc": {"DEVNAME": "/dev/vdc", "UUID": OTHER_UUID, "TYPE": "ext4", "USAGE": "filesystem"},
        }
        self.numbers = {"/dev/vdb": "254:16", "/dev/vdc": "254:32"}
        self.links = {"/dev/disk/by-uuid/" + UUID: "/dev/vdb"}
        self.mounts = {}  # path -> findmnt-style dict
        self.systemd = True
        self.fail_mount = None
        self.calls = []

    # looking
    def device_exists(self, path):
        return path in self.devices

    def realpath(self, path):
        return self.links.get(path, path)

    def device_number(self, path):
        return self.numbers.get(path)

    def find_device(self, tag, value):
        self.calls.append(("blkid-find", tag, value))
        for dev, found in self.devices.items():
            if found.get(tag) and found.get(tag).lower() == value.lower():  # blkid -t ignores case for UUID
                return dev
        return None

    def probe(self, device):
        self.calls.append(("blkid-probe", device))
        return dict(self.devices[device])

    def mounts_at(self, path):
        return [dict(self.mounts[path])] if path in self.mounts else []

    def mounts_of(self, device):
        return [dict(m) for m in self.mounts.values() if m["source"] == device]

    def is_systemd(self):
        return self.systemd

    # changing
    def mount(self, path, fstab):
        self.calls.append(("mount", path, fstab))
        if self.fail_mount:
            raise BlockDeviceError(self.fail_mount)
        with open(fstab, encoding="utf-8", errors="surrogateescape") as handle:
            entries = _fstab.entries_for(_fstab.parse_fstab(handle.read()), path)
        assert len(entries) == 1, "mount(8) would not know which line to use"
        entry = entries[0].entry
        tag, dummy, value = entry.spec.partition("=")
        device = self.find_device(tag, value) if tag in ("UUID", "LABEL") else self.realpath(entry.spec)
        if device not in self.devices or self.devices[device].get("TYPE") != entry.vfstype:
            raise BlockDeviceError("mount: %s: wrong fs type, bad option, bad superblock" % path)
        self.mounts[path] = {"source": device, "target": path, "fstype": entry.vfstype,
                             "options": "rw,relatime", "maj:min": self.numbers[device], "fsroot": "/"}

    def remount(self, path, fstab):
        self.calls.append(("remount", path, fstab))

    def unmount(self, path):
        self.calls.append(("umount", path))
        del self.mounts[path]

    def make_filesystem(self, device, fstype):
        self.calls.append(("mkfs", device, fstype))
        self.devices[device] = {"DEVNAME": device, "UUID": "12345678-aaaa-4bbb-8ccc-dddddddddddd", "TYPE": fstype, "USAGE": "filesystem"}

    def daemon_reload(self):
        self.calls.append(("daemon-reload",))

    def did(self, name):
        return [c for c in self.calls if c[0] == name]


class FakeRuntime:
    """The node's units, its runtime's CLI and its processes, with the interface of
    ``_runtime_data.RuntimeHost``: a runtime that is stopped (and a kubelet that is) unless a test
    starts them; the copy and the trees are real files."""

    poll_interval = 0

    def __init__(self, unit_dir):
        self.unit_dir = unit_dir
        self.active = set()
        self.pods = []  # sandbox IDs
        self.containers = []
        self.images = []
        self.root = None  # what the daemon reports; None: its configured one
        self.shims_linger = 0  # polls for which the shims outlive their pods
        self.extra_processes = []
        self.stuck_units = set()
        self.calls = []
        self.held_mounts = []
        self.free = 1 << 40
        self.copy_hook = None
        self.crictl_timeouts = []

    def unit_active(self, unit):
        return unit in self.active

    def stop_unit(self, unit):
        self.calls.append(("stop", unit))
        if unit not in self.stuck_units:
            self.active.discard(unit)

    def cli(self, tool, args, endpoint=None, timeout=None):
        self.calls.append((tool,) + tuple(args))
        if tool == "crictl":
            self.crictl_timeouts.append(timeout)
        assert any(u.startswith(self.runtime_name()) for u in self.active), "%s called with the runtime stopped" % tool
        verb = args[0]
        if verb == "info":
            if tool == "docker":
                return (self.root or self.configured_root) + "\n"
            return json.dumps({"status": {}, "config": {"containerdRootDir": self.root or self.configured_root}})
        if verb == "images":
            return "".join(i + "\n" for i in self.images)
        if verb == "pods":
            return "".join(i + "\n" for i in self.pods)
        if verb == "ps":
            return "".join(i + "\n" for i in (self.containers if "-a" in args else self.containers))
        if verb == "stopp":
            return ""
        if verb == "rmp":
            self.pods = [p for p in self.pods if p not in args]
            self.containers = []
            return ""
        if verb in ("stop", "rm"):
            self.containers = [c for c in self.containers if c not in args]
            return ""
        raise AssertionError("unexpected %s %s" % (tool, args))

    def runtime_name(self):
        return "docker" if any(c[0] == "docker" for c in self.calls) else "containerd"

    def processes(self):
        procs = list(self.extra_processes)
        if self.pods or self.containers or self.shims_linger > 0:
            self.shims_linger -= 1
            procs.append((4242, "containerd-shim", "/usr/local/bin/containerd-shim-runc-v2 -namespace k8s.io", "0::/system.slice/containerd.service"))
        return procs

    def sleep(self, seconds):
        self.calls.append(("sleep",))

    def mounts_below(self, path):
        return list(self.held_mounts)

    def copy_tree(self, source, dest):
        self.calls.append(("copy", source, dest))
        import subprocess
        subprocess.run(["cp", "-a", "--preserve=links,xattr", "--sparse=auto", "--no-target-directory", source, dest], check=True)
        if self.copy_hook:
            self.copy_hook(source, dest)

    def sync_tree(self, path):
        self.calls.append(("sync", path, os.path.isdir(path)))

    def free_bytes(self, path):
        return self.free

    def remove_tree(self, path):
        self.calls.append(("remove", path))
        shutil.rmtree(path)

    def did(self, name):
        return [c for c in self.calls if c[0] == name]


@pytest.fixture
def env(tmp_path):
    etc = tmp_path / "etc"
    (etc / "docker").mkdir(parents=True)
    fstab = etc / "fstab"
    fstab.write_text(FSTAB)
    daemon = etc / "docker" / "daemon.json"
    daemon.write_text(DAEMON_JSON)
    host = FakeHost(system_fstab=str(fstab))
    runtime = FakeRuntime(str(tmp_path / "systemd"))
    runtime.configured_root = "/var/lib/docker"
    os.makedirs(runtime.unit_dir)

    class Env:
        pass

    e = Env()
    e.tmp, e.fstab, e.daemon, e.host, e.mnt = tmp_path, fstab, daemon, host, str(tmp_path / "data")
    e.runtime = runtime
    e.data_root = e.mnt + "/docker"

    def args(**overrides):
        """The module's params: its defaults, this test's files, then ``overrides`` (None: not given)."""
        params = dict(DEFAULTS, device="/dev/vdb", path=e.mnt, fstype="ext4", fstab=str(fstab), runtime="docker",
                      runtime_config=str(daemon), data_root=e.data_root)
        params.update(overrides)
        return params

    def run(check=False, diff=False, **overrides):
        context = e.context = FakeContext(check_mode=check, diff=diff)
        result = _disk_remount.remount(args(**overrides), context, host, runtime)
        result = json.loads(json.dumps(result))  # what the module would print
        result["warnings"] = context.warnings
        return result

    def snapshot():
        return {p: p.read_bytes() if p.exists() else None for p in (fstab, daemon)}

    e.args, e.run, e.snapshot = args, run, snapshot
    return e


def our_line(e, opts="defaults,nofail", passno=2):
    return "UUID=%s %s ext4 %s 0 %d" % (UUID, e.mnt, opts, passno)


# --- the field notes' scenario -----------------------------------------------------------------

def test_field_notes_scenario_then_nothing_to_do(env):
    result = env.run(backup=True)
    assert not result.get("failed"), result
    assert result["changed"] is True
    line = result["fstab_line"]
    assert line.split() == our_line(env).split()
    assert env.fstab.read_text() == FSTAB + line + "\n"
    assert env.daemon.read_text() == DAEMON_JSON.replace('"graph": "/var/lib/docker"', '"data-root": "%s"' % env.data_root)
    assert result["uuid"] == UUID and result["device"] == "/dev/vdb"
    assert result["mounted"] is True and result["mount_action"] == "mount"
    assert result["mount"]["source"] == "/dev/vdb"
    assert result["runtime_restart_needed"] is True
    assert result["systemd_reloaded"] is True
    assert result["changes"]["fstab"]["action"] == "added"
    assert result["changes"]["runtime_config"]["previous_data_root"] == "/var/lib/docker"
    assert "renamed the legacy 'graph' key to 'data-root'" in result["changes"]["runtime_config"]["actions"]
    backups = result["backup_files"]
    assert len(backups) == 2
    assert sorted(open(b).read() for b in backups) == sorted([FSTAB, DAEMON_JSON])
    assert result["changes"]["fstab"]["backup"] in backups
    dropin = os.path.join(env.runtime.unit_dir, "docker.service.d", "kubeops-data-disk.conf")
    assert sorted(env.context.attributes_set) == sorted([str(env.fstab), str(env.daemon), dropin])
    assert "\nRequiresMountsFor=%s\n" % env.mnt in open(dropin).read()
    assert result["changes"]["dropins"] == [dict(path=dropin, changed=True, backup=None)]
    # daemon-reload happens after the fstab write and before the mount
    # and again after the drop-in, which is written last
    names = [c[0] for c in env.host.calls if c[0] in ("daemon-reload", "mount")]
    assert names == ["daemon-reload", "mount", "daemon-reload"]
    assert os.path.isdir(env.mnt)

    env.host.calls.clear()
    before = env.snapshot()
    again = env.run(backup=True)
    assert again["changed"] is False, again
    assert again["mount_action"] == "none" and again["mounted"] is True
    assert again["runtime_restart_needed"] is False and again["systemd_reloaded"] is False
    assert again["backup_files"] == []
    assert env.snapshot() == before
    assert not env.host.did("mount") and not env.host.did("daemon-reload")


def test_check_mode_writes_nothing_and_shows_the_diff(env):
    before = env.snapshot()
    result = env.run(check=True, diff=True)
    assert result["changed"] is True and result["mount_action"] == "mount"
    assert env.snapshot() == before
    assert not os.path.exists(env.mnt)
    assert [c[0] for c in env.host.calls if c[0] not in ("blkid-probe",)] == []
    diffs = {d["before_header"]: d for d in result["diff"]}
    assert diffs[str(env.fstab)]["before"] == FSTAB
    assert diffs[str(env.fstab)]["after"].startswith(FSTAB) and UUID in diffs[str(env.fstab)]["after"]
    assert '"data-root"' in diffs[str(env.daemon)]["after"]
    # the real run then check mode again: nothing more to do
    env.run()
    assert env.run(check=True)["changed"] is False


def test_second_run_of_remount_is_idempotent_for_existing_line_by_other_name(env):
    """An old line naming the disk by path is replaced, not duplicated."""
    env.fstab.write_text(FSTAB + "/dev/vdb   %s    ext4   noatime,acl,user_xattr 1 1\n" % env.mnt)
    result = env.run()
    assert result["changes"]["fstab"]["action"] == "replaced"
    lines = env.fstab.read_text().splitlines()
    assert len(lines) == 5 and lines[-1].startswith("UUID=%s" % UUID)
    assert env.run()["changed"] is False


def test_line_by_uuid_symlink_for_another_mount_point_is_moved(env):
    env.fstab.write_text(FSTAB + "/dev/disk/by-uuid/%s /mnt/old ext4 defaults 0 2\n" % UUID)
    result = env.run()
    assert result["changes"]["fstab"]["action"] == "replaced"
    assert "/mnt/old" not in env.fstab.read_text()


# --- refusals: each leaves both files byte for byte ----------------------------------------------

def _refused(env, words, **overrides):
    before = env.snapshot()
    result = env.run(**overrides)
    assert result.get("failed") is True, result
    for word in words:
        assert word in result["msg"], result["msg"]
    assert env.snapshot() == before
    assert not env.host.did("mount") and not env.host.did("mkfs") and not env.host.did("daemon-reload")
    return result


def test_wrong_fstype_is_refused(env):
    env.host.devices["/dev/vdb"]["TYPE"] = "xfs"
    result = _refused(env, ["/dev/vdb holds xfs", UUID, "LABEL=data", "not ext4", "never reformats"])
    assert result["found"]["TYPE"] == "xfs"


def test_disk_without_filesystem_is_refused(env):
    env.host.devices["/dev/vdb"] = {}
    _refused(env, ["no filesystem", "never formats", "format_if_blank"])


def test_partition_table_is_never_formatted(env):
    env.host.devices["/dev/vdb"] = {"PTTYPE": "gpt", "PTUUID": "abc"}
    _refused(env, ["gpt partition table", "partition"], format_if_blank=True)


def test_missing_device_is_refused(env):
    _refused(env, ["/dev/vdz does not exist"], device="/dev/vdz")
    _refused(env, ["no device with UUID=nope"], device="UUID=nope")


def test_missing_device_says_to_attach_it(env):
    _refused(env, ["/dev/vdz does not exist", "is the disk attached?"], device="/dev/vdz")


@pytest.mark.parametrize("spec", ["UUID=%s" % OTHER_UUID, "LABEL=old-data"])
def test_fstab_naming_another_filesystem_on_the_mount_point_is_refused(env, spec):
    """The data disk came back missing and its name now belongs to another disk: fstab must keep
    naming the data disk, or the next boot mounts the wrong one on the mount point."""
    env.fstab.write_text(FSTAB + "%s %s ext4 defaults,nofail 0 2\n" % (spec, env.mnt))
    result = _refused(env, ["line 5 mounts %s on %s" % (spec, env.mnt), "/dev/vdb holds ext4 UUID=%s, LABEL=data" % UUID,
                            "another filesystem", "detached", "nothing was changed", "state=absent"])
    assert result["found"]["UUID"] == UUID


def test_fstab_naming_another_filesystem_is_refused_before_formatting_a_blank_disk(env):
    env.fstab.write_text(FSTAB + "UUID=%s %s ext4 defaults,nofail 0 2\n" % (OTHER_UUID, env.mnt))
    env.host.devices["/dev/vdb"] = {}
    _refused(env, ["mounts UUID=%s" % OTHER_UUID, "/dev/vdb holds no filesystem", "detached"], format_if_blank=True)


def test_mount_point_mounted_from_another_device_is_refused(env):
    env.host.mounts[env.mnt] = {"source": "/dev/vdc", "target": env.mnt, "fstype": "ext4", "maj:min": "254:32", "fsroot": "/"}
    result = _refused(env, ["already mounted from /dev/vdc", "not from /dev/vdb"])
    assert result["mount"]["source"] == "/dev/vdc"


def test_bind_mount_of_a_subdirectory_is_not_ours(env):
    env.host.mounts[env.mnt] = {"source": "/dev/vdb[/sub]", "target": env.mnt, "fstype": "ext4", "maj:min": "254:16", "fsroot": "/sub"}
    _refused(env, ["bind mount of /sub"])


def test_duplicate_mount_point_lines_are_refused(env):
    env.fstab.write_text(FSTAB + "/dev/vdc %s ext4 defaults 0 2\n/dev/vdc %s/ xfs defaults 0 2\n" % (env.mnt, env.mnt))
    _refused(env, ["2 lines for mount point", "line 5", "line 6"])


def test_malformed_fstab_is_refused(env):
    env.fstab.write_text(FSTAB + "/dev/vdc /srv\n")
    _refused(env, ["not valid entries", "line 5: /dev/vdc /srv"])


def test_invalid_json_is_refused_and_fstab_untouched(env):
    env.daemon.write_text('{"graph": "/var/lib/docker",}\n')
    _refused(env, ["not valid JSON", "left as it was"])


def test_graph_and_data_root_with_different_values_are_refused(env):
    env.daemon.write_text('{"graph": "/var/lib/docker", "data-root": "/srv/docker"}\n')
    _refused(env, ["both", "/var/lib/docker", "/srv/docker"])


def test_unwritable_runtime_config_is_refused_before_anything_changes(env, monkeypatch):
    if os.geteuid() != 0:
        os.chmod(env.daemon.parent, 0o555)
    else:  # root ignores permission bits; make the check see what an unprivileged user would
        real_access = os.access
        monkeypatch.setattr(_file_edit.os, "access", lambda p, m: False if str(p).startswith(str(env.daemon.parent)) else real_access(p, m))
    try:
        _refused(env, ["cannot", str(env.daemon.parent)])
    finally:
        os.chmod(env.daemon.parent, 0o755)


def test_invalid_options_are_refused(env):
    _refused(env, ["needs data_root"], data_root=None)
    _refused(env, ["needs fstype"], fstype=None)
    _refused(env, ["only with state=mounted or present"], state="absent")
    _refused(env, ["format_if_blank cannot be combined"], format_if_blank=True, identify_by="label")


# --- failures half way put everything back ----------------------------------------------------

def test_write_failing_on_the_second_file_restores_the_first(env, monkeypatch):
    real_mkstemp = _file_edit.tempfile.mkstemp

    def mkstemp(*a, **kw):
        if kw.get("dir") == str(env.daemon.parent):
            raise PermissionError(13, "Permission denied", kw["dir"])
        return real_mkstemp(*a, **kw)

    monkeypatch.setattr(_file_edit.tempfile, "mkstemp", mkstemp)
    before = env.snapshot()
    result = env.run()
    assert result["failed"] and "daemon.json" in result["msg"] and "restored" in result["msg"]
    assert env.snapshot() == before
    # daemon.json is written once the disk is mounted (a carried-over root is copied onto it
    # first): the failure unmounts it again
    assert env.host.did("mount") and env.host.did("umount") and not env.host.mounts
    assert [p for p in os.listdir(env.fstab.parent) if p.endswith(".tmp")] == []


class SimulatedKill(BaseException):
    """Stands for SIGKILL: nothing after it runs, no except clause catches it."""


@pytest.mark.parametrize("killed_on", [1, 2])
def test_kill_between_temp_write_and_rename_leaves_old_or_new_file(env, monkeypatch, killed_on):
    real_replace = os.replace
    renames = []

    def replace(src, dst):
        renames.append(dst)
        if len(renames) == killed_on:
            assert os.path.exists(src)  # the temp file is complete at this point
            raise SimulatedKill()
        return real_replace(src, dst)

    monkeypatch.setattr(_file_edit.os, "replace", replace)
    before = env.snapshot()
    with pytest.raises(SimulatedKill):
        _disk_remount.remount(env.args(), FakeContext(), env.host, env.runtime)
    after = env.snapshot()
    # each file is whole: exactly as before, or exactly the new content
    if killed_on == 1:
        assert after == before
    else:
        new_fstab = after[env.fstab].decode()
        assert new_fstab.startswith(FSTAB) and new_fstab[len(FSTAB):].split() == our_line(env).split()
        assert after[env.daemon] == before[env.daemon]


def test_mount_failure_puts_both_files_back(env):
    env.host.fail_mount = "mount: /data: can't read superblock on /dev/vdb"
    before = env.snapshot()
    result = env.run()
    assert result["failed"] and "can't read superblock" in result["msg"] and "put back" in result["msg"]
    assert env.snapshot() == before
    assert len(env.host.did("daemon-reload")) == 2  # after the write and after the restore
    assert result["changed"] is False and result["changes"]["fstab"]["restored"] is True
    assert not os.path.exists(env.mnt)  # the mount point it created is gone again


# --- other paths ---------------------------------------------------------------------------

def test_format_if_blank_formats_only_a_blank_disk(env):
    env.host.devices["/dev/vdb"] = {}
    checked = env.run(check=True, format_if_blank=True)
    assert checked["changed"] and checked["formatted"] and not env.host.did("mkfs")
    result = env.run(format_if_blank=True)
    assert result["formatted"] is True and env.host.did("mkfs") == [("mkfs", "/dev/vdb", "ext4")]
    assert result["fstab_line"].startswith("UUID=12345678-aaaa")
    again = env.run(format_if_blank=True)
    assert again["changed"] is False and again["formatted"] is False


@pytest.mark.parametrize("identify_by, spec", [("device", "/dev/vdb"), ("label", "LABEL=data")])
def test_identify_by(env, identify_by, spec):
    result = env.run(identify_by=identify_by, device="UUID=" + UUID)
    assert result["fstab_line"].split()[0] == spec
    assert env.run(identify_by=identify_by, device="UUID=" + UUID)["changed"] is False


def test_label_needed_for_identify_by_label(env):
    _refused(env, ["has no label"], device="/dev/vdc", identify_by="label")


def test_options_change_remounts_a_mounted_disk(env):
    env.run()
    env.host.calls.clear()
    result = env.run(opts="defaults,nofail,noatime")
    assert result["changed"] and result["mount_action"] == "remount"
    assert env.host.did("remount") and not env.host.did("mount")
    assert result["changes"]["fstab"]["action"] == "replaced"


def test_present_only_writes_fstab(env):
    result = env.run(state="present", runtime="none")
    assert result["changed"] and result["mounted"] is False and not env.host.did("mount")
    assert env.daemon.read_text() == DAEMON_JSON


def test_not_systemd_means_no_daemon_reload(env):
    env.host.systemd = False
    assert env.run()["systemd_reloaded"] is False and not env.host.did("daemon-reload")


def test_test_fstab_that_is_not_the_system_one_gets_no_daemon_reload(env):
    env.host.system_fstab = "/etc/fstab"
    assert env.run(require_mount=False)["systemd_reloaded"] is False
    # a drop-in for the runtime's unit is a systemd change whatever the fstab
    assert env.run()["systemd_reloaded"] is True


def test_containerd_root(env):
    config = env.tmp / "etc" / "config.toml"
    config.write_text('version = 2\nroot = "/var/lib/containerd"\n\n[grpc]\n  address = "/run/containerd/containerd.sock"\n')
    result = env.run(runtime="containerd", runtime_config=str(config), data_root=env.mnt + "/containerd")
    assert result["runtime_restart_needed"] is True
    assert 'root = "%s/containerd"\n' % env.mnt in config.read_text()
    assert result["changes"]["runtime_config"]["previous_data_root"] == "/var/lib/containerd"


def test_missing_daemon_json_is_created(env):
    env.daemon.unlink()
    env.run()
    assert json.loads(env.daemon.read_text()) == {"data-root": env.data_root}
    assert oct(env.daemon.stat().st_mode & 0o777) == "0o644"


def test_file_mode_is_kept(env):
    os.chmod(env.fstab, 0o600)
    env.run()
    assert oct(env.fstab.stat().st_mode & 0o777) == "0o600"


def test_data_root_outside_the_disk_warns(env):
    result = env.run(data_root="/var/lib/docker2")
    assert any("not below the mount point" in w for w in result["warnings"]), result["warnings"]


def test_non_empty_mount_point_warns(env):
    os.makedirs(env.mnt + "/docker")
    result = env.run()
    assert any("not empty" in w for w in result["warnings"])


def test_unmounted_and_absent(env):
    env.run()
    env.host.calls.clear()
    result = env.run(state="unmounted", runtime="none", device=None, fstype=None)
    assert result["changed"] and result["mount_action"] == "unmount" and env.host.did("umount")
    assert our_line(env).split()[1] in env.fstab.read_text()
    assert env.run(state="unmounted", runtime="none")["changed"] is False

    env.run(runtime="none")
    check = env.run(state="absent", runtime="none", check=True)
    assert check["changed"] and env.host.mounts
    result = env.run(state="absent", runtime="none", backup=True)
    assert result["changed"] and result["changes"]["fstab"]["action"] == "removed"
    assert env.fstab.read_text() == FSTAB and not env.host.mounts
    assert env.run(state="absent", runtime="none")["changed"] is False


def test_fstab_bytes_that_are_not_utf8_survive(env):
    raw = FSTAB.encode() + b"# caf\xe9 \xff\n"
    env.fstab.write_bytes(raw)
    env.run()
    assert env.fstab.read_bytes().startswith(raw)


def test_failed_daemon_reload_puts_both_files_back(env, monkeypatch):
    def broken_reload():
        env.host.calls.append(("daemon-reload",))
        raise BlockDeviceError("`systemctl daemon-reload` exited with 1: Access denied")

    monkeypatch.setattr(env.host, "daemon_reload", broken_reload)
    before = env.snapshot()
    result = env.run()
    assert result["failed"] and "daemon-reload" in result["msg"] and "put back" in result["msg"]
    assert env.snapshot() == before
    assert not env.host.did("mount")
    assert any("daemon-reload" in w for w in result["warnings"])


def test_path_is_normalized(env):
    result = env.run(path=env.mnt + "/./")
    assert result["mount_point"] == env.mnt
    assert env.run(path=env.mnt)["changed"] is False


def test_device_given_as_upper_case_uuid(env):
    result = env.run(device="UUID=" + UUID.upper())
    assert not result.get("failed"), result
    assert result["fstab_line"].startswith("UUID=" + UUID)


# --- the runtime's side of a root move (containerd with pods, carry-over) ------------------------

CONFIG_TOML = 'version = 3\nroot = "%s"\nstate = "/run/containerd"\n\n[grpc]\n  address = "/run/containerd/containerd.sock"\n'


def _old_root(path):
    """A small containerd root: a blob, a hard link to it, a symlink, a sparse file, a device-less
    whiteout stand-in with an xattr (overlayfs keeps opaque directories as xattrs)."""
    blobs = path / "io.containerd.content.v1.content" / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    (blobs / "aa").write_bytes(b"layer" * 1000)
    os.link(blobs / "aa", blobs / "aa-link")
    os.symlink("aa", blobs / "aa-sym")
    with open(path / "sparse.img", "wb") as handle:
        handle.truncate(8 << 20)
        handle.write(b"start")
    opaque = path / "io.containerd.snapshotter.v1.overlayfs" / "snapshots" / "1" / "fs" / "etc"
    opaque.mkdir(parents=True)
    os.setxattr(str(opaque), "trusted.overlay.opaque", b"y")
    os.setxattr(str(path / "sparse.img"), "user.kubeops", b"kept")
    os.chmod(blobs / "aa", 0o600)
    return path


@pytest.fixture
def node(env):
    """``env`` as a containerd node: kubelet stopped, containerd running two pods (three containers)
    with two images, its root a real directory with files to carry over."""
    old_root = _old_root(env.tmp / "var-lib-containerd")
    config = env.tmp / "etc" / "containerd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(CONFIG_TOML % old_root)
    rt = env.runtime
    rt.configured_root = str(old_root)
    rt.active = {"containerd.service"}
    rt.pods, rt.containers, rt.images = ["pod-a", "pod-b"], ["c-1", "c-2", "c-3"], ["img-pause", "img-app"]
    env.old_root, env.config, env.new_root = str(old_root), config, env.mnt + "/containerd"
    base_run = env.run

    def run(**overrides):
        args = dict(runtime="containerd", runtime_config=str(config), data_root=env.new_root, carry_over=True)
        args.update(overrides)
        return base_run(**args)

    env.run_node = run
    env.dropin = os.path.join(rt.unit_dir, "containerd.service.d", "kubeops-data-disk.conf")
    return env


def _tree(root):
    from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _runtime_data

    return _runtime_data.manifest(root)[0]


def test_root_move_stops_every_pod_then_containerd_and_carries_the_images_over(node):
    before = _tree(node.old_root)
    result = node.run_node(backup=True)
    assert not result.get("failed"), result
    data = result["changes"]["runtime_data"]
    assert data["outcome"] == "copied" and data["images"] == 2 and data["images_to_pull"] == 0
    assert data["pods_stopped"] == 2 and data["containers_stopped"] == 3
    assert data["units_stopped"] == ["containerd.service"] and data["root_in_use"] == node.old_root
    assert result["runtime_restart_needed"] is True and result["changed"] is True
    verbs = [c[1] if c[0] == "crictl" else c[0] for c in node.runtime.calls if c[0] in ("crictl", "stop", "copy", "sync")]
    # pods stopped and removed through the CRI before containerd itself, the copy after both, and
    # on the disk (synced) while it is still the temporary copy, before it is renamed and named
    assert verbs == ["info", "images", "pods", "ps", "ps", "stop", "stopp", "rmp", "ps", "stop", "copy", "sync"], verbs
    # the running containers get SIGTERM and a grace period (as docker stop) before their sandboxes
    # go, and every crictl call a deadline longer than crictl's own 2 s, the stop's longer still
    assert ("crictl", "stop", "--timeout", "30", "c-1", "c-2", "c-3") in node.runtime.calls
    assert min(node.runtime.crictl_timeouts) >= 60 and max(node.runtime.crictl_timeouts) == 90
    assert node.runtime.did("sync") == [("sync", os.path.join(node.mnt, ".containerd.kubeops-carry-over"), True)]
    assert ("crictl", "stopp", "pod-a", "pod-b") in node.runtime.calls
    # the copy is the old root, entry for entry (hard link, symlink, xattrs, sparse file), and the
    # old root is left as it was
    assert _tree(node.new_root) == before and _tree(node.old_root) == before
    assert os.stat(node.new_root + "/sparse.img").st_blocks * 512 < (1 << 20)
    assert 'root = "%s"' % node.new_root in node.config.read_text()
    assert "RequiresMountsFor=%s\n" % node.mnt in open(node.dropin).read()
    assert sorted(os.listdir(node.mnt)) == ["containerd"]  # no temporary copy, no marker left

    node.runtime.calls.clear()
    node.runtime.active = {"containerd.service"}
    again = node.run_node(backup=True)
    assert again["changed"] is False and again["runtime_restart_needed"] is False, again
    assert again["changes"]["runtime_data"]["outcome"] == "none"
    assert node.runtime.calls == []  # nothing stopped, nothing asked: the root does not move


def test_check_mode_stops_and_copies_nothing_and_says_what_it_would(node):
    before = node.snapshot()
    result = node.run_node(check=True, diff=True, carry_over=False)
    assert result["changed"] is True
    data = result["changes"]["runtime_data"]
    assert data["outcome"] == "not carried over" and data["images_to_pull"] == 2
    assert node.snapshot() == before and not os.path.exists(node.mnt) and not os.path.exists(node.dropin)
    assert not node.runtime.did("stop") and not node.runtime.did("copy")
    assert [c[1] for c in node.runtime.did("crictl")] == ["info", "images"]
    assert {d["before_header"] for d in result["diff"]} == {str(node.fstab), str(node.config), node.dropin}


def test_without_carry_over_the_new_root_is_empty_and_the_result_counts_the_pulls(node):
    result = node.run_node(carry_over=False)
    assert not result.get("failed"), result
    data = result["changes"]["runtime_data"]
    assert data["outcome"] == "not carried over" and data["images_to_pull"] == 2
    assert not os.path.exists(node.new_root) and not node.runtime.did("copy")
    assert data["pods_stopped"] == 2 and node.runtime.active == set()


def test_a_running_kubelet_stops_the_move_before_anything_changes(node):
    node.runtime.active.add("kubelet.service")
    before = node.snapshot()
    result = node.run_node()
    assert result["failed"] and "kubelet.service is running" in result["msg"] and "nothing was changed" in result["msg"]
    assert node.snapshot() == before and 'root = "%s"' % node.old_root in node.config.read_text()
    assert not node.runtime.did("stop") and node.runtime.pods == ["pod-a", "pod-b"] and not node.host.mounts


def test_a_daemon_on_another_root_than_its_config_names_is_refused(node):
    node.runtime.root = "/srv/containerd"
    result = node.run_node()
    assert result["failed"] and "/srv/containerd" in result["msg"] and "runtime_config" in result["msg"]
    assert not node.runtime.did("stop") and not node.runtime.did("crictl")[2:]
    assert 'root = "%s"' % node.old_root in node.config.read_text()


def test_shims_that_outlive_their_pods_are_waited_for(node):
    node.runtime.shims_linger = 3
    result = node.run_node()
    assert not result.get("failed"), result
    assert len(node.runtime.did("sleep")) >= 2


def test_container_processes_left_keep_the_old_root(node):
    node.runtime.extra_processes = [(777, "nginx", "nginx: master process",
                                     "0::/kubepods.slice/kubepods-besteffort.slice/cri-containerd-%s.scope" % ("ab" * 32))]
    result = node.run_node(stop_timeout=0)
    assert result["failed"] and "pid 777 container process" in result["msg"] and "was not moved" in result["msg"]
    assert "containerd.service" in node.runtime.active  # not stopped: the caller finds it as it was
    assert 'root = "%s"' % node.old_root in node.config.read_text() and not node.host.mounts


def test_shims_left_by_a_stopped_containerd_are_named_with_the_way_out(node):
    node.runtime.active = set()
    node.runtime.extra_processes = [(4343, "containerd-shim", "/usr/local/bin/containerd-shim-runc-v2 -id x", "0::/system.slice/containerd.service")]
    result = node.run_node(stop_timeout=0)
    assert result["failed"] and "pid 4343 shim" in result["msg"] and "start it and run again" in result["msg"]
    assert 'root = "%s"' % node.old_root in node.config.read_text()


def test_a_copy_killed_half_way_leaves_the_old_root_configured_and_a_rerun_finishes(node):
    before = _tree(node.old_root)

    def killed(source, dest):
        os.unlink(os.path.join(dest, "sparse.img"))  # half of it is there
        raise SimulatedKill()

    node.runtime.copy_hook = killed
    with pytest.raises(SimulatedKill):
        _disk_remount.remount(node.args(runtime="containerd", runtime_config=str(node.config), data_root=node.new_root,
                                        carry_over=True), FakeContext(), node.host, node.runtime)
    assert 'root = "%s"' % node.old_root in node.config.read_text() and not os.path.exists(node.dropin)
    assert _tree(node.old_root) == before and not os.path.exists(node.new_root)
    node.runtime.copy_hook = None
    node.runtime.active = {"containerd.service"}  # the caller started it again, on the old root
    result = node.run_node()
    assert not result.get("failed"), result
    assert result["changes"]["runtime_data"]["outcome"] == "copied"
    assert any("unfinished copy" in n for n in result["changes"]["runtime_data"]["notes"])
    assert _tree(node.new_root) == before and sorted(os.listdir(node.mnt)) == ["containerd"]


def test_a_kill_after_the_copy_before_the_config_is_redone_not_trusted(node, monkeypatch):
    real_replace = os.replace

    def replace(src, dst):
        if dst == str(node.config):
            raise SimulatedKill()
        return real_replace(src, dst)

    monkeypatch.setattr(_file_edit.os, "replace", replace)
    with pytest.raises(SimulatedKill):
        _disk_remount.remount(node.args(runtime="containerd", runtime_config=str(node.config), data_root=node.new_root,
                                        carry_over=True), FakeContext(), node.host, node.runtime)
    monkeypatch.undo()
    assert 'root = "%s"' % node.old_root in node.config.read_text()
    assert os.path.isdir(node.new_root) and os.path.exists(node.mnt + "/.containerd.kubeops-unconfigured")
    node.runtime.active = {"containerd.service"}
    # the old root is in use again and changes
    with open(node.old_root + "/written-after", "w") as handle:
        handle.write("new")
    result = node.run_node()
    assert not result.get("failed"), result
    data = result["changes"]["runtime_data"]
    assert data["outcome"] == "copied" and any("never configured" in n for n in data["notes"])
    assert os.path.exists(node.new_root + "/written-after") and sorted(os.listdir(node.mnt)) == ["containerd"]


def test_a_root_kept_on_the_disk_is_used_as_it_is(node):
    os.makedirs(node.new_root + "/io.containerd.metadata.v1.bolt")
    result = node.run_node()
    assert not result.get("failed"), result
    data = result["changes"]["runtime_data"]
    assert data["outcome"] == "kept" and data["images_to_pull"] is None
    assert not node.runtime.did("copy") and any("already holds data" in w for w in result["warnings"])
    assert 'root = "%s"' % node.new_root in node.config.read_text()


def test_a_copy_that_does_not_match_is_not_configured(node):
    def corrupt(source, dest):
        path = os.path.join(dest, "io.containerd.content.v1.content", "blobs", "sha256", "aa")
        st = os.stat(path)
        with open(path, "r+b") as handle:
            handle.write(b"LAYER")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    node.runtime.copy_hook = corrupt
    result = node.run_node()
    assert result["failed"] and "is not the same as" in result["msg"] and "other bytes" in result["msg"], result
    assert 'root = "%s"' % node.old_root in node.config.read_text() and not os.path.exists(node.dropin)
    assert not os.path.exists(node.new_root) and not node.host.mounts and node.fstab.read_text() == FSTAB
    assert result["runtime_restart_needed"] is True  # it was stopped: the caller starts it again


def test_not_enough_room_on_the_disk_is_said_before_copying(node):
    node.runtime.free = 1024
    result = node.run_node()
    assert result["failed"] and "MiB free" in result["msg"] and not node.runtime.did("copy")


def test_mounts_left_below_the_old_root_stop_the_copy(node):
    node.runtime.held_mounts = [node.old_root + "/io.containerd.grpc.v1.cri/sandboxes/x/shm"]
    result = node.run_node()
    assert result["failed"] and "still has mounts below it" in result["msg"] and not node.runtime.did("copy")


def test_carry_over_into_the_old_root_itself_is_refused(node):
    result = node.run_node(data_root=node.old_root + "/moved")
    assert result["failed"] and "inside one another" in result["msg"] and not node.runtime.calls


def test_docker_running_containers_are_stopped_with_its_own_stop(env):
    rt = env.runtime
    rt.active = {"docker.service", "docker.socket"}
    rt.containers, rt.images = ["d1", "d2"], ["i1"]
    result = env.run()
    assert not result.get("failed"), result
    assert ("docker", "stop", "--time", "30", "d1", "d2") in rt.calls
    assert result["changes"]["runtime_data"]["units_stopped"] == ["docker.socket", "docker.service"]
    assert result["changes"]["runtime_data"]["images_to_pull"] == 1
    assert [d["path"] for d in result["changes"]["dropins"]] == [
        os.path.join(rt.unit_dir, "docker.service.d", "kubeops-data-disk.conf")]


def test_require_mount_false_writes_no_drop_in_and_a_root_off_the_disk_gets_none(env):
    assert env.run(require_mount=False)["changes"]["dropins"] == []
    assert env.run(data_root="/var/lib/docker2", require_mount=True)["changes"]["dropins"] == []
    assert not os.path.exists(os.path.join(env.runtime.unit_dir, "docker.service.d"))
