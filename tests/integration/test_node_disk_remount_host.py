"""The field notes' data-disk remount on a real node, done safely: a real kubelet on containerd.

The host is the session pool's containerd host (tests/testbed/hosts/launcher.py, flavour
``containerd``: Debian, systemd, a real kubelet joined by TLS bootstrap, containerd 2.x with its root
in /var/lib/containerd holding the test bed's pause and app images, nothing pullable, and an ext4
data disk on /dev/vdb carrying a sentinel file). On it run a DaemonSet pod and a static pod, as on
the field notes' nodes. The test follows the notes (kubelet stopped, every container stopped, the
disk mounted on /data by UUID, the runtime's root moved onto it, services started) through the
product's data_disk role with carry-over, and checks what the notes never did: check mode changes
nothing; a carry-over copy killed half way leaves the old root configured, in use and untouched,
and nothing uses the half copy; the next run removes that leftover and copies again; the running
containerd reports its root on the disk, the images came along (the pods start again with nothing
pulled), no container of the old root runs beside the new ones, the runtime's unit requires the
disk's mount, a second run changes nothing (and stops nothing), the mount and the new root survive
a reboot, the data disk's contents survive. Then the rolling playbook reimages the node
(action ``reimage``, its reinstall tasks calling the launcher's reimage): the Node object goes, a
fresh root boots, its kubelet bootstraps anew (a new approved CSR, a new Node object), and the
same role, as the rollout's data_disks phase, brings the node back onto its old runtime data,
without copying or formatting, before the node is returned to service and its own pods are Ready.
The reboot and the reimage also prove what the other host tests rely on: the node goes not Ready
during the reboot and comes back, a reboot keeps the root disk and a reimage does not. The test
logs the real-kubelet host's boot, reboot and reimage times (TIMES, and the pool's first boot).

Marker ``hosts``: part of the whole suite (``make test``); boots take minutes under software
emulation, so ``-m "not hosts"`` leaves it out of a quick loop and ``make test-hosts`` runs only these.
"""
import base64
import calendar
import json
import os
import shlex
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import COLLECTIONS_ROOT, REPO_ROOT
from tests.integration.hostsupport import REAL_POOL_HOSTS, NotReadyWatcher, node_ready, record_step_times
from tests.integration.test_rolling_maintenance import PLAYBOOK, node_record

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
LAUNCHER = os.path.join(REPO_ROOT, "tests", "testbed", "hosts", "launcher.py")
# the carry-over's temporary copy beside the new root (_runtime_data.COPY_SUFFIX)
COPY_LEFTOVER = os.path.join(os.path.dirname(DATA_ROOT), "." + os.path.basename(DATA_ROOT) + ".kubeops-carry-over")
BALLAST = OLD_ROOT + "/kubeops-ballast"
# the old root's content that nothing rewrites: the image blobs and the ballast (meta.db and the
# snapshots change whenever containerd runs pods)
OLD_ROOT_CONTENT = ("cd %s && find io.containerd.content.v1.content kubeops-ballast -type f -print0 | sort -z "
                    "| xargs -0 sha256sum | sha256sum" % OLD_ROOT)
