"""A scripted Kubernetes API server on 127.0.0.1 for the unit tests.

The code under test talks to it through the real client factory (``build_api_client``) and
``RawApi``, so what it sends on the wire (method, path, query, headers, JSON body) and how it reads
real HTTP answers are checked, not a stubbed client library.

``FakeK8sServer(answer)`` speaks every verb (GET, POST, PUT, PATCH, DELETE) and records each request
as ``{"method", "path", "query" ([(name, value)]), "headers" (lower-cased names), "body" (decoded
JSON or None)}``. ``answer(request)`` returns ``(status, body)`` or ``(status, body, headers)``:
``body`` is a dict (sent as JSON), bytes (sent as they are) or None (no body); ``headers`` are
extra answer headers. ``date`` (an HTTP date string), when given, is the ``Date`` header of every
answer. ``by_path(routes)`` is an ``answer`` for read-only tests: ``routes`` maps a path to
``route(query dict) -> (status, body)``.

The ``k8s_server`` fixture (tests/unit/conftest.py) starts servers and closes them after the test.
``run_module`` runs a module file as Ansible does (a fresh interpreter, arguments from a file) and
also returns which ``kubernetes`` modules it imported.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from tests.conftest import COLLECTIONS_ROOT, REPO_ROOT

# The two ways a timestamp has reached the modules: RFC 3339 with a Z as the API server writes it,
# and datetime.isoformat() (+00:00) as the generated client's sanitize_for_serialization wrote it.
STAMPS = ("2026-11-30T05:35:33Z", "2026-11-30T05:35:33+00:00")
TOKEN = "fake-k8s-server-token"


def status_body(code, reason, message):
    """A ``Status`` failure as the API server sends it."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": reason,
            "message": message, "code": code}


def not_found(kind, name):
    return 404, status_body(404, "NotFound", '%s "%s" not found' % (kind, name))


def item_list(kind, items, continue_token=None):
    """A list answer (``NodeList`` & co.), with ``continue`` in its metadata when given."""
    metadata = {"resourceVersion": "7"}
    if continue_token:
        metadata["continue"] = continue_token
    return {"kind": kind, "apiVersion": "v1", "metadata": metadata, "items": list(items)}


def by_path(routes):
    """An ``answer`` that serves GETs from ``routes``: ``{path: route(query dict) -> (status, body)}``.
    A path without a route gets the API server's 404 Status; any other verb a 405."""
    def answer(request):
        if request["method"] != "GET":
            return 405, status_body(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        route = routes.get(request["path"])
        if route is None:
            return 404, status_body(404, "NotFound", "the server could not find the requested resource")
        return route(dict(request["query"]))
    return answer


class FakeK8sServer:
    def __init__(self, answer, date=None):
        self.answer = answer
        self.date = date
        self.requests = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the API server does

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw_body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                request = {"method": self.command, "path": split.path,
                           "query": parse_qsl(split.query, keep_blank_values=True),
                           "headers": {k.lower(): v for k, v in self.headers.items()},
                           "body": json.loads(raw_body) if raw_body else None}
                with fake.lock:
                    fake.requests.append(request)
                    answer = fake.answer(request)
                status, body = answer[:2]
                headers = answer[2] if len(answer) > 2 else None
                data = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def date_time_string(self, timestamp=None):
                return fake.date or BaseHTTPRequestHandler.date_time_string(self, timestamp)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def params(self):
        """The modules' connection options for this server."""
        return {"host": self.url, "api_key": TOKEN}

    def raw(self, **options):
        """A ``RawApi`` (``options``: its keyword arguments) over a client built by the modules' own factory."""
        from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
            RawApi,
            build_api_client,
        )

        return RawApi(build_api_client(self.params), **options)

    def calls(self):
        """``[(method, path)]`` of every request so far."""
        return [(r["method"], r["path"]) for r in self.requests]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# Runs a module file the way Ansible runs it and records the kubernetes modules it imported.
_LAUNCHER = """
import atexit, json, runpy, sys
module, args, out = sys.argv[1:4]
def record():
    with open(out, "w") as handle:
        json.dump(sorted(name for name in sys.modules if name.startswith("kubernetes")), handle)
atexit.register(record)
sys.argv = [module, args]
runpy.run_path(module, run_name="__main__")
"""


def run_module(name, args, tmp_path, check_mode=False, diff=False):
    """``(result dict, kubernetes modules imported)`` of one run of ``plugins/modules/<name>.py``."""
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    args_path = os.path.join(str(tmp_path), "%s-args.json" % name)
    out_path = os.path.join(str(tmp_path), "%s-imported.json" % name)
    with open(args_path, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    env = dict(os.environ, PYTHONPATH=COLLECTIONS_ROOT)
    for variable in [v for v in env if v.startswith("K8S_AUTH_") or v == "KUBECONFIG"]:
        del env[variable]
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER,
                           os.path.join(REPO_ROOT, "plugins", "modules", name + ".py"), args_path, out_path],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("module output is not JSON (rc %d):\n%s\n%s" % (proc.returncode, proc.stdout, proc.stderr))
    with open(out_path) as handle:
        imported = json.load(handle)
    return result, imported


def generated_classes(imported):
    """The generated API and model modules among ``imported``: since kubernetes 35 they build
    pydantic models at import, the cost the modules avoid."""
    return [name for name in imported if name.startswith(("kubernetes.client.api.", "kubernetes.client.models."))]


def warning_texts(result):
    """The module's warnings as text (newer ansible-core returns them as structured summaries)."""
    texts = []
    for warning in result.get("warnings") or []:
        if isinstance(warning, dict):
            warning = (warning.get("event") or {}).get("msg") or warning.get("msg") or json.dumps(warning)
        texts.append(warning)
    return texts
