"""The field notes' data-disk remount on a real node, done safely: a real kubelet on containerd.

The host is the session pool's containerd host (tests/testbed/hosts/launcher.py, flavour
``containerd``: Debian, systemd, a real kubelet joined by TLS bootstrap, containerd 2.x with its root
in /var/lib/containerd holding the test bed's pause and app images, nothing pullable, and an ext4
data disk on /dev/vdb carrying a sentinel file). On it run a DaemonSet pod and a static pod, as on
the field notes' nodes. The test follows the notes (kubelet stopped, every container stopped, the
disk mounted on /data by UUID, the runtime's root moved onto it, services started) through the
product's data_disk role with carry-over, and checks what the notes never did: check mode changes
nothing, the running containerd reports its root on the disk, the images came along (the pods
start again with nothing pulled), no container of the old root runs beside the new ones, the
runtime's unit requires the disk's mount, a second run changes nothing (and stops nothing), the
mount and the new root survive a reboot, the data disk's contents survive, and after a reimage
(fresh root, kubelet bootstrapped anew, same data disk) the same role brings the node back onto its
old runtime data, without copying or formatting.
The reboot and the reimage also prove what the other host tests rely on: the node goes not Ready
during the reboot and comes back, a reboot keeps the root disk and a reimage does not.

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
from tests.integration.hostsupport import REAL_POOL_HOSTS, NotReadyWatcher

pytestmark = [pytest.mark.integration, pytest.mark.hosts]

HOST, = REAL_POOL_HOSTS
APP_IMAGE = "kubeops.test/app:v1"
MOUNT_POINT = "/data"
OLD_ROOT = "/var/lib/containerd"
DATA_ROOT = "/data/containerd"
CONFIG = "/etc/containerd/config.toml"
DISK_OPTS = "noatime,acl,user_xattr,nofail,x-systemd.device-timeout=10s"
REMOUNT_ARGS = {
    "path": MOUNT_POINT,
    "fstype": "ext4",
    "opts": DISK_OPTS,
    "runtime": "containerd",
    "data_root": DATA_ROOT,
    "carry_over": True,
    "backup": True,
}
ROLE_TASK = "Mount the data disk and point the runtime at it"
STATIC_POD = "kubeops-static"
TIMES = {}


def _log(msg):
    print("[test_node_disk_remount_host %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def _ansible_env():
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_HOST_KEY_CHECKING="False",
                ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_DEPRECATION_WARNINGS="False")


class HostUnderTest:
    """One launcher-made host, with Ansible pointed at it through the launcher's inventory."""

    def __init__(self, launcher, name, cluster, tmp):
        self.launcher = launcher
        self.name = name
        self.cluster = cluster
        self.tmp = tmp

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
        res = subprocess.run(cmd, capture_output=True, text=True, env=_ansible_env(), timeout=timeout, check=False)
        try:
            result = json.loads(res.stdout)["plays"][0]["tasks"][0]["hosts"][self.name]
        except (ValueError, KeyError, IndexError):
            raise AssertionError("could not read the result of %s on %s (rc %d)\nstdout: %s\nstderr: %s"
                                 % (module, self.name, res.returncode, res.stdout[-4000:], res.stderr[-4000:]))
        result.setdefault("failed", False)
        return result

    def remount(self, check=False, diff=False, **overrides):
        args = dict(REMOUNT_ARGS, device=self.data_disk["device"], **overrides)
        return self.ansible("kubeops.node_maintenance.node_disk_remount", args, check=check, diff=diff)

    def data_disk_role(self, timeout=1200):
        """The product's data_disk role on the host, as the rollout's data_disks phase runs it:
        the remount task's result and the role's data_disk_runtime_data."""
        playbook = os.path.join(self.tmp, "data_disk.yml")
        with open(playbook, "w") as handle:
            json.dump([{"hosts": self.name, "gather_facts": False, "tasks": [
                {"name": "The data disk", "ansible.builtin.include_role": {"name": "kubeops.node_maintenance.data_disk"},
                 "vars": {"data_disk_carry_over": True, "data_disk_disks": [
                     {"device": self.data_disk["device"], "path": MOUNT_POINT, "fstype": "ext4", "opts": DISK_OPTS,
                      "runtime": "containerd", "data_root": DATA_ROOT}]}},
                {"name": "What moved", "ansible.builtin.debug": {"var": "data_disk_runtime_data"}}]}], handle)
        started = time.monotonic()
        res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory,
                              playbook], capture_output=True, text=True, env=_ansible_env(), timeout=timeout, check=False)
        seconds = time.monotonic() - started
        try:
            tasks = {t["task"]["name"]: t["hosts"][self.name] for t in json.loads(res.stdout)["plays"][0]["tasks"]
                     if self.name in t["hosts"]}
        except (ValueError, KeyError, IndexError):
            raise AssertionError("could not read the data_disk run (rc %d)\nstdout: %s\nstderr: %s"
                                 % (res.returncode, res.stdout[-4000:], res.stderr[-4000:]))
        assert res.returncode == 0, json.dumps(tasks, indent=1)[-6000:]

        def task(name):  # a role's task may be named "<role> : <name>"
            found = [result for key, result in tasks.items() if key == name or key.endswith(" : " + name)]
            assert found, "no task %r in the run: %s" % (name, sorted(tasks))
            return found[-1]

        return task(ROLE_TASK)["results"][0], task("What moved")["data_disk_runtime_data"], seconds

    def file_digests(self):
        return self.sh("sha256sum /etc/fstab %s" % CONFIG)

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
def test_host(cluster, host_pool, tmp_path_factory):
    """The session's containerd host, as booted."""
    with host_pool.lend(flavour="containerd") as launcher:
        host = HostUnderTest(launcher, HOST, cluster, str(tmp_path_factory.mktemp("remount-host")))
        host.node_ready(True)
        yield host
    _log("times: %s" % json.dumps({k: round(v) for k, v in TIMES.items()}))


