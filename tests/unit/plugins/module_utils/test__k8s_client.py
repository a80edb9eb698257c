"""Unit tests for _k8s_client: auth spec, client factory, error text, retries. No cluster needed."""
import base64
import json
import socket

import pytest
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from kubernetes.client.rest import ApiException

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _k8s_client as k8s
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    K8S_AUTH_ARG_SPEC,
    K8sAccessError,
    build_api_client,
    describe_api_error,
    is_transient,
    missing_kubernetes_library_message,
    retry_transient,
)

ENV_VARS = ["K8S_AUTH_KUBECONFIG", "K8S_AUTH_CONTEXT", "K8S_AUTH_HOST", "K8S_AUTH_API_KEY",
            "K8S_AUTH_VERIFY_SSL", "K8S_AUTH_SSL_CA_CERT", "K8S_AUTH_CERT_FILE", "K8S_AUTH_KEY_FILE",
            "K8S_AUTH_PROXY", "KUBECONFIG", "KUBERNETES_SERVICE_HOST"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No kubeconfig of the machine running the tests may leak in."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()


def kubeconfig_dict(server="https://10.1.2.3:6443", contexts=("main",), token="kubeconfig-token"):
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnot-a-real-ca\n-----END CERTIFICATE-----\n").decode()
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": contexts[0],
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "c", "user": "u"}} for name in contexts],
    }


def write_kubeconfig(path, **kwargs):
    path.write_text(json.dumps(kubeconfig_dict(**kwargs)))
    return str(path)


def auth_header(api_client):
    return api_client.configuration.auth_settings().get("BearerToken", {}).get("value")


# ------------------------------------------------------------------------------------------------
# argument spec
# ------------------------------------------------------------------------------------------------

def test_arg_spec_options_and_secrets():
    assert set(K8S_AUTH_ARG_SPEC) == {"kubeconfig", "context", "host", "api_key", "validate_certs",
                                      "ca_cert", "client_cert", "client_key", "proxy"}
    assert K8S_AUTH_ARG_SPEC["api_key"]["no_log"] is True
    assert K8S_AUTH_ARG_SPEC["kubeconfig"]["type"] == "raw"


@pytest.mark.parametrize("option, var, value, expected", [
    ("kubeconfig", "K8S_AUTH_KUBECONFIG", "/k/config", "/k/config"),
    ("context", "K8S_AUTH_CONTEXT", "prod", "prod"),
    ("host", "K8S_AUTH_HOST", "https://api:6443", "https://api:6443"),
    ("api_key", "K8S_AUTH_API_KEY", "s3cret", "s3cret"),
    ("validate_certs", "K8S_AUTH_VERIFY_SSL", "False", False),
    ("ca_cert", "K8S_AUTH_SSL_CA_CERT", "/k/ca.crt", "/k/ca.crt"),
    ("client_cert", "K8S_AUTH_CERT_FILE", "/k/c.crt", "/k/c.crt"),
    ("client_key", "K8S_AUTH_KEY_FILE", "/k/c.key", "/k/c.key"),
    ("proxy", "K8S_AUTH_PROXY", "http://proxy:3128", "http://proxy:3128"),
])
def test_env_fallbacks(monkeypatch, option, var, value, expected):
    monkeypatch.setenv(var, value)
    result = ArgumentSpecValidator(K8S_AUTH_ARG_SPEC).validate({})
    assert result.error_messages == []
    assert result.validated_parameters[option] == expected


def test_api_key_is_hidden():
    result = ArgumentSpecValidator(K8S_AUTH_ARG_SPEC).validate({"api_key": "s3cret-token"})
    assert "s3cret-token" in result._no_log_values


def test_explicit_option_beats_env(monkeypatch):
    monkeypatch.setenv("K8S_AUTH_HOST", "https://from-env:6443")
    result = ArgumentSpecValidator(K8S_AUTH_ARG_SPEC).validate({"host": "https://explicit:6443"})
    assert result.validated_parameters["host"] == "https://explicit:6443"


# ------------------------------------------------------------------------------------------------
# client factory
# ------------------------------------------------------------------------------------------------

