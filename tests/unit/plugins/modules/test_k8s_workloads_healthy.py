"""k8s_workloads_healthy run as Ansible runs it, over HTTP (a scripted API server on 127.0.0.1).

What it reads and waits for is tested in tests/unit/plugins/module_utils/test__workload_health.py;
the real API server is exercised by tests/integration/test_k8s_workloads_healthy.py.
"""
from __future__ import annotations

from tests.unit.compat import CORE
from tests.unit.fake_k8s_server import (
    STAMPS,
    by_path,
    generated_classes,
    item_list,
    run_module,
    status_body,
)
from tests.unit.plugins.module_utils.test__workload_health import (
    DEPLOYMENTS,
    PAGE,
    PDBS,
    REPLICASETS,
    api_deployment,
    api_pdb,
    api_replicaset,
    named,
)


def test_module_run_reads_the_api_without_the_generated_classes(k8s_server, tmp_path):
    deployments = [api_deployment("web", 3), api_deployment("api", 3, STAMPS[1])]
    server = k8s_server(by_path({
        DEPLOYMENTS: lambda q: (200, item_list("DeploymentList", named(deployments, q))),
        REPLICASETS: lambda q: (200, item_list("ReplicaSetList", named([api_replicaset("web-6d4b", "web")], q))),
        PDBS: lambda q: (200, item_list("PodDisruptionBudgetList", [api_pdb()])),
    }))
    args = dict(server.params, pods=[{"namespace": "shop", "owner_kind": "ReplicaSet", "owner_name": "web-6d4b"},
                                     {"namespace": "shop", "owner_kind": "Job", "owner_name": "batch"}],
                workloads=[{"kind": "Deployment", "namespace": "shop", "name": "api"}],
                pdbs_from_workloads=True, timeout=0)
    result, imported = run_module("k8s_workloads_healthy", args, tmp_path)
    assert generated_classes(imported) == []
    assert result["changed"] is False and result["healthy"] is True and result["polls"] == 1, result
    assert [(w["name"], w["summary"], w.get("resolved_from")) for w in result["workloads"]] == [
        ("api", "deployment shop/api: 3/3 ready", None),
        ("web", "deployment shop/web: 3/3 ready", "ReplicaSet shop/web-6d4b")]
    assert [(p["name"], p["matched_workloads"]) for p in result["pdbs"]] == [("web", ["deployment shop/web"])]
    assert [(r["path"], r["query"]) for r in server.requests] == [
        (REPLICASETS, [("fieldSelector", "metadata.name=web-6d4b"), PAGE]),
        (DEPLOYMENTS, [PAGE]),
        (PDBS, [PAGE]),
    ]


def test_module_run_fails_at_the_timeout_with_what_is_missing(k8s_server, tmp_path):
    server = k8s_server(by_path({DEPLOYMENTS: lambda q: (200, item_list("DeploymentList", [api_deployment("web", 2)]))}))
    args = dict(server.params, workloads=[{"kind": "Deployment", "namespace": "shop", "name": "web"}],
                timeout=0)
    result, _imported = run_module("k8s_workloads_healthy", args, tmp_path)
    assert result["failed"] is True and result["healthy"] is False
    assert result["msg"] == "not healthy after 0s: deployment shop/web: 2/3 ready, 2/3 available"
    assert result["object"] == "workloads" and result["status"] is None and result["polls"] == 1
    assert result["unhealthy"] == ["deployment shop/web: 2/3 ready, 2/3 available"]


def test_module_run_fails_with_the_translated_error(k8s_server, tmp_path):
    server = k8s_server(by_path({DEPLOYMENTS: lambda q: (401, status_body(401, "Unauthorized", "Unauthorized"))}))
    args = dict(server.params, workloads=[{"kind": "Deployment", "namespace": "shop", "name": "web"}], timeout=0)
    result, _imported = run_module("k8s_workloads_healthy", args, tmp_path)
    assert result["failed"] is True and result["status"] == 401
    assert result["msg"] == (
        "deployment shop/web: unauthorized (401): Unauthorized; the API server did not accept the credentials; "
        "check api_key / client_cert / client_key or the kubeconfig user (an expired token or certificate does "
        "this too)")
    assert result["object"] == "workloads"


def test_module_run_names_what_failed_in_an_unexpected_error(k8s_server, tmp_path):
    """A list answer that is JSON but no list object is no API error the reader translates: K8sModule
    translates it, for "workloads"."""
    server = k8s_server(by_path({DEPLOYMENTS: lambda q: (200, b"[1]")}))
    args = dict(server.params, workloads=[{"kind": "Deployment", "namespace": "shop", "name": "web"}], timeout=0)
    result, _imported = run_module("k8s_workloads_healthy", args, tmp_path)
    assert result["failed"] is True and result["status"] is None and result["object"] == "workloads"
    assert result["msg"] == "workloads: AttributeError: 'list' object has no attribute 'get'", result["msg"]
    # ansible-core before 2.19 adds the traceback of a fail_json inside an except block
    assert sorted(result) == ["exception"] * (CORE < (2, 19)) + ["failed", "invocation", "msg", "object", "seconds",
                                                                 "status"]


def test_module_run_refuses_bad_options_before_connecting(tmp_path):
    args = {"host": "https://127.0.0.1:1", "api_key": "x", "timeout": -1, "poll_interval": 0}
    result, _imported = run_module("k8s_workloads_healthy", args, tmp_path)
    assert result["failed"] is True and result["object"] == "workloads" and result["status"] is None
    assert result["msg"] == "timeout must not be negative; poll_interval must be more than 0"
