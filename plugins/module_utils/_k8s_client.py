# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one way the collection's modules reach a Kubernetes API server.

Private to this collection (the leading underscore): other collections must not import it.

- ``K8S_AUTH_ARG_SPEC``: the connection options every k8s module accepts, with ``K8S_AUTH_*``
  environment fallbacks (the variables AWX's Kubernetes credential sets).
- ``build_api_client(params)``: a ``kubernetes.client.ApiClient`` from those options.
- ``describe_api_error(exc, obj_ref)``: one sentence naming the object, what the API said and what the
  user can do about it.
- ``retry_transient(fn, deadline=..., describe=...)``: retries connection errors, 5xx and 429.
- ``K8sAccessError``: raised with a message fit for ``fail_json(msg=...)``.
- ``RawApi(api_client)``: JSON requests over that client's connection pool, auth and TLS settings;
  ``call()`` raises ``ApiException`` for a non-2xx answer, ``list_all()`` pages through a list;
  ``pods_on_node(raw, node, ...)``: the one list of a node's pods.

Why requests go through ``RawApi`` and not the generated ``CoreV1Api`` & co.: since kubernetes 35
the generated API classes are pydantic models, and importing ``CoreV1Api`` alone costs about 0.65 s
of CPU (hundreds of model classes built at import), more than most of our module runs need for
their own work; and a node's pod list, polled many times, does not need model objects at all.
Everything about *how* to reach the cluster still comes from ``build_api_client``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import random
import re
import sys
import threading
import time

from urllib.parse import quote, urlencode

from ansible.module_utils.basic import env_fallback

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException

    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError as import_error:  # the message is produced when a module asks for a client
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = import_error
    k8s_client = None
    k8s_config = None

    class ApiException(Exception):
        """Stand-in so ``except ApiException`` works when the library is missing."""

        status = None
        reason = None
        body = None
        headers = None

    class ConfigException(Exception):
        """Stand-in for kubernetes.config.ConfigException."""

try:
    import urllib3.exceptions as urllib3_exceptions
except ImportError:  # pragma: no cover - kubernetes requires urllib3
    urllib3_exceptions = None


K8S_AUTH_ARG_SPEC = {
    "kubeconfig": {"type": "raw", "fallback": (env_fallback, ["K8S_AUTH_KUBECONFIG"])},
    "context": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_CONTEXT"])},
    "host": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_HOST"])},
    "api_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["K8S_AUTH_API_KEY"])},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"],
                       "fallback": (env_fallback, ["K8S_AUTH_VERIFY_SSL"])},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"],
                "fallback": (env_fallback, ["K8S_AUTH_SSL_CA_CERT"])},
    "client_cert": {"type": "path", "aliases": ["cert_file"],
                    "fallback": (env_fallback, ["K8S_AUTH_CERT_FILE"])},
    # A path to the key, not the key itself; no_log would only hide the path.
    "client_key": {"type": "path", "aliases": ["key_file"], "no_log": False,
                   "fallback": (env_fallback, ["K8S_AUTH_KEY_FILE"])},
    "proxy": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_PROXY"])},
}

# Longest single HTTP request; a hung API server must not hang the module past its timeout.
MAX_REQUEST_SECONDS = 30.0

_STATUS_TEXT = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    410: "gone",
    422: "invalid",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}

# kubectl resource names for the kinds that appear in object references.
_KUBECTL_RESOURCE = {
    "node": "nodes",
    "pod": "pods",
    "pdb": "pdb",
    "poddisruptionbudget": "pdb",
    "lease": "leases",
    "namespace": "namespaces",
    "deployment": "deployments",
    "statefulset": "statefulsets",
    "daemonset": "daemonsets",
    "replicaset": "replicasets",
    "serviceaccount": "serviceaccounts",
}


class K8sAccessError(Exception):
    """A failure to reach or use the API, with ``message`` ready to show to the user.

    ``status`` is the HTTP status when the API answered (None for connection and config errors),
    ``cause`` the underlying exception, if any.
    """

    def __init__(self, message, status=None, cause=None):
        super(K8sAccessError, self).__init__(message)
        self.message = message
        self.status = status
        self.cause = cause


