"""The QEMU test hosts are real nodes: they join the local cluster, reboot, keep their data disk.

Two hosts from tests/testbed/hosts/launcher.py (Debian bookworm under QEMU software emulation,
systemd, docker.io, kwok as ``kubelet.service``) join the session's control plane. The tests prove
what the node-side tests rely on: a node is Ready exactly while its kubelet service runs,
``ansible.builtin.reboot`` works unchanged and the node goes NotReady and comes back, the data disk
(/dev/vdb) survives reboot and reimage, and a reimage gives a fresh root.

Boots take one to several minutes under emulation. Marker ``hosts``: part of the whole suite
(``make test``); ``-m "not hosts"`` leaves these out of a quick loop, ``make test-hosts`` runs only them.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import COLLECTIONS_ROOT
from tests.integration.hostsupport import POOL_HOSTS, node_ready, wait_node_ready

HOSTS = POOL_HOSTS
REBOOT_TIMEOUT = 900
pytestmark = [pytest.mark.integration, pytest.mark.hosts]


def _log(msg):
    print("[test_testbed_hosts %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class Hosts:
    """The running hosts of one launcher state directory, plus the cluster they joined."""

    def __init__(self, launcher, cluster):
        self.launcher = launcher
        self.cluster = cluster
        self.timings = {}

    def sh(self, name, command, check=True, timeout=180):
        res = self.launcher.ssh(name, command, check=False, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError("%s: `%s` failed (%d): %s" % (name, command, res.returncode,
                                                               res.stderr or res.stdout))
        return res.stdout.strip()

    def ready(self, name):
        return node_ready(self.cluster.core, name)

    def wait_ready(self, name, want=True, timeout=600):
        return wait_node_ready(self.cluster.core, name, want, timeout)

    def sentinel(self, name):
        """The data disk's sentinel as the guest reads it (mounted read-only for the look)."""
        disk = self.launcher.info(name)["data_disk"]
        return self.sh(name, "set -e; mkdir -p /run/sentinel-check; mount -o ro %s /run/sentinel-check; "
                             "trap 'umount /run/sentinel-check' EXIT; cat /run/sentinel-check/%s"
                       % (disk["device"], disk["sentinel_path"]))

    def ansible(self, name, module, args, timeout=REBOOT_TIMEOUT + 120):
        """Start one module on the host in the background; returns the Popen."""
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible"), name,
               "-i", self.launcher.write_inventory(), "-m", module, "-a", json.dumps(args)]
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_NOCOLOR="1",
                   ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
                   ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="module")
def test_hosts(cluster, host_pool):
    """The session's two hosts, both Ready nodes of ``cluster``, as booted."""
    with host_pool.lend() as launcher:
        hosts = Hosts(launcher, cluster)
        try:
            yield hosts
        finally:
            _log("timings: %s" % hosts.timings)


def test_hosts_are_nodes_with_runtime_and_data_disk(test_hosts):
    for name in HOSTS:
        assert test_hosts.ready(name) == "True"
        node = test_hosts.cluster.core.read_node(name)
        # not the cluster's simulated nodes: the shared kwok must leave this node to the host's own
        assert "kwok.x-k8s.io/node" not in (node.metadata.annotations or {})
        assert node.metadata.labels["kubernetes.io/hostname"] == name
        assert test_hosts.sh(name, "hostname") == name
        assert test_hosts.sh(name, "systemctl is-active kubelet.service docker.service").split() == ["active"] * 2
        assert json.loads(test_hosts.sh(name, "cat /etc/docker/daemon.json")) == {"graph": "/var/lib/docker"}
        assert test_hosts.sh(name, "docker info --format '{{.DockerRootDir}}'") == "/var/lib/docker"
        assert test_hosts.sh(name, "lsblk -dno SERIAL /dev/vdb") == "kubeops-data"
        assert test_hosts.sh(name, "findmnt -n /dev/vdb", check=False) == ""  # mounting it is the product's job
        assert test_hosts.sentinel(name) == test_hosts.launcher.info(name)["data_disk"]["sentinel"]


def test_node_ready_exactly_while_kubelet_runs(test_hosts):
    name = HOSTS[1]
    test_hosts.sh(name, "systemctl stop kubelet.service")
    took = test_hosts.wait_ready(name, False, timeout=180)
    test_hosts.timings["kubelet stop -> NotReady"] = round(took)
    test_hosts.sh(name, "systemctl start kubelet.service")
    took = test_hosts.wait_ready(name, True, timeout=300)
    test_hosts.timings["kubelet start -> Ready"] = round(took)


def test_ansible_reboot_node_goes_not_ready_and_back(test_hosts):
    name = HOSTS[0]
    boot_id = test_hosts.sh(name, "cat /proc/sys/kernel/random/boot_id")
    test_hosts.sh(name, "echo kept > /root/kubeops-root-marker && sync")
    started = time.monotonic()
    proc = test_hosts.ansible(name, "ansible.builtin.reboot", {"reboot_timeout": REBOOT_TIMEOUT})
    saw_not_ready = None
    while proc.poll() is None:
        if saw_not_ready is None and test_hosts.ready(name) != "True":
            saw_not_ready = time.monotonic() - started
        time.sleep(2)
    out, err = proc.communicate()
    assert proc.returncode == 0, "ansible.builtin.reboot failed:\n%s\n%s" % (out[-3000:], err[-3000:])
    result = json.loads(out)["plays"][0]["tasks"][0]["hosts"][name]
    assert result["rebooted"] is True, result
    test_hosts.timings["ansible reboot (module)"] = round(time.monotonic() - started)
    if saw_not_ready is None:  # the node may only be seen NotReady once the module returned
        test_hosts.wait_ready(name, False, timeout=120)
        saw_not_ready = time.monotonic() - started
    test_hosts.timings["reboot -> NotReady seen"] = round(saw_not_ready)
    test_hosts.wait_ready(name, True, timeout=600)
    test_hosts.timings["reboot -> Ready"] = round(time.monotonic() - started)
    assert test_hosts.sh(name, "cat /proc/sys/kernel/random/boot_id") != boot_id
    assert test_hosts.sh(name, "cat /root/kubeops-root-marker") == "kept"  # a reboot keeps the root
    assert test_hosts.sentinel(name) == test_hosts.launcher.info(name)["data_disk"]["sentinel"]
    # the other host carried on
    assert test_hosts.ready(HOSTS[1]) == "True"


def test_reimage_gives_fresh_root_and_keeps_data_disk(test_hosts):
    name = HOSTS[1]
    launcher = test_hosts.launcher
    machine_id = test_hosts.sh(name, "cat /etc/machine-id")
    test_hosts.sh(name, "echo old > /root/kubeops-root-marker && sync")
    started = time.monotonic()
    launcher.reimage(name)
    launcher.wait_ssh(name)
    test_hosts.timings["reimage -> ssh"] = round(time.monotonic() - started)
    assert test_hosts.sh(name, "test -e /root/kubeops-root-marker && echo present || echo absent") == "absent"
    assert test_hosts.sh(name, "cat /etc/machine-id") != machine_id
    assert test_hosts.sentinel(name) == launcher.info(name)["data_disk"]["sentinel"]
    test_hosts.wait_ready(name, True, timeout=600)
    test_hosts.timings["reimage -> Ready"] = round(time.monotonic() - started)
