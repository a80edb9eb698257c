"""What the tests on QEMU test hosts share: the session's pool of booted hosts, the launcher, and
waiting on a node's Ready condition.

The hosts (tests/testbed/hosts/launcher.py: Debian bookworm under QEMU software emulation,
systemd; the Docker flavour with docker.io and kwok as ``kubelet.service``, the containerd flavour
with a real kubelet on containerd) join the session's control plane. These tests
carry the ``hosts`` marker and run in the whole suite (``make test``); ``-m "not hosts"`` leaves
them out of a quick loop and ``make test-hosts`` runs only them.
"""
import contextlib
import importlib.util
import json
import os
import shutil
import tempfile
import time

from tests.conftest import REPO_ROOT


def load_launcher():
    """tests/testbed/hosts/launcher.py as a module (it is a script, not a package member)."""
    path = os.path.join(REPO_ROOT, "tests", "testbed", "hosts", "launcher.py")
    spec = importlib.util.spec_from_file_location("kubeops_testbed_launcher", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def node_ready(core, name):
    """The node's Ready condition status ("True", "False", "Unknown"), None when absent."""
    from kubernetes.client import ApiException

    try:
        node = core.read_node(name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    for cond in node.status.conditions or []:
        if cond.type == "Ready":
            return cond.status
    return None


def wait_node_ready(core, name, want=True, timeout=600):
    """Wait until the node is Ready (want) or not Ready (not want); returns the seconds it took."""
    started = time.monotonic()
    status = None
    while time.monotonic() - started < timeout:
        status = node_ready(core, name)
        if status is not None and (status == "True") == want:
            return time.monotonic() - started
        time.sleep(2)
    raise AssertionError("node/%s Ready=%s after %ds, wanted %s" % (name, status, timeout,
                                                                    "True" if want else "not True"))


class NotReadyWatcher:
    """Samples a node's Ready condition in a thread while something runs (a reboot), and keeps
    how many seconds after the start it was first seen not Ready (None: never)."""

    def __init__(self, core, name, interval=1.0):
        import threading

        self.core, self.name, self.interval = core, name, interval
        self.first_not_ready = None
        self._started = None  # set when the watch starts
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop_event.is_set():
            try:
                status = node_ready(self.core, self.name)
            except Exception:  # noqa: BLE001 - an API hiccup is no sample, neither way
                status = None
            if status not in (None, "True") and self.first_not_ready is None:
                self.first_not_ready = time.monotonic() - self._started
            self._stop_event.wait(self.interval)

    def __enter__(self):
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop_event.set()
        self._thread.join(10)
        return False


def forget_nodes(core, names):
    """Delete the Node objects of hosts a test destroyed: left behind NotReady they would push the
    node lifecycle controller of the shared cluster towards its disruption modes (with most nodes
    down it stops tainting), and later tests would see a cluster that is not the one they expect."""
    from kubernetes.client import ApiException

    for name in names:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


# The hosts of the session-wide pool (fixture ``host_pool`` in tests/integration/conftest.py): two
# of the Docker flavour (kwok as the kubelet) and, booted only when a module asks for it, one of the
# containerd flavour (a real kubelet and containerd, pods from the test bed's own images).
POOL_HOSTS = ("pool-host-a", "pool-host-b")
REAL_POOL_HOSTS = ("pool-real-a",)
POOL_FLAVOURS = {"docker": POOL_HOSTS, "containerd": REAL_POOL_HOSTS}
SETTLING_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
# kube-controller-manager's --node-monitor-period in tests/testbed/cluster.py: how often the node
# lifecycle controller looks at the nodes' Leases.
NODE_MONITOR_PERIOD_SECONDS = 2


class HostPool:
    """Test hosts booted once for the whole session and lent to one test module after another.

    The hosts come in flavours (``POOL_FLAVOURS``): a module asks for one (``lend(flavour=...)``),
    and the first ``lend`` of a flavour boots its hosts (all at once), waits until they are Ready
    nodes of ``cluster`` and snapshots each one (its memory, devices and disks: launcher
    ``snapshot``). Every later ``lend`` of it first puts them back to that moment (launcher
    ``restore``: root and data disks and the running machine as they were just after the boot, the
    guest clock set, the kubelet restarted) and their Node objects back to what they were then
    (labels, annotations, taints, schedulable), so each module starts on hosts exactly as booted,
    whatever the module before did to them (reboots, reimages, a powered-off host, a detached disk,
    a moved runtime root). While one flavour is lent, the others' machines are paused (QEMU
    ``stop``: no CPU taken from the guests at work; their next lend restores them anyway). At the
    end of the session the hosts are destroyed and their Node objects deleted."""

    def __init__(self, cluster, log, names=POOL_HOSTS, flavours=None):
        self.cluster = cluster
        self.log = log
        self.flavours = dict(flavours or POOL_FLAVOURS)
        self.flavours["docker"] = tuple(names)
        self.names = self.flavours["docker"]
        self.launchers = {}  # flavour -> Launcher (a state directory, an inventory of its own), once booted
        self.paused = set()
        self.baseline = {}  # node name -> (labels, annotations, taints) just after the boot
        self.timings = []

    @property
    def launcher(self):
        """The Docker flavour's launcher (None before its first lend)."""
        return self.launchers.get("docker")

    def _boot(self, flavour):
        # a state directory per flavour: each inventory's testbed_hosts are only the hosts lent
        state = tempfile.mkdtemp(prefix="kubeops-host-pool-%s-" % flavour)
        launcher = load_launcher().Launcher(state, kubeconfig=self.cluster.kubeconfig, flavour=flavour)
        names = self.flavours[flavour]
        started = time.monotonic()
        for name in names:  # all boot at once
            launcher.up(name)
        for name in names:  # the first boot's times: the node notes quote them
            launcher.wait_ssh(name)
            self._timing("first boot to SSH", started, [name])
            wait_node_ready(self.cluster.core, name, True, timeout=900)
            self._timing("first boot to node Ready", started, [name])
        self._settle(names)
        for name in names:
            node = self.cluster.core.read_node(name)
            self.baseline[name] = (dict(node.metadata.labels or {}), dict(node.metadata.annotations or {}),
                                   list(node.spec.taints or []))
            launcher.snapshot(name)
        self.launchers[flavour] = launcher
        self._timing("boot + snapshot", started, names)

    def _restore(self, flavour):
        started = time.monotonic()
        leases = {}
        names = self.flavours[flavour]
        for name in names:
            self.launchers[flavour].restore(name)
            self.paused.discard(name)
            leases[name] = self._lease_version(name)
        self._wait_heartbeat(leases)
        self._timing("restore", started, names)

    def _pause_others(self, flavour):
        """Pause the machines of the other flavours (no CPU for guests nobody uses)."""
        for other, launcher in self.launchers.items():
            if other == flavour:
                continue
            for name in self.flavours[other]:
                if name not in self.paused and launcher.pid(name):
                    launcher.monitor(name, "stop")
                    self.paused.add(name)
                    self.log("host pool: %s paused while the %s hosts are lent" % (name, flavour))

    def _lease_version(self, name):
        from kubernetes.client import ApiException

        try:
            return self.cluster.coordination.read_namespaced_lease(name, "kube-node-lease").metadata.resource_version
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _wait_heartbeat(self, leases, timeout=180):
        """Wait until the kubelet each host started at its restore has renewed the node's Lease,
        then for the node lifecycle controller to have seen it.

        From the moment restore stops QEMU to the first renewal by the new kubelet, the Lease
        ages; on a busy machine that can outlast the controller's grace period, and the node
        then turns not Ready a few seconds *after* a check that found it Ready, the pods just
        started on it marked not ready with it (kwok does not mark a running pod ready again,
        as a kubelet would). Waiting for the renewal, and then one controller round more than
        it needs to notice it, closes that window before the test starts."""
        deadline = time.monotonic() + timeout
        for name, version in leases.items():
            while self._lease_version(name) in (None, version):
                if time.monotonic() > deadline:
                    raise AssertionError("node %s: its Lease was not renewed in %ds after the restore "
                                         "(is kubelet.service running on the host?)" % (name, timeout))
                time.sleep(0.5)
        time.sleep(2 * NODE_MONITOR_PERIOD_SECONDS + 1)

    def _timing(self, what, started, names):
        what = "%s of %s" % (what, ", ".join(names))
        self.timings.append((what, round(time.monotonic() - started)))
        self.log("host pool: %s in %ds" % (what, self.timings[-1][1]))

    def _reset_nodes(self, names, labels):
        """Each Node object as it was after the boot, plus ``labels``."""
        from kubernetes.client import ApiException

        for name in names:
            base_labels, base_annotations, base_taints = self.baseline[name]
            for _attempt in range(20):
                node = self.cluster.core.read_node(name)
                node.metadata.labels = dict(base_labels, **labels)
                node.metadata.annotations = dict(base_annotations)
                node.spec.taints = [t for t in node.spec.taints or [] if t.key in SETTLING_TAINTS] + base_taints
                node.spec.unschedulable = None
                try:
                    self.cluster.core.replace_node(name, node)
                    break
                except ApiException as exc:
                    if exc.status != 409:  # a status update of the kubelet came between: read again
                        raise
            else:
                raise AssertionError("node %s: could not reset its labels and taints (409 twenty times)" % name)

    def _settle(self, names, timeout=300):
        """Wait until every host is a Ready node without the lifecycle controller's taints."""
        from tests.integration.conftest import wait_node_ready as wait_node_settled

        deadline = time.monotonic() + timeout
        for name in names:
            wait_node_settled(self.cluster, name, timeout=max(1, deadline - time.monotonic()))

    @contextlib.contextmanager
    def lend(self, labels=None, spare=None, flavour="docker"):
        """The launcher of ``flavour``'s hosts (``POOL_FLAVOURS``), as booted and labelled with
        ``labels``; with ``spare`` a kwok node of that name (same labels) beside them, deleted
        afterwards."""
        from tests.integration.conftest import node_manifest

        labels = dict(labels or {})
        names = self.flavours[flavour]
        self._pause_others(flavour)
        if flavour not in self.launchers:
            self._boot(flavour)
        else:
            self._restore(flavour)
        self._reset_nodes(names, labels)
        self._settle(names)
        if spare:
            self.cluster.core.create_node(node_manifest(spare, labels=labels))
        try:
            yield self.launchers[flavour]
        finally:
            if spare:
                forget_nodes(self.cluster.core, [spare])

    def close(self):
        if not self.launchers:
            return
        self.log("host pool timings: %s" % self.timings)
        for flavour, launcher in self.launchers.items():
            for name in self.flavours[flavour]:
                try:
                    launcher.destroy(name)
                except Exception as exc:  # noqa: BLE001 - keep destroying the others
                    self.log("destroy %s: %s" % (name, exc))
            forget_nodes(self.cluster.core, self.flavours[flavour])
            shutil.rmtree(launcher.state, ignore_errors=True)


def record_step_times(module, times, **extra):
    """A host scenario's step times (seconds): appended as one JSON line to KUBEOPS_STEP_TIMES
    (tests/run.sh sets it and prints the lines after pytest, passed or not: captured stderr is gone
    once a test passes, and these say which steps of the host chain the minutes went to)."""
    path = os.environ.get("KUBEOPS_STEP_TIMES")
    if not path:
        return
    line = dict({k: round(v) for k, v in times.items()}, module=module, **extra)
    with open(path, "a") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")


def host_sh(launcher, name, command, check=True, timeout=180):
    """A shell command on a test host; its stdout, stripped (asserts exit 0 unless not check)."""
    res = launcher.ssh(name, command, check=False, timeout=timeout)
    if check:
        assert res.returncode == 0, "%s: `%s` failed (%d): %s" % (name, command, res.returncode,
                                                                  res.stderr or res.stdout)
    return res.stdout.strip()