def missing_kubernetes_library_message():
    """What to tell the user when ``import kubernetes`` failed on the host running the module."""
    detail = " (import error: %s)" % KUBERNETES_IMPORT_ERROR if KUBERNETES_IMPORT_ERROR else ""
    return (
        "This module needs the Python library 'kubernetes' (>= 29.0.0) on the host that runs it, "
        "for the interpreter %s%s. Install it with `pip install kubernetes` (for that interpreter: "
        "`%s -m pip install kubernetes`), or point ansible_python_interpreter at a Python that "
        "has it. The collection's requirements.txt lists everything it needs."
        % (sys.executable, detail, sys.executable)
    )


# --------------------------------------------------------------------------------------------
# Client factory
# --------------------------------------------------------------------------------------------

def _default_kubeconfig():
    """The kubeconfig kubectl would use: $KUBECONFIG (may list several files) or ~/.kube/config."""
    value = os.environ.get("KUBECONFIG")
    if value:
        paths = [p for p in value.split(os.pathsep) if p]
        if any(os.path.exists(os.path.expanduser(p)) for p in paths):
            return value
        return None
    path = os.path.expanduser("~/.kube/config")
    return path if os.path.exists(path) else None


def _in_cluster():
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(
        "/var/run/secrets/kubernetes.io/serviceaccount/token")


def _load_kubeconfig(configuration, kubeconfig, context, origin):
    try:
        if isinstance(kubeconfig, dict):
            k8s_config.load_kube_config_from_dict(
                config_dict=kubeconfig, context=context,
                client_configuration=configuration, persist_config=False)
        else:
            k8s_config.load_kube_config(
                config_file=kubeconfig, context=context,
                client_configuration=configuration, persist_config=False)
    except (ConfigException, ValueError, TypeError, KeyError, IOError, OSError) as exc:
        where = "the kubeconfig given as a dictionary" if isinstance(kubeconfig, dict) else \
            "kubeconfig %s (%s)" % (kubeconfig, origin)
        context_text = " with context %r" % context if context else ""
        raise K8sAccessError("cannot use %s%s: %s" % (where, context_text, exc), cause=exc)


def _check_file(option, path):
    if path and not os.path.exists(path):
        raise K8sAccessError("%s %s does not exist (from the %s option or its K8S_AUTH_* variable)"
                             % (option, path, option))


def build_api_client(params):
    """A ``kubernetes.client.ApiClient`` built from the auth options in ``params``.

    Where the connection comes from, first match wins:
      1. ``kubeconfig`` (a path, or the kubeconfig as a dict), with ``context``;
      2. ``host`` without ``context``: only the explicit options, no kubeconfig is read;
      3. the default kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``), with ``context``;
      4. the in-cluster service account.
    Explicit options (``host``, ``api_key``, ``validate_certs``, ``ca_cert``, ``client_cert``,
    ``client_key``, ``proxy``) then override what the kubeconfig said; an explicit ``api_key`` or
    client certificate replaces the kubeconfig user's credentials instead of being sent with them.
    Raises ``K8sAccessError`` with a message for the user.
    """
    if not HAS_KUBERNETES:
        raise K8sAccessError(missing_kubernetes_library_message())
    params = params or {}
    kubeconfig = params.get("kubeconfig")
    context = params.get("context")
    host = params.get("host")
    api_key = params.get("api_key")
    client_cert = params.get("client_cert")
    client_key = params.get("client_key")
    ca_cert = params.get("ca_cert")
    for option in ("ca_cert", "client_cert", "client_key"):
        _check_file(option, params.get(option))

    configuration = k8s_client.Configuration()
    if kubeconfig not in (None, ""):
        if isinstance(kubeconfig, str):
            kubeconfig = os.path.expanduser(kubeconfig)
            if not os.path.exists(kubeconfig):
                raise K8sAccessError(
                    "kubeconfig %s does not exist (from the kubeconfig option or K8S_AUTH_KUBECONFIG)"
                    % kubeconfig)
        elif not isinstance(kubeconfig, dict):
            raise K8sAccessError("kubeconfig must be a path or a dictionary, not %s"
                                 % type(kubeconfig).__name__)
        _load_kubeconfig(configuration, kubeconfig, context, "kubeconfig option or K8S_AUTH_KUBECONFIG")
    elif host and not context:
        pass
    elif _default_kubeconfig():
        _load_kubeconfig(configuration, _default_kubeconfig(), context, "the default kubeconfig")
    elif context:
        raise K8sAccessError("context %r was given but there is no kubeconfig: set the kubeconfig "
                             "option (or K8S_AUTH_KUBECONFIG / KUBECONFIG)" % context)
    elif _in_cluster():
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise K8sAccessError("cannot use the in-cluster service account: %s" % exc, cause=exc)
    else:
        raise K8sAccessError(
            "no Kubernetes API to talk to: give kubeconfig (or K8S_AUTH_KUBECONFIG), or host with "
            "api_key / client_cert (or K8S_AUTH_HOST, K8S_AUTH_API_KEY), or create ~/.kube/config, "
            "or run inside a pod with a service account")

    if host:
        configuration.host = host.rstrip("/")
    if api_key:
        token = api_key if api_key.lower().startswith("bearer ") else "Bearer " + api_key
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {}
        configuration.refresh_api_key_hook = None
        if not client_cert:
            configuration.cert_file = None
            configuration.key_file = None
    if client_cert:
        configuration.cert_file = client_cert
        if not api_key:
            configuration.api_key = {}
            configuration.refresh_api_key_hook = None
    if client_key:
        configuration.key_file = client_key
    if ca_cert:
        configuration.ssl_ca_cert = ca_cert
    if params.get("validate_certs") is not None:
        configuration.verify_ssl = bool(params["validate_certs"])
    if params.get("proxy"):
        configuration.proxy = params["proxy"]
    if not configuration.verify_ssl and urllib3_exceptions is not None:
        # The user turned verification off on purpose; one warning per request is noise.
        import urllib3
        urllib3.disable_warnings(urllib3_exceptions.InsecureRequestWarning)
    return k8s_client.ApiClient(configuration)