KILLED = "/run/kubeops-copy-killed"
# Holds node_disk_remount's carry-over copy for KILL_COPY: a `cp` first on the module's PATH that
# stops itself (so the copy cannot end before the watcher has it, however fast the guest), then
# runs the real cp in place (same pid, same arguments).
HOLD_CP = "/usr/local/bin/cp"  # before /usr/bin in root's PATH over SSH, as in every Debian PATH
HOLD_CP_SCRIPT = """#!/bin/sh
echo $$ > /run/kubeops-cp.pid
kill -STOP $$
exec /usr/bin/cp "$@"
"""
# Kills that copy half way, on the guest (no round trip of the test's SSH in between): lets the
# held cp run in short steps (SIGCONT, 10 ms, SIGSTOP) until its temporary copy holds 4 MiB, then
# SIGKILLs it and writes what it did to KILLED.
KILL_COPY = r"""
end=$(( $(date +%%s) + 900 ))
while [ ! -s /run/kubeops-cp.pid ]; do
  if [ "$(date +%%s)" -ge "$end" ]; then echo "no cp within 900 s" > %(out)s; exit 1; fi
  sleep 0.2
done
pid=$(cat /run/kubeops-cp.pid)
while kill -0 "$pid" 2>/dev/null; do
  kb=$(du -sk %(tmp)s 2>/dev/null | cut -f 1)
  if [ "${kb:-0}" -ge 4096 ]; then
    kill -KILL "$pid"; echo "killed $pid $kb" > %(out)s; exit 0
  fi
  kill -CONT "$pid" 2>/dev/null; sleep 0.01; kill -STOP "$pid" 2>/dev/null
done
echo "missed: cp $pid ended before its copy held 4 MiB" > %(out)s; exit 1
""" % {"tmp": COPY_LEFTOVER, "out": KILLED}
TIMES = {}


def _log(msg):
    print("[test_node_disk_remount_host %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


JSON_OUTPUT = {"ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json"}


def _ansible_env():
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_ROOT, ANSIBLE_HOST_KEY_CHECKING="False",
                ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="False", **JSON_OUTPUT)


def _host_tasks(res, name, what):
    """A playbook run's task results on host ``name`` (its JSON output): {task name: [results]}."""
    tasks = {}
    try:
        for play in json.loads(res.stdout)["plays"]:
            for task in play["tasks"]:
                if name in task["hosts"]:
                    tasks.setdefault(task["task"]["name"], []).append(task["hosts"][name])
    except (ValueError, KeyError, TypeError):
        raise AssertionError("could not read the %s run (rc %d)\nstdout: %s\nstderr: %s"
                             % (what, res.returncode, res.stdout[-4000:], res.stderr[-4000:]))
    return tasks


def _task(tasks, name):
    """The last result of the task ``name`` (a role's task may be named "<role> : <name>")."""
    found = [result for key, results in tasks.items() if key == name or key.endswith(" : " + name) for result in results]
    assert found, "no task %r in the run: %s" % (name, sorted(tasks))
    return found[-1]


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

    def remounts(self, *runs, timeout=900):
        """Several node_disk_remount runs one after the other in one ansible-playbook (one start of
        Ansible and one connection, where each ad hoc run costs seconds under emulation): each run
        a dict of the module's arguments over REMOUNT_ARGS, with ``check`` and ``diff``; their
        result dicts, in order."""
        tasks = []
        for number, run in enumerate(runs):
            run = dict(run)
            check, diff = run.pop("check", False), run.pop("diff", False)
            tasks.append({"name": "remount %d" % number, "check_mode": check, "diff": diff, "ignore_errors": True,
                          "kubeops.node_maintenance.node_disk_remount": dict(REMOUNT_ARGS, device=self.data_disk["device"], **run)})
        playbook = os.path.join(self.tmp, "remounts.yml")
        with open(playbook, "w") as handle:
            json.dump([{"hosts": self.name, "gather_facts": False, "tasks": tasks}], handle)
        res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", self.inventory,
                              playbook], capture_output=True, text=True, env=_ansible_env(), timeout=timeout, check=False)
        done = _host_tasks(res, self.name, "node_disk_remount")
        results = []
        for number in range(len(runs)):
            assert "remount %d" % number in done, (number, res.stdout[-4000:], res.stderr[-2000:])
            results.append(dict({"failed": False}, **done["remount %d" % number][0]))
        return results

    def run_data_disk_role(self, timeout=1200):
        """The product's data_disk role on the host, as the rollout's data_disks phase runs it:
        the run (its return code and output), its task results and its seconds."""
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
        return res, _host_tasks(res, self.name, "data_disk"), time.monotonic() - started

    def data_disk_role(self, timeout=1200):
        """The data_disk role's run, successful: the remount task's result, the role's
        data_disk_runtime_data and the run's seconds."""
        res, tasks, seconds = self.run_data_disk_role(timeout)
        assert res.returncode == 0, json.dumps(tasks, indent=1)[-6000:]
        return _task(tasks, ROLE_TASK)["results"][0], _task(tasks, "What moved")["data_disk_runtime_data"], seconds

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
    # the real-kubelet host's times: its first boot (the pool's), reboot and reimage (this test's)
    _log("times (s): %s; host pool: %s" % (json.dumps({k: round(v) for k, v in TIMES.items()}), host_pool.timings))
    record_step_times("test_node_disk_remount_host", TIMES, host_pool=dict(host_pool.timings))


