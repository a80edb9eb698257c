"""The product's main job on real hosts: the rolling playbook reboots two QEMU test hosts and
remounts their data disks, one node at a time, while a workload behind a PDB keeps serving.

Two hosts (tests/testbed/hosts/launcher.py: Debian under QEMU software emulation, systemd,
docker.io with the field notes' legacy ``"graph"`` daemon.json, kwok as ``kubelet.service``, an
ext4 data disk with a sentinel file) and one kwok node form a pool; ``web`` (4 replicas, PDB
minAvailable 3) runs on it. ``playbooks/rolling-maintenance.yml`` with action ``reboot`` and one
data disk (mounted on /data by UUID, Docker's root moved to /data/docker) must finish every node,
never take ``web`` below its budget (sampled during the whole run), leave each host on a new
boot with the disk mounted and its data intact, and a second run of the same rollout must change
nothing and reboot nothing.
"""
import json
import re
import time

import pytest

from tests.integration.hostsupport import POOL_HOSTS, host_sh as sh
from tests.integration.test_rolling_maintenance import (PLAYBOOK, ReadyWatcher, deployment, node_record, pdb, ready_count,
                                                        wait_ready)

pytestmark = [pytest.mark.integration, pytest.mark.hosts]

HOSTS = POOL_HOSTS
SPARE = "rollout-spare"
POOL_LABEL = "kubeops.test/pool"
POOL = "rollout-hosts"
MOUNT_POINT = "/data"
DATA_ROOT = "/data/docker"


def _log(msg):
    import sys

    print("[test_rolling_maintenance_hosts %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def pool(host_pool):
    """The session's two hosts (Ready nodes of ``cluster``, as booted) and a kwok spare, all
    labelled into one pool."""
    with host_pool.lend({POOL_LABEL: POOL}, spare=SPARE) as launcher:
        yield launcher


def test_rollout_reboots_and_remounts_each_host_within_the_pdb(cluster, namespace, pool, run_playbook, tmp_path):
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", 4, POOL))
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, pdb("web", minAvailable=3))
    wait_ready(cluster, namespace, "web", 4, timeout=300)
    boot_ids = {name: sh(pool, name, "cat /proc/sys/kernel/random/boot_id") for name in HOSTS}
    disks = {name: pool.info(name)["data_disk"] for name in HOSTS}
    uuids = {name: sh(pool, name, "blkid -s UUID -o value %s" % disks[name]["device"]) for name in HOSTS}

    inventory = pool.write_inventory()
    reports = tmp_path / "reports"
    extra_vars = {
        "node_maintenance_hosts": "testbed_hosts",
        "node_maintenance_rollout_id": "hosts-1",
        "node_maintenance_action": "reboot",
        "node_maintenance_data_disks": [{
            "device": disks[HOSTS[0]]["device"], "path": MOUNT_POINT, "fstype": "ext4",
            "runtime": "docker", "data_root": DATA_ROOT}],
        "node_maintenance_lock_namespace": namespace,
        "node_maintenance_report_dir": str(reports),
        "node_maintenance_drain_timeout": 300,
        "node_maintenance_reboot_timeout": 900,
        "node_maintenance_ready_timeout": 900,
        "node_maintenance_health_timeout": 300,
    }
    watcher = ReadyWatcher(cluster, namespace, "web")
    watcher.start()
    started = time.monotonic()
    try:
        res = run_playbook(PLAYBOOK, extra_vars=extra_vars, inventory=inventory)
    finally:
        watcher.stop()
    _log("rollout took %ds, web minimum ready %s over %d samples"
         % (time.monotonic() - started, watcher.minimum, watcher.samples))
    assert res.returncode == 0, res.stdout[-8000:] + res.stderr[-3000:]
    assert watcher.samples > 20
    assert watcher.minimum >= 3, "web dropped to %d ready pods, below its PDB (3)" % watcher.minimum

    report = json.loads((reports / "hosts-1" / "report.json").read_text())
    assert [(n["node"], n["status"]) for n in report["nodes"]] == [(name, "done") for name in HOSTS]
    for entry in report["nodes"]:
        _log("report %s: %s" % (entry["node"], json.dumps(entry.get("phases"))))
    for name in HOSTS:
        assert sh(pool, name, "cat /proc/sys/kernel/random/boot_id") != boot_ids[name], "%s was not rebooted" % name
        source = sh(pool, name, "findmnt -n -o SOURCE,FSTYPE,UUID --mountpoint %s" % MOUNT_POINT).split()
        assert source[1:] == ["ext4", uuids[name]], source
        assert re.search(r"^UUID=%s\s+%s\s+ext4\s" % (uuids[name], MOUNT_POINT), sh(pool, name, "cat /etc/fstab"), re.M)
        assert sh(pool, name, "docker info --format '{{.DockerRootDir}}'") == DATA_ROOT
        assert json.loads(sh(pool, name, "cat /etc/docker/daemon.json")) == {"data-root": DATA_ROOT}
        assert sh(pool, name, "cat %s/%s" % (MOUNT_POINT, disks[name]["sentinel_path"])) == disks[name]["sentinel"]
        node = cluster.core.read_node(name)
        assert not node.spec.unschedulable
        assert not [t for t in node.spec.taints or [] if t.key.startswith("maintenance.kubeops.io")]
        assert node_record(cluster, name)["status"] == "done"
    assert ready_count(cluster, namespace, "web") == 4

    boot_ids = {name: sh(pool, name, "cat /proc/sys/kernel/random/boot_id") for name in HOSTS}
    again = run_playbook(PLAYBOOK, extra_vars=extra_vars, inventory=inventory)
    assert again.returncode == 0, again.stdout[-6000:]
    for name in HOSTS:
        recap = re.search(r"^%s\s+: (ok=.*)$" % re.escape(name), again.stdout, re.M)
        assert recap and "changed=0 " in recap.group(1), "a re-run of a finished rollout changes nothing"
        assert sh(pool, name, "cat /proc/sys/kernel/random/boot_id") == boot_ids[name], "a re-run rebooted %s" % name


