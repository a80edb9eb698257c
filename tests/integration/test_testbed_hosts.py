"""The QEMU test hosts are real nodes: they join the local cluster with a runtime and a data disk.

Two hosts from tests/testbed/hosts/launcher.py (Debian bookworm under QEMU software emulation,
systemd, docker.io, kwok as ``kubelet.service``) join the session's control plane. The tests prove
what the node-side tests rely on: each host is the node of its name, with Docker on the field
notes' legacy daemon.json and an unmounted data disk (/dev/vdb) holding its sentinel, and a node
is Ready exactly while its kubelet service runs. That ``ansible.builtin.reboot`` works unchanged,
the node goes not Ready and comes back, a reboot keeps the root disk and a reimage gives a fresh
one while the data disk survives both is proven where the suite reboots and reimages a host
anyway (test_node_disk_remount_host.py): a boot costs minutes under emulation.

Marker ``hosts``: part of the whole suite (``make test``); ``-m "not hosts"`` leaves these out of
a quick loop, ``make test-hosts`` runs only them.
"""
import json
import sys
import time

import pytest

from tests.integration.hostsupport import POOL_HOSTS, node_ready, wait_node_ready

HOSTS = POOL_HOSTS
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