def request_timeout(deadline, cap=MAX_REQUEST_SECONDS, clock=time.monotonic):
    """``_request_timeout`` for one API call: what is left until ``deadline``, at most ``cap``."""
    return max(1.0, min(cap, deadline - clock()))


# --------------------------------------------------------------------------------------------
# Raw JSON requests
# --------------------------------------------------------------------------------------------

JSON = "application/json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# Metadata-only lists: the API server sends each item's metadata only (PartialObjectMetadataList).
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
LIST_PAGE_SIZE = 500            # kubectl's default --chunk-size


def api_path(*parts):
    """``/api/v1/nodes/worker%201`` from ``("/api/v1/nodes", "worker 1")``: every part after the
    first is one quoted path segment, so a name can never add a segment or a query."""
    return parts[0].rstrip("/") + "".join("/" + quote(str(part), safe="") for part in parts[1:])


def api_exception(status, body, headers=None):
    """An ``ApiException`` for a non-2xx answer, shaped like the generated client's: ``status``,
    ``reason``, ``body`` (the JSON text) and ``headers``, so ``describe_api_error`` and
    ``retry_transient`` treat it like any other."""
    reason = body.get("reason") if isinstance(body, dict) else None
    exc = ApiException(status=status, reason=reason or _STATUS_TEXT.get(status, ""))
    exc.body = json.dumps(body if body is not None else {})
    exc.headers = headers
    return exc


