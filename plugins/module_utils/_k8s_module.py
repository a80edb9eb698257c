# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The skeleton every Kubernetes module of the collection shares.

Private to this collection (the leading underscore): other collections must not import it.

A module file is its documentation, its option spec and a ``main()`` like::

    def main():
        module = K8sModule("k8s_node_cordon", argument_spec())
        module.about("node/%s" % module.params["name"], name=module.params["name"])
        module.run(lambda: cordon.converge(module.raw, ...))

``K8sModule`` merges the connection options (``K8S_AUTH_ARG_SPEC``) into the module's spec, makes
the API client on first use with the module's name as its user agent, and turns whatever the work
raises into one failure shape, the same in every module:

- ``msg``: what happened to which object, and what to do about it;
- ``status``: the HTTP status when the API answered, else ``None``;
- ``object``: the object the module works on (``node/worker-3``, ``lease kube-system/x``);
- ``seconds``: how long the module ran;
- the module's identity fields (``name``, ``holder``, ...) given to ``about()``, and the fields the
  failing code attached (``ModuleFailure(msg, **fields)``).

Logic in module_utils raises ``ModuleFailure`` instead of calling ``fail_json``, so it can be unit
tested without an ``AnsibleModule``.

A module that can begin a maintenance phase has the ``record`` option (``RECORD_SPEC``, doc fragment
``kubeops.node_maintenance.k8s_options.record``) and names its node in ``run(work, record_for=name)``:
the phase record and its Event are written before the work, in the same process, and returned as
``phase_record``; ``record_after(result)`` may give record fields that only the work's result knows
(the taints it added), written after it. A module that works on several nodes at once may have the
``records`` option instead (``RECORDS_SPEC``, one record per node, each naming its node): each is
written before the work, and the result gets ``phase_records`` (node -> record).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_client import (
    ApiException,
    K8S_AUTH_ARG_SPEC,
    K8sAccessError,
    RawApi,
    build_api_client,
    describe_api_error,
)

USER_AGENT_PREFIX = "kubeops.node_maintenance/"

# Option specs several modules share, so one option name means one thing everywhere.
NODE_NAME_SPEC = {"type": "str", "required": True, "aliases": ["node"]}

