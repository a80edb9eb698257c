"""Start, reboot, reimage and stop the QEMU test hosts that act as Kubernetes nodes.

Each host is a Debian bookworm guest under QEMU software emulation (TCG) booted from the cached
image of build-image.sh, with three disks:

  /dev/vda  root: a qcow2 overlay over the cached image (thrown away by ``reimage``)
  /dev/vdb  data: a qcow2 disk with an ext4 filesystem holding a sentinel file (kept by ``reimage``)
  /dev/vdc  seed: a small read-only ext4 disk with the host's identity: node name, the launcher's
            SSH public key, and what its kubelet needs to join (applied at every boot)

Two flavours of host (``--flavour``, chosen when a host is created; build-image.sh builds each):

  docker      (default) Docker 20.10 and kwok as the kubelet; the seed carries the kubelet
              kubeconfig (the cluster's admin credentials), kwok and its stages
  containerd  a real kubelet on containerd 2.x with the CNI bridge on a subnet of its own
              (``pod_cidr`` in host.json); the seed carries a bootstrap token kubeconfig and the
              cluster's CA, and the kubelet joins by TLS bootstrap (again after every reimage).
              Its images (``PAUSE_IMAGE``, ``APP_IMAGE``) are in the image: pods use them with
              ``imagePullPolicy: IfNotPresent`` (nothing can be pulled)

Networking is QEMU user mode in restricted mode (the guest reaches nothing but what is forwarded):
SSH on 127.0.0.1:<free port> -> guest:22, and the guest's 10.0.2.100:6443 -> the API server on
the host's loopback (a relay process per connection). A guest ``reboot`` resets the VM inside the
same QEMU process, which boots the same kernel again: no supervisor loop needed.

State lives in one directory (``--state``): a key pair, ``inventory.yml`` for Ansible, and a
folder per host with its disks, console log, QEMU pid file and ``host.json``. Processes are
stopped by the pid QEMU wrote, after checking it still is that host's QEMU.

A running host can be saved (``snapshot``: memory, devices and disks) and brought back to that
moment (``restore``) in seconds, where a boot takes minutes under emulation; the test suite's
host pool uses that to hand the same booted hosts to one test module after another.

Usage: launcher.py --state DIR up NAME [NAME...] --kubeconfig FILE [--flavour docker|containerd]
                   [--bootstrap-kubeconfig FILE] [--wait ssh|node|none]
       launcher.py --state DIR {stop,start,reimage,reset,destroy,snapshot,restore,status,ssh} ...
Run as root only for the image build (first ``up``); the hosts themselves need no privileges.
"""
import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
TESTBED = os.path.dirname(HERE)
GUEST_API_ADDRESS = "10.0.2.100"
GUEST_API_PORT = 6443
GUEST_IP = "10.0.2.15"
SENTINEL_NAME = "kubeops-sentinel"
FLAVOURS = ("docker", "containerd")
DEFAULT_FLAVOUR = "docker"
DEFAULT_MEMORY_MB = 768
# The containerd flavour's images (made by build-node-images.sh, which names them too).
PAUSE_IMAGE = "kubeops.test/pause:v1"
APP_IMAGE = "kubeops.test/app:v1"
# Where cluster.py writes the kubelets' bootstrap token kubeconfig: beside the admin kubeconfig.
BOOTSTRAP_KUBECONFIG_NAME = "bootstrap-kubelet.kubeconfig"
# Each containerd host's pods get addresses from a /24 of their own in this state directory.
POD_CIDRS = tuple("10.88.%d.0/24" % i for i in range(1, 255))
DEFAULT_DATA_SIZE = "2G"
DEFAULT_LEASE_SECONDS = 10
KWOK_STAGES = ("node/fast/node-initialize.yaml",
               "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
               "pod/fast/pod-ready.yaml", "pod/fast/pod-complete.yaml", "pod/fast/pod-delete.yaml")
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
               "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=6"]


# ssh's own words for a connection that failed before any session (the command never ran).
SSH_NOT_CONNECTED = re.compile(r"during banner exchange|kex_exchange_identification|^ssh: connect to host", re.M)


class TestbedError(Exception):
    """A failure with the step that failed and where to look."""


