"""Rollout guards and faults on real hosts: reboot only when required, the data-disk reboot proof,
a data disk missing after the reboot, and the SSH connection dropped in the middle of the remount.

Two QEMU test hosts (tests/testbed/hosts/launcher.py: Debian under software emulation, systemd,
docker.io with the legacy ``"graph"`` daemon.json, kwok as ``kubelet.service``, an ext4 data disk
on /dev/vdb holding a sentinel) are booted once, in parallel, for the whole module, and the
scenarios are chained on them to keep the module short (boots are the expensive part):

1. ``reboot_if_required`` over both hosts: host A has ``/var/run/reboot-required`` and is drained,
   rebooted and its data disk mounted on /data with Docker's root there, and before its uncordon
   the reboot proof checks /data is mounted from the disk's filesystem UUID; host B has no flag
   and is neither drained nor cordoned (sampled all along); the report says why for each.
2. Host B: the controller's SSH connections are killed (only those of the ansible-playbook this
   test started, by pid) the moment kubelet and Docker are stopped for the remount, and stay dead
   for the rest of that run. The run fails saying so, the node stays cordoned and recorded; fstab
   and daemon.json are each the old or the new file; the re-run of the same rollout finishes.
3. Host A reboots and comes back without its data disk (the test power-cycles the QEMU machine
   the moment the guest restarts and boots it without the disk, as a cloud machine whose volume
   was detached; q35's root bus has no hot-unplug, so ``device_del`` is refused). The seed disk
   is then /dev/vdb: the rollout must stop before uncordon without rewriting fstab to the wrong
   disk, and once the disk is back the sentinel is intact and the re-run finishes the node.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from tests.integration import conftest as integration
from tests.integration.hostsupport import POOL_HOSTS, host_sh as sh, record_step_times, wait_node_ready
from tests.integration.test_rolling_maintenance import PLAYBOOK, node_record

pytestmark = [pytest.mark.integration, pytest.mark.hosts]

HOST_A, HOST_B = HOSTS = POOL_HOSTS
SPARE = "guard-spare"
POOL_LABEL = "kubeops.test/pool"
POOL = "guard-hosts"
MOUNT_POINT = "/data"
DATA_ROOT = "/data/docker"
DISK_OPTS = "defaults,nofail,x-systemd.device-timeout=10s"
DATA_DISK = {"device": "/dev/vdb", "path": MOUNT_POINT, "fstype": "ext4", "opts": DISK_OPTS,
             "runtime": "docker", "data_root": DATA_ROOT}
MAINTENANCE_TAINT = "maintenance.kubeops.io/in-progress"
REMOUNT_TASK = "TASK [kubeops.node_maintenance.data_disk : Mount the data disk and point the runtime at it]"
TIMES = {}


def _log(msg):
    print("[test_rollout_hosts_faults %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def hosts(host_pool):
    """The session's two hosts (Ready nodes of ``cluster``, as booted) and a kwok spare, in one pool."""
    started = time.monotonic()
    try:
        with host_pool.lend({POOL_LABEL: POOL}, spare=SPARE) as launcher:
            TIMES["hand-out"] = time.monotonic() - started
            yield launcher
    finally:
        _log("times (s): %s; module %ds" % (json.dumps({k: round(v) for k, v in TIMES.items()}),
                                            time.monotonic() - started))
        record_step_times("test_rollout_hosts_faults", dict(TIMES, module_s=time.monotonic() - started))


def rollout_vars(namespace, reports, rollout_id, **extra):
    extra_vars = {
        "node_maintenance_hosts": "testbed_hosts",
        "node_maintenance_rollout_id": rollout_id,
        "node_maintenance_data_disks": [DATA_DISK],
        "node_maintenance_data_disks_verify_uuid": True,
        "node_maintenance_lock_namespace": namespace,
        "node_maintenance_report_dir": str(reports),
        "node_maintenance_drain_timeout": 300,
        "node_maintenance_reboot_timeout": 900,
        "node_maintenance_ready_timeout": 900,
        "node_maintenance_health_timeout": 300,
    }
    extra_vars.update(extra)
    return extra_vars


