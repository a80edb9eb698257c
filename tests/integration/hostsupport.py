"""What the tests on QEMU test hosts share: the launcher, and waiting on a node's Ready condition.

The hosts (tests/testbed/hosts/launcher.py: Debian bookworm under QEMU software emulation,
systemd, docker.io, kwok as ``kubelet.service``) join the session's control plane. These tests
carry the ``hosts`` marker and run in the whole suite (``make test``); ``-m "not hosts"`` leaves
them out of a quick loop and ``make test-hosts`` runs only them.
"""
import importlib.util
import os
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
