"""Unit tests for _replacement_first's rules: who opts in, which Deployments an eviction would take
down or block, which strategies cannot start replacements first, and when a restarted Deployment is
replaced. The restart itself, with a real Deployment controller, is in
tests/integration/test_k8s_node_drain.py."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _replacement_first as rf


def pod(annotation=None):
    meta = {"name": "p", "namespace": "shop"}
    if annotation is not None:
        meta["annotations"] = {rf.ANNOTATION: annotation}
    return {"metadata": meta}


def deployment(replicas=2, ready=2, strategy=None, paused=False, generation=1, observed=1, **status):
    spec = {"replicas": replicas}
    if strategy is not None:
        spec["strategy"] = strategy
    if paused:
        spec["paused"] = True
    body = {"readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": replicas, "replicas": replicas,
            "observedGeneration": observed}
    body.update(status)
    return {"metadata": {"name": "web", "namespace": "shop", "generation": generation}, "spec": spec, "status": body}


def entry(name, ready=True, pdb_allows=None):
    pdbs = [] if pdb_allows is None else [{"namespace": "shop", "name": "web", "disruptions_allowed": pdb_allows}]
    return {"namespace": "shop", "name": name, "ready": ready, "pdb": pdbs, "uid": "u-" + name}


@pytest.mark.parametrize("annotation, run_default, want", [
    (None, False, False), (None, True, True), ("true", False, True), ("True", False, True),
    ("false", True, False), (" FALSE ", True, False), ("yes", False, False), ("yes", True, True)])
def test_the_pods_annotation_decides_and_the_run_fills_in(annotation, run_default, want):
    assert rf.opted_in(pod(annotation), run_default) is want


@given(replicas=st.integers(0, 500), percent=st.integers(0, 100))
def test_a_percentage_surge_rounds_up_as_the_deployment_controller_does(replicas, percent):
    dep = deployment(replicas=replicas, strategy={"type": "RollingUpdate",
                                                  "rollingUpdate": {"maxSurge": "%d%%" % percent}})
    assert rf.surge(dep) == int(math.ceil(percent * replicas / 100.0))


def test_surge_defaults_and_recreate():
    assert rf.surge(deployment(replicas=4)) == 1                                  # 25% of 4
    assert rf.surge(deployment(replicas=1)) == 1                                  # 25% of 1, rounded up
    assert rf.surge(deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3}})) == 3
    assert rf.surge(deployment(strategy={"type": "Recreate"})) is None


@pytest.mark.parametrize("dep, words", [
    (deployment(strategy={"type": "Recreate"}), "Recreate"),
    (deployment(strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}), "maxSurge 0"),
    (deployment(replicas=3, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "0%"}}), "maxSurge 0"),
    (deployment(paused=True), "paused"),
])
def test_strategies_that_stop_old_pods_first_are_not_restarted(dep, words):
    assert words in rf.obstacle(dep)


def test_a_rolling_update_with_surge_has_no_obstacle():
    assert rf.obstacle(deployment()) is None


def test_plan_picks_deployments_an_eviction_would_take_down_or_block():
    key_all, key_pdb, key_fine, key_recreate = ("shop", "all"), ("shop", "pdb"), ("shop", "fine"), ("shop", "rec")
    groups = {
        key_all: [entry("all-1"), entry("all-2")],                     # both ready replicas here
        key_pdb: [entry("pdb-1", pdb_allows=0)],                        # 1 of 3 here, budget spent
        key_fine: [entry("fine-1", pdb_allows=1)],                      # 1 of 3 here, budget has room
        key_recreate: [entry("rec-1")],                                 # its only replica, but Recreate
    }
    deployments = {key_all: deployment(ready=2), key_pdb: deployment(replicas=3, ready=3),
                   key_fine: deployment(replicas=3, ready=3),
                   key_recreate: deployment(replicas=1, ready=1, strategy={"type": "Recreate"})}
    items = {item["name"]: item for item in rf.plan(groups, deployments)}
    assert sorted(items) == ["all", "pdb", "rec"]
    assert items["all"]["reason"] == "every ready replica (2) is on the node" and "state" not in items["all"]
    assert items["all"]["pods"] == ["all-1", "all-2"]
    assert items["pdb"]["reason"] == "pdb shop/web allows no disruption now" and "state" not in items["pdb"]
    assert items["rec"]["state"] == rf.STATE_NOT_POSSIBLE and "Recreate" in items["rec"]["detail"]


def test_a_deployment_with_no_ready_replica_gains_nothing_from_a_restart():
    groups = {("shop", "web"): [entry("web-1", ready=False)]}
    assert rf.plan(groups, {("shop", "web"): deployment(replicas=1, ready=0)}) == []


def test_a_deployment_that_is_gone_is_left_to_the_eviction():
    assert rf.plan({("shop", "web"): [entry("web-1")]}, {}) == []


def test_restart_patch_is_kubectl_rollout_restarts():
    assert rf.restart_patch("2026-12-03T10:00:00Z") == {
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-03T10:00:00Z"}}}}}


def test_replaced_waits_for_the_restart_the_rollout_and_the_pods_leaving_the_node():
    # the controller has not seen the restart yet
    assert rf.replaced(deployment(generation=2, observed=1), 2, ["u1"], []) == [
        "the restart (generation 2) not observed yet"]
    # seen, new pod not ready yet, old one still on the node
    rolling = deployment(replicas=1, ready=1, generation=2, observed=2, updatedReplicas=0)
    rolling["status"]["replicas"] = 2
    missing = rf.replaced(rolling, 2, ["u1"], ["u1", "other"])
    assert "0/1 updated" in missing and "1 of its pods still on the node" in missing
    # rollout complete but the old pod is still terminating on the node
    assert rf.replaced(deployment(replicas=1, ready=1, generation=2, observed=2), 2, ["u1"], ["u1"]) == [
        "1 of its pods still on the node"]
    # done
    assert rf.replaced(deployment(replicas=1, ready=1, generation=2, observed=2), 2, ["u1"], ["other"]) == []


def test_opted_in_entries_only_looks_at_evicted_pods():
    pods = {("shop", "a"): pod("true"), ("shop", "b"): pod(), ("shop", "c"): pod("true")}
    entries = [{"namespace": "shop", "name": "a", "plan": "evict"}, {"namespace": "shop", "name": "b", "plan": "evict"},
               {"namespace": "shop", "name": "c", "plan": "skip"}]
    assert [e["name"] for e in rf.opted_in_entries(entries, pods, False)] == ["a"]
    assert [e["name"] for e in rf.opted_in_entries(entries, pods, True)] == ["a", "b"]