class Playbook:
    """One ansible-playbook run of the rolling playbook, its output streamed line by line (to
    ``on_line`` and a log file) so a test can act at a given task. Its SSH control sockets live in
    a directory of this run only, which, with its process tree, names the processes it started."""

    def __init__(self, cluster, inventory, extra_vars, log_path, limit=None, on_line=None, timeout=2400):
        self.control_dir = tempfile.mkdtemp(prefix="kcp")  # short: unix socket paths are limited
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", inventory, PLAYBOOK,
               "-e", json.dumps(extra_vars)]
        if limit:
            cmd += ["--limit", limit]
        env = integration._ansible_env(cluster, {"PYTHONUNBUFFERED": "1",
                                                 "ANSIBLE_SSH_CONTROL_PATH_DIR": self.control_dir})
        self.lines = []
        started = time.monotonic()
        with open(log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         env=env, start_new_session=True)
            timer = threading.Timer(timeout, self._kill_all)
            timer.start()
            try:
                for line in self.proc.stdout:
                    self.lines.append(line)
                    log.write(line)
                    log.flush()
                    if on_line:
                        on_line(self, line)
                self.returncode = self.proc.wait()
            finally:
                timer.cancel()
        self.seconds = time.monotonic() - started
        self.stdout = "".join(self.lines)
        for pid in self.ssh_pids():  # its ControlPersist masters would linger for a minute
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.control_dir, ignore_errors=True)
        integration.assert_no_secret("the output of the rolling playbook", self.stdout)

    def _kill_all(self):
        integration.kill_process_tree(self.proc.pid)  # only what this run started, modules too

    def ssh_pids(self):
        """The controller-side ssh (and sftp/scp) processes of this run: descendants of its
        ansible-playbook, and its ControlPersist masters (they detach, but carry its control path)."""
        tree, cmdlines = integration.process_tree(self.proc.pid), {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as handle:
                    cmdlines[int(entry)] = handle.read().split(b"\0")
            except OSError:
                continue
        found = []
        for pid, argv in cmdlines.items():
            program = os.path.basename(argv[0].split(b":")[0].split(b" ")[0]).decode(errors="replace")
            if program not in ("ssh", "sftp", "scp"):
                continue
            if pid in tree or self.control_dir.encode() in b" ".join(argv):
                found.append(pid)
        return found


def ready_pod_on(cluster, namespace, node):
    pods = cluster.core.list_namespaced_pod(namespace, field_selector="spec.nodeName=%s" % node).items
    return [p for p in pods if integration.is_ready(p)]


def spread_deployment(name, replicas):
    """``replicas`` pods over the pool, one per node while every node is schedulable (a cordoned
    node does not count, so a drained pod goes to another node of the pool)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {POOL_LABEL: POOL},
                    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                        "nodeTaintsPolicy": "Honor", "labelSelector": {"matchLabels": labels}}],
                    "containers": [{"name": "app", "image": "registry.invalid/app:1",
                                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
                },
            },
        },
    }


class NodeWatcher(threading.Thread):
    """Samples a node's cordon and maintenance taint during a run."""

    def __init__(self, cluster, name):
        super().__init__(daemon=True)
        self.cluster, self.name = cluster, name
        self.samples, self.touched = 0, []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            node = self.cluster.core.read_node(self.name)
            taints = [t.key for t in node.spec.taints or [] if t.key.startswith("maintenance.kubeops.io")]
            if node.spec.unschedulable or taints:
                self.touched.append((time.strftime("%H:%M:%S"), node.spec.unschedulable, taints))
            self.samples += 1
            self._stop_event.wait(0.5)

    def stop(self):
        self._stop_event.set()
        self.join(10)


def fstab_data_lines(text):
    return [line.split() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#") and line.split()[1:2] == [MOUNT_POINT]]


def events_of(cluster, name, rollout_id):
    events = cluster.core.list_namespaced_event("default", field_selector="involvedObject.name=%s" % name).items
    return [e for e in events if rollout_id in (e.message or "")]


def test_reboot_if_required_reboots_only_the_flagged_host_and_proves_its_data_disk(
        cluster, namespace, hosts, tmp_path):
    """Issue 11: action reboot_if_required with Debian's flag file; the reboot proof for data disks."""
    started = time.monotonic()
    sh(hosts, HOST_A, "touch /var/run/reboot-required")
    sh(hosts, HOST_B, "rm -f /var/run/reboot-required")
    cluster.apps.create_namespaced_deployment(namespace, spread_deployment("web", 3))
    integration.wait_for("web on every node of the pool", lambda: all(
        ready_pod_on(cluster, namespace, node) for node in HOSTS + (SPARE,)), timeout=300, interval=1)
    pod_a = ready_pod_on(cluster, namespace, HOST_A)[0].metadata.uid
    pod_b = ready_pod_on(cluster, namespace, HOST_B)[0].metadata.uid
    boot_ids = {name: sh(hosts, name, "cat /proc/sys/kernel/random/boot_id") for name in HOSTS}
    uuid = sh(hosts, HOST_A, "blkid -s UUID -o value /dev/vdb")
    files_b = sh(hosts, HOST_B, "sha256sum /etc/fstab /etc/docker/daemon.json")

    reports = tmp_path / "reports"
    watcher = NodeWatcher(cluster, HOST_B)
    watcher.start()
    try:
        run = Playbook(cluster, hosts.write_inventory(),
                       rollout_vars(namespace, reports, "if-required", node_maintenance_action="reboot_if_required"),
                       tmp_path / "if-required.log")
    finally:
        watcher.stop()
    TIMES["reboot_if_required"] = time.monotonic() - started
    _log("reboot_if_required rollout %ds; %s sampled %d times" % (run.seconds, HOST_B, watcher.samples))
    assert run.returncode == 0, run.stdout[-8000:]

    # A: drained (its pod moved), rebooted (new boot), data disk mounted from its UUID before the uncordon
    report = json.loads((reports / "if-required" / "report.json").read_text())
    by_node = {entry["node"]: entry for entry in report["nodes"]}
    _log("report: %s" % json.dumps(by_node))
    a, b = by_node[HOST_A], by_node[HOST_B]
    assert (a["status"], a["reboot_required"]) == ("done", True), a
    assert a["message"].startswith("reboot required: /var/run/reboot-required exists"), a
    assert {"drain", "action", "data_disks", "return"} <= set(a["phases"]), a
    assert sh(hosts, HOST_A, "cat /proc/sys/kernel/random/boot_id") != boot_ids[HOST_A], "A was not rebooted"
    assert pod_a not in [p.metadata.uid for p in cluster.core.list_namespaced_pod(namespace).items], \
        "the pod on A was not evicted"
    source = sh(hosts, HOST_A, "findmnt -n -o UUID,SOURCE,FSTYPE --mountpoint %s" % MOUNT_POINT).split()
    assert source == [uuid, "/dev/vdb", "ext4"], source
    assert a["data_disks_verified"] == [{"path": MOUNT_POINT, "device": "/dev/vdb", "uuid": uuid}], a
    assert a["checks"].get("data_disk_uuid %s" % MOUNT_POINT) == "pass", a
    assert "%s: data disk %s mounted from UUID %s" % (HOST_A, MOUNT_POINT, uuid) in run.stdout
    assert any(e.reason == "MaintenanceDataDisksVerified" for e in events_of(cluster, HOST_A, "if-required"))
    assert sh(hosts, HOST_A, "cat %s/kubeops-sentinel" % MOUNT_POINT) == hosts.info(HOST_A)["data_disk"]["sentinel"]
    assert sh(hosts, HOST_A, "docker info --format '{{.DockerRootDir}}'") == DATA_ROOT
    node_a = cluster.core.read_node(HOST_A)
    assert not node_a.spec.unschedulable
    assert node_record(cluster, HOST_A)["status"] == "done"

    # B: asked, not drained, not cordoned, not rebooted, nothing changed on it
    assert (b["status"], b["reboot_required"]) == ("skipped", False), b
    assert b["message"].startswith("no reboot required, not drained: no /var/run/reboot-required"), b
    assert not b["phases"], b
    assert watcher.samples > 20 and not watcher.touched, "B was cordoned or tainted: %s" % watcher.touched
    assert sh(hosts, HOST_B, "cat /proc/sys/kernel/random/boot_id") == boot_ids[HOST_B], "B was rebooted"
    assert pod_b in [p.metadata.uid for p in ready_pod_on(cluster, namespace, HOST_B)], "B's pod was moved"
    assert node_record(cluster, HOST_B).get("rollout") != "if-required"
    assert not events_of(cluster, HOST_B, "if-required")
    assert sh(hosts, HOST_B, "sha256sum /etc/fstab /etc/docker/daemon.json") == files_b
    markdown = (reports / "if-required" / "report.md").read_text()
    assert "reboot required: /var/run/reboot-required exists" in markdown
    assert "no reboot required, not drained" in markdown
    cluster.apps.delete_namespaced_deployment("web", namespace)


@pytest.mark.faults  # also in the fault suite (make faults)
def test_ssh_dropped_while_kubelet_and_docker_are_stopped_for_the_remount(cluster, namespace, hosts, tmp_path):
    """Issue 12: the controller loses the host between the stop and the start of the node's services
    (here while the remount carries Docker's root over: node_disk_remount stopped Docker itself)."""
    started = time.monotonic()
    name = HOST_B
    old_fstab = sh(hosts, name, "cat /etc/fstab")
    old_daemon = sh(hosts, name, "cat /etc/docker/daemon.json")
    uuid = sh(hosts, name, "blkid -s UUID -o value /dev/vdb")
    assert not fstab_data_lines(old_fstab) and '"graph"' in old_daemon, "host B must be as booted"
    # Docker's root carried over, with a ballast that makes the copy last: the remount module stops
    # Docker itself (when its root moves) and the copy then runs with kubelet and Docker stopped,
    # the window this fault hits
    ballast = sh(hosts, name, "head -c 96M /dev/urandom > /var/lib/docker/kubeops-ballast && sync && "
                              "sha256sum < /var/lib/docker/kubeops-ballast", timeout=600)
    reports = tmp_path / "reports"
    extra_vars = rollout_vars(namespace, reports, "ssh-drop", node_maintenance_action="none",
                              node_maintenance_connect_timeout=40,
                              node_maintenance_data_disks=[dict(DATA_DISK, carry_over=True)])
    killed = []
    dropping = threading.Event()
    watching = []

    def drop_connections(run):
        while run.proc.poll() is None:
            for pid in run.ssh_pids():
                try:
                    os.kill(pid, signal.SIGTERM)  # ssh exits 255: Ansible sees the connection lost
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def drop_once_docker_is_stopped(run):
        deadline = time.monotonic() + 600
        while run.proc.poll() is None and time.monotonic() < deadline:
            # over the test's own SSH connection, not the run's
            if hosts.ssh(name, "systemctl is-active docker.service", check=False, timeout=30).stdout.strip() == "inactive":
                dropping.set()
                _log("kubelet and docker stopped: dropping the SSH connections of ansible-playbook %d" % run.proc.pid)
                drop_connections(run)
                return
            time.sleep(0.2)

    def on_line(run, line):
        if line.startswith(REMOUNT_TASK) and not watching:
            watching.append(run)
            threading.Thread(target=drop_once_docker_is_stopped, args=(run,), daemon=True).start()

    run = Playbook(cluster, hosts.write_inventory(), extra_vars, tmp_path / "ssh-drop-1.log", limit=name,
                   on_line=on_line)
    TIMES["ssh_drop_failed_run"] = run.seconds
    _log("first run %ds, %d ssh processes killed" % (run.seconds, len(killed)))
    assert dropping.is_set(), "the run never reached the remount: " + run.stdout[-6000:]
    assert killed, "no ssh process of the run was found to kill"
    assert run.returncode != 0, run.stdout[-6000:]
    assert "Rollout ssh-drop stopped at node %s" % name in run.stdout, run.stdout[-6000:]
    assert "connection" in run.stdout[run.stdout.index("Rollout ssh-drop stopped"):].lower(), run.stdout[-4000:]

    node = cluster.core.read_node(name)
    assert node.spec.unschedulable, "the node stays cordoned"
    record = node_record(cluster, name)
    _log("record after the drop: %s" % json.dumps(record))
    assert (record["rollout"], record["phase"], record["status"]) == ("ssh-drop", "data_disks", "failed"), record
    assert "connection" in record["message"].lower() and "kubelet" in record["message"], record["message"]
    assert "re-run" in record["message"], record["message"]
    # the fault hit the window: kubelet and Docker are still stopped (the run could not start them).
    # sshd may still be refusing for a moment after that many cut handshakes: wait for it first.
    hosts.wait_ssh(name, timeout=300)
    states = hosts.ssh(name, "systemctl is-active kubelet.service docker.service docker.socket", check=False)
    assert states.stdout.split() == ["inactive"] * 3, (states.returncode, states.stdout, states.stderr)
    new_fstab = sh(hosts, name, "cat /etc/fstab")
    new_daemon = sh(hosts, name, "cat /etc/docker/daemon.json")
    _log("after the drop: fstab %s, daemon.json %s" % ("unchanged" if new_fstab == old_fstab else "new",
                                                       "unchanged" if new_daemon == old_daemon else "new"))
    if new_fstab != old_fstab:
        rest = [line for line in new_fstab.splitlines() if line.split()[1:2] != [MOUNT_POINT]]
        assert rest == old_fstab.splitlines(), new_fstab
        assert fstab_data_lines(new_fstab) == [["UUID=" + uuid, MOUNT_POINT, "ext4", DISK_OPTS, "0", "2"]], new_fstab
    if new_daemon != old_daemon:
        assert json.loads(new_daemon) == {"data-root": DATA_ROOT}, new_daemon
    assert sh(hosts, name, "ls -a /etc /etc/docker | grep -c '\\.tmp$'", check=False) == "0", "a temporary file was left"

    # the same rollout again: it resumes at data_disks, brings kubelet and Docker back, finishes
    again = Playbook(cluster, hosts.write_inventory(), extra_vars, tmp_path / "ssh-drop-2.log", limit=name)
    TIMES["ssh_drop_rerun"] = again.seconds
    assert again.returncode == 0, again.stdout[-8000:]
    assert "resuming at phase data_disks" in again.stdout
    assert sh(hosts, name, "systemctl is-active kubelet.service docker.service").split() == ["active", "active"]
    assert wait_node_ready(cluster.core, name, True, timeout=300) is not None
    assert not cluster.core.read_node(name).spec.unschedulable
    assert node_record(cluster, name)["status"] == "done"
    assert fstab_data_lines(sh(hosts, name, "cat /etc/fstab")) == [["UUID=" + uuid, MOUNT_POINT, "ext4", DISK_OPTS, "0", "2"]]
    assert json.loads(sh(hosts, name, "cat /etc/docker/daemon.json")) == {"data-root": DATA_ROOT}
    assert sh(hosts, name, "findmnt -n -o UUID --mountpoint %s" % MOUNT_POINT) == uuid
    assert sh(hosts, name, "docker info --format '{{.DockerRootDir}}'") == DATA_ROOT
    assert sh(hosts, name, "cat %s/kubeops-sentinel" % MOUNT_POINT) == hosts.info(name)["data_disk"]["sentinel"]
    assert sh(hosts, name, "sha256sum < %s/kubeops-ballast" % DATA_ROOT) == ballast, "the root was not carried over"
    assert sh(hosts, name, "sha256sum < /var/lib/docker/kubeops-ballast") == ballast, "the old root was not kept"
    report = json.loads((reports / "ssh-drop" / "report.json").read_text())
    assert [(n["node"], n["status"], n["resumed_from"]) for n in report["nodes"]] == [(name, "done", "data_disks")]
    TIMES["ssh_drop"] = time.monotonic() - started


class DetachOnReboot(threading.Thread):
    """When the guest restarts (the kernel's "reboot: Restarting system" on its console), power
    the machine off and boot it without its data disk: the volume was detached meanwhile."""

    def __init__(self, launcher, name):
        super().__init__(daemon=True)
        self.launcher, self.name = launcher, name
        self.console = os.path.join(launcher.host_dir(name), "console.log")
        self.offset = os.path.getsize(self.console)
        self.done, self.error = threading.Event(), None
        self._stop_event = threading.Event()

    def run(self):
        try:
            while not self._stop_event.is_set():
                with open(self.console, "rb") as handle:
                    handle.seek(self.offset)
                    if b"reboot: Restarting system" in handle.read():
                        self.launcher.power_cycle(self.name, data_disk=False)
                        self.done.set()
                        return
                time.sleep(0.2)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def stop(self):
        self._stop_event.set()
        self.join(120)


def mount_data_disk(cluster, launcher, name):
    """The data_disk role on one host (what the first scenario leaves), for a run of this scenario alone."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible"), name, "-i", launcher.write_inventory(),
           "-m", "ansible.builtin.include_role", "-a", "name=kubeops.node_maintenance.data_disk",
           "-e", json.dumps({"data_disk_disks": [DATA_DISK]})]
    res = subprocess.run(cmd, capture_output=True, text=True, env=integration._ansible_env(cluster), timeout=1800,
                         check=False)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


@pytest.mark.faults  # also in the fault suite (make faults)
def test_a_data_disk_missing_after_the_reboot_stops_before_uncordon_and_loses_nothing(
        cluster, namespace, hosts, tmp_path):
    """Issue 12: the host comes back from its reboot without its data disk."""
    started = time.monotonic()
    name = HOST_A
    disk = hosts.info(name)["data_disk"]
    uuid = sh(hosts, name, "blkid -s UUID -o value /dev/vdb")
    if not fstab_data_lines(sh(hosts, name, "cat /etc/fstab")):  # this scenario run alone (-k)
        mount_data_disk(cluster, hosts, name)
        TIMES["disk_missing_setup"] = time.monotonic() - started
    old_fstab = sh(hosts, name, "cat /etc/fstab")
    old_daemon = sh(hosts, name, "cat /etc/docker/daemon.json")
    assert fstab_data_lines(old_fstab) == [["UUID=" + uuid, MOUNT_POINT, "ext4", DISK_OPTS, "0", "2"]], old_fstab
    reports = tmp_path / "reports"
    extra_vars = rollout_vars(namespace, reports, "disk-missing", node_maintenance_action="reboot")

    detacher = DetachOnReboot(hosts, name)
    detacher.start()
    try:
        run = Playbook(cluster, hosts.write_inventory(), extra_vars, tmp_path / "disk-missing-1.log", limit=name)
    finally:
        detacher.stop()
    TIMES["disk_missing_failed_run"] = run.seconds
    assert detacher.error is None, detacher.error
    assert detacher.done.is_set(), "the host never rebooted: " + run.stdout[-6000:]
    assert run.returncode != 0, run.stdout[-8000:]
    assert "Rollout disk-missing stopped at node %s" % name in run.stdout, run.stdout[-6000:]

    # stopped before uncordon, explained on the node
    node = cluster.core.read_node(name)
    assert node.spec.unschedulable, "the node must stay cordoned"
    record = node_record(cluster, name)
    _log("record with the disk missing: %s" % json.dumps(record))
    assert (record["rollout"], record["phase"], record["status"]) == ("disk-missing", "data_disks", "failed"), record
    message = record["message"]
    assert "UUID=%s" % uuid in message and "/dev/vdb" in message, message
    assert "detached" in message and "re-run" in message, message
    assert any(e.reason == "MaintenanceFailed" and e.type == "Warning" for e in events_of(cluster, name, "disk-missing"))
    report = json.loads((reports / "disk-missing" / "report.json").read_text())
    assert [(n["node"], n["status"], n.get("failed_phase")) for n in report["nodes"]] == [(name, "failed", "data_disks")]

    # nothing rewritten: fstab still names the data disk's UUID, not the disk now called /dev/vdb
    assert sh(hosts, name, "blkid -s LABEL -o value /dev/vdb") == "kubeops-seed", "the seed disk is /dev/vdb now"
    assert sh(hosts, name, "cat /etc/fstab") == old_fstab
    assert sh(hosts, name, "cat /etc/docker/daemon.json") == old_daemon
    assert sh(hosts, name, "findmnt -n --mountpoint %s" % MOUNT_POINT, check=False) == ""

    # the volume back: the same machine booted with it, the data intact, the same rollout finishes
    t0 = time.monotonic()
    hosts.power_cycle(name, data_disk=True, graceful=True)
    hosts.wait_ssh(name)
    TIMES["disk_missing_reattach_boot"] = time.monotonic() - t0
    assert sh(hosts, name, "cat %s/%s" % (MOUNT_POINT, disk["sentinel_path"])) == disk["sentinel"]
    assert sh(hosts, name, "findmnt -n -o UUID --mountpoint %s" % MOUNT_POINT) == uuid
    again = Playbook(cluster, hosts.write_inventory(), extra_vars, tmp_path / "disk-missing-2.log", limit=name)
    TIMES["disk_missing_rerun"] = again.seconds
    assert again.returncode == 0, again.stdout[-8000:]
    assert "resuming at phase data_disks" in again.stdout
    assert not cluster.core.read_node(name).spec.unschedulable
    assert node_record(cluster, name)["status"] == "done"
    assert sh(hosts, name, "cat /etc/fstab") == old_fstab
    assert sh(hosts, name, "docker info --format '{{.DockerRootDir}}'") == DATA_ROOT
    TIMES["disk_missing"] = time.monotonic() - started
