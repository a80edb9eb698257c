"""What the tests on QEMU test hosts share: the launcher, and waiting on a node's Ready condition.

The hosts (tests/testbed/hosts/launcher.py: Debian bookworm under QEMU software emulation,
systemd, docker.io, kwok as ``kubelet.service``) join the session's control plane. These tests
carry the ``hosts`` marker and run in the whole suite (``make test``); ``-m "not hosts"`` leaves
them out of a quick loop and ``make test-hosts`` runs only them.
"""
import contextlib
import importlib.util
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


@contextlib.contextmanager
def host_pool(cluster, prefix, hosts, spare, labels, log):
    """Hosts booted at once (Ready nodes of ``cluster``) beside a kwok ``spare`` node, all with
    ``labels``; yields the launcher. At the end the hosts are destroyed and the Node objects of
    all of them deleted (forget_nodes)."""
    from tests.integration.conftest import node_manifest

    launcher = load_launcher().Launcher(tempfile.mkdtemp(prefix=prefix), kubeconfig=cluster.kubeconfig)
    cluster.core.create_node(node_manifest(spare, labels=labels))
    try:
        started = time.monotonic()
        for name in hosts:  # all boot at once
            launcher.up(name, labels=labels)
        for name in hosts:
            launcher.wait_ssh(name)
            wait_node_ready(cluster.core, name, True, timeout=900)
        log("hosts Ready %ds after start" % (time.monotonic() - started))
        yield launcher
    finally:
        for name in hosts:
            try:
                launcher.destroy(name)
            except Exception as exc:  # noqa: BLE001 - keep destroying the others
                log("destroy %s: %s" % (name, exc))
        shutil.rmtree(launcher.state, ignore_errors=True)
        forget_nodes(cluster.core, tuple(hosts) + (spare,))


def host_sh(launcher, name, command, check=True, timeout=180):
    """A shell command on a test host; its stdout, stripped (asserts exit 0 unless not check)."""
    res = launcher.ssh(name, command, check=False, timeout=timeout)
    if check:
        assert res.returncode == 0, "%s: `%s` failed (%d): %s" % (name, command, res.returncode,
                                                                  res.stderr or res.stdout)
    return res.stdout.strip()
