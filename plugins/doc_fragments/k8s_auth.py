# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The connection options every Kubernetes module of the collection accepts."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - The kubeconfig to use, as a path to a file or as the kubeconfig itself (a dictionary).
      - If not set, the E(K8S_AUTH_KUBECONFIG) environment variable is used.
      - When neither this nor O(host) is given, the default kubeconfig is used (E(KUBECONFIG), which may
        list several files, or C(~/.kube/config)), and without one the in-cluster service account.
      - A kubeconfig given as a dictionary is part of the task's arguments, which verbose output
        shows; when it holds credentials, set the task keyword C(no_log) to V(true), or pass a path.
    type: raw
  context:
    description:
      - The name of a context in the kubeconfig. Defaults to the kubeconfig's current context.
      - If not set, the E(K8S_AUTH_CONTEXT) environment variable is used.
    type: str
  host:
    description:
      - The URL of the API server, for example V(https://10.0.0.1:6443).
      - If not set, the E(K8S_AUTH_HOST) environment variable is used.
      - Given without O(kubeconfig) and O(context), no kubeconfig is read at all; the connection is
        exactly O(host) with O(api_key) or O(client_cert) and O(client_key). This is what AWX's
        Kubernetes credential provides.
      - Given with a kubeconfig, it overrides the server the kubeconfig names.
    type: str
  api_key:
    description:
      - A bearer token, for example a service account token.
      - If not set, the E(K8S_AUTH_API_KEY) environment variable is used.
      - It replaces the kubeconfig user's credentials rather than being sent along with them.
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate.
      - If not set, the E(K8S_AUTH_VERIFY_SSL) environment variable is used, and else what the kubeconfig
        says (verification on by default).
      - Set V(false) only for test clusters; prefer O(ca_cert).
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - Path to the CA certificate(s) that signed the API server's certificate.
      - If not set, the E(K8S_AUTH_SSL_CA_CERT) environment variable is used.
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - Path to a client certificate to authenticate with, used together with O(client_key).
      - If not set, the E(K8S_AUTH_CERT_FILE) environment variable is used.
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - Path to the private key of O(client_cert).
      - If not set, the E(K8S_AUTH_KEY_FILE) environment variable is used.
    type: path
    aliases: [key_file]
  proxy:
    description:
      - URL of an HTTP proxy to reach the API server through, for example V(http://proxy.example:3128).
      - If not set, the E(K8S_AUTH_PROXY) environment variable is used.
    type: str
notes:
  - All options of this group can be set once for every module of the collection with
    C(module_defaults) and the action group C(group/kubeops.node_maintenance.k8s).
  - Transient API failures (no connection, HTTP 5xx, HTTP 429) are retried with backoff within the
    module's time limit.
  - A failed task's result has the same fields in every module of the collection. Besides C(msg), it has
    C(status), the HTTP status when the API server answered (else V(null)), C(object), the object the
    task worked on (for example V(node/worker-3)), and C(seconds), how long the task ran.
requirements:
  - kubernetes >= 29.0.0 (Python library, on the host that runs the module)
"""