class RawApi:
    """JSON requests over the configured client's connection pool, auth and TLS settings.

    ``request()`` returns ``(status, decoded body, headers)`` and raises only when no HTTP answer came;
    ``call()`` returns the decoded body of a 2xx answer and raises ``api_exception`` otherwise.
    ``counts`` counts requests by ``count_as`` (or verb) for modules that report them.
    ``retries`` is urllib3's: the pool's own setting (as the generated client uses) unless given;
    ``False`` for callers that retry themselves and must not wait inside one request.
    """

    def __init__(self, api_client, user_agent="kubeops.node_maintenance", pool_size=None, retries=None):
        self.configuration = api_client.configuration
        self.pool = api_client.rest_client.pool_manager
        if pool_size:
            # Enough kept-alive connections for every worker; otherwise urllib3 opens and throws
            # away a TLS connection per request beyond its default of 4-10.
            self.pool.connection_pool_kw["maxsize"] = max(pool_size, self.pool.connection_pool_kw.get("maxsize") or 1)
            self.pool.clear()
        self.host = self.configuration.host.rstrip("/")
        self.user_agent = user_agent
        self.retries = retries
        self.counts = {}
        self._lock = threading.Lock()

    def _headers(self, accept, content_type):
        headers = {"Accept": accept, "User-Agent": self.user_agent}
        if content_type:
            headers["Content-Type"] = content_type
        with self._lock:
            # auth_settings() runs the kubeconfig's token refresh hook (exec plugins): once at a time.
            settings = self.configuration.auth_settings() or {}
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[setting["key"]] = setting["value"]
        return headers

    def request(self, verb, path, query=None, body=None, accept=JSON, content_type=JSON, timeout=None,
                count_as=None, decode=True):
        """``(status, decoded body or None, headers)``; raises only for transport failures.

        ``query`` is a list of (name, value) pairs (None values are left out); ``timeout`` the
        seconds one request may take (default ``MAX_REQUEST_SECONDS``). With ``decode=False`` a 2xx
        body comes back as the raw bytes, for callers that decode it elsewhere (another thread)."""
        url = self.host + path
        if query:
            url += "?" + urlencode([(k, v) for k, v in query if v is not None])
        data = json.dumps(body).encode() if body is not None else None
        with self._lock:
            name = count_as or verb
            self.counts[name] = self.counts.get(name, 0) + 1
        kwargs = {} if self.retries is None else {"retries": self.retries}
        resp = self.pool.request(verb, url, body=data, headers=self._headers(accept, content_type if data else None),
                                 timeout=timeout or MAX_REQUEST_SECONDS, preload_content=True, **kwargs)
        if not decode and 200 <= resp.status < 300:
            return resp.status, resp.data, resp.headers
        try:
            decoded = json.loads(resp.data) if resp.data else None
        except ValueError:
            decoded = {"message": resp.data[:500].decode(errors="replace")}
        return resp.status, decoded, resp.headers

    def call(self, verb, path, query=None, body=None, accept=JSON, content_type=JSON, timeout=None,
             count_as=None, decode=True):
        """The decoded body of a 2xx answer (the raw bytes with ``decode=False``); ``ApiException``
        (see ``api_exception``) otherwise."""
        status, decoded, headers = self.request(verb, path, query=query, body=body, accept=accept,
                                                content_type=content_type, timeout=timeout, count_as=count_as,
                                                decode=decode)
        if not 200 <= status < 300:
            raise api_exception(status, decoded, headers)
        return decoded

    def list_all(self, path, query=(), accept=JSON, timeout=None, count_as=None, page_size=LIST_PAGE_SIZE):
        """Every item of a list, paged with ``limit``/``continue``; a continue token that expired
        mid-list (410) starts the list over, for one consistent snapshot."""
        items = []
        token = None
        while True:
            page = list(query) + [("limit", str(page_size))] + ([("continue", token)] if token else [])
            status, body, headers = self.request("GET", path, page, accept=accept, timeout=timeout,
                                                 count_as=count_as)
            if status == 410 and token:
                items, token = [], None
                continue
            if not 200 <= status < 300:
                raise api_exception(status, body, headers)
            items.extend(body.get("items") or [])
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return items


def pods_on_node(raw, node, timeout=None, label_selector=None, metadata_only=False, field_selector=None):
    """Every pod bound to ``node`` (field selector ``spec.nodeName``, plus ``label_selector`` and
    ``field_selector`` when given), paged by ``raw.list_all``; ``metadata_only``: each item's metadata
    alone, for polls that only look for names and UIDs. One list, no retries: callers wrap it their own way."""
    query = [("fieldSelector", "spec.nodeName=%s" % node + ("," + field_selector if field_selector else ""))]
    if label_selector:
        query.append(("labelSelector", label_selector))
    return raw.list_all("/api/v1/pods", query, accept=METADATA_ONLY if metadata_only else JSON,
                        timeout=timeout, count_as="list pods")


# --------------------------------------------------------------------------------------------
# Error translation
# --------------------------------------------------------------------------------------------

def _split_ref(obj_ref):
    """('node', None) for 'node/worker-3'; ('pdb', 'default') for 'pdb default/web' or 'pdb/default/web'."""
    if not obj_ref:
        return None, None
    match = re.match(r"^([A-Za-z.]+)[/ ](.*)$", obj_ref)
    if not match:
        return None, None
    kind, rest = match.group(1).lower(), match.group(2)
    namespace = rest.split("/", 1)[0] if "/" in rest else None
    return kind, namespace


def _kubectl_get(obj_ref):
    kind, namespace = _split_ref(obj_ref)
    if not kind:
        return None
    resource = _KUBECTL_RESOURCE.get(kind, kind if kind.endswith("s") else kind + "s")
    return "`kubectl get %s%s`" % (resource, " -n %s" % namespace if namespace else "")


def api_error_message(exc):
    """The API server's own words from an ApiException (the Status ``message``), or ''."""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if body:
        try:
            status = json.loads(body)
        except ValueError:
            return body.strip()[:500]
        if isinstance(status, dict) and status.get("message"):
            return status["message"]
    return ""