_TAINT_SPEC = {"type": "list", "elements": "dict", "options": {
    "key": {"type": "str", "required": True, "no_log": False},
    "value": {"type": "str"},
    "effect": {"type": "str", "required": True, "choices": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
}}
_WORKLOADS_SPEC = {"type": "list", "elements": "dict", "options": {
    "namespace": {"type": "str", "required": True},
    "owner_kind": {"type": "str"},
    "owner_name": {"type": "str"},
}}
_STATIC_PODS_SPEC = {"type": "list", "elements": "dict", "options": {
    "namespace": {"type": "str", "required": True},
    "name": {"type": "str", "required": True},
}}
_EVENT_SPEC = {"type": "dict", "options": {
    "reason": {"type": "str", "required": True},
    "msg": {"type": "str", "required": True},
    "type": {"type": "str", "choices": ["Normal", "Warning"], "default": "Normal"},
}}
# The option ``record`` (doc fragment kubeops.node_maintenance.k8s_options.record), and the fields
# k8s_node_maintenance_state sets with the same names.
_LABEL_KEYS_SPEC = {"type": "list", "elements": "str"}
RECORD_FIELD_SPECS = {"taints_added": _TAINT_SPEC, "moved_workloads": _WORKLOADS_SPEC, "static_pods": _STATIC_PODS_SPEC,
                      "labels_added": _LABEL_KEYS_SPEC, "event": _EVENT_SPEC}
RECORD_SPEC = {"type": "dict", "options": {
    "node": {"type": "str"},
    "rollout": {"type": "str", "required": True},
    "phase": {"type": "str", "required": True},
    "status": {"type": "str", "choices": ["in_progress", "done", "failed"], "default": "in_progress"},
    "msg": {"type": "str"},
    "cordoned_before": {"type": "bool"},
    "taints_added": _TAINT_SPEC,
    "moved_workloads": _WORKLOADS_SPEC,
    "static_pods": _STATIC_PODS_SPEC,
    "labels_added": _LABEL_KEYS_SPEC,
    "event": _EVENT_SPEC,
}}
# The option ``records`` (doc fragment kubeops.node_maintenance.k8s_options.records): the phase records
# of several nodes, for a module that works on several nodes at once (the pre-drain checks of a batch).
RECORDS_SPEC = {"type": "list", "elements": "dict",
                "options": dict(RECORD_SPEC["options"], node={"type": "str", "required": True})}


def labels_added(record, result):
    """``record_after`` fields of a module whose result has ``labels_added`` (the load-balancer
    label it added): they join the keys the ``record`` option kept, so the rollout's return removes
    exactly them; None when it added none."""
    if not result.get("labels_added"):
        return None
    return {"labels_added": (record.get("labels_added") or []) + result["labels_added"]}


def timeout_spec(default):
    """The ``timeout`` option: seconds the whole module run may take, transient API errors retried
    within it (doc fragment ``kubeops.node_maintenance.k8s_options.timeout``)."""
    return {"type": "int", "default": default}


class ModuleFailure(Exception):
    """A failure to report as the module's result: ``msg`` and result fields.

    ``status`` (an HTTP status) and ``object`` may be given among the fields; otherwise the module's
    own object reference is used.
    """

    def __init__(self, msg, **fields):
        super(ModuleFailure, self).__init__(msg)
        self.msg = msg
        self.fields = fields


class K8sModule:
    """An ``AnsibleModule`` for a Kubernetes module: connection options, lazy client, one failure shape."""

    def __init__(self, name, argument_spec, **module_kwargs):
        # copies: the shared specs (NODE_NAME_SPEC, ...) are not the module's to change
        spec = copy.deepcopy(K8S_AUTH_ARG_SPEC)
        spec.update(copy.deepcopy(argument_spec))
        module_kwargs.setdefault("supports_check_mode", True)
        self.ansible = AnsibleModule(argument_spec=spec, **module_kwargs)
        self.started = time.monotonic()
        self.user_agent = USER_AGENT_PREFIX + name
        self.object_ref = None
        self.identity = {}
        self._api_client = None
        self._raw = None

    @property
    def params(self):
        return self.ansible.params

    @property
    def check_mode(self):
        return self.ansible.check_mode

    @property
    def diff(self):
        return bool(self.ansible._diff)

    def about(self, object_ref, **identity):
        """Name the object this run works on and the fields every result and failure carries."""
        self.object_ref = object_ref
        self.identity = identity

    @property
    def api_client(self):
        """The ``kubernetes.client.ApiClient`` from the connection options (raises ``K8sAccessError``)."""
        if self._api_client is None:
            self._api_client = build_api_client(self.params)
        return self._api_client

    @property
    def raw(self):
        """A ``RawApi`` over ``api_client`` with this module's user agent."""
        if self._raw is None:
            self._raw = RawApi(self.api_client, user_agent=self.user_agent)
        return self._raw

    def deadline(self, seconds, minimum=0):
        """The monotonic time ``seconds`` (at least ``minimum``) after the module started."""
        return self.started + max(minimum, seconds)

    def seconds(self):
        return round(time.monotonic() - self.started, 3)

    def warn(self, msg):
        self.ansible.warn(msg)

    def fail(self, msg, **fields):
        """Fail with the shared shape; ``fields`` override the defaults."""
        result = {"status": None, "object": self.object_ref, "seconds": self.seconds()}
        result.update(self.identity)
        result.update(fields)
        result.pop("failed", None)
        self.ansible.fail_json(msg=msg, **result)

    def exit(self, **result):
        for key, value in self.identity.items():
            result.setdefault(key, value)
        self.ansible.exit_json(**result)

    def _record(self, node, write, record=None):
        """``write(raw, node, record option, check_mode, deadline, warn)`` of ``_maintenance_state``,
        within the module's ``timeout`` (60 s without one); the record after it. ``record``: one of
        the ``records`` option's, else the ``record`` option."""
        # imported here: _maintenance_state imports this file (ModuleFailure)
        from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _maintenance_state

        record = record or self.params["record"]
        node = record.get("node") or node
        if not node:
            raise ModuleFailure("record.node is required: this task names no single node whose record it is")
        deadline = self.deadline(self.params.get("timeout") or 60, minimum=1)
        return write(_maintenance_state, self.raw, node, record, deadline)

    @staticmethod
    def _record_holds(record, fields):
        """Whether ``record`` (as the first write left it) already says what ``fields`` would write."""
        from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _maintenance_state as ms

        updates = dict.fromkeys(ms.UPDATABLE)
        updates.update(fields)
        return ms.same_record(record, ms.merge_record(record, updates, ms.utc_now()))

    def run(self, work, record_for=None, record_after=None, record_intent=None):
        """Call ``work()`` and exit with the dict it returns, or fail in the shared shape.

        ``ModuleFailure`` is reported as raised; ``K8sAccessError`` with its message; an
        ``ApiException`` or anything else the client raises with ``describe_api_error`` for the
        module's object (an unexpected error also with its traceback).

        With the ``record`` option given, the phase record of node ``record_for`` (or ``record.node``)
        is written first, and ``record_after(result)`` (fields such as ``taints_added``, or None) after
        the work (skipped when the record holds them already); the result gets ``phase_record``.
        ``record_intent(node)`` gives the fields the work is about to add to the node as the first
        write read it, written with it (``_maintenance_state.record_phase``): a run killed between
        the work and ``record_after`` still leaves them recorded. With the ``records`` option, each
        node's record is written first (in the order given) and the result gets ``phase_records``.
        """
        try:
            recording = bool(self.params.get("record"))

            def begin(record=None, intent=None):
                return self._record(record_for, lambda ms, raw, node, record, deadline: ms.record_phase(
                    raw, node, record, self.check_mode, deadline, self.warn, intent=intent), record)

            if recording:
                phase_record = begin(intent=record_intent)
            phase_records = {record["node"]: begin(record) for record in self.params.get("records") or ()}
            result = work()
            if phase_records:
                result["phase_records"] = phase_records
            if recording:
                fields = record_after(result) if record_after else None
                if fields and not self._record_holds(phase_record, fields):
                    phase_record = self._record(record_for, lambda ms, raw, node, record, deadline: ms.record_fields(
                        raw, node, record["rollout"], phase_record, fields, self.check_mode, deadline, self.warn))
                result["phase_record"] = phase_record
        except ModuleFailure as exc:
            self.fail(exc.msg, **exc.fields)
        except K8sAccessError as exc:
            self.fail(exc.message, status=exc.status)
        except ApiException as exc:
            self.fail(describe_api_error(exc, self.object_ref), status=exc.status)
        except Exception as exc:  # noqa: BLE001 - anything the client raises gets the same translation
            self.fail(describe_api_error(exc, self.object_ref), exception=traceback.format_exc())
        self.exit(**result)
