"""K8sModule: the option spec every k8s module gets, the lazy client and the one failure shape."""
from __future__ import annotations

import json

import pytest
from tests.unit.compat import patch_module_args

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _k8s_module
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    K8sAccessError,
)

SPEC = {"name": _k8s_module.NODE_NAME_SPEC, "timeout": _k8s_module.timeout_spec(60)}


def outcome(capsys, args, work):
    """The module's result dict after ``K8sModule.run(work)`` with ``args``."""
    with patch_module_args(args):
        module = _k8s_module.K8sModule("k8s_test", SPEC)
        module.about("node/%s" % module.params["name"], name=module.params["name"])
        with pytest.raises(SystemExit):
            module.run(lambda: work(module))
    return json.loads(capsys.readouterr().out)


def api_error(status, reason):
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "code": status, "message": "nodes \"w1\" %s" % reason.lower()})
    return exc


def test_success_carries_the_identity_fields_unless_the_work_set_them(capsys):
    result = outcome(capsys, {"node": "w1"}, lambda module: {"changed": True, "extra": 1})
    assert result["changed"] is True and result["extra"] == 1 and result["name"] == "w1"
    assert "failed" not in result
    result = outcome(capsys, {"name": "w1"}, lambda module: {"changed": False, "name": "other"})
    assert result["name"] == "other"


def test_a_module_failure_keeps_its_fields_and_gets_the_shared_ones(capsys):
    def work(module):
        raise _k8s_module.ModuleFailure("w1 is busy", holder="run-7", changed=True)

    result = outcome(capsys, {"name": "w1"}, work)
    assert result["failed"] is True and result["msg"] == "w1 is busy"
    assert result["holder"] == "run-7" and result["changed"] is True
    assert result["object"] == "node/w1" and result["name"] == "w1" and result["status"] is None
    assert isinstance(result["seconds"], float) and 0 <= result["seconds"] < 60


def test_an_api_error_names_the_object_and_keeps_the_status(capsys):
    def work(module):
        raise api_error(404, "Not Found")

    result = outcome(capsys, {"name": "w1"}, work)
    assert result["failed"] is True and result["status"] == 404
    assert result["msg"].startswith("node/w1: not found (404)")
    assert "kubectl get nodes" in result["msg"]


def test_an_access_error_is_reported_with_its_own_message(capsys):
    def work(module):
        raise K8sAccessError("cannot read kubeconfig /nope: no such file", status=None)

    result = outcome(capsys, {"name": "w1"}, work)
    assert result["msg"] == "cannot read kubeconfig /nope: no such file"
    assert result["status"] is None and result["object"] == "node/w1"


def test_an_unexpected_error_names_the_object_and_the_error(capsys):
    def work(module):
        raise RuntimeError("boom")

    result = outcome(capsys, {"name": "w1"}, work)
    assert result["failed"] is True and result["msg"] == "node/w1: RuntimeError: boom"
    assert result["object"] == "node/w1" and result["status"] is None


def test_the_client_is_made_only_when_used_and_a_bad_kubeconfig_fails_in_the_shared_shape(capsys, tmp_path):
    missing = str(tmp_path / "nope.kubeconfig")
    result = outcome(capsys, {"name": "w1", "kubeconfig": missing}, lambda module: {"changed": False})
    assert result["changed"] is False  # no request, no client, no failure
    result = outcome(capsys, {"name": "w1", "kubeconfig": missing}, lambda module: module.raw)
    assert result["failed"] is True and missing in result["msg"] and result["object"] == "node/w1"


def test_connection_options_are_merged_and_unknown_options_refused(capsys):
    result = outcome(capsys, {"name": "w1", "host": "https://127.0.0.1:1", "validate_certs": False},
                     lambda module: {"host": module.params["host"], "agent": module.user_agent})
    assert result["host"] == "https://127.0.0.1:1"
    assert result["agent"] == "kubeops.node_maintenance/k8s_test"
    with pytest.raises(SystemExit), patch_module_args({"name": "w1", "nmae": "w2"}):
        _k8s_module.K8sModule("k8s_test", SPEC)
    assert "nmae" in json.loads(capsys.readouterr().out)["msg"]


def test_the_deadline_counts_from_the_start_and_honours_the_minimum(capsys):
    def work(module):
        return {"spread": module.deadline(10) - module.started, "floor": module.deadline(0, minimum=1) - module.started}

    result = outcome(capsys, {"name": "w1"}, work)
    assert result["spread"] == 10 and result["floor"] == 1
