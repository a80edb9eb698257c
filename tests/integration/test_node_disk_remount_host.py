"""node_disk_remount on a real test host: the field notes' data-disk remount, done safely.

The host is a QEMU guest from tests/testbed/hosts/launcher.py (Debian, systemd, docker.io with the
legacy ``"graph": "/var/lib/docker"`` daemon.json, kwok as its kubelet, and an ext4 data disk on
/dev/vdb carrying a sentinel file). The test follows the field notes: kubelet and Docker stopped,
the disk mounted on /data by UUID, Docker's data-root moved to /data/docker, services started;
then it checks what the notes never did: check mode changes nothing, a second run changes
nothing, the mount and the new root survive a reboot, the data disk's contents survive, and after
a reimage (fresh root, same data disk) the same task brings the node back onto its old data.
The reboot and the reimage also prove what the other host tests rely on (and are the test bed's
only reboot and reimage, so the suite boots no guest just to check the test bed): the node goes
not Ready during the reboot and comes back, a reboot keeps the root disk and a reimage does not.

Marker ``hosts``: part of the whole suite (``make test``); boots take minutes under software
emulation, so ``-m "not hosts"`` leaves it out of a quick loop and ``make test-hosts`` runs only these.
"""
import json
import os
import shlex
import subprocess
import sys
import time

import pytest

from tests.conftest import COLLECTIONS_ROOT
from tests.integration.hostsupport import POOL_HOSTS, NotReadyWatcher, node_ready

pytestmark = [pytest.mark.integration, pytest.mark.hosts]

HOST, OTHER_HOST = POOL_HOSTS
MOUNT_POINT = "/data"
DATA_ROOT = "/data/docker"
REMOUNT_ARGS = {
    "path": MOUNT_POINT,
    "fstype": "ext4",
    "opts": "noatime,acl,user_xattr,nofail,x-systemd.device-timeout=10s",
    "runtime": "docker",
    "data_root": DATA_ROOT,
    "backup": True,
}
DOCKER_ROOT_CMD = "docker info --format '{{.DockerRootDir}}'"


class HostUnderTest:
    """One launcher-made host, with Ansible pointed at it through the launcher's inventory."""

    def __init__(self, launcher, name, cluster):
        self.launcher = launcher
        self.name = name
        self.cluster = cluster

    @property
    def inventory(self):
        return self.launcher.write_inventory()

    @property
    def data_disk(self):
        return self.launcher.info(self.name)["data_disk"]

    def sh(self, command, check=True, timeout=180):
        res = self.launcher.ssh(self.name, command, check=False, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError("%s: `%s` failed (%d): %s" % (self.name, command, res.returncode, res.stderr or res.stdout))
        return res.stdout.strip()

    def ansible(self, module, args, check=False, diff=False, timeout=900):
        """Run one module on the host and return its result dict."""
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible"), self.name, "-i", self.inventory,
               "-m", module, "-a", json.dumps(args)]
        if check:
            cmd.append("--check")
        if diff:
            cmd.append("--diff")
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_HOST_KEY_CHECKING="False",
                   ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                   ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_DEPRECATION_WARNINGS="False")
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
        try:
            result = json.loads(res.stdout)["plays"][0]["tasks"][0]["hosts"][self.name]
        except (ValueError, KeyError, IndexError):
            raise AssertionError("could not read the result of %s on %s (rc %d)\nstdout: %s\nstderr: %s"
                                 % (module, self.name, res.returncode, res.stdout[-4000:], res.stderr[-4000:]))
        result.setdefault("failed", False)
        return result

    def remount(self, check=False, diff=False):
        args = dict(REMOUNT_ARGS, device=self.data_disk["device"])
        return self.ansible("kubeops.node_maintenance.node_disk_remount", args, check=check, diff=diff)

    def file_digests(self):
        return self.sh("sha256sum /etc/fstab /etc/docker/daemon.json")

    def node_ready(self, want=True, timeout=300):
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            res = self.cluster.kubectl("get", "node", self.name, "-o",
                                       'jsonpath={.status.conditions[?(@.type=="Ready")].status}', check=False)
            status = res.stdout.strip() if res.returncode == 0 else None
            if (status == "True") == want and status is not None:
                return
            time.sleep(2)
        raise AssertionError("node/%s Ready=%s after %ds, wanted %s" % (self.name, status, timeout, want))


@pytest.fixture(scope="module")
def test_host(cluster, host_pool):
    """One of the session's hosts, as booted (the other one idles)."""
    with host_pool.lend() as launcher:
        host = HostUnderTest(launcher, HOST, cluster)
        host.node_ready(True)
        yield host


def _stop_node_services(host):
    # docker.socket too, or socket activation starts Docker again on the next client call
    host.sh("systemctl stop kubelet.service docker.socket docker.service")


def _start_node_services(host):
    host.sh("systemctl start docker.service kubelet.service")