# --- the node's own pods: a DaemonSet pod and a static pod ------------------------------------------------

def _pod_spec(node, host_dir):
    return {"nodeSelector": {"kubernetes.io/hostname": node}, "terminationGracePeriodSeconds": 2,
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": APP_IMAGE, "imagePullPolicy": "IfNotPresent",
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                               "periodSeconds": 2, "failureThreshold": 2},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}}]}


def _static_pod(host, namespace):
    """The static pod's manifest (kubelet's /etc/kubernetes/manifests): the app image, as the DaemonSet's."""
    static = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": STATIC_POD, "namespace": namespace},
              "spec": _pod_spec(host.name, "/var/lib/kubeops-static")}
    del static["spec"]["nodeSelector"]
    return json.dumps(static)


def _start_node_pods(host, namespace):
    """A DaemonSet of the app image on the node, and the same as a static pod (kubelet's manifest)."""
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": namespace},
                 "spec": {"selector": {"matchLabels": {"app": "node-agent"}},
                          "template": {"metadata": {"labels": {"app": "node-agent"}},
                                       "spec": _pod_spec(host.name, "/var/lib/kubeops-node-agent")}}}
    host.cluster.kubectl("apply", "-f", "-", input=json.dumps(daemonset))
    host.sh("cat > /etc/kubernetes/manifests/%s.json <<'EOF'\n%s\nEOF" % (STATIC_POD, _static_pod(host, namespace)))


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


def _restarted_pods(host, before, timeout=300):
    """Wait until the node's two pods run again in new sandboxes (none of ``before``), their
    containers running (the pods' Ready in the API may still be the one from before the stop);
    returns the sandboxes."""
    deadline = time.monotonic() + timeout
    sandboxes = running = None
    while time.monotonic() < deadline:
        sandboxes = _sandboxes(host)
        running = host.sh("crictl ps -q --state running | wc -l")
        if len(sandboxes) == 2 and not set(sandboxes) & set(before) and running == "2":
            return sandboxes
        time.sleep(2)
    raise AssertionError("the node's pods did not start again in new sandboxes in %ds: sandboxes %s (before: %s), "
                         "%s containers running" % (timeout, sandboxes, before, running))


