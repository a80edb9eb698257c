"""The collection as users get it: built into a tarball, installed, its main job run by name.

A user who installs the collection (``ansible-galaxy collection install``, or an execution
environment built with it) has no checkout and no path to a playbook; the rolling maintenance job
must run as ``ansible-playbook kubeops.node_maintenance.rolling_maintenance``. The test builds the
collection from this checkout, installs the tarball into an empty directory, and runs the job by
that name from a directory outside the checkout (so neither the checkout's ansible.cfg nor its
build/collections link is in play) over two kwok nodes of the real local control plane.
"""
import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
# rollout: the fixture of test_rolling_maintenance (two kwok nodes to roll, one to take the pods)
from tests.integration.test_rolling_maintenance import (  # pylint: disable=unused-import
    deployment, node_record, pdb, rollout, wait_ready)

pytestmark = pytest.mark.integration

PLAYBOOK_FQCN = "kubeops.node_maintenance.rolling_maintenance"


def _bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The collection built from this checkout and installed into a fresh collections path."""
    work = tmp_path_factory.mktemp("installed-collection")
    subprocess.run([_bin("ansible-galaxy"), "collection", "build", "--output-path", str(work), REPO_ROOT],
                   check=True, capture_output=True, text=True, cwd=str(work))
    tarballs = sorted(work.glob("kubeops-node_maintenance-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    collections = work / "collections"
    res = subprocess.run([_bin("ansible-galaxy"), "collection", "install", "--offline", "--no-deps",
                          "-p", str(collections), str(tarballs[0])],
                         capture_output=True, text=True, cwd=str(work), check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    playbooks = collections / "ansible_collections" / "kubeops" / "node_maintenance" / "playbooks"
    assert sorted(p.name for p in playbooks.iterdir()) == ["rolling-maintenance.yml", "rolling_maintenance.yml"]
    return collections


def _installed_env(installed, stdout_callback=None):
    """Only the installed collection on the collections path, no ansible.cfg named."""
    return {"ANSIBLE_COLLECTIONS_PATH": str(installed), "ANSIBLE_CONFIG": None,
            "ANSIBLE_STDOUT_CALLBACK": stdout_callback}


def _web_behind_a_pdb(cluster, namespace, pool):
    cluster.apps.create_namespaced_deployment(namespace, deployment("web", 3, pool))
    cluster.policy.create_namespaced_pod_disruption_budget(namespace, pdb("web", minAvailable=2))
    wait_ready(cluster, namespace, "web", 3)


def test_the_rolling_job_runs_by_its_fqcn_from_an_installed_collection(
        cluster, namespace, rollout, installed, tmp_path):
    _web_behind_a_pdb(cluster, namespace, rollout.pool)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    res = rollout("installed-1", playbook=PLAYBOOK_FQCN, env=_installed_env(installed), cwd=str(outside))
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    for name in rollout.nodes[:2]:
        record = node_record(cluster, name)
        assert (record["rollout"], record["status"]) == ("installed-1", "done"), record
        assert not cluster.core.read_node(name).spec.unschedulable
    report = json.loads((tmp_path / "reports" / "installed-1" / "report.json").read_text())
    assert [n["status"] for n in report["nodes"]] == ["done", "done"]


def test_the_rollout_callback_prints_a_line_per_node_per_phase_and_failures_in_full(
        cluster, namespace, rollout, installed, tmp_path):
    """The installed collection's stdout callback: progress lines from the nodes' records, no task
    banners or skipped tasks, the failure of a node that does not exist in full."""
    _web_behind_a_pdb(cluster, namespace, rollout.pool)
    ghost = "kubeops-no-such-node-%s" % namespace[-6:]
    with open(rollout.inventory, "a") as handle:
        handle.write("%s ansible_host=127.0.0.1 ansible_port=1\n" % ghost)
    nodes = rollout.nodes
    # a textfile in a directory that does not exist: the role warns after every node, and the
    # callback must show that warning although it hides the task
    unwritable = tmp_path / "no-such-dir" / "rollout.prom"
    res = rollout("callback-1", playbook=PLAYBOOK_FQCN, cwd=str(tmp_path),
                  env=_installed_env(installed, "kubeops.node_maintenance.rollout"),
                  node_maintenance_metrics_textfile=str(unwritable))
    out = res.stdout
    assert res.returncode != 0, out[-6000:]
    lines = out.splitlines()
    progress = [line.split(" ", 1)[1] for line in lines if re.match(r"^\d\d:\d\d:\d\d ", line)]
    for name in nodes[:2]:
        assert any(line.startswith(name + ": drain done in ") for line in progress), out
        assert any(line.startswith(name + ": DONE in ") for line in progress), out
        assert node_record(cluster, name)["status"] == "done"
    assert "PLAY Rolling Kubernetes node maintenance (3 nodes)" in progress, out
    second_done = [line for line in progress if line.startswith(nodes[1] + ": DONE")]
    assert re.search(r"\[2 done, 0 failed, 1 left, about \d+s to go\]$", second_done[0]), out
    assert progress[-1] == "ROLLOUT 2 done, 1 failed (%s), 0 not reached" % ghost, out
    warned = [line for line in progress if "WARNING: rollout metrics not delivered" in line]
    assert warned and all(line.endswith("the rollout goes on") for line in warned), out
    assert any(line.startswith(nodes[0] + ": WARNING: ") for line in warned), out
    # the ghost's failure in full, once (the role's rescue reports it, with what to do next), then
    # the recap; no banners, no skipped tasks, no bookkeeping
    assert out.count("fatal: [%s]: FAILED!" % ghost) == 1, out[-6000:]
    assert "Rollout callback-1 stopped at node %s" % ghost in out
    assert "PLAY RECAP" in out
    assert "skipping:" not in out and "ok: [" not in out
    assert sum(1 for line in lines if line.startswith("TASK [")) == 1, out  # the failure's
    assert len(lines) < 80, "%d lines:\n%s" % (len(lines), out)