# --- the node's own pods: a DaemonSet pod and a static pod ------------------------------------------------

def _pod_spec(node, host_dir):
    return {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 2,
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": APP_IMAGE, "imagePullPolicy": "IfNotPresent",
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                               "periodSeconds": 2, "failureThreshold": 2},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}}]}


def _start_node_pods(host, namespace):
    """A DaemonSet of the app image on the node, and the same as a static pod (kubelet's manifest)."""
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": namespace},
                 "spec": {"selector": {"matchLabels": {"app": "node-agent"}},
                          "template": {"metadata": {"labels": {"app": "node-agent"}},
                                       "spec": _pod_spec(host.name, "/var/lib/kubeops-node-agent")}}}
    host.cluster.kubectl("apply", "-f", "-", input=json.dumps(daemonset))
    static = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": STATIC_POD, "namespace": namespace},
              "spec": _pod_spec(host.name, "/var/lib/kubeops-static")}
    del static["spec"]["nodeSelector"]
    host.sh("cat > /etc/kubernetes/manifests/%s.json <<'EOF'\n%s\nEOF" % (STATIC_POD, json.dumps(static)))


def _node_pods_ready(host, namespace, timeout=420):
    """Wait for the DaemonSet's pod and the static pod's mirror to be Ready on the node; returns
    {kind: pod UID}."""
    deadline = time.monotonic() + timeout
    ready = {}
    while time.monotonic() < deadline:
        pods = host.cluster.core.list_namespaced_pod(namespace).items
        ready = {}
        for pod in pods:
            if pod.spec.node_name != host.name or pod.metadata.deletion_timestamp:
                continue
            ok = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            kind = "static" if pod.metadata.name == "%s-%s" % (STATIC_POD, host.name) else \
                "daemonset" if (pod.metadata.labels or {}).get("app") == "node-agent" else None
            if kind and ok:
                ready[kind] = pod.metadata.uid
        if set(ready) == {"static", "daemonset"}:
            return ready
        time.sleep(2)
    raise AssertionError("the node's own pods are not Ready on %s after %ds: %s" % (host.name, timeout, ready))


def _pulls(host, namespace):
    """Events of image pulls (or failed ones) in the namespace: none may happen, nothing is pullable."""
    events = host.cluster.core.list_namespaced_event(namespace).items
    return ["%s %s: %s" % (e.reason, e.involved_object.name, e.message) for e in events
            if e.reason in ("Pulling", "ErrImagePull", "ImagePullBackOff", "Failed")]