def _approved_csrs(host):
    """Names of the approved and issued client certificate requests a bootstrap token made for
    the node's kubelet (the certificate's subject: CN=system:node:<node>)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    names = []
    for csr in json.loads(host.cluster.kubectl("get", "csr", "-o", "json").stdout)["items"]:
        status, spec = csr.get("status", {}), csr["spec"]
        if (spec.get("signerName") != "kubernetes.io/kube-apiserver-client-kubelet"
                or not spec.get("username", "").startswith("system:bootstrap:") or not status.get("certificate")
                or not any(c["type"] == "Approved" for c in status.get("conditions", []))):
            continue
        cert = x509.load_pem_x509_certificate(base64.b64decode(status["certificate"]))
        if [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["system:node:" + host.name]:
            names.append(csr["metadata"]["name"])
    return sorted(names)


class NodeSamples(threading.Thread):
    """Samples the node's UID and Ready condition every second while a rollout runs: when the
    Node object of another UID than ``uid`` first shows up, and first is Ready (wall clock)."""

    def __init__(self, host, uid):
        super().__init__(daemon=True)
        self.host, self.uid = host, uid
        self.gone_at = self.registered_at = self.ready_at = None
        self._stop_event = threading.Event()

    def run(self):
        from kubernetes.client import ApiException

        while not self._stop_event.is_set():
            try:
                node = self.host.cluster.core.read_node(self.host.name)
            except ApiException as exc:
                node = None
                if exc.status == 404 and self.gone_at is None:
                    self.gone_at = time.time()
            except Exception:  # noqa: BLE001 - an API hiccup is no sample
                node = None
            if node is not None and node.metadata.uid != self.uid:
                self.registered_at = self.registered_at or time.time()
                ready = [c.status for c in node.status.conditions or [] if c.type == "Ready"]
                if ready == ["True"] and self.ready_at is None:
                    self.ready_at = time.time()
            self._stop_event.wait(1)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self._stop_event.set()
        self.join(10)
        return False


def _reimage_tasks(host, namespace, fresh_root_file):
    """The rollout's reinstall tasks (node_maintenance_reimage_tasks) for the test host: the test
    bed's reimage from the controller (QEMU killed at once, a fresh root from the image, the same
    data disk and seed), then what the node's provisioning would put back (the static pod's
    manifest); on the way it keeps, for the test, what the fresh root holds and when it answered."""
    fresh_root = ("import json, os\n"
                  "def read(path):\n"
                  "    try:\n"
                  "        with open(path) as handle:\n"
                  "            return handle.read()\n"
                  "    except OSError:\n"
                  "        return None\n"
                  "print(json.dumps({'config': read(%r), 'fstab': read('/etc/fstab'), 'machine_id': read('/etc/machine-id'),\n"
                  "                  'dropin': os.path.exists('/etc/systemd/system/containerd.service.d/kubeops-data-disk.conf'),\n"
                  "                  'marker': os.path.exists('/root/kubeops-root-marker')}))\n" % CONFIG)
    tasks = [
        {"name": "Reinstall the host: the test bed's reimage (a fresh root from the image, the same data disk and seed)",
         "ansible.builtin.command": {"argv": [sys.executable, LAUNCHER, "--state", host.launcher.state, "reimage",
                                              "--force", "{{ inventory_hostname }}"]},
         "delegate_to": "localhost", "changed_when": True},
        {"name": "Wait for the reinstalled host", "ansible.builtin.wait_for_connection": {"timeout": 900}},
        {"name": "When it answered", "ansible.builtin.set_fact": {"__test_ssh_at": "{{ now().timestamp() }}"}},
        {"name": "What the fresh root holds", "ansible.builtin.command": {"argv": ["python3", "-c", fresh_root]},
         "register": "__test_fresh_root", "changed_when": False},
        {"name": "Keep it for the test", "delegate_to": "localhost", "ansible.builtin.copy": {
            "dest": fresh_root_file, "mode": "0600",
            "content": "{{ __test_fresh_root.stdout | from_json | combine({'ssh_at': __test_ssh_at | float}) | to_json }}"}},
        {"name": "The node's static pod, as the node's provisioning puts it back", "ansible.builtin.copy": {
            "dest": "/etc/kubernetes/manifests/%s.json" % STATIC_POD, "mode": "0644", "content": _static_pod(host, namespace)}},
    ]
    path = os.path.join(host.tmp, "reimage-tasks.yml")
    with open(path, "w") as handle:
        json.dump(tasks, handle, indent=1)
    return path


def _look_at_the_disk(host, command):
    """``command`` run in the data disk's root, the disk mounted read-only elsewhere for the look."""
    look = "/run/kubeops-look"
    return host.sh("set -e; mkdir -p %s; mount -o ro %s %s; trap 'umount %s' EXIT; (cd %s && %s)"
                   % (look, host.data_disk["device"], look, look, look, command))


