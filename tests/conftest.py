"""Make the repository importable as ``ansible_collections.kubeops.node_maintenance``, and spread
the suite over parallel workers (pytest-xdist) the way its costs need.

The collection lives at the repository root; Python (and ansible-core's collection loader) expect
it under ``<dir>/ansible_collections/kubeops/node_maintenance``. A symlink tree in ``build/``
provides that without copying anything.

Parallel runs (``-n N --dist loadscope``, as tests/run.sh does, our scheduler below): the tests on
QEMU hosts (marker ``hosts``) are the longest chain of the suite, so they are split into
HOST_CHAINS, each one unit of work for one worker, handed out first. A chain's worker boots a
session-wide pool of hosts once (``host_pool`` in tests/integration/conftest.py) and lends it to
each module of the chain in turn, restored to its post-boot snapshot; it gets no other work
until its chain is done. Every other module is a unit of its own (its module fixtures are made
once, on one worker, and its tests keep their written order), the integration modules first,
then the unit-test modules that fill the gaps. Every worker starts its own control plane (the
session ``cluster`` fixture) on its own state directory when a test of it first needs one.
(Groups by ``xdist_group`` marks would not work: pytest 9 ignores the node-id suffix that
pytest-xdist 3.8's loadgroup adds.)
"""
import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS_ROOT = os.path.join(REPO_ROOT, "build", "collections")
# The host test modules in chains, each run in this order on one pool of hosts, on one worker:
# the test bed's own checks first (when they fail, the rest would only fail less clearly). One
# chain: two chains (four guests) on two cores were slower, not faster. Guests under software
# emulation burn more CPU for the same work when they wait for a core (a boot took 183 s of CPU
# instead of ~45), and the cluster workers starved: after 24 minutes two chains and two cluster
# workers had finished 24 tests, where one chain and two cluster workers finish all 993 in 38.
HOST_CHAINS = (("test_testbed_hosts", "test_node_disk_remount_host", "test_rolling_maintenance_hosts",
                "test_rollout_hosts_faults"),)
HOST_UNIT_PREFIX = "qemu-hosts-"


def ensure_collection_tree():
    namespace_dir = os.path.join(COLLECTIONS_ROOT, "ansible_collections", "kubeops")
    link = os.path.join(namespace_dir, "node_maintenance")
    os.makedirs(namespace_dir, exist_ok=True)
    if not os.path.islink(link):
        try:
            os.symlink(REPO_ROOT, link)
        except FileExistsError:  # another worker of the same run made it first
            pass
    return COLLECTIONS_ROOT


ensure_collection_tree()
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)


def _module_name(item):
    return os.path.splitext(os.path.basename(str(item.path)))[0]


def _host_chain(module):
    """(chain index, position in it) of a host test module, or None."""
    for index, chain in enumerate(HOST_CHAINS):
        if module in chain:
            return index, chain.index(module)
    return None


def _run_order(item, parallel):
    """In parallel workers: host chains first, then the integration modules, then the unit tests.
    In one process: unit tests, integration modules, and the host tests last: a pool's hosts stay
    nodes of the session's cluster until it ends, and a host a test left powered off would count as
    a NotReady node in the cluster tests after it (the node lifecycle controller's disruption
    modes)."""
    module = _module_name(item)
    chain = _host_chain(module)
    if chain is not None:
        return (0 if parallel else 3,) + chain
    if item.get_closest_marker("integration"):
        return (1,)
    return (2 if parallel else 0,)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The order in which the modules are handed out. Tests of one module keep their written
    order (sorted() is stable): chained scenarios rely on it."""
    for item in items:
        if item.get_closest_marker("hosts") and _host_chain(_module_name(item)) is None:
            raise pytest.UsageError("%s has tests marked hosts: add %s to a chain of HOST_CHAINS in "
                                    "tests/conftest.py, so that they run on a worker that holds a host pool"
                                    % (item.path, _module_name(item)))
    parallel = hasattr(config, "workerinput")  # this process is an xdist worker
    items[:] = sorted(items, key=lambda item: _run_order(item, parallel))


def _scope_of(nodeid):
    """The unit of work of a test: its host chain, else its module."""
    path = nodeid.split("::", 1)[0]
    chain = _host_chain(os.path.splitext(os.path.basename(path))[0])
    return path if chain is None else HOST_UNIT_PREFIX + str(chain[0] + 1)


_reniced = []


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """On a parallel worker whose first test is not on QEMU hosts: lower this worker's CPU priority
    by KUBEOPS_CLUSTER_NICE (tests/run.sh sets it) before any fixture starts its control plane, so
    the control plane and every process the tests start inherit it. The host chain is the
    suite's critical path and its guests, under software emulation, burn more CPU for the same
    work when they wait for a core; the cluster workers wait on their control plane most of the
    time and soak up what the guests leave. A host chain's worker keeps its priority (it gets no
    other work until its chain is done)."""
    if _reniced or not hasattr(item.config, "workerinput"):
        return
    _reniced.append(True)
    step = int(os.environ.get("KUBEOPS_CLUSTER_NICE", "0") or 0)
    if step and _host_chain(_module_name(item)) is None:
        os.nice(step)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):  # pylint: disable=unused-argument
    """A worker is out of work (xdist shuts a worker down once nothing is queued for it): a core is
    free from here on; tests/run.sh's KUBEOPS_MATRIX_START=free-core starts the version matrix then."""
    go = os.environ.get("KUBEOPS_MATRIX_GO")
    if go:
        with open(go, "a"):
            pass


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """loadscope scheduling in collection order, each host chain one unit of work, whose worker is
    kept for it alone."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class HostsApartScheduling(LoadScopeScheduling):
        def __init__(self, config, log=None):
            super().__init__(config, log)
            config.option.loadscopereorder = False  # our order, not "most tests first"

        def _split_scope(self, nodeid):
            return _scope_of(nodeid)

        def _busy_with_hosts(self, node):
            return any(scope.startswith(HOST_UNIT_PREFIX) and not all(tests.values())
                       for scope, tests in self.assigned_work.get(node, {}).items())

        def _reschedule(self, node):
            if self.workqueue and self._busy_with_hosts(node):
                return  # nothing queued behind the host tests: another worker takes it
            super()._reschedule(node)

    return HostsApartScheduling(config, log)