def log(msg):
    print("[testbed-hosts %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def read_versions():
    """The lead's versions.sh decides the cache layout; evaluate it instead of duplicating it."""
    out = subprocess.run(
        ["bash", "-c", 'source "$1"; printf "%s\\n%s\\n%s\\n" "$TESTBED_CACHE" "$TESTBED_BIN" "$TESTBED_STAGES"',
         "versions", os.path.join(TESTBED, "versions.sh")],
        check=True, capture_output=True, text=True).stdout.splitlines()
    return {"cache": out[0], "bin": out[1], "stages": out[2]}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(argv, step, **kwargs):
    res = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if res.returncode != 0:
        raise TestbedError("%s failed (%s): %s" % (step, " ".join(map(shlex.quote, argv)),
                                                   (res.stderr or res.stdout).strip()[-2000:]))
    return res


def build_image(flavour=DEFAULT_FLAVOUR):
    """Path of the cached image directory of ``flavour``, building it first when needed (root, a
    few minutes; for containerd more when its Go binaries are not cached yet)."""
    proc = subprocess.run(["bash", os.path.join(HERE, "build-image.sh"), "--flavour", flavour],
                          stdout=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise TestbedError("image build (%s) failed (see the step named above)" % flavour)
    return proc.stdout.strip().splitlines()[-1]


def load_kubeconfig(path):
    with open(path) as handle:
        text = handle.read()
    try:
        return json.loads(text)
    except ValueError:
        import yaml  # only for YAML kubeconfigs; the test bed's own are JSON

        return yaml.safe_load(text)


def guest_kubeconfig(path, context=None):
    """The kubeconfig for the guest's kubelet: one context, data embedded, server rewritten to the
    guest-forwarded address. Returns (config, host, port) where host:port is the real API server."""
    config = load_kubeconfig(path)
    context_name = context or config["current-context"]
    ctx = next(c for c in config["contexts"] if c["name"] == context_name)["context"]
    cluster = dict(next(c for c in config["clusters"] if c["name"] == ctx["cluster"])["cluster"])
    user = dict(next(u for u in config["users"] if u["name"] == ctx["user"])["user"])
    base = os.path.dirname(os.path.abspath(path))
    for file_key, data_key, target in (("certificate-authority", "certificate-authority-data", cluster),
                                       ("client-certificate", "client-certificate-data", user),
                                       ("client-key", "client-key-data", user)):
        if file_key in target:
            with open(os.path.join(base, target.pop(file_key)), "rb") as handle:
                target[data_key] = base64.b64encode(handle.read()).decode()
    if "certificate-authority-data" not in cluster:
        raise TestbedError("%s: the guest kubelet needs the cluster's CA (certificate-authority[-data])" % path)
    if not ({"client-certificate-data", "client-key-data"} <= set(user) or "token" in user):
        raise TestbedError("%s: the guest kubelet needs a client certificate or a token" % path)
    url = urllib.parse.urlsplit(cluster["server"])
    host, port = url.hostname, url.port or 443
    cluster["server"] = "https://%s:%d" % (GUEST_API_ADDRESS, GUEST_API_PORT)
    # The certificate names the host's address; the guest dials the forwarded one.
    cluster.setdefault("tls-server-name", host)
    guest = {"apiVersion": "v1", "kind": "Config", "preferences": {},
             "clusters": [{"name": "testbed", "cluster": cluster}],
             "users": [{"name": "kubelet", "user": user}],
             "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": "kubelet"}}],
             "current-context": "testbed"}
    return guest, host, port


def kwok_config(stages_dir, lease_seconds):
    # Options given in a file are not defaulted: every parallelism must be set, or kwok exits.
    parts = ["apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n"
             "  nodeLeaseDurationSeconds: %d\n"
             "  nodeLeaseParallelism: 1\n  nodePlayStageParallelism: 1\n  podPlayStageParallelism: 2\n"
             "  podsOnNodeSyncParallelism: 1\n  enableDebuggingHandlers: false\n"
             "  enableProfilingHandler: false\n" % lease_seconds]
    for rel in KWOK_STAGES:
        with open(os.path.join(stages_dir, rel)) as handle:
            parts.append(handle.read())
    return "\n---\n".join(part.strip("\n-") + "\n" for part in parts)


def make_ext4_image(path, size, source_dir, label):
    run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", source_dir, "-E", "root_owner=0:0", path, size],
        "mkfs.ext4 %s" % os.path.basename(path))


def pid_of(pidfile, marker):
    """The pid in pidfile when that process is alive and is the QEMU carrying marker."""
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except (OSError, ValueError):
        return None
    if marker.encode() in argv and b"qemu-system" in os.path.basename(argv[0]):
        return pid
    return None