def _server_url(exc):
    # MaxRetryError names the connection pool; a request sent without urllib3 retries fails with
    # NewConnectionError / timeouts that name the connection (``conn``; their ``pool`` is deprecated).
    target = getattr(exc, "conn", None)
    if target is None:
        target = getattr(exc, "pool", None)
    if target is not None and getattr(target, "host", None):
        scheme = getattr(target, "scheme", None) or ("https" if "HTTPS" in type(target).__name__ else "http")
        return "%s://%s:%s" % (scheme, target.host, target.port)
    return "the API server"


def _connection_reason(exc):
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    # urllib3 wraps the useful part: "...: Failed to establish a new connection: [Errno 111] Connection refused"
    match = re.search(r"(\[Errno -?\d+\][^')\"]*)", text)
    return match.group(1).strip() if match else text


def _is_ssl_error(exc):
    import ssl

    reason = getattr(exc, "reason", None)
    if isinstance(exc, ApiException):
        # the client turns urllib3's SSLError into ApiException(status=0, reason="SSLError\n...")
        return not getattr(exc, "status", None) and str(reason or "").startswith("SSLError")
    kinds = (ssl.SSLError,)
    if urllib3_exceptions is not None:
        kinds += (urllib3_exceptions.SSLError,)
    return isinstance(exc, kinds) or isinstance(reason, kinds)


def _ssl_reason(exc):
    reason = getattr(exc, "reason", None) or exc
    text = " ".join(str(reason).split())
    match = re.search(r"(certificate verify failed[^')\"]*|hostname [^')\"]*|wrong version number|"
                      r"unknown ca|bad certificate)", text)
    return match.group(1).strip() if match else text


def _is_timeout(exc):
    if urllib3_exceptions is None:
        return isinstance(exc, TimeoutError)
    reason = getattr(exc, "reason", None)
    for candidate in (exc, reason):
        # NewConnectionError (refused, no route) derives from ConnectTimeoutError in urllib3
        if isinstance(candidate, urllib3_exceptions.NewConnectionError):
            return False
        if isinstance(candidate, (urllib3_exceptions.TimeoutError, TimeoutError)):
            return True
    return False


def _connection_error_types():
    types = [ConnectionError, TimeoutError]
    if urllib3_exceptions is not None:
        types += [urllib3_exceptions.HTTPError]
    return tuple(types)


def _forbidden_hint(message):
    match = re.search(r'cannot (\w+) resource "([^"]+)"(?: in API group "([^"]*)")?', message)
    if match:
        verb, resource, group = match.group(1), match.group(2), match.group(3)
        target = resource + ("." + group if group else "")
        return ("the identity in use lacks the RBAC right; grant it with a (Cluster)Role and binding, "
                "and check with `kubectl auth can-i %s %s`" % (verb, target))
    return "the identity in use lacks the RBAC right; grant it with a (Cluster)Role and binding"


def describe_api_error(exc, obj_ref):
    """One line for the user: the object, what went wrong, what to do.

    ``obj_ref`` names the object the call was about: ``node/worker-3``, ``pod default/web-1``,
    ``pdb default/web``. Example: ``node/worker-3: not found (404); `kubectl get nodes` lists the names``.
    """
    prefix = "%s: " % obj_ref if obj_ref else ""
    if isinstance(exc, K8sAccessError):
        return exc.message if exc.message.startswith(prefix) else prefix + exc.message
    status = getattr(exc, "status", None)
    if _is_ssl_error(exc):
        return ("%scannot verify the TLS certificate of %s: %s; give the cluster's CA with ca_cert "
                "(K8S_AUTH_SSL_CA_CERT), or set validate_certs=false for a test cluster"
                % (prefix, _server_url(exc), _ssl_reason(exc)))
    if isinstance(exc, ApiException) and status:
        status = int(status)
        text = _STATUS_TEXT.get(status, "HTTP error")
        said = api_error_message(exc)
        if status == 404:
            listing = _kubectl_get(obj_ref)
            return "%snot found (404)%s" % (prefix, "; %s lists the names" % listing if listing else "")
        head = "%s%s (%d)%s" % (prefix, text, status, ": " + said if said else "")
        if status == 401:
            hint = ("the API server did not accept the credentials; check api_key / client_cert / "
                    "client_key or the kubeconfig user (an expired token or certificate does this too)")
        elif status == 403:
            hint = _forbidden_hint(said)
        elif status == 409:
            hint = "someone else changed it at the same time; run the task again"
        elif status == 410:
            hint = "the resourceVersion expired; run the task again"
        elif status in (400, 422):
            hint = "the API server rejected the values sent; check the module's arguments"
        elif status == 429:
            hint = ("the API server is throttling requests (or a PodDisruptionBudget blocks an eviction); "
                    "try again later")
        elif status >= 500:
            hint = ("the API server or etcd failed; try again later and check the control plane "
                    "(`kubectl get --raw '/readyz?verbose'`)")
        else:
            hint = None
        return head + ("; " + hint if hint else "")
    if isinstance(exc, ApiException) and not status:
        return "%sthe request failed before reaching the API server: %s" % (
            prefix, " ".join(str(getattr(exc, "reason", "") or exc).split()))
    if _is_timeout(exc):
        return ("%s%s did not answer in time; check that the API server is up and reachable"
                % (prefix, _server_url(exc)))
    if isinstance(exc, _connection_error_types()):
        return ("%scannot reach %s: %s; check host / kubeconfig, that the API server runs, and the proxy "
                "setting (proxy / K8S_AUTH_PROXY)" % (prefix, _server_url(exc), _connection_reason(exc)))
    return "%s%s: %s" % (prefix, type(exc).__name__, exc)


