"""k8s_maintenance_lock run end to end as Ansible runs it, against a scripted API server on 127.0.0.1
(fake_k8s_server). Its logic (LockTask, LockClient) is tested in
tests/unit/plugins/module_utils/test__maintenance_lock.py; the real API server is exercised by
tests/integration/test_k8s_maintenance_lock.py and test_faults_rollout.py."""
from __future__ import annotations

import pytest

from tests.unit.fake_k8s_server import (
    generated_classes,
    run_module,
    status_body,
    warning_texts,
)
from tests.unit.plugins.module_utils.test__maintenance_lock import (
    KURED_PATH,
    LEASES,
    SERVER_DATE,
    LeaseStore,
    lease,
)


def test_module_acquires_renews_and_releases_without_generated_classes(k8s_server, tmp_path):
    store = LeaseStore()
    server = k8s_server(store, date=SERVER_DATE)
    args = dict(server.params, name="lock", namespace="ns", kured_namespace="ns", holder="beta",
                duration_seconds=60)
    first, imported = run_module("k8s_maintenance_lock", args, tmp_path)
    assert not first.get("failed"), first
    assert first["changed"] is True and first["outcome"] == "created" and first["acquired"] is True
    assert first["lease"]["holder_identity"] == "beta" and first["lease"]["expires_in_seconds"] == 60
    assert first["lease"]["renew_time"] == "2026-11-30T02:00:00.000000Z"  # the server's clock, from Date
    assert store.lease["spec"]["holderIdentity"] == "beta"
    assert generated_classes(imported) == []
    assert server.calls() == [("GET", LEASES + "/lock"), ("GET", KURED_PATH), ("POST", LEASES)]
    assert all(r["headers"]["user-agent"] == "kubeops.node_maintenance/k8s_maintenance_lock" for r in server.requests)

    renewed, _imported = run_module("k8s_maintenance_lock", args, tmp_path)
    assert renewed["outcome"] == "renewed" and renewed["lease"]["resource_version"] == "3"
    other, _imported = run_module("k8s_maintenance_lock", dict(args, holder="gamma"), tmp_path)
    assert other["failed"] is True and other["busy_reason"] == "lease" and other["previous_holder"] == "beta"
    assert other["busy_holder"] == "beta" and other["busy_until"] == "2026-11-30T02:01:00Z"
    assert other["object"] == "lease ns/lock" and other["holder"] == "gamma" and other["status"] is None
    assert isinstance(other["seconds"], float)
    writes = len([call for call in server.calls() if call[0] != "GET"])
    query, _imported = run_module("k8s_maintenance_lock", dict(args, holder="gamma", state="query"), tmp_path)
    assert not query.get("failed") and query["changed"] is False and query["available"] is False
    assert (query["busy_reason"], query["busy_holder"], query["busy_until"]) == ("lease", "beta", "2026-11-30T02:01:00Z")
    assert query["lease"]["resource_version"] == "3" and query["holder"] == "gamma"
    assert len([call for call in server.calls() if call[0] != "GET"]) == writes
    released, _imported = run_module("k8s_maintenance_lock", dict(args, state="absent"), tmp_path)
    assert released["outcome"] == "released" and store.lease["spec"].get("holderIdentity") is None


@pytest.mark.parametrize("renewed", ["2026-11-30T01:58:00.000000Z", "2026-11-30T01:58:00Z",
                                     "2026-11-30T01:58:00+00:00", "2026-11-30T01:58:00.000000+00:00",
                                     "2026-11-30T02:58:00+01:00"])
def test_module_breaks_an_expired_claim_whatever_form_its_renew_time_has(k8s_server, tmp_path, renewed):
    """The API server writes MicroTime as ``...Z``; what an older client wrote with isoformat()
    (``+00:00``), or another tool with an offset, is the same instant and expires the same way."""
    stale = lease("dead", duration=60)
    stale["spec"]["renewTime"] = stale["spec"]["acquireTime"] = renewed
    store = LeaseStore(stale)
    server = k8s_server(store, date=SERVER_DATE)
    args = dict(server.params, name="lock", namespace="ns", kured_check=False, holder="beta")
    result, _imported = run_module("k8s_maintenance_lock", args, tmp_path)
    assert result["outcome"] == "broke" and result["previous_holder"] == "dead", result
    assert warning_texts(result) == ["took over lease ns/lock from 'dead' (renewed 2026-11-30T01:58:00Z, expired "
                                     "2026-11-30T01:59:00Z, 60s ago), whose claim had expired"]
    # one second less old: still held by its holder
    stale["spec"]["renewTime"] = stale["spec"]["acquireTime"] = renewed.replace(":58:00", ":59:01")
    store = LeaseStore(stale)
    server = k8s_server(store, date=SERVER_DATE)
    busy, _imported = run_module("k8s_maintenance_lock", dict(args, **server.params), tmp_path)
    assert busy["failed"] is True and busy["busy_reason"] == "lease"
    assert "expires 2026-11-30T02:00:01Z, in 1s" in busy["msg"], busy["msg"]


def test_module_translates_api_errors(k8s_server, tmp_path):
    store = LeaseStore()
    forbidden = ('leases.coordination.k8s.io "lock" is forbidden: User "ops" cannot get resource "leases" in API '
                 'group "coordination.k8s.io" in the namespace "ns"')
    store.fail[("GET", 1)] = (403, status_body(403, "Forbidden", forbidden))
    server = k8s_server(store, date=SERVER_DATE)
    result, _imported = run_module("k8s_maintenance_lock", dict(server.params, name="lock", namespace="ns",
                                                                holder="beta"), tmp_path)
    assert result["failed"] is True and result["status"] == 403
    assert result["msg"].startswith('lease ns/lock: forbidden (403): leases.coordination.k8s.io "lock" is forbidden')
    assert result["msg"].endswith("`kubectl auth can-i get leases.coordination.k8s.io`")