class Launcher:
    """The hosts of one state directory. Methods raise TestbedError with the failing step."""

    def __init__(self, state, kubeconfig=None, image_dir=None, memory_mb=DEFAULT_MEMORY_MB,
                 lease_seconds=DEFAULT_LEASE_SECONDS, flavour=DEFAULT_FLAVOUR, bootstrap_kubeconfig=None):
        """``flavour`` is that of the hosts this launcher creates (``image_dir``, when given, must
        be an image of it); ``bootstrap_kubeconfig`` the containerd kubelets' bootstrap token
        kubeconfig (default: the one cluster.py writes beside ``kubeconfig``)."""
        if flavour not in FLAVOURS:
            raise TestbedError("unknown host flavour %r (%s)" % (flavour, ", ".join(FLAVOURS)))
        self.state = os.path.abspath(state)
        self.kubeconfig = os.path.abspath(kubeconfig) if kubeconfig else None
        self.bootstrap_kubeconfig = os.path.abspath(bootstrap_kubeconfig) if bootstrap_kubeconfig else None
        self.flavour = flavour
        self.image_dir = image_dir
        self.memory_mb = memory_mb
        self.lease_seconds = lease_seconds
        os.makedirs(os.path.join(self.state, "hosts"), exist_ok=True)
        self.key = os.path.join(self.state, "id_ed25519")
        if not os.path.exists(self.key):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubeops-testbed", "-f", self.key],
                "ssh-keygen")

    # --- state -------------------------------------------------------------------------------
    def host_dir(self, name):
        return os.path.join(self.state, "hosts", name)

    def names(self):
        root = os.path.join(self.state, "hosts")
        return sorted(n for n in os.listdir(root) if os.path.exists(os.path.join(root, n, "host.json")))

    def info(self, name):
        try:
            with open(os.path.join(self.host_dir(name), "host.json")) as handle:
                return json.load(handle)
        except FileNotFoundError:
            raise TestbedError("no test host %r in %s (hosts: %s)" % (name, self.state, ", ".join(self.names()) or "none"))

    def save(self, info):
        path = os.path.join(self.host_dir(info["name"]), "host.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(info, handle, indent=1)
        os.replace(path + ".tmp", path)

    def pid(self, name):
        return pid_of(os.path.join(self.host_dir(name), "qemu.pid"), "kubeops-testbed-" + name)

    # --- creating a host -----------------------------------------------------------------------
    def create(self, name, data_size=DEFAULT_DATA_SIZE, labels=None):
        """Make the host's disks (overlay, data disk with sentinel, seed) without starting it."""
        if not self.kubeconfig:
            raise TestbedError("creating host %s needs --kubeconfig (the cluster the node joins)" % name)
        hdir = self.host_dir(name)
        if os.path.exists(os.path.join(hdir, "host.json")):
            raise TestbedError("host %s already exists in %s; destroy it first" % (name, self.state))
        image_dir = self.image_dir or build_image(self.flavour)
        used_cidrs = {self.info(other).get("pod_cidr") for other in self.names()}
        os.makedirs(hdir, exist_ok=True)
        sentinel = "kubeops test data %s %s" % (name, secrets.token_hex(16))
        with tempfile.TemporaryDirectory(dir=hdir) as tmp:
            data_src = os.path.join(tmp, "data")
            os.makedirs(data_src)
            with open(os.path.join(data_src, SENTINEL_NAME), "w") as handle:
                handle.write(sentinel + "\n")
            make_ext4_image(os.path.join(tmp, "data.raw"), data_size, data_src, "kubeops-data")
            run(["qemu-img", "convert", "-O", "qcow2", os.path.join(tmp, "data.raw"),
                 os.path.join(hdir, "data.qcow2")], "qemu-img convert (data disk)")
        info = {"name": name, "flavour": self.flavour, "image_dir": image_dir, "ssh_port": free_port(),
                "kubeconfig": self.kubeconfig,
                "labels": labels or {}, "memory_mb": self.memory_mb,
                "data_disk": {"device": "/dev/vdb", "size": data_size, "sentinel_path": SENTINEL_NAME,
                              "sentinel": sentinel},
                "boots": []}
        if self.flavour == "containerd":
            info["pod_cidr"] = next(cidr for cidr in POD_CIDRS if cidr not in used_cidrs)
        self._new_overlay(info)
        self.save(info)
        return info

    def _write_seed(self, info):
        """The seed disk, rewritten at every start: the host's identity and what its kubelet needs
        to join (docker: the current kubeconfig, kwok and stages; containerd: the bootstrap
        kubeconfig, the cluster's CA and the pod subnet)."""
        if self.kubeconfig:
            info["kubeconfig"] = self.kubeconfig
        guest, info["api_host"], info["api_port"] = guest_kubeconfig(info["kubeconfig"])
        node_env = "NODE_NAME=%s\nNODE_IP=%s\nNODE_LABELS=%s\n" % (
            info["name"], GUEST_IP, ",".join("%s=%s" % kv for kv in sorted(info["labels"].items())))
        files = {"hostname": info["name"] + "\n", "authorized_keys": open(self.key + ".pub").read()}
        secret_files = ["kubelet.conf"]
        kwok = None
        if info.get("flavour", DEFAULT_FLAVOUR) == "containerd":
            files["bootstrap-kubelet.conf"] = json.dumps(self._guest_bootstrap_kubeconfig(info), indent=1) + "\n"
            files["ca.crt"] = base64.b64decode(guest["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
            files["node.env"] = node_env + "POD_CIDR=%s\n" % info["pod_cidr"]
            secret_files = ["bootstrap-kubelet.conf"]
        else:
            versions = read_versions()
            kwok = os.path.join(versions["bin"], "kwok")
            if not os.path.exists(kwok):
                raise TestbedError("%s is missing: build the control plane first (tests/testbed/build-binaries.sh)" % kwok)
            files["kubelet.conf"] = json.dumps(guest, indent=1) + "\n"
            files["node.env"] = node_env
            files["kwok.yaml"] = kwok_config(versions["stages"], self.lease_seconds)
        hdir = self.host_dir(info["name"])
        with tempfile.TemporaryDirectory(dir=hdir) as tmp:
            for fname, content in files.items():
                with open(os.path.join(tmp, fname), "w") as handle:
                    handle.write(content)
            for fname in secret_files:
                os.chmod(os.path.join(tmp, fname), 0o600)
            size_mb = 16
            if kwok:
                shutil.copy(kwok, os.path.join(tmp, "kwok"))
                with open(kwok, "rb") as handle, open(os.path.join(tmp, "kwok.sha256"), "w") as out:
                    out.write(hashlib.sha256(handle.read()).hexdigest() + "\n")
                size_mb += os.path.getsize(kwok) // (1 << 20)
            seed = os.path.join(hdir, "seed.img")
            make_ext4_image(seed + ".tmp", "%dM" % size_mb, tmp, "kubeops-seed")
            os.chmod(seed + ".tmp", 0o600)  # it holds the kubelet's credentials
            os.replace(seed + ".tmp", seed)

    def _guest_bootstrap_kubeconfig(self, info):
        """The containerd kubelet's bootstrap kubeconfig (a bootstrap token), as the guest dials
        the API server. Without ``tls-server-name``: the kubelet drops it from the kubeconfig it
        writes after the bootstrap, so the API server's certificate must name the guest-forwarded
        address itself (cluster.py's does: 10.0.2.100)."""
        path = self.bootstrap_kubeconfig or os.path.join(os.path.dirname(info["kubeconfig"]), BOOTSTRAP_KUBECONFIG_NAME)
        if not os.path.exists(path):
            raise TestbedError("%s is missing: a containerd host joins by TLS bootstrap and needs a bootstrap "
                               "token kubeconfig (tests/testbed/cluster.py up writes it beside the admin "
                               "kubeconfig; or pass --bootstrap-kubeconfig)" % path)
        info["bootstrap_kubeconfig"] = path
        config = guest_kubeconfig(path)[0]
        config["clusters"][0]["cluster"].pop("tls-server-name", None)
        return config

    def _new_overlay(self, info):
        overlay = os.path.join(self.host_dir(info["name"]), "root.qcow2")
        if os.path.exists(overlay):
            os.unlink(overlay)
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
             os.path.join(info["image_dir"], "root.qcow2"), overlay], "qemu-img create (root overlay)")

    # --- running it ----------------------------------------------------------------------------
    def qemu_argv(self, info, data_disk=True):
        """QEMU's argv; ``data_disk=False`` leaves the data disk out (the seed disk then comes
        right after the root disk, so the guest names it /dev/vdb)."""
        image = info["image_dir"]
        relay = "%s %s %s %d" % (sys.executable, os.path.join(HERE, "apiserver-relay.py"),
                                 info["api_host"], info["api_port"])
        hdir = self.host_dir(info["name"])
        if "," in relay or "," in hdir:
            raise TestbedError("paths with commas cannot go into QEMU's options: %s, %s" % (relay, hdir))
        netdev = ("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22,guestfwd=tcp:%s:%d-cmd:%s"
                  % (info["ssh_port"], GUEST_API_ADDRESS, GUEST_API_PORT, relay))
        data = ["-drive", "file=%s/data.qcow2,if=none,id=data,format=qcow2" % hdir,
                "-device", "virtio-blk-pci,drive=data,serial=kubeops-data"] if data_disk else []
        return [
            shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
            "-name", "kubeops-testbed-" + info["name"],
            "-nodefaults", "-no-user-config",
            "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1",
            "-m", str(info.get("memory_mb", self.memory_mb)),
            "-kernel", os.path.join(image, "vmlinuz"), "-initrd", os.path.join(image, "initrd.img"),
            "-append", "root=/dev/vda rw console=ttyS0 net.ifnames=0 mitigations=off tsc=reliable quiet",
            # The overlay is thrown away on reimage: skip host flushes. The data disk stays safe.
            # Absolute paths: a daemonized QEMU runs in /, and re-opens its images by name when a
            # migration (``snapshot``) completes.
            "-drive", "file=%s/root.qcow2,if=none,id=root,format=qcow2,cache=unsafe" % hdir,
            "-device", "virtio-blk-pci,drive=root,serial=kubeops-root",
        ] + data + [
            "-drive", "file=%s/seed.img,if=none,id=seed,format=raw,readonly=on" % hdir,
            "-device", "virtio-blk-pci,drive=seed,serial=kubeops-seed",
            "-netdev", netdev, "-device", "virtio-net-pci,netdev=net0",
            "-device", "virtio-rng-pci",
            "-chardev", "file,id=console,path=console.log,append=on", "-serial", "chardev:console",
            # Relative: a unix socket path must stay under 108 bytes; QEMU runs in the host folder.
            "-monitor", "unix:monitor.sock,server=on,wait=off",
            "-display", "none", "-pidfile", "qemu.pid", "-daemonize",
        ]

    def start(self, name, data_disk=True, keep_port=False):
        """Boot the host. ``data_disk=False`` boots it without its data disk, as a machine whose
        volume was detached while it was down (q35 has no hot-unplug on its root bus, where the
        disks sit: QEMU refuses ``device_del`` there with "Bus 'pcie.0' does not support hotplugging")."""
        info = self.info(name)
        if self.pid(name):
            return info
        if not _port_free(info["ssh_port"], reuse=keep_port):
            info["ssh_port"] = free_port()
        self._write_seed(info)
        self._run_qemu(name, self.qemu_argv(info, data_disk=data_disk), "starting QEMU")
        info["started"] = time.time()
        info["data_disk"]["attached"] = data_disk
        self.save(info)
        self.write_inventory()
        log("%s: started (pid %d, ssh 127.0.0.1:%d%s)" % (name, self.pid(name), info["ssh_port"],
                                                          "" if data_disk else ", data disk detached"))
        return info

    def _run_qemu(self, name, argv, step):
        """Start the host's QEMU (it daemonizes once the machine is set up), logging its argv."""
        hdir = self.host_dir(name)
        with open(os.path.join(hdir, "qemu.log"), "a") as qlog:
            qlog.write("\n# %s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), " ".join(map(shlex.quote, argv))))
            qlog.flush()
            res = subprocess.run(argv, cwd=hdir, stdout=qlog, stderr=qlog, stdin=subprocess.DEVNULL, check=False)
        if res.returncode != 0 or not self.pid(name):
            raise TestbedError("%s for %s failed; see %s" % (step, name, os.path.join(hdir, "qemu.log")))

    def up(self, name, data_size=DEFAULT_DATA_SIZE, labels=None):
        if not os.path.exists(os.path.join(self.host_dir(name), "host.json")):
            self.create(name, data_size=data_size, labels=labels)
        return self.start(name)

    def monitor(self, name, command, timeout=10):
        """One command on the host's QEMU monitor (HMP); returns what QEMU answered (the text
        before its next prompt)."""
        with _MONITOR_LOCK:  # os.chdir is process-wide
            cwd = os.getcwd()
            os.chdir(self.host_dir(name))  # the socket path is relative (length limit of unix socket paths)
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(timeout)
                    sock.connect("monitor.sock")
                    _read_prompt(sock)
                    sock.sendall(command.encode() + b"\n")
                    answer = _read_prompt(sock)
            finally:
                os.chdir(cwd)
        # HMP echoes the command line (with terminal escapes) before its answer
        lines = answer.replace("\r", "").split("\n")
        return "\n".join(lines[1:]).strip()

    # --- snapshots of a running host ---------------------------------------------------------------
    def snapshot_dir(self, name):
        return os.path.join(self.host_dir(name), "snapshot")

    def snapshot(self, name):
        """Save the running host as it is now: its memory and devices (QEMU migration to a file)
        and copies of its root and data disks, taken while QEMU holds the machine paused after the
        migration, so the three agree. The host runs on afterwards. ``restore`` brings it back to
        exactly this moment, much faster than a boot under emulation."""
        info = self.info(name)
        if not self.pid(name):
            raise TestbedError("%s is not running: only a running host can be snapshotted" % name)
        hdir = self.host_dir(name)
        final = self.snapshot_dir(name)
        work = tempfile.mkdtemp(prefix=".snapshot-", dir=hdir)
        started = time.monotonic()
        try:
            vmstate = os.path.join(work, "vmstate")
            if "'" in vmstate or " " in vmstate:
                raise TestbedError("the snapshot path %r cannot go into QEMU's exec: URI" % vmstate)
            answer = self.monitor(name, "migrate exec:cat>'%s'" % vmstate, timeout=300)
            status = self.monitor(name, "info migrate")
            if "Migration status: completed" not in status:
                raise TestbedError("%s: saving the machine state failed: %s %s" % (name, answer, status))
            for disk in ("root.qcow2", "data.qcow2"):  # QEMU flushed them when the migration completed
                run(["cp", "--sparse=always", os.path.join(hdir, disk), os.path.join(work, disk)],
                    "copy %s of %s" % (disk, name))
            with open(os.path.join(work, "host.json"), "w") as handle:
                json.dump(info, handle, indent=1)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        finally:
            self.monitor(name, "cont")  # the source machine goes on running
        shutil.rmtree(final, ignore_errors=True)
        os.replace(work, final)
        log("%s: snapshot saved in %.1fs (%d MB)" % (name, time.monotonic() - started, _du_mb(final)))

    def restore(self, name, timeout=300):
        """Bring the host back to its ``snapshot``: QEMU stopped (at once), the root and data disks
        copied back, a new QEMU started from the saved machine state. Then the guest clock is set
        (a restored guest wakes at the snapshot's time) and the kubelet restarted, so that its
        node Lease is renewed with the right time over a fresh connection. The boot ID is the
        snapshot's: the host did not boot. Returns the host's info."""
        snap = self.snapshot_dir(name)
        if not os.path.exists(os.path.join(snap, "host.json")):
            raise TestbedError("%s has no snapshot to restore (take one with snapshot)" % name)
        started = time.monotonic()
        self.stop(name, graceful=False)
        hdir = self.host_dir(name)
        for disk in ("root.qcow2", "data.qcow2"):
            run(["cp", "--sparse=always", os.path.join(snap, disk), os.path.join(hdir, disk + ".tmp")],
                "copy back %s of %s" % (disk, name))
            os.replace(os.path.join(hdir, disk + ".tmp"), os.path.join(hdir, disk))
        with open(os.path.join(snap, "host.json")) as handle:
            info = json.load(handle)
        if not _port_free(info["ssh_port"], reuse=True):
            info["ssh_port"] = free_port()
        self._run_qemu(name, self.qemu_argv(info, data_disk=True) + [
            "-incoming", "exec:cat '%s'" % os.path.join(snap, "vmstate")], "restoring from the snapshot")
        deadline = time.monotonic() + timeout
        status = ""
        while "running" not in status:
            if time.monotonic() > deadline:
                raise TestbedError("restoring %s: machine state not loaded in %ds (%s); see %s"
                                   % (name, timeout, status, os.path.join(hdir, "qemu.log")))
            time.sleep(0.2)
            status = self.monitor(name, "info status")
            if "paused (postmigrate)" in status or "paused (prelaunch)" in status:
                self.monitor(name, "cont")
        info["started"] = time.time()
        info["restored"] = info["started"]
        self.save(info)
        self.write_inventory()
        self.wait_ssh(name, timeout=timeout)
        self.ssh(name, "date -u -s @%.3f >/dev/null && systemctl restart kubelet.service" % time.time(), timeout=120)
        log("%s: restored from its snapshot in %.1fs" % (name, time.monotonic() - started))
        return info

    def stop(self, name, graceful=True, timeout=90):
        """ACPI power-off (the guest shuts down cleanly) then, past timeout, SIGTERM, SIGKILL."""
        pid = self.pid(name)
        if not pid:
            return False
        if graceful:
            try:
                self.monitor(name, "system_powerdown")
            except OSError:
                pass
            if _wait_gone(pid, timeout):
                log("%s: powered off" % name)
                return True
            log("%s: no clean power-off in %ds; terminating QEMU (pid %d)" % (name, timeout, pid))
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, 15):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)
        log("%s: stopped (pid %d)" % (name, pid))
        return True

    def power_cycle(self, name, data_disk=True, graceful=False):
        """Power the host off (default: at once, QEMU terminated) and boot it again, with or
        without its data disk: a cloud machine stopped and started, its volume detached or back.
        It keeps its SSH port, so a controller waiting for it (a reboot in progress) finds it."""
        self.stop(name, graceful=graceful)
        return self.start(name, data_disk=data_disk, keep_port=True)

    def reset(self, name):
        """Hard reset, as a power cycle: no shutdown in the guest."""
        if not self.pid(name):
            raise TestbedError("%s is not running" % name)
        self.monitor(name, "system_reset")

    def reimage(self, name, graceful=True):
        """Fresh root from the image; the data disk and the host's identity (seed) are kept. It
        keeps its SSH port, as a reinstalled machine keeps its address: a controller that is
        running a play against it (a rollout's reimage action) reaches it there again."""
        self.stop(name, graceful=graceful)
        info = self.info(name)
        self._new_overlay(info)
        info["reimaged"] = time.time()
        self.save(info)
        log("%s: root overlay discarded, booting a fresh root" % name)
        return self.start(name, keep_port=True)

    def destroy(self, name):
        self.stop(name, graceful=False)
        shutil.rmtree(self.host_dir(name))
        self.write_inventory()

    # --- talking to it -------------------------------------------------------------------------
    def ssh_argv(self, name):
        info = self.info(name)
        return ["ssh", "-i", self.key, "-p", str(info["ssh_port"])] + SSH_OPTIONS + ["root@127.0.0.1"]

    def ssh(self, name, command, check=True, timeout=120, attempts=3):
        """``command`` on the host over SSH. A connection that never reached a session (a banner
        exchange timed out on a loaded machine, QEMU's port forward reset) is tried again, up to
        ``attempts`` in all: the command did not run."""
        for attempt in range(1, attempts + 1):
            res = subprocess.run(self.ssh_argv(name) + [command], capture_output=True, text=True,
                                 timeout=timeout, stdin=subprocess.DEVNULL, check=False)
            if res.returncode != 255 or not SSH_NOT_CONNECTED.search(res.stderr) or attempt == attempts:
                break
            log("%s: ssh did not connect (%s); trying again" % (name, res.stderr.strip()[-200:]))
            time.sleep(2)
        if check and res.returncode != 0:
            raise TestbedError("%s: `%s` failed (%d): %s" % (name, command, res.returncode,
                                                             (res.stderr or res.stdout).strip()[-1000:]))
        return res

    def wait_ssh(self, name, timeout=900):
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if not self.pid(name):
                raise TestbedError("%s: QEMU exited while booting; see %s" % (
                    name, os.path.join(self.host_dir(name), "console.log")))
            try:
                res = self.ssh(name, "cat /proc/sys/kernel/random/boot_id", check=False, timeout=30, attempts=1)
            except subprocess.TimeoutExpired:
                continue
            if res.returncode == 0:
                info = self.info(name)
                boot_id = res.stdout.strip()
                if not info["boots"] or info["boots"][-1]["boot_id"] != boot_id:
                    info["boots"].append({"boot_id": boot_id, "ssh_after_s": round(time.time() - info["started"], 1)})
                    self.save(info)
                return boot_id
            time.sleep(2)
        raise TestbedError("%s: no SSH on 127.0.0.1:%d within %ds; console: %s" % (
            name, self.info(name)["ssh_port"], timeout, os.path.join(self.host_dir(name), "console.log")))

    def write_inventory(self):
        """inventory.yml: group testbed_hosts, one host per node, named as its node."""
        lines = ["# Written by tests/testbed/hosts/launcher.py; rewritten on every start.",
                 "all:", "  children:", "    testbed_hosts:", "      hosts:"]
        for name in self.names():
            info = self.info(name)
            lines += ["        %s:" % name,
                      "          ansible_host: 127.0.0.1",
                      "          ansible_port: %d" % info["ssh_port"],
                      "          ansible_user: root",
                      "          ansible_ssh_private_key_file: %s" % json.dumps(self.key),
                      "          ansible_ssh_common_args: %s" % json.dumps(" ".join(SSH_OPTIONS[:6])),
                      # ansible's default 10 s for connect and banner: a loaded CI machine misses it
                      "          ansible_timeout: 30",
                      # each module in one SSH operation (not mkdir, sftp, chmod, run): every one
                      # starts processes on a guest under emulation
                      "          ansible_pipelining: true",
                      "          ansible_python_interpreter: /usr/bin/python3",
                      "          testbed_node_name: %s" % name,
                      "          testbed_flavour: %s" % info.get("flavour", DEFAULT_FLAVOUR),
                      "          testbed_data_disk: %s" % info["data_disk"]["device"],
                      "          testbed_data_sentinel_path: %s" % SENTINEL_NAME,
                      "          testbed_data_sentinel: %s" % json.dumps(info["data_disk"]["sentinel"])]
        path = os.path.join(self.state, "inventory.yml")
        with open(path + ".tmp", "w") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(path + ".tmp", path)
        return path

    def status(self):
        rows = []
        for name in self.names():
            info = self.info(name)
            pid = self.pid(name)
            rows.append({"name": name, "running": bool(pid), "pid": pid, "ssh_port": info["ssh_port"],
                         "boots": len(info["boots"])})
        return rows