def _kill_the_copy_half_way(host, namespace, images, digests, before):
    """The data_disk role whose carry-over copy is SIGKILLed half way: the run fails saying so, and
    leaves the old root configured, in use and untouched; nothing uses the half copy, which stays
    on the disk for the next run to remove. Returns the node's sandboxes after it."""
    started = time.monotonic()
    # a ballast that makes the copy last (and its result checkable): part of the old root from now on
    ballast = host.sh("cat $(command -v kubelet) $(command -v containerd) | head -c 32M > %s && sync && "
                      "sha256sum < %s" % (BALLAST, BALLAST))
    content = host.sh(OLD_ROOT_CONTENT)
    host.sh("rm -f %s /run/kubeops-cp.pid; cat > %s <<'EOF'\n%sEOF\nchmod 755 %s; cat > /run/kubeops-kill-copy.sh "
            "<<'EOF'\n%s\nEOF\nsetsid -f sh /run/kubeops-kill-copy.sh >/dev/null 2>&1 </dev/null"
            % (KILLED, HOLD_CP, HOLD_CP_SCRIPT, HOLD_CP, KILL_COPY))
    try:
        res, tasks, TIMES["killed_copy_run"] = host.run_data_disk_role()
    finally:
        host.sh("rm -f %s /run/kubeops-cp.pid" % HOLD_CP)
    killed = host.sh("cat %s" % KILLED, check=False)
    assert killed.startswith("killed "), "the copy was not killed half way (%s); the run: %s" % (
        killed, json.dumps(tasks, indent=1)[-4000:])
    assert res.returncode != 0, "a run whose copy was killed must fail"
    failure = _task(tasks, "Every data disk is remounted")
    message = failure["msg"]
    assert failure["failed"] and "carrying %s over to %s failed" % (OLD_ROOT, DATA_ROOT) in message, message
    assert "put back as they were" in message and "re-run" in message, message
    remount = _task(tasks, ROLE_TASK)["results"][0]
    assert remount["failed"] and remount["mounted"] is False and remount["changes"]["runtime_data"]["pods_stopped"] == 2, remount
    # the old root is still configured: fstab and config.toml as they were, the disk unmounted
    assert host.file_digests() == digests
    assert host.sh("findmnt -n --mountpoint %s" % MOUNT_POINT, check=False) == ""
    # ... and in use: the role started containerd and kubelet again on it, the node's pods are back
    assert host.sh("systemctl is-active containerd.service kubelet.service").split() == ["active", "active"]
    assert json.loads(host.sh("crictl info"))["config"]["containerdRootDir"] == OLD_ROOT
    host.node_ready(True)
    after = _restarted_pods(host, before)
    _node_pods_ready(host, namespace)
    layers = host.sh("findmnt -n -t overlay -o OPTIONS", check=False).splitlines()
    assert layers and all(OLD_ROOT + "/" in o and DATA_ROOT not in o for o in layers), layers
    # ... and untouched: the same images, the same content
    assert host.sh("crictl images -q | sort") == images
    assert host.sh(OLD_ROOT_CONTENT) == content and host.sh("sha256sum < %s" % BALLAST) == ballast
    # nothing uses the half copy: no root on the disk, only the leftover, smaller than the old root
    old_kb = int(host.sh("du -sk %s | cut -f 1" % OLD_ROOT))
    on_disk = _look_at_the_disk(host, "ls -A; du -sk %s | cut -f 1" % os.path.basename(COPY_LEFTOVER)).split()
    assert os.path.basename(DATA_ROOT) not in on_disk[:-1] and os.path.basename(COPY_LEFTOVER) in on_disk[:-1], on_disk
    assert 4096 <= int(on_disk[-1]) < old_kb, (on_disk, old_kb)
    TIMES["killed_copy"] = time.monotonic() - started
    return after, ballast


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