def _assert_on_data_disk(host, uuid):
    source = host.sh("findmnt -n -o SOURCE,FSTYPE,UUID --mountpoint %s" % MOUNT_POINT).split()
    assert source == [host.data_disk["device"], "ext4", uuid], source
    assert host.sh(DOCKER_ROOT_CMD) == DATA_ROOT
    sentinel = host.sh("cat %s" % shlex.quote(os.path.join(MOUNT_POINT, host.data_disk["sentinel_path"])))
    assert sentinel == host.data_disk["sentinel"]


def test_field_notes_remount_end_to_end(test_host):
    host = test_host
    assert '"graph"' in host.sh("cat /etc/docker/daemon.json")
    assert host.sh("findmnt -n --mountpoint %s" % MOUNT_POINT, check=False) == ""
    _stop_node_services(host)
    host.node_ready(False)

    # check mode: says what it would do, writes and mounts nothing
    digests = host.file_digests()
    checked = host.remount(check=True, diff=True)
    assert not checked["failed"], checked
    assert checked["changed"] is True and checked["mount_action"] == "mount"
    assert host.file_digests() == digests
    assert host.sh("findmnt -n --mountpoint %s" % MOUNT_POINT, check=False) == ""

    # the real run
    result = host.remount()
    assert not result["failed"], result
    uuid = result["uuid"]
    assert result["changed"] is True
    assert result["fstab_line"].split() == ["UUID=%s" % uuid, MOUNT_POINT, "ext4", REMOUNT_ARGS["opts"], "0", "2"]
    assert result["mounted"] is True and result["systemd_reloaded"] is True
    assert result["runtime_restart_needed"] is True
    assert result["changes"]["runtime_config"]["previous_data_root"] == "/var/lib/docker"
    assert len(result["backup_files"]) == 2
    daemon = json.loads(host.sh("cat /etc/docker/daemon.json"))
    assert daemon.get("data-root") == DATA_ROOT and "graph" not in daemon
    assert host.sh("awk '$2 == \"%s\"' /etc/fstab | wc -l" % MOUNT_POINT) == "1"

    _start_node_services(host)
    host.node_ready(True)
    _assert_on_data_disk(host, uuid)
    host.sh("touch %s/kubeops-before-reimage" % DATA_ROOT)

    # the kubernetes.core way: check mode again and a second run both report no change
    assert host.remount(check=True)["changed"] is False
    again = host.remount()
    assert again["changed"] is False and again["mount_action"] == "none", again

    # a reboot keeps it: systemd mounts /data from the fstab line, Docker starts on the disk.
    # It also proves the test bed: ansible.builtin.reboot works unchanged, the node goes not
    # Ready and comes back, the root disk is kept, the other host carries on.
    boot_id = host.sh("cat /proc/sys/kernel/random/boot_id")
    host.sh("echo kept > /root/kubeops-root-marker && sync")
    with NotReadyWatcher(host.cluster.core, host.name) as watcher:
        rebooted = host.ansible("ansible.builtin.reboot", {"reboot_timeout": 600})
    assert not rebooted["failed"] and rebooted["rebooted"], rebooted
    if watcher.first_not_ready is None:  # seen not Ready only after the module returned
        host.node_ready(False, timeout=120)
    host.node_ready(True)
    assert host.sh("cat /proc/sys/kernel/random/boot_id") != boot_id
    assert host.sh("cat /root/kubeops-root-marker") == "kept"
    assert node_ready(host.cluster.core, OTHER_HOST) == "True"
    _assert_on_data_disk(host, uuid)
    assert host.remount()["changed"] is False

    # reimage: fresh root (daemon.json with "graph" again, no fstab line, no marker, a new
    # machine ID), same data disk
    machine_id = host.sh("cat /etc/machine-id")
    host.launcher.reimage(host.name)
    host.launcher.wait_ssh(host.name)
    assert '"graph"' in host.sh("cat /etc/docker/daemon.json")
    assert MOUNT_POINT not in host.sh("cat /etc/fstab")
    assert host.sh("test -e /root/kubeops-root-marker && echo present || echo absent") == "absent"
    assert host.sh("cat /etc/machine-id") != machine_id
    _stop_node_services(host)
    result = host.remount()
    assert not result["failed"], result
    assert result["changed"] is True and result["uuid"] == uuid
    _start_node_services(host)
    host.node_ready(True)
    _assert_on_data_disk(host, uuid)
    host.sh("test -e %s/kubeops-before-reimage" % DATA_ROOT)
    assert host.remount()["changed"] is False


def test_wrong_fstype_changes_nothing_on_a_real_disk(test_host):
    """A real blkid says ext4; asking for xfs must fail with what was found and touch nothing."""
    host = test_host
    digests = host.file_digests()
    result = host.ansible("kubeops.node_maintenance.node_disk_remount",
                          dict(REMOUNT_ARGS, device=host.data_disk["device"], fstype="xfs"))
    assert result["failed"] and "holds ext4" in result["msg"], result
    assert host.file_digests() == digests