def test_kubeconfig_path(tmp_path):
    api = build_api_client({"kubeconfig": write_kubeconfig(tmp_path / "kc")})
    assert api.configuration.host == "https://10.1.2.3:6443"
    assert auth_header(api) == "Bearer kubeconfig-token"
    assert api.configuration.verify_ssl is True


def test_kubeconfig_dict_and_context():
    config = kubeconfig_dict(contexts=("main", "other"))
    config["clusters"].append({"name": "c2", "cluster": {"server": "https://other:6443"}})
    config["contexts"][1]["context"]["cluster"] = "c2"
    assert build_api_client({"kubeconfig": config}).configuration.host == "https://10.1.2.3:6443"
    assert build_api_client({"kubeconfig": config, "context": "other"}).configuration.host == "https://other:6443"


def test_unknown_context_names_it(tmp_path):
    with pytest.raises(K8sAccessError) as err:
        build_api_client({"kubeconfig": write_kubeconfig(tmp_path / "kc"), "context": "nope"})
    assert "'nope'" in err.value.message and str(tmp_path / "kc") in err.value.message


def test_missing_kubeconfig_file(tmp_path):
    with pytest.raises(K8sAccessError) as err:
        build_api_client({"kubeconfig": str(tmp_path / "absent")})
    assert "does not exist" in err.value.message and "K8S_AUTH_KUBECONFIG" in err.value.message


def test_kubeconfig_of_wrong_type():
    with pytest.raises(K8sAccessError, match="path or a dictionary"):
        build_api_client({"kubeconfig": ["a"]})


def test_host_and_token_read_no_kubeconfig(tmp_path, monkeypatch):
    # A default kubeconfig exists, but host without context means: exactly these options.
    monkeypatch.setenv("KUBECONFIG", write_kubeconfig(tmp_path / "default", server="https://wrong:1"))
    api = build_api_client({"host": "https://api.example:6443/", "api_key": "abc", "validate_certs": False})
    assert api.configuration.host == "https://api.example:6443"
    assert auth_header(api) == "Bearer abc"
    assert api.configuration.verify_ssl is False
    assert api.configuration.ssl_ca_cert is None


def test_bearer_prefix_not_doubled():
    api = build_api_client({"host": "https://a:1", "api_key": "Bearer abc"})
    assert auth_header(api) == "Bearer abc"


def test_explicit_token_replaces_kubeconfig_client_cert(tmp_path):
    config = kubeconfig_dict()
    cert = base64.b64encode(b"cert").decode()
    config["users"][0]["user"] = {"client-certificate-data": cert, "client-key-data": cert}
    api = build_api_client({"kubeconfig": config, "api_key": "tok"})
    assert api.configuration.cert_file is None and api.configuration.key_file is None
    assert auth_header(api) == "Bearer tok"


def test_explicit_client_cert_replaces_kubeconfig_token(tmp_path):
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    cert.write_text("x")
    key.write_text("y")
    api = build_api_client({"kubeconfig": kubeconfig_dict(), "client_cert": str(cert), "client_key": str(key)})
    assert api.configuration.cert_file == str(cert) and api.configuration.key_file == str(key)
    assert auth_header(api) is None