@pytest.mark.faults  # also in the fault suite (make faults)
def test_a_host_that_does_not_come_back_stops_the_rollout_with_its_node_cordoned_and_explained(
        cluster, namespace, pool, run_playbook, tmp_path):
    """The host powers off instead of rebooting (as a host whose firmware hangs would): the reboot
    times out, the node stays cordoned and drained, its record and a Warning event say why."""
    name = HOSTS[1]
    extra_vars = {
        "node_maintenance_hosts": "testbed_hosts",
        "node_maintenance_rollout_id": "hosts-lost",
        "node_maintenance_action": "reboot",
        "node_maintenance_reboot_command": "systemctl poweroff",
        "node_maintenance_reboot_timeout": 60,
        "node_maintenance_lock_namespace": namespace,
        "node_maintenance_report_dir": str(tmp_path / "reports"),
        "node_maintenance_drain_timeout": 300,
    }
    res = run_playbook(PLAYBOOK, extra_vars=extra_vars, inventory=pool.write_inventory(), args=("--limit", name))
    assert res.returncode != 0
    assert "Rollout hosts-lost stopped at node %s" % name in res.stdout, res.stdout[-6000:]
    node = cluster.core.read_node(name)
    assert node.spec.unschedulable, "a node whose host did not come back stays cordoned"
    record = node_record(cluster, name)
    assert (record["rollout"], record["phase"], record["status"]) == ("hosts-lost", "action", "failed"), record
    # the reboot module fails (timeout) or ends unreachable (the host is gone): either is recorded
    assert record["message"].startswith(("Reboot the host: ", "The host came back from the reboot: ")), record["message"]
    events = cluster.core.list_namespaced_event("default", field_selector="involvedObject.name=%s" % name).items
    assert any(e.reason == "MaintenanceFailed" and e.type == "Warning" and "hosts-lost" in e.message for e in events)
    report = json.loads((tmp_path / "reports" / "hosts-lost" / "report.json").read_text())
    assert [(n["node"], n["status"], n.get("failed_phase")) for n in report["nodes"]] == [(name, "failed", "action")]