def _sandboxes(host):
    """The ready pod sandboxes (crictl: id, pod name)."""
    out = json.loads(host.sh("crictl pods --state ready -o json"))
    return sorted((p["id"], p["metadata"]["name"]) for p in out["items"])


def _assert_on_data_disk(host, uuid, images):
    source = host.sh("findmnt -n -o SOURCE,FSTYPE,UUID --mountpoint %s" % MOUNT_POINT).split()
    assert source == [host.data_disk["device"], "ext4", uuid], source
    # the running daemon's root, not the file's
    assert json.loads(host.sh("crictl info"))["config"]["containerdRootDir"] == DATA_ROOT
    assert host.sh("crictl images -q | sort") == images, "the images did not come along"
    # every container's root filesystem is on the new root: no container of the old one runs
    layers = host.sh("findmnt -n -t overlay -o OPTIONS", check=False).splitlines()
    assert layers and all(DATA_ROOT + "/" in o and OLD_ROOT + "/" not in o for o in layers), layers
    assert host.sh("pgrep -c '^containerd-shim'") == str(len(_sandboxes(host)))
    # the unit requires the disk's mount: a boot without it does not start containerd
    assert host.sh("systemctl show -p RequiresMountsFor --value containerd.service") == MOUNT_POINT
    assert "data.mount" in host.sh("systemctl show -p Requires -p After --value containerd.service").split()
    sentinel = host.sh("cat %s" % shlex.quote(os.path.join(MOUNT_POINT, host.data_disk["sentinel_path"])))
    assert sentinel == host.data_disk["sentinel"]