def test_overrides_on_top_of_kubeconfig(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("ca")
    api = build_api_client({"kubeconfig": kubeconfig_dict(), "host": "https://lb:443", "ca_cert": str(ca),
                            "proxy": "http://proxy:3128"})
    assert api.configuration.host == "https://lb:443"
    assert api.configuration.ssl_ca_cert == str(ca)
    assert api.configuration.proxy == "http://proxy:3128"


def test_missing_ca_file_is_named(tmp_path):
    with pytest.raises(K8sAccessError) as err:
        build_api_client({"host": "https://a:1", "ca_cert": str(tmp_path / "nope.crt")})
    assert "ca_cert" in err.value.message and "nope.crt" in err.value.message


def test_default_kubeconfig_from_env_and_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", "%s:%s" % (tmp_path / "absent", write_kubeconfig(tmp_path / "kc")))
    assert build_api_client({}).configuration.host == "https://10.1.2.3:6443"
    monkeypatch.delenv("KUBECONFIG")
    home = tmp_path / "home"
    (home / ".kube").mkdir()
    write_kubeconfig(home / ".kube" / "config", server="https://from-home:6443")
    assert build_api_client({}).configuration.host == "https://from-home:6443"


def test_nothing_configured_says_what_to_set():
    with pytest.raises(K8sAccessError) as err:
        build_api_client({})
    for word in ("kubeconfig", "K8S_AUTH_KUBECONFIG", "host", "K8S_AUTH_HOST", "~/.kube/config"):
        assert word in err.value.message


def test_context_without_any_kubeconfig():
    with pytest.raises(K8sAccessError, match="context 'prod'"):
        build_api_client({"context": "prod"})


def test_missing_library(monkeypatch):
    monkeypatch.setattr(k8s, "HAS_KUBERNETES", False)
    monkeypatch.setattr(k8s, "KUBERNETES_IMPORT_ERROR", ImportError("No module named 'kubernetes'"))
    with pytest.raises(K8sAccessError) as err:
        build_api_client({"host": "https://a:1"})
    assert "pip install kubernetes" in err.value.message
    assert "No module named 'kubernetes'" in err.value.message
    assert "-m pip install kubernetes" in missing_kubernetes_library_message()


# ------------------------------------------------------------------------------------------------
# error text
# ------------------------------------------------------------------------------------------------

def api_error(status, message=None, reason=None, headers=None):
    exc = ApiException(status=status, reason=reason or "Reason")
    exc.body = json.dumps({"kind": "Status", "message": message}) if message is not None else None
    exc.headers = headers
    return exc


def test_not_found_names_object_and_listing():
    assert describe_api_error(api_error(404, 'nodes "worker-3" not found'), "node/worker-3") == \
        "node/worker-3: not found (404); `kubectl get nodes` lists the names"
    assert describe_api_error(api_error(404), "pdb default/web") == \
        "pdb default/web: not found (404); `kubectl get pdb -n default` lists the names"
    assert describe_api_error(api_error(404), "pod/shop/web-1").endswith("`kubectl get pods -n shop` lists the names")


def test_forbidden_explains_rbac():
    msg = describe_api_error(api_error(
        403, 'nodes "n1" is forbidden: User "system:serviceaccount:t:nobody" cannot patch resource "nodes" '
             'in API group "" at the cluster scope'), "node/n1")
    assert msg.startswith('node/n1: forbidden (403): nodes "n1" is forbidden: User "system:serviceaccount:t:nobody"')
    assert "`kubectl auth can-i patch nodes`" in msg and "RBAC" in msg


def test_forbidden_with_api_group():
    msg = describe_api_error(api_error(
        403, 'leases.coordination.k8s.io "l" is forbidden: User "x" cannot update resource "leases" in API group '
             '"coordination.k8s.io" in the namespace "ns"'), "lease ns/l")
    assert "`kubectl auth can-i update leases.coordination.k8s.io`" in msg


@pytest.mark.parametrize("status, fragment", [
    (401, "did not accept the credentials"),
    (409, "run the task again"),
    (422, "check the module's arguments"),
    (429, "throttling"),
    (500, "readyz"),
    (503, "try again later"),
])
def test_statuses_have_hints(status, fragment):
    msg = describe_api_error(api_error(status, "the server said so"), "node/n1")
    assert msg.startswith("node/n1: ") and "(%d): the server said so" % status in msg and fragment in msg


def test_non_json_body_is_shown():
    exc = ApiException(status=502, reason="Bad Gateway")
    exc.body = "<html>upstream down</html>"
    assert "upstream down" in describe_api_error(exc, "node/n1")


def test_access_error_passes_through():
    assert describe_api_error(K8sAccessError("node/n1: boom"), "node/n1") == "node/n1: boom"
    assert describe_api_error(K8sAccessError("boom"), "node/n1") == "node/n1: boom"


def test_ssl_error_advises_ca():
    exc = ApiException(status=0, reason="SSLError\nHTTPSConnectionPool(host='127.0.0.1', port=6443): Max retries "
                                        "exceeded (Caused by SSLError(SSLCertVerificationError(1, '[SSL: "
                                        "CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
                                        "certificate in certificate chain')))")
    msg = describe_api_error(exc, "node/n1")
    assert "certificate verify failed" in msg and "ca_cert" in msg and "validate_certs=false" in msg
    assert not is_transient(exc)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_described_and_transient():
    from kubernetes.client import CoreV1Api

    port = closed_port()
    api = build_api_client({"host": "https://127.0.0.1:%d" % port, "validate_certs": False})
    with pytest.raises(Exception) as err:
        CoreV1Api(api).read_node("n1", _request_timeout=5)
    assert is_transient(err.value)
    msg = describe_api_error(err.value, "node/n1")
    assert msg.startswith("node/n1: cannot reach https://127.0.0.1:%d" % port), msg
    assert "refused" in msg.lower()


@pytest.mark.parametrize("exc, transient", [
    (api_error(429), True), (api_error(500), True), (api_error(503), True), (api_error(504), True),
    (api_error(501), False), (api_error(404), False), (api_error(403), False), (api_error(409), False),
    (api_error(422), False), (ConnectionRefusedError(), True), (ValueError(), False),
    (FileNotFoundError(), False),
])
def test_is_transient(exc, transient):
    assert is_transient(exc) is transient


# ------------------------------------------------------------------------------------------------
# retries
# ------------------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def flaky(*errors, result="ok"):
    errors = list(errors)
    calls = []

    def fn():
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return result

    fn.calls = calls
    return fn


def test_retries_transient_then_succeeds():
    clock = FakeClock()
    fn = flaky(api_error(503), ConnectionResetError(), api_error(429))
    assert retry_transient(fn, deadline=clock() + 60, describe="node/n1", sleep=clock.sleep, clock=clock) == "ok"
    assert len(fn.calls) == 4 and len(clock.sleeps) == 3
    assert clock.sleeps[0] <= clock.sleeps[2] * 4  # growing backoff, with jitter


def test_non_transient_raised_at_once():
    clock = FakeClock()
    fn = flaky(api_error(404))
    with pytest.raises(ApiException) as err:
        retry_transient(fn, deadline=clock() + 60, describe="node/n1", sleep=clock.sleep, clock=clock)
    assert err.value.status == 404 and clock.sleeps == []


def test_gives_up_at_deadline_with_translated_message():
    clock = FakeClock()
    fn = flaky(*[api_error(503, "etcdserver: leader changed")] * 1000)
    with pytest.raises(K8sAccessError) as err:
        retry_transient(fn, deadline=clock() + 10, describe=lambda: "node/n1", sleep=clock.sleep, clock=clock)
    assert err.value.status == 503 and isinstance(err.value.cause, ApiException)
    assert err.value.message.startswith("node/n1: service unavailable (503): etcdserver: leader changed")
    assert "gave up" in err.value.message
    assert clock.now <= 1010.0 + 1e-9  # never slept past the deadline


def test_retry_after_is_honoured():
    clock = FakeClock()
    fn = flaky(api_error(429, headers={"Retry-After": "3"}))
    retry_transient(fn, deadline=clock() + 60, describe="node/n1", sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [3.0]


def test_backoff_is_capped():
    clock = FakeClock()
    fn = flaky(*[api_error(500)] * 30)
    retry_transient(fn, deadline=clock() + 3600, describe="node/n1", sleep=clock.sleep, clock=clock)
    assert max(clock.sleeps) <= 8.0


def test_tls_failure_becomes_access_error_at_once():
    clock = FakeClock()
    exc = ApiException(status=0, reason="SSLError\ncertificate verify failed: unable to get local issuer certificate")
    with pytest.raises(K8sAccessError) as err:
        retry_transient(flaky(exc), deadline=clock() + 60, describe="node/n1", sleep=clock.sleep, clock=clock)
    assert err.value.message.startswith("node/n1: cannot verify the TLS certificate")
    assert err.value.cause is exc and clock.sleeps == []


def test_programming_errors_propagate():
    clock = FakeClock()
    with pytest.raises(KeyError):
        retry_transient(flaky(KeyError("x")), deadline=clock() + 60, describe="node/n1", sleep=clock.sleep,
                        clock=clock)
