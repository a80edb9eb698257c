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

    # kubeops.node_maintenance.k8s_options.record
    RECORD = r"""
options:
  record:
    description:
      - Before its own work, the task records the node's maintenance phase in the node's maintenance
        record (the annotation C(maintenance.kubeops.io/state)) and, with O(record.event), posts an
        Event about the node, as M(kubeops.node_maintenance.k8s_node_maintenance_state) with
        O(kubeops.node_maintenance.k8s_node_maintenance_state#module:state=present) does; one module run
        instead of two. A phase begins with its first call.
      - The record is written before the task's work, so a task that then fails leaves the node in
        that phase (the caller records the failure).
      - What the work is about to add to the node (taints, the load-balancer label) joins
        O(record.taints_added) and O(record.labels_added) in that same write, ahead of the work; a run
        killed between its write to the node and the end of the task leaves a record that still
        names them, so the run that resumes removes them on return.
      - Nothing is written in check mode (RV(phase_record) is the record as it would be). A node that
        does not exist fails the task before its work.
      - The record after the task is returned as RV(phase_record).
    type: dict
    suboptions:
      node:
        description:
          - The node whose record it is. Defaults to the node the task works on (its option C(name),
            or C(node) of the health gate); required for a task that names no single node.
        type: str
      rollout:
        description: The rollout the record belongs to (its id).
        type: str
        required: true
      phase:
        description: The phase the node enters.
        type: str
        required: true
      status:
        description: The node's status in the rollout.
        type: str
        choices: [in_progress, done, failed]
        default: in_progress
      msg:
        description: A line about the phase, kept in the record.
        type: str
      cordoned_before:
        description: Whether the node was cordoned before the rollout came (restored on return).
        type: bool
      taints_added:
        description: The taints the rollout added (and will remove on return).
        type: list
        elements: dict
        suboptions:
          key:
            description: Taint key.
            type: str
            required: true
          value:
            description: Taint value.
            type: str
          effect:
            description: Taint effect.
            type: str
            required: true
            choices: [NoSchedule, PreferNoSchedule, NoExecute]
      moved_workloads:
        description: The controllers whose pods the drain moved (what the health gate waits for).
        type: list
        elements: dict
        suboptions:
          namespace:
            description: Namespace of the controller.
            type: str
            required: true
          owner_kind:
            description: Kind of the controller.
            type: str
          owner_name:
            description: Name of the controller.
            type: str
      static_pods:
        description:
          - The node's static pods before the maintenance, by their mirror pods (what the health gate
            waits for after a re-run that resumes past the drain). Replaces the recorded list; not
            given, the recorded list is kept.
        type: list
        elements: dict
        suboptions:
          namespace:
            description: Namespace of the mirror pod.
            type: str
            required: true
          name:
            description: Name of the mirror pod.
            type: str
            required: true
      labels_added:
        description:
          - Keys of the node labels the rollout added (and will remove on return), such as
            C(node.kubernetes.io/exclude-from-external-load-balancers); a label that was on the node
            before the rollout is never among them. Replaces the recorded list; not given, the
            recorded list is kept.
        type: list
        elements: str
      event:
        description: An Event about the node, posted with the record.
        type: dict
        suboptions:
          reason:
            description: The Event's reason, such as V(MaintenanceDrain).
            type: str
            required: true
          msg:
            description: The Event's message.
            type: str
            required: true
          type:
            description: The Event's type.
            type: str
            choices: [Normal, Warning]
            default: Normal
"""

    # kubeops.node_maintenance.k8s_options.exclude_from_load_balancers
    EXCLUDE_FROM_LOAD_BALANCERS = r"""
options:
  exclude_from_load_balancers:
    description:
      - V(true) labels the node C(node.kubernetes.io/exclude-from-external-load-balancers=true) in the
        write the task makes anyway (no extra request), so the service controller and the cloud
        providers' load balancer controllers take it out of the external load balancers' backends
        and connections drain before its pods go, as Karpenter and aws-node-termination-handler do
        while they drain a node. A label already on the node is left as it is, whatever its value.
      - V(false) removes the label; a rollout passes it on return only for a label it added itself
        (RV(labels_added), kept in the node's record as O(record.labels_added)).
      - Not given, the label is not looked at.
      - The task is changed when the label changes.
    type: bool
"""

    # kubeops.node_maintenance.k8s_options.records: the record option's fields (keep the two alike), one per node
    RECORDS = r"""
options:
  records:
    description:
      - For a task about several nodes at once (the pre-drain checks of a batch), the maintenance
        record of each of them, as O(record) writes one node's. Before the task's work, each node's
        phase is recorded in its annotation C(maintenance.kubeops.io/state) and, with an C(event),
        an Event about it is posted, in the order given; one module run for the whole batch.
      - Nothing is written in check mode. A node that does not exist fails the task before its work.
      - The records after the task are returned as RV(phase_records).
      - Mutually exclusive with O(record).
    type: list
    elements: dict
    suboptions:
      node:
        description: The node whose record it is.
        type: str
        required: true
      rollout:
        description: The rollout the record belongs to (its id).
        type: str
        required: true
      phase:
        description: The phase the node enters.
        type: str
        required: true
      status:
        description: The node's status in the rollout.
        type: str
        choices: [in_progress, done, failed]
        default: in_progress
      msg:
        description: A line about the phase, kept in the record.
        type: str
      cordoned_before:
        description: Whether the node was cordoned before the rollout came (restored on return).
        type: bool
      taints_added:
        description: The taints the rollout added (and will remove on return).
        type: list
        elements: dict
        suboptions:
          key:
            description: Taint key.
            type: str
            required: true
          value:
            description: Taint value.
            type: str
          effect:
            description: Taint effect.
            type: str
            required: true
            choices: [NoSchedule, PreferNoSchedule, NoExecute]
      moved_workloads:
        description: The controllers whose pods the drain moved (what the health gate waits for).
        type: list
        elements: dict
        suboptions:
          namespace:
            description: Namespace of the controller.
            type: str
            required: true
          owner_kind:
            description: Kind of the controller.
            type: str
          owner_name:
            description: Name of the controller.
            type: str
      static_pods:
        description:
          - The node's static pods before the maintenance, by their mirror pods (what the health gate
            waits for after a re-run that resumes past the drain). Replaces the recorded list; not
            given, the recorded list is kept.
        type: list
        elements: dict
        suboptions:
          namespace:
            description: Namespace of the mirror pod.
            type: str
            required: true
          name:
            description: Name of the mirror pod.
            type: str
            required: true
      labels_added:
        description:
          - Keys of the node labels the rollout added (and will remove on return), such as
            C(node.kubernetes.io/exclude-from-external-load-balancers); a label that was on the node
            before the rollout is never among them. Replaces the recorded list; not given, the
            recorded list is kept.
        type: list
        elements: str
      event:
        description: An Event about the node, posted with the record.
        type: dict
        suboptions:
          reason:
            description: The Event's reason, such as V(MaintenanceDrain).
            type: str
            required: true
          msg:
            description: The Event's message.
            type: str
            required: true
          type:
            description: The Event's type.
            type: str
            choices: [Normal, Warning]
            default: Normal
"""
