#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_node_cordon
short_description: Mark a Kubernetes node unschedulable, or schedulable again
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Sets C(spec.unschedulable) of a node, as C(kubectl cordon) and C(kubectl uncordon) do.
  - Only that field is patched; labels, taints and annotations that others manage are left alone.
  - Reads the node first, so a node already in the wanted state is not written and the task reports
    no change.
  - Cordoning does not move running pods; use M(kubeops.node_maintenance.k8s_node_drain) for that.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
options:
  name:
    description:
      - Name of the node, as C(kubectl get nodes) lists it.
    type: str
    required: true
    aliases: [node]
  state:
    description:
      - V(cordoned) marks the node unschedulable, so the scheduler places no new pods on it.
      - V(uncordoned) makes it schedulable again.
    type: str
    choices: [cordoned, uncordoned]
    default: cordoned
  timeout:
    description:
      - Seconds to keep retrying when the API server is unreachable or answers with HTTP 5xx or 429.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the node and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Shows C(spec.unschedulable) before and after.
notes:
  - Needs C(get) and C(patch) on C(nodes).
  - For a cordoned node the node lifecycle controller adds the taint C(node.kubernetes.io/unschedulable:NoSchedule)
    by itself, and removes it after uncordoning; RV(taints) shows it once the controller has acted.
seealso:
  - module: kubeops.node_maintenance.k8s_node_taint
  - module: kubeops.node_maintenance.k8s_node_drain
  - name: Safely drain a node
    description: How Kubernetes cordons and drains nodes.
    link: https://kubernetes.io/docs/tasks/administer-cluster/safely-drain-node/
"""

EXAMPLES = r"""
- name: Stop new pods from landing on worker-3
  kubeops.node_maintenance.k8s_node_cordon:
    name: worker-3
  delegate_to: localhost

- name: Let the scheduler use worker-3 again
  kubeops.node_maintenance.k8s_node_cordon:
    name: worker-3
    state: uncordoned
    kubeconfig: /etc/kubeops/admin.kubeconfig
  delegate_to: localhost

- name: Cordon every host of the play, with the connection set once for the whole group
  module_defaults:
    group/kubeops.node_maintenance.k8s:
      host: https://k8s-api.example.com:6443
      api_key: "{{ k8s_token }}"
      ca_cert: /etc/kubeops/ca.crt
  kubeops.node_maintenance.k8s_node_cordon:
    name: "{{ inventory_hostname }}"
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: Name of the node.
  returned: success
  type: str
  sample: worker-3
unschedulable:
  description:
    - C(spec.unschedulable) after the task. In check mode, the value the task would set.
  returned: success
  type: bool
  sample: true
resource_version:
  description:
    - C(metadata.resourceVersion) of the node after the write (in check mode, or without a change, as read).
  returned: success
  type: str
  sample: "48213"
taints:
  description: The node's taints, as the API returns them.
  returned: success
  type: list
  elements: dict
  sample: [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
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
    retry_transient,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._node_api import (
    patch_unschedulable,
    read_node,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._nodes import (
    is_unschedulable,
    node_summary,
)


def argument_spec():
    spec = copy.deepcopy(K8S_AUTH_ARG_SPEC)
    spec.update(
        name={"type": "str", "required": True, "aliases": ["node"]},
        state={"type": "str", "choices": ["cordoned", "uncordoned"], "default": "cordoned"},
        timeout={"type": "int", "default": 60},
    )
    return spec


def set_unschedulable(api_client, name, unschedulable, check_mode, deadline):
    """Read the node, patch ``spec.unschedulable`` when it differs; (changed, node before, node after)."""
    raw = RawApi(api_client, user_agent="kubeops.node_maintenance/k8s_node_cordon")
    before = read_node(raw, name, deadline)
    if is_unschedulable(before) == unschedulable:
        return False, before, before
    if check_mode:
        after = copy.deepcopy(before)
        after.setdefault("spec", {})["unschedulable"] = unschedulable
        return True, before, after
    # A merge patch of the one field: no resourceVersion guard needed, nobody else's data is in it.
    after = retry_transient(lambda: patch_unschedulable(raw, name, unschedulable, deadline),
                            deadline=deadline, describe="node/%s" % name)
    return True, before, after


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    name = module.params["name"]
    want = module.params["state"] == "cordoned"
    deadline = time.monotonic() + max(1, module.params["timeout"])
    try:
        api_client = build_api_client(module.params)
        changed, before, after = set_unschedulable(api_client, name, want, module.check_mode, deadline)
    except K8sAccessError as exc:
        module.fail_json(msg=exc.message, status=exc.status)
    except ApiException as exc:
        module.fail_json(msg=describe_api_error(exc, "node/%s" % name), status=exc.status)
    except Exception as exc:  # noqa: BLE001 - anything the client raises gets the same translation
        module.fail_json(msg=describe_api_error(exc, "node/%s" % name), exception=traceback.format_exc())

    summary = node_summary(after)
    result = {
        "changed": changed,
        "name": name,
        "unschedulable": summary["unschedulable"],
        "resource_version": summary["resource_version"],
        "taints": summary["taints"],
    }
    if module._diff:
        result["diff"] = {
            "before_header": "node/%s" % name,
            "after_header": "node/%s" % name,
            "before": {"spec": {"unschedulable": is_unschedulable(before)}},
            "after": {"spec": {"unschedulable": summary["unschedulable"]}},
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