def test_field_notes_remount_end_to_end(test_host, namespace, run_playbook, tmp_path):
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
    # (and, in the same ansible-playbook, a real run with kubelet still running is refused: it
    # would start the pods again)
    digests = host.file_digests()
    checked, not_carried, refused = host.remounts(dict(check=True, diff=True), dict(check=True, carry_over=False), {})
    assert not checked["failed"], checked.get("msg")
    assert checked["changed"] is True and checked["mount_action"] == "mount"
    assert checked["changes"]["runtime_data"]["outcome"] == "copy"
    assert checked["changes"]["runtime_data"]["images"] == len(images.split())
    assert not_carried["changes"]["runtime_data"]["images_to_pull"] == len(images.split())
    assert refused["failed"] and "kubelet.service is running" in refused["msg"], refused
    assert host.file_digests() == digests and _sandboxes(host) == before
    assert host.sh("findmnt -n --mountpoint %s" % MOUNT_POINT, check=False) == ""

    # the carry-over copy killed half way: the old root stays configured, in use and untouched
    before, ballast = _kill_the_copy_half_way(host, namespace, images, digests, before)

    # the real run: the data_disk role (kubelet stopped, pods and containerd stopped, copy, remount),
    # which first removes the half copy the killed run left
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
    assert data["notes"] == ["removed %s, the unfinished copy of an earlier run" % COPY_LEFTOVER], data
    assert len(result["backup_files"]) == 2  # fstab and config.toml; the drop-in is new
    assert 'root = "%s"' % DATA_ROOT in host.sh("cat %s" % CONFIG)
    assert host.sh("awk '$2 == \"%s\"' /etc/fstab | wc -l" % MOUNT_POINT) == "1"
    on_disk = host.sh("ls -A %s" % MOUNT_POINT).split()
    assert "containerd" in on_disk and not [n for n in on_disk if n.startswith(".containerd.")], on_disk
    # the old root is kept, and the copy is whole (the ballast too)
    assert host.sh("test -d %s/io.containerd.content.v1.content && echo kept" % OLD_ROOT) == "kept"
    assert host.sh("sha256sum < %s/%s" % (DATA_ROOT, os.path.basename(BALLAST))) == ballast

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
    checked, again = host.remounts(dict(check=True), {})
    assert checked["changed"] is False
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
    TIMES["reboot_to_ssh"] = time.monotonic() - started  # the module: down, back, a new boot ID
    assert not rebooted["failed"] and rebooted["rebooted"], rebooted.get("msg", rebooted)
    if watcher.first_not_ready is None:  # seen not Ready only after the module returned
        host.node_ready(False, timeout=120)
    host.node_ready(True)
    TIMES["reboot_to_node_ready"] = time.monotonic() - started
    assert host.sh("cat /proc/sys/kernel/random/boot_id") != boot_id
    assert host.sh("cat /root/kubeops-root-marker") == "kept"
    _node_pods_ready(host, namespace)
    _assert_on_data_disk(host, uuid, images)
    assert _node_pods_ready(host, namespace)["daemonset"] == after["daemonset"]  # the same pod, restarted
    assert host.remount()["changed"] is False
    TIMES["reboot"] = time.monotonic() - started

    # reimage through the product: the rolling playbook's reimage action drains the node, removes its
    # Node object and runs the reinstall tasks (the test bed's reimage, from the controller: a fresh
    # root with config.toml on /var/lib/containerd again, no fstab line, no drop-in, no marker, a new
    # machine ID, a kubelet without credentials), waits for the node to re-join by TLS bootstrap (a
    # new CSR, a new Node object), keeps it cordoned, and its data_disks phase brings the same data
    # disk back with the root on it, as it is (not formatted, nothing copied, nothing pulled); the
    # node is returned to service once its own pods are Ready.
    started = time.monotonic()
    machine_id = host.sh("cat /etc/machine-id")
    old_node = host.cluster.core.read_node(host.name)
    csrs = _approved_csrs(host)
    assert csrs, "the first boot's bootstrap CSR is not seen: the check for a new one would prove nothing"
    fresh_root_file = os.path.join(host.tmp, "fresh-root.json")
    reports = tmp_path / "reports"
    extra_vars = {
        "node_maintenance_hosts": "testbed_hosts",
        "node_maintenance_rollout_id": "reimage-1",
        "node_maintenance_action": "reimage",
        "node_maintenance_reimage_tasks": _reimage_tasks(host, namespace, fresh_root_file),
        "node_maintenance_reimage_rejoin_timeout": 900,
        "node_maintenance_data_disks": [{"device": host.data_disk["device"], "path": MOUNT_POINT, "fstype": "ext4",
                                         "opts": DISK_OPTS, "runtime": "containerd", "data_root": DATA_ROOT,
                                         "carry_over": True}],
        "node_maintenance_lock_namespace": namespace,
        "node_maintenance_report_dir": str(reports),
        "node_maintenance_drain_timeout": 300,
        "node_maintenance_ready_timeout": 900,
        "node_maintenance_health_timeout": 420,
    }
    with NodeSamples(host, old_node.metadata.uid) as samples:
        rollout = run_playbook(PLAYBOOK, extra_vars=extra_vars, inventory=host.inventory, env=JSON_OUTPUT)
    TIMES["reimage_rollout"] = time.monotonic() - started
    tasks = _host_tasks(rollout, host.name, "reimage rollout")
    assert rollout.returncode == 0, (json.dumps(tasks, indent=1)[-6000:], rollout.stderr[-3000:])
    info = host.launcher.info(host.name)
    with open(fresh_root_file) as handle:
        fresh = json.load(handle)
    assert 'root = "%s"' % OLD_ROOT in fresh["config"]
    assert MOUNT_POINT not in fresh["fstab"]
    assert fresh["dropin"] is False and fresh["marker"] is False, fresh
    assert fresh["machine_id"].strip() != machine_id
    # a new Node object, registered by the reinstalled host's kubelet after its bootstrap CSR
    node = host.cluster.core.read_node(host.name)
    assert node.metadata.uid != old_node.metadata.uid
    assert None not in (samples.gone_at, samples.registered_at, samples.ready_at), vars(samples)
    assert samples.gone_at < samples.registered_at <= samples.ready_at, vars(samples)
    assert calendar.timegm(node.metadata.creation_timestamp.utctimetuple()) >= int(info["reimaged"]) - 1
    TIMES.update(reimage_to_ssh=fresh["ssh_at"] - info["started"], reimage_to_node_ready=samples.ready_at - info["started"])
    assert set(_approved_csrs(host)) - set(csrs), "the reimaged host's kubelet joined without a new bootstrap CSR"
    # the data_disks phase: the same disk, not formatted, its root used as it is
    result = _task(tasks, ROLE_TASK)["results"][0]
    moved = [result["changes"]["runtime_data"]]
    assert result["changed"] is True and result["uuid"] == uuid and result["formatted"] is False
    assert moved[0]["outcome"] == "kept" and moved[0]["images_to_pull"] is None, moved  # the disk's root, as it is
    host.node_ready(True)
    _node_pods_ready(host, namespace)
    _assert_on_data_disk(host, uuid, images)
    host.sh("test -e %s/kubeops-before-reimage" % DATA_ROOT)
    assert _pulls(host, namespace) == []
    assert host.remount()["changed"] is False
    # back in service: uncordoned, the maintenance taints gone, the rollout done
    assert not node.spec.unschedulable
    assert not [t for t in node.spec.taints or [] if t.key.startswith("maintenance.kubeops.io")], node.spec.taints
    assert node_record(host.cluster, host.name)["status"] == "done"
    report = json.loads((reports / "reimage-1" / "report.json").read_text())
    assert [(n["node"], n["status"]) for n in report["nodes"]] == [(host.name, "done")], report["nodes"]
    assert node_ready(host.cluster.core, host.name) == "True"
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
