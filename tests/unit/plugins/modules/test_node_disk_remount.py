"""node_disk_remount end to end: the module file's main() with a real AnsibleModule.

The run itself is tested in tests/unit/plugins/module_utils/test__disk_remount.py with fakes; here
only what the module file and ``_disk_remount.run_module`` add: the option spec (its defaults are
the ones those tests assume), ``ModuleContext`` over the AnsibleModule (check and diff mode,
warnings, ``backup_local``), and the exit and failure JSON. Disk commands and the runtime's
are still faked (``FakeHost`` in place of ``HostSystem``, ``FakeRuntime`` of ``RuntimeHost``);
fstab and daemon.json are real files.
"""
from __future__ import annotations

import json
import os

import pytest
from tests.unit.compat import as_module_process, patch_module_args

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _disk_remount
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._block_devices import BlockDeviceError
from ansible_collections.kubeops.node_maintenance.plugins.modules import node_disk_remount
from tests.unit.plugins.module_utils.test__disk_remount import DAEMON_JSON, DEFAULTS, FSTAB, UUID, FakeHost, FakeRuntime


@pytest.fixture
def module_env(tmp_path, monkeypatch, capsys):
    # The module runs here in the test process, which may also have imported controller code
    # (a filter plugin's test does): module warnings must still land in the result, as on a host.
    as_module_process(monkeypatch)
    (tmp_path / "docker").mkdir()
    fstab, daemon = tmp_path / "fstab", tmp_path / "docker" / "daemon.json"
    fstab.write_text(FSTAB)
    daemon.write_text(DAEMON_JSON)
    host = FakeHost(system_fstab=str(fstab))
    made = []

    def make_host(context):
        assert isinstance(context, _disk_remount.ModuleContext)
        made.append(context)
        return host

    monkeypatch.setattr(_disk_remount, "HostSystem", make_host)
    runtime = FakeRuntime(str(tmp_path / "systemd"))
    runtime.configured_root = "/var/lib/docker"

    def make_runtime_host(context):
        assert isinstance(context, _disk_remount.ModuleContext)
        return runtime

    monkeypatch.setattr(_disk_remount, "RuntimeHost", make_runtime_host)
    mnt = str(tmp_path / "data")

    def run(check=False, diff=False, **overrides):
        args = dict(device="/dev/vdb", path=mnt, fstype="ext4", fstab=str(fstab), runtime="docker",
                    runtime_config=str(daemon), data_root="/var/lib/docker2")
        args.update(overrides, _ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(args):
            with pytest.raises(SystemExit) as exited:
                node_disk_remount.main()
        result = json.loads(capsys.readouterr().out)
        result["rc"] = exited.value.code
        # ansible-core 2.19 returns warnings as structured events; the controller flattens them
        result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]
        return result

    return run, fstab, daemon, host, mnt, made


def test_the_option_defaults_are_the_ones_the_run_tests_assume():
    spec = node_disk_remount.argument_spec()
    assert {name: option.get("default") for name, option in spec.items()} == DEFAULTS


def test_main_runs_the_field_notes_scenario_with_real_backups_and_warnings(module_env):
    run, fstab, daemon, host, mnt, made = module_env
    result = run(backup=True)
    assert result["rc"] == 0 and not result.get("failed"), result
    assert result["changed"] is True and result["mount_action"] == "mount" and result["mounted"] is True
    assert result["uuid"] == UUID and result["fstab_line"].split()[:2] == ["UUID=" + UUID, mnt]
    assert result["runtime_restart_needed"] is True and result["systemd_reloaded"] is True
    assert json.loads(daemon.read_text())["data-root"] == "/var/lib/docker2"
    # backup_local's timestamped copies, holding the files as they were
    assert sorted(open(b).read() for b in result["backup_files"]) == sorted([FSTAB, DAEMON_JSON])
    assert all(os.path.basename(b).startswith(("fstab.", "daemon.json.")) for b in result["backup_files"])
    assert any("not below the mount point" in w for w in result["warnings"]), result["warnings"]
    assert [c[0] for c in host.calls if c[0] in ("daemon-reload", "mount")] == ["daemon-reload", "mount"]
    assert len(made) == 1 and made[0].check_mode is False and made[0].diff is False
    again = run(backup=True)
    assert again["rc"] == 0 and again["changed"] is False and again["backup_files"] == []


def test_main_passes_check_and_diff_mode(module_env):
    run, fstab, daemon, host, mnt, made = module_env
    result = run(check=True, diff=True)
    assert result["changed"] is True and made[-1].check_mode is True and made[-1].diff is True
    assert fstab.read_text() == FSTAB and daemon.read_text() == DAEMON_JSON and not os.path.exists(mnt)
    assert {d["before_header"] for d in result["diff"]} == {str(fstab), str(daemon)}


def test_main_fails_with_the_message_and_the_result_so_far(module_env):
    run, fstab, daemon, host, mnt, made = module_env
    host.devices["/dev/vdb"]["TYPE"] = "xfs"
    result = run()
    assert result["rc"] == 1 and result["failed"] is True
    assert "/dev/vdb holds xfs" in result["msg"] and "never reformats" in result["msg"]
    assert result["found"]["TYPE"] == "xfs" and result["changed"] is False and result["mount_point"] == mnt
    assert fstab.read_text() == FSTAB and daemon.read_text() == DAEMON_JSON


def test_a_failed_host_command_is_reported_with_what_was_done(module_env):
    run, fstab, daemon, host, mnt, made = module_env

    def broken_probe(device):
        raise BlockDeviceError("`blkid -p -o export %s` exited with 4: I/O error" % device)

    host.probe = broken_probe
    result = run()
    assert result["rc"] == 1 and result["failed"] is True
    assert result["msg"] == ("`blkid -p -o export /dev/vdb` exited with 4: I/O error; see the changes "
                             "returned for what had already been done")
    assert result["changes"] == {} and result["changed"] is False