_MONITOR_LOCK = threading.Lock()


def _read_prompt(sock):
    """What the QEMU monitor sends up to and without its ``(qemu)`` prompt."""
    data = b""
    while not data.endswith(b"(qemu) "):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data[:-len(b"(qemu) ")].decode(errors="replace") if data.endswith(b"(qemu) ") else data.decode(errors="replace")


def _du_mb(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        total += sum(os.stat(os.path.join(root, f)).st_blocks * 512 for f in files)
    return total // (1 << 20)


def _port_free(port, reuse=False):
    """Whether 127.0.0.1:port can be bound; ``reuse`` binds as QEMU's forwarding does (SO_REUSEADDR),
    so the connections of a QEMU just killed, left in TIME_WAIT, do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def wait_node(kubectl, kubeconfig, name, ready=True, timeout=300):
    """Wait until node/<name>'s Ready condition is True (ready) or not True (not ready)."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        res = subprocess.run([kubectl, "--kubeconfig", kubeconfig, "get", "node", name, "-o",
                              'jsonpath={.status.conditions[?(@.type=="Ready")].status}'],
                             capture_output=True, text=True, check=False)
        status = res.stdout.strip() if res.returncode == 0 else None
        if (status == "True") == ready and (ready or status is not None):
            return status
        time.sleep(2)
    raise TestbedError("node/%s: Ready=%s after %ds, wanted %s" % (name, status, timeout, "True" if ready else "not True"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--state", required=True, help="state directory of this set of hosts")
    parser.add_argument("--kubeconfig", help="admin kubeconfig of the cluster the nodes join")
    parser.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB, help="guest RAM in MiB")
    parser.add_argument("--flavour", choices=FLAVOURS, default=DEFAULT_FLAVOUR,
                        help="up (new hosts), build-image: docker (kwok + Docker) or containerd (real kubelet)")
    parser.add_argument("--bootstrap-kubeconfig",
                        help="containerd hosts: the kubelets' bootstrap token kubeconfig "
                             "(default: %s beside --kubeconfig)" % BOOTSTRAP_KUBECONFIG_NAME)
    sub = parser.add_subparsers(dest="action", required=True)
    p_up = sub.add_parser("up", help="create (if new) and start hosts")
    p_up.add_argument("names", nargs="+")
    p_up.add_argument("--data-size", default=DEFAULT_DATA_SIZE)
    p_up.add_argument("--label", action="append", default=[], help="node label key=value (repeatable)")
    p_up.add_argument("--wait", choices=("none", "ssh", "node"), default="ssh")
    p_up.add_argument("--timeout", type=int, default=900)
    for action in ("stop", "start", "reimage", "reset", "destroy", "snapshot", "restore"):
        p = sub.add_parser(action)
        p.add_argument("names", nargs="*", help="default: all hosts of the state directory")
        if action in ("stop", "reimage"):
            p.add_argument("--force", action="store_true", help="no clean power-off: kill QEMU")
        if action == "start":
            p.add_argument("--without-data-disk", action="store_true",
                           help="boot without the data disk (as if its volume were detached)")
    sub.add_parser("status")
    sub.add_parser("inventory", help="print the inventory path")
    sub.add_parser("build-image", help="build the image if needed and print its directory")
    p_ssh = sub.add_parser("ssh")
    p_ssh.add_argument("name")
    p_ssh.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)

    try:
        if args.action == "build-image":
            print(build_image(args.flavour))
            return 0
        launcher = Launcher(args.state, kubeconfig=args.kubeconfig, memory_mb=args.memory, flavour=args.flavour,
                            bootstrap_kubeconfig=args.bootstrap_kubeconfig)
        names = getattr(args, "names", None) or launcher.names()
        if args.action == "up":
            labels = dict(item.split("=", 1) for item in args.label)
            for name in names:
                launcher.up(name, data_size=args.data_size, labels=labels)
            if args.wait in ("ssh", "node"):
                for name in names:
                    launcher.wait_ssh(name, args.timeout)
                    log("%s: ssh up after %.0fs" % (name, time.time() - launcher.info(name)["started"]))
            if args.wait == "node":
                kubectl = os.path.join(read_versions()["bin"], "kubectl")
                for name in names:
                    wait_node(kubectl, launcher.kubeconfig, name, timeout=args.timeout)
                    log("%s: node Ready after %.0fs" % (name, time.time() - launcher.info(name)["started"]))
            print(launcher.write_inventory())
        elif args.action == "stop":
            for name in names:
                launcher.stop(name, graceful=not args.force)
        elif args.action == "start":
            for name in names:
                launcher.start(name, data_disk=not args.without_data_disk)
        elif args.action == "reimage":
            for name in names:
                launcher.reimage(name, graceful=not args.force)
        elif args.action in ("reset", "destroy", "snapshot", "restore"):
            for name in names:
                getattr(launcher, args.action)(name)
        elif args.action == "status":
            for row in launcher.status():
                print("%-20s %-8s pid=%-8s ssh=127.0.0.1:%d boots=%d" % (
                    row["name"], "running" if row["running"] else "stopped", row["pid"], row["ssh_port"], row["boots"]))
        elif args.action == "inventory":
            print(launcher.write_inventory())
        elif args.action == "ssh":
            os.execvp("ssh", launcher.ssh_argv(args.name) + args.command)
    except TestbedError as exc:
        log("FAILED: %s" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