# --------------------------------------------------------------------------------------------
# Retries
# --------------------------------------------------------------------------------------------

def is_transient(exc):
    """True for errors worth retrying: no connection, timeouts, 429, and 5xx other than 501.

    TLS verification failures are not transient: retrying cannot fix a wrong CA.
    """
    if isinstance(exc, ApiException):
        status = getattr(exc, "status", None)
        if not status:  # status 0: the client failed below HTTP (TLS, or could not build the request)
            return False
        status = int(status)
        return status == 429 or (500 <= status <= 599 and status != 501)
    if _is_ssl_error(exc):
        return False
    if urllib3_exceptions is not None and isinstance(exc, (urllib3_exceptions.LocationParseError,
                                                           urllib3_exceptions.ProxySchemeUnknown)):
        return False
    return isinstance(exc, _connection_error_types())


def _retry_after(exc):
    headers = getattr(exc, "headers", None) or {}
    try:
        value = headers.get("Retry-After")
    except AttributeError:
        return None
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def retry_transient(fn, *, deadline, describe, sleep=time.sleep, clock=time.monotonic):
    """Call ``fn()`` and return its result, retrying transient errors until ``deadline``.

    ``deadline`` is a ``time.monotonic()`` value. ``describe`` is the object reference used in the
    final message (``"node/worker-3"``), or a callable returning it. HTTP errors that are not
    transient (404, 403, 409, 422, ...) are raised unchanged at once so the caller can act on the
    status; failures below HTTP that retrying cannot fix (TLS verification, a bad proxy URL) are
    raised at once as ``K8sAccessError``; other exceptions (bugs) propagate unchanged.
    When a transient error persists past the deadline, ``K8sAccessError`` is raised with the
    translated message, the status and the last exception as ``cause``. Backoff doubles from 0.25 s
    up to 8 s with jitter, and honours ``Retry-After``.
    """
    attempt = 0
    delay = 0.25
    started = clock()
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below, non-transient re-raised
            if not is_transient(exc):
                if isinstance(exc, ApiException) and getattr(exc, "status", None):
                    raise
                if isinstance(exc, (ApiException, ConnectionError, TimeoutError)) or (
                        urllib3_exceptions is not None and isinstance(exc, urllib3_exceptions.HTTPError)):
                    # below HTTP (TLS, proxy, URL): nothing for the caller to act on but the message
                    obj_ref = describe() if callable(describe) else describe
                    raise K8sAccessError(describe_api_error(exc, obj_ref), cause=exc)
                raise
            remaining = deadline - clock()
            if remaining <= 0:
                obj_ref = describe() if callable(describe) else describe
                raise K8sAccessError(
                    "%s (still failing after %d attempt%s in %.0fs; gave up at the timeout)"
                    % (describe_api_error(exc, obj_ref), attempt, "" if attempt == 1 else "s",
                       clock() - started),
                    status=getattr(exc, "status", None) or None, cause=exc)
            wait = _retry_after(exc)
            if wait is None:
                wait = delay * random.uniform(0.5, 1.0)
                delay = min(delay * 2, 8.0)
            sleep(min(wait, remaining))
