#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_node_remove
short_description: Delete a drained Kubernetes node object before its host is reinstalled
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Deletes the Node object, as C(kubectl delete node) does, so a reinstalled host can register
    afresh (the "remove node, reinstall, re-add" flow of a reimage).
  - Refuses, and changes nothing, while pods other than DaemonSet, mirror (static), finished or
    terminating pods are bound to the node, or while the node is not cordoned; the refusal lists
    the pods. Those checks can be turned off.
  - A node that does not exist is already removed; the task reports no change.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
options:
  name:
    description:
      - Name of the node, as C(kubectl get nodes) lists it.
    type: str
    required: true
    aliases: [node]
  require_drained:
    description:
      - Refuse while pods that a drain would move are still bound to the node.
    type: bool
    default: true
  require_cordoned:
    description:
      - Refuse while the node is schedulable.
    type: bool
    default: true
  timeout:
    description:
      - Seconds to keep retrying when the API server is unreachable or answers with HTTP 5xx or 429.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the node and its pods and reports whether it would be deleted; deletes nothing.
  diff_mode:
    support: none
    description: Deleting a node has no before/after to show; RV(blocking_pods) says what stands in the way.
notes:
  - Needs C(get) and C(delete) on C(nodes), and C(list) on C(pods).
  - Deleting the Node object does not touch the host. The kubelet of a host that keeps running
    registers the node again.
seealso:
  - module: kubeops.node_maintenance.k8s_node_drain
  - module: kubeops.node_maintenance.k8s_node_wait
"""

EXAMPLES = r"""
- name: Drain worker-3, then remove its node object before the reinstall
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
  delegate_to: localhost

- name: Remove node worker-3
  kubeops.node_maintenance.k8s_node_remove:
    name: worker-3
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: Name of the node.
  returned: always
  type: str
  sample: worker-3
existed:
  description: Whether the node existed when the task started.
  returned: success
  type: bool
  sample: true
uid:
  description: C(metadata.uid) of the node that was (or would be) deleted.
  returned: when the node existed
  type: str
  sample: 0b9d3c1e-4e1a-4c48-9a54-1a1f3f0e2a11
blocking_pods:
  description: C(namespace/name) of the pods still bound to the node that a drain would move.
  returned: when the node existed
  type: list
  elements: str
  sample: [shop/web-7d9c-x2x4q]
"""

import copy
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    K8S_AUTH_ARG_SPEC,
    ApiException,
    K8sAccessError,
    RawApi,
    build_api_client,
    describe_api_error,
    request_timeout,
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import (
    node_path,
    read_node,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_removal import (
    pods_in_the_way,
    removal_refusal,
)


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARG_SPEC)
    spec.update(
        name={"type": "str", "required": True, "aliases": ["node"]},
        require_drained={"type": "bool", "default": True},
        require_cordoned={"type": "bool", "default": True},
        timeout={"type": "int", "default": 60},
    )
    return spec


def remove_node(raw, params, check_mode, deadline):
    """``raw`` is a ``_k8s_client.RawApi``."""
    name = params["name"]
    ref = "node/%s" % name
    node = read_node(raw, name, deadline, missing_ok=True)
    if node is None:
        return {"changed": False, "existed": False}
    pods = retry_transient(
        lambda: raw.list_all("/api/v1/pods", [("fieldSelector", "spec.nodeName=%s" % name)],
                             timeout=request_timeout(deadline), count_as="list pods"),
        deadline=deadline, describe="pods on %s" % ref)
    blocking = pods_in_the_way(pods)
    result = {"existed": True, "uid": node["metadata"].get("uid"), "blocking_pods": blocking}
    refusal = removal_refusal(name, node, blocking, params["require_cordoned"], params["require_drained"])
    if refusal:
        result.update(failed=True, msg=refusal, changed=False)
        return result
    if not check_mode:
        try:
            # The uid precondition: never delete a node object that re-registered meanwhile.
            retry_transient(
                lambda: raw.call("DELETE", node_path(name), body={"preconditions": {"uid": result["uid"]}},
                                 timeout=request_timeout(deadline), count_as="delete node"),
                deadline=deadline, describe=ref)
        except ApiException as exc:
            if exc.status != 404:
                raise
    result["changed"] = True
    return result


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    name = module.params["name"]
    deadline = time.monotonic() + max(1, module.params["timeout"])
    try:
        raw = RawApi(build_api_client(module.params), user_agent="kubeops.node_maintenance/k8s_node_remove")
        result = remove_node(raw, module.params, module.check_mode, deadline)
    except K8sAccessError as exc:
        module.fail_json(msg=exc.message, name=name, status=exc.status)
    except ApiException as exc:
        module.fail_json(msg=describe_api_error(exc, "node/%s" % name), name=name, status=exc.status)
    except Exception as exc:  # noqa: BLE001 - anything the client raises gets the same translation
        module.fail_json(msg=describe_api_error(exc, "node/%s" % name), name=name,
                         exception=traceback.format_exc())
    result["name"] = name
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
