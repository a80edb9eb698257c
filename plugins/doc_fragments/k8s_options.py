# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options that mean the same in every Kubernetes module of the collection.

A module states only what differs (``timeout``'s default, say); the rest comes from here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # kubeops.node_maintenance.k8s_options.node_name
    NODE_NAME = r"""
options:
  name:
    description:
      - Name of the node, as C(kubectl get nodes) lists it.
    type: str
    required: true
    aliases: [node]
"""

    # kubeops.node_maintenance.k8s_options.timeout
    TIMEOUT = r"""
options:
  timeout:
    description:
      - Seconds the module may run before it fails.
      - API errors that may pass (no connection, HTTP 5xx, 429) are retried within this time.
    type: int
"""