def test_field_notes_remount_end_to_end(test_host, namespace):
    host = test_host
    started = time.monotonic()
    assert 'root = "%s"' % OLD_ROOT in host.sh("cat %s" % CONFIG)
    assert host.sh("findmnt -n --mountpoint %s" % MOUNT_POINT, check=False) == ""
    _start_node_pods(host, namespace)
    _node_pods_ready(host, namespace)
    images = host.sh("crictl images -q | sort")
    assert len(images.split()) >= 2, images  # pause and app, imported when the image was built
    before = _sandboxes(host)
    assert len(before) == 2, before

    # check mode, with kubelet and the pods running: says what it would do, stops, copies, writes
    # and mounts nothing
    digests = host.file_digests()
    checked = host.remount(check=True, diff=True)
    assert not checked["failed"], checked
    assert checked["changed"] is True and checked["mount_action"] == "mount"
    assert checked["changes"]["runtime_data"]["outcome"] == "copy"
    assert checked["changes"]["runtime_data"]["images"] == len(images.split())
    assert host.remount(check=True, carry_over=False)["changes"]["runtime_data"]["images_to_pull"] == len(images.split())
    assert host.file_digests() == digests and _sandboxes(host) == before
    assert host.sh("findmnt -n --mountpoint %s" % MOUNT_POINT, check=False) == ""
    # and a real run with kubelet still running is refused: it would start the pods again
    refused = host.remount()
    assert refused["failed"] and "kubelet.service is running" in refused["msg"], refused
    assert host.file_digests() == digests and _sandboxes(host) == before

    # the real run: the data_disk role (kubelet stopped, pods and containerd stopped, copy, remount)
    result, moved, TIMES["role"] = host.data_disk_role()
    uuid = result["uuid"]
    assert result["changed"] is True
    assert result["fstab_line"].split() == ["UUID=%s" % uuid, MOUNT_POINT, "ext4", DISK_OPTS, "0", "2"]
    assert result["mounted"] is True and result["systemd_reloaded"] is True
    assert result["runtime_restart_needed"] is True
    assert result["changes"]["runtime_config"]["previous_data_root"] == OLD_ROOT
    data = result["changes"]["runtime_data"]
    assert moved == [data]
    assert (data["outcome"], data["images_to_pull"], data["units_stopped"]) == ("copied", 0, ["containerd.service"]), data
    assert data["pods_stopped"] == 2 and data["root_in_use"] == OLD_ROOT, data
    assert len(result["backup_files"]) == 2  # fstab and config.toml; the drop-in is new
    assert 'root = "%s"' % DATA_ROOT in host.sh("cat %s" % CONFIG)
    assert host.sh("awk '$2 == \"%s\"' /etc/fstab | wc -l" % MOUNT_POINT) == "1"
    on_disk = host.sh("ls -A %s" % MOUNT_POINT).split()
    assert "containerd" in on_disk and not [n for n in on_disk if n.startswith(".containerd.")], on_disk
    # the old root is kept
    assert host.sh("test -d %s/io.containerd.content.v1.content && echo kept" % OLD_ROOT) == "kept"

    host.node_ready(True)
    after = _node_pods_ready(host, namespace)
    _assert_on_data_disk(host, uuid, images)
    assert not set(_sandboxes(host)) & set(before), "a sandbox of the old root is still there"
    assert _pulls(host, namespace) == []
    host.sh("touch %s/kubeops-before-reimage" % DATA_ROOT)
    TIMES["first_move"] = time.monotonic() - started

    # the kubernetes.core way: check mode again and a second run both report no change, and stop
    # nothing (the root does not move): the pods run on
    running = _sandboxes(host)
    assert host.remount(check=True)["changed"] is False
    again = host.remount()
    assert again["changed"] is False and again["mount_action"] == "none", again
    assert again["changes"]["runtime_data"]["outcome"] == "none" and again["changes"]["dropins"][0]["changed"] is False
    assert _sandboxes(host) == running

    # a reboot keeps it: systemd mounts /data from the fstab line before containerd starts (the
    # drop-in), containerd starts on the disk, the node's pods come back. It also proves the test
    # bed: ansible.builtin.reboot works unchanged, the node goes not Ready and comes back, the
    # root disk is kept.
    started = time.monotonic()
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
    _node_pods_ready(host, namespace)
    _assert_on_data_disk(host, uuid, images)
    assert _node_pods_ready(host, namespace)["daemonset"] == after["daemonset"]  # the same pod, restarted
    assert host.remount()["changed"] is False
    TIMES["reboot"] = time.monotonic() - started

    # reimage: fresh root (config.toml on /var/lib/containerd again, no fstab line, no drop-in, no
    # marker, a new machine ID, a kubelet that bootstraps again), same data disk with the root on it
    started = time.monotonic()
    machine_id = host.sh("cat /etc/machine-id")
    host.launcher.reimage(host.name)
    host.launcher.wait_ssh(host.name)
    assert 'root = "%s"' % OLD_ROOT in host.sh("cat %s" % CONFIG)
    assert MOUNT_POINT not in host.sh("cat /etc/fstab")
    assert host.sh("test -e /etc/systemd/system/containerd.service.d/kubeops-data-disk.conf && echo yes || echo no") == "no"
    assert host.sh("test -e /root/kubeops-root-marker && echo present || echo absent") == "absent"
    assert host.sh("cat /etc/machine-id") != machine_id
    host.node_ready(True)
    _start_node_pods(host, namespace)  # the static pod's manifest, as the node's provisioning puts it back
    result, moved, TIMES["role_after_reimage"] = host.data_disk_role()
    assert result["changed"] is True and result["uuid"] == uuid and result["formatted"] is False
    assert moved[0]["outcome"] == "kept" and moved[0]["images_to_pull"] is None, moved  # the disk's root, as it is
    host.node_ready(True)
    _node_pods_ready(host, namespace)
    _assert_on_data_disk(host, uuid, images)
    host.sh("test -e %s/kubeops-before-reimage" % DATA_ROOT)
    assert _pulls(host, namespace) == []
    assert host.remount()["changed"] is False
    TIMES["reimage"] = time.monotonic() - started
    host.sh("rm -f /etc/kubernetes/manifests/%s.json" % STATIC_POD)


def test_wrong_fstype_changes_nothing_on_a_real_disk(test_host):
    """A real blkid says ext4; asking for xfs must fail with what was found and touch nothing."""
    host = test_host
    digests = host.file_digests()
    result = host.ansible("kubeops.node_maintenance.node_disk_remount",
                          dict(REMOUNT_ARGS, device=host.data_disk["device"], fstype="xfs"))
    assert result["failed"] and "holds ext4" in result["msg"], result
    assert host.file_digests() == digests
