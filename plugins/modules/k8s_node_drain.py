#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_node_drain
short_description: Cordon a Kubernetes node and move its pods away, as kubectl drain does
version_added: 0.1.0
author:
  - kubeops maintainers (@kubeops)
description:
  - Cordons the node (unless O(cordon=false)), lists the pods bound to it with one paged list call,
    decides for each pod what to do with it, and then evicts them through the eviction API
    (C(policy/v1)), so PodDisruptionBudgets are honoured, with at most O(max_concurrency) requests
    in flight.
  - The rules are those of C(kubectl drain). Mirror pods of static pods are skipped. DaemonSet pods
    stop the drain unless O(ignore_daemonsets=true). Running pods with C(emptyDir) volumes stop it
    unless O(delete_emptydir_data=true). Running pods that declare no controller stop it unless
    O(force=true). Pods already terminating are waited for, not evicted again. Finished pods (phase
    C(Succeeded) or C(Failed)) are deleted.
  - Opt-outs that other tools' users put on pods are honoured too, unless O(ignore_opt_outs) says
    otherwise. A running pod annotated C(karpenter.sh/do-not-disrupt=true) (or with a Go duration
    such as C(30m) that the pod has not yet run for, as Karpenter reads it; DaemonSet and mirror pods
    included, as for Karpenter), or a running pod that is neither a DaemonSet nor a mirror pod annotated
    C(cluster-autoscaler.kubernetes.io/safe-to-evict=false) (exactly), stops the drain before
    anything moves, with the pod, the annotation and the override named. A pod labelled
    C(cluster.x-k8s.io/drain=skip) (Cluster API; the value in any case) is left on the node, reported
    V(skipped). A pod labelled C(cluster.x-k8s.io/drain=wait-completed) is not evicted; the drain waits,
    within O(timeout), until it finishes (phase C(Succeeded) or C(Failed)) or is gone, and a timeout
    names it. Values these tools ignore (an unknown label value, a do-not-disrupt grace period that is
    over) are ignored here too, with a warning in the pod's RV(pods[].warnings).
  - When someone uncordons the node while the drain runs, the drain cordons it again within a few
    seconds (it reads the node every 5 seconds anyway, to notice a deleted node), warns, and writes a
    C(Warning) Event C(MaintenanceRecordoned) on the node (RV(recordoned) counts them). Pods that
    were scheduled to the node meanwhile are not part of the drain; when there are such pods the drain
    fails with RV(stopped_by=uncordoned), naming them, and a second run moves them.
  - When any pod stops the drain, the module fails before evicting anything, names every such pod
    with the option that would let the drain take it, and leaves the node as it found it (a cordon
    made by this task is undone).
  - An eviction refused by a PodDisruptionBudget (HTTP 429) is tried again when a fresh list of the
    budgets shows room, and every 5 seconds at the latest, until O(timeout). A pod covered by more
    than one budget fails with both named, since the eviction API refuses such pods. In a namespace
    that is being deleted the pod is deleted instead, because an eviction there never succeeds.
  - The module then waits until every evicted pod is gone from the node or replaced (its UID is no
    longer listed on the node), with one list call per poll for the whole node.
  - Pods go in tiers (O(drain_order), O(drain_rules)); a tier starts only when every pod of the tiers
    before it is gone. By default system-critical pods go last and lower priorities first; a node
    whose pods all have one priority, none of them system-critical, is one tier, drained as fast as
    before. Check mode shows each pod's tier (RV(pods[].tier), RV(tiers)) without evicting.
  - On failure or timeout the node stays cordoned, and the message lists the pods still there, each
    with the budget that held it up (C(disruptionsAllowed), healthy and desired pods) or the reason.
  - When someone else deletes the Node object during the drain, the drain stops within a few seconds
    and fails saying so (RV(node_deleted)), instead of waiting out O(timeout) for pods that the pod
    garbage collector now removes.
  - When the API server stops accepting the credentials while the module waits for the pods (HTTP 401,
    for example a bound token that expired) or refuses it the right to list pods (403), the drain stops
    at once and says so, instead of waiting out O(timeout). Other failed polls are retried until
    O(timeout), and a timeout message then quotes the last one.
  - The result has one entry per pod with what was done, why, how many requests it took and how long.
  - O(exclude_from_load_balancers) goes into the cordon's write (with O(cordon=false), a write of its
    own). When the drain is refused before it begins, a label this task added is removed again with
    the cordon it made.
  - With O(wait_for_volume_detach), once the pods are gone the module waits until the node's volumes
    are detached (RV(volumes)), so a reboot, power-off or reimage that follows does not leave them
    attached to a node that is down while the moved pods wait for them with multi-attach errors.
extends_documentation_fragment:
  - kubeops.node_maintenance.k8s_auth
  - kubeops.node_maintenance.k8s_options.node_name
  - kubeops.node_maintenance.k8s_options.timeout
  - kubeops.node_maintenance.k8s_options.record
  - kubeops.node_maintenance.k8s_options.exclude_from_load_balancers
options:
  cordon:
    description:
      - Mark the node unschedulable before moving its pods, so the scheduler does not put them (or
        new pods) back on it.
      - With V(false) the node's C(spec.unschedulable) is not touched; pods evicted from a schedulable
        node may be scheduled onto it again, and are then new pods (new UID) the drain does not wait for.
    type: bool
    default: true
  ignore_daemonsets:
    description:
      - Leave DaemonSet-managed pods on the node instead of failing. They tolerate the cordon, so
        evicting them would only see them recreated in place.
    type: bool
    default: false
  delete_emptydir_data:
    description:
      - Evict pods that use C(emptyDir) volumes; the data in those volumes is lost.
    type: bool
    default: false
  force:
    description:
      - Evict pods that declare no controller (no owner reference with C(controller=true)); nothing
        recreates them.
      - Also evicts pods whose DaemonSet no longer exists (orphans).
    type: bool
    default: false
  disable_eviction:
    description:
      - Delete pods instead of evicting them.
      - B(This bypasses PodDisruptionBudgets); use it only when the eviction API is not available
        or a budget must be overridden on purpose.
    type: bool
    default: false
  grace_period:
    description:
      - Seconds each pod gets to terminate gracefully.
      - V(-1) uses the pod's own C(terminationGracePeriodSeconds). V(0) is sent as it is and asks for
        immediate deletion.
    type: int
    default: -1
  timeout:
    description:
      - Seconds the whole drain may take, from the first API call to the last pod gone.
      - When it runs out the module fails, the node stays cordoned, and each pod still there is
        reported with what held it up.
      - API errors that may pass (no connection, HTTP 5xx, 429) are retried within this time.
    default: 300
  skip_wait_for_delete_timeout:
    description:
      - Stop waiting for a pod whose C(deletionTimestamp) is older than this many seconds, as
        C(kubectl drain --skip-wait-for-delete-timeout) does; such pods already terminating when the
        drain starts are skipped. Useful when the node is down and its pods can never finish.
      - V(0) always waits.
    type: int
    default: 0
  pod_selector:
    description:
      - Label selector (C(app=web,tier!=db)); only pods on the node that match it are drained.
    type: str
  ignore_opt_outs:
    description:
      - The opt-out vocabularies this run disregards; the pods they mark are drained by the other
        rules, each with a warning in RV(pods[].warnings) saying so.
      - V(karpenter) (annotation C(karpenter.sh/do-not-disrupt)), V(cluster-autoscaler) (annotation
        C(cluster-autoscaler.kubernetes.io/safe-to-evict)), V(cluster-api) (label C(cluster.x-k8s.io/drain)),
        V(all).
      - The default, an empty list, honours them all. For pods marked C(do-not-disrupt) or
        C(safe-to-evict=false) that is a refusal, which this collection did not make before this option
        came; set V([karpenter, cluster-autoscaler]) for the former behaviour.
    type: list
    elements: str
    choices: [all, karpenter, cluster-autoscaler, cluster-api]
    default: []
  max_concurrency:
    description:
      - Most eviction (or delete) requests in flight at once.
      - A pod waiting for its budget does not hold a slot.
    type: int
    default: 50
  drain_order:
    description:
      - How the pods are put in tiers. A tier is evicted only when every pod of the tiers before it
        is gone from the node (deleted, or replaced by a pod with another UID), all within
        O(timeout); the pods of one tier go together, up to O(max_concurrency) requests in flight.
      - V(priority) puts system-critical pods (PriorityClass C(system-cluster-critical) or
        C(system-node-critical), or C(spec.priority) of at least 2000000000) after every other pod,
        as Karpenter and the kubelet's graceful node shutdown do; then lower O(drain_rules) orders
        first; then lower C(spec.priority) first (unset counts as 0). On a node whose pods all have
        one priority and none is system-critical this is one tier, as fast as V(none).
      - V(critical_last) puts system-critical pods last and keeps the O(drain_rules) orders; other
        priorities do not matter (Karpenter's order).
      - V(none) keeps only the O(drain_rules) orders; without rules every pod goes at once, as
        C(kubectl drain) does.
      - DaemonSet pods left on the node (O(ignore_daemonsets)), mirror pods and refused pods are in
        no tier. An already terminating pod is waited for in its tier, and holds the later tiers
        until it is gone (unless O(skip_wait_for_delete_timeout) lets the drain stop waiting).
    type: str
    choices: [priority, critical_last, none]
    default: priority
    version_added: 0.2.0
  drain_rules:
    description:
      - Orders for pods, as Cluster API's MachineDrainRules give them. A pod's order is that of the
        first rule whose O(drain_rules[].selector) and O(drain_rules[].namespace_selector) both
        select it, 0 when no rule does; lower orders drain first, so a database's clients (order 0)
        are gone before the database (order 10) is evicted.
      - Within one order the pods go in the tiers of O(drain_order); system-critical pods go after
        all others whatever their order, unless O(drain_order=none).
      - A selector the API server would refuse (an unknown operator, C(In) without values) fails
        the task before anything moves.
    type: list
    elements: dict
    default: []
    version_added: 0.2.0
    suboptions:
      selector:
        description:
          - Label selector over the pod's labels, as Kubernetes writes it (C(matchLabels),
            C(matchExpressions) with C(In), C(NotIn), C(Exists), C(DoesNotExist)).
          - Not given, the rule selects every pod (as in a MachineDrainRule).
        type: dict
      namespace_selector:
        description:
          - Label selector over the labels of the pod's namespace; the label
            C(kubernetes.io/metadata.name) holds the namespace's name.
          - Not given, every namespace. When a rule has one, the task lists namespaces (one call;
            it needs the right to list namespaces).
        type: dict
      order:
        description: The order of the pods the rule selects, from -2147483648 to 2147483647.
        type: int
        required: true
  dry_run:
    description:
      - V(server) sends every eviction (or delete) with C(dryRun=All); the API server checks it
        against the budgets and RBAC, and changes nothing. PodDisruptionBudget refusals show up in
        advance, in each pod's C(reason).
      - With V(server) the module changes nothing, in check mode or not; the node is not cordoned.
      - V(none) makes the real changes (or, in check mode, only reads and plans).
    type: str
    choices: [none, server]
    default: none
  wait_for_volume_detach:
    description:
      - After the pods are gone, wait until no VolumeAttachment (C(storage.k8s.io/v1)) has the node
        as its C(spec.nodeName) and the node's C(status.volumesAttached) is empty, as Cluster API's
        machine controller and Karpenter do before a node goes down. Polls every 2 seconds.
      - The volumes of pods the drain leaves on the node (DaemonSet pods with O(ignore_daemonsets),
        mirror pods, pods outside O(pod_selector); any pod still bound to the node that is neither
        finished nor being deleted nor moved by this drain) stay attached and are not waited for (RV(volumes.kept)); a volume
        is theirs when its PersistentVolume's C(claimRef) is one of their claims, and a
        C(status.volumesAttached) entry is matched to a CSI PersistentVolume by its name
        C(kubernetes.io/csi/<driver>^<volumeHandle>). A VolumeAttachment of an inline volume, or an
        entry no PersistentVolume matches, cannot be tied to a pod and is waited for.
      - When volumes are still attached at O(volume_detach_timeout), the module fails with
        RV(stopped_by=volumes_attached), naming each VolumeAttachment with its PersistentVolume,
        attacher and detach error; the node stays cordoned.
      - In check mode, or with O(dry_run=server), it looks once and reports what is attached without
        waiting or failing.
    type: bool
    default: false
  volume_detach_timeout:
    description:
      - Seconds the wait of O(wait_for_volume_detach) may take, counted from the end of the drain, on
        top of O(timeout). V(0) looks once.
    type: int
    default: 300
  replacement_first:
    description:
      - For a Deployment whose every ready replica is on the node, or whose PodDisruptionBudget allows
        no disruption now, start its replacements elsewhere before its pods leave. With the node
        cordoned, the Deployment is restarted as C(kubectl rollout restart) does (the pod template's
        C(kubectl.kubernetes.io/restartedAt) annotation), its controller starts new pods within its own
        surge rules and removes the old ones as the new ones become available, and the drain waits
        until the rollout is complete and the Deployment's pods have left the node
        (RV(pods[].action=replaced)), then drains the rest. This comes before the tiers of
        O(drain_order). The whole Deployment is restarted, not only its pods on this node.
      - The annotation C(node-maintenance.kubeops.io/replacement-first) in a Deployment's pod template
        opts it in (V(true)) or out (V(false)) whatever this option says. It is read from the pods,
        so a drain where nothing opts in makes no extra request.
      - Not for a Deployment whose update would stop old pods before new ones start (C(Recreate), or
        a rolling update whose C(maxSurge) is 0), nor a paused one, nor on a node this drain does not
        keep cordoned (O(cordon=false)). Their pods are evicted as usual, with a warning
        (RV(replacement_first[].state)). Never for StatefulSets, as a replacement has the name and
        identity of the pod it replaces, so it cannot exist before the pod has gone.
      - When the restarted Deployments are not replaced within O(timeout), nothing is evicted and the
        module fails with RV(stopped_by=replacement_not_ready); the restarts go on.
      - Needs RBAC to list ReplicaSets and Deployments and to patch Deployments (the patch is in
        C(rbac/clusterrole-replacement-first.yml), not in the base C(rbac/clusterrole.yml)).
      - In check mode, or with O(dry_run=server), RV(replacement_first) says which Deployments would
        be restarted; nothing is.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description:
      - Reads the node, its pods and the budgets, and returns what would happen to each pod and which
        pods would stop the drain. Nothing is cordoned or evicted.
  diff_mode:
    support: none
    description: Per-pod results are returned instead; there is no before/after document to diff.
notes:
  - Needs RBAC to get and patch nodes, list pods in all namespaces, create C(pods/eviction), delete
    pods, get DaemonSets, and (optional, used to hold back evictions a budget would refuse and to
    name budgets in results) list PodDisruptionBudgets in all namespaces. With
    O(wait_for_volume_detach), also list C(volumeattachments.storage.k8s.io) and C(persistentvolumes);
    with O(replacement_first), list ReplicaSets and Deployments and patch Deployments.
  - A second run on a node that is already cordoned and has nothing left to move reports no change.
  - The re-cordon guard needs RBAC to create Events in the C(default) namespace; without it the node
    is still cordoned again, and a warning says the Event is missing.
  - The decisions are those of C(kubectl drain) of the same Kubernetes version, proven against
    C(kubectl drain --dry-run=server) for every combination of O(ignore_daemonsets),
    O(delete_emptydir_data) and O(force) (refused or not, which pods stop the drain and by which rule,
    which pods are evicted, deleted or left alone), with three deliberate differences, and apart from
    the other tools' opt-outs (O(ignore_opt_outs=[all]) disregards them) and the order of the evictions
    (O(drain_order)), which C(kubectl drain) does not have.
  - The first difference. A pod already terminating (it has a C(deletionTimestamp)) is waited for and
    never stops the drain. C(kubectl drain) evicts it again, and refuses the drain for it when it declares no
    controller (without C(--force)) or has C(emptyDir) volumes (without C(--delete-emptydir-data)),
    although the pod and its data are going whatever the drain does.
  - The second difference. Every rule a pod breaks is named with the option that allows it (a pod with
    C(emptyDir) volumes and no controller needs O(delete_emptydir_data) and O(force)); C(kubectl drain)
    names the first one only.
  - The third difference. A finished pod (phase C(Succeeded) or C(Failed)) is deleted; C(kubectl drain)
    sends it an eviction, which the API server turns into the same deletion without consulting any
    budget.
seealso:
  - module: kubeops.node_maintenance.k8s_node_cordon
  - module: kubernetes.core.k8s_drain
    description: The kubernetes.core module for the same task; it evicts one pod after another and
      fails on the first refusal by a budget.
  - name: Safely drain a node
    description: How Kubernetes cordons and drains nodes, and how PodDisruptionBudgets take part.
    link: https://kubernetes.io/docs/tasks/administer-cluster/safely-drain-node/
  - name: Cluster API MachineDrainRules
    description: The rules O(drain_rules) follows (selector, namespace selector, order).
    link: https://cluster-api.sigs.k8s.io/tasks/automated-machine-management/machine_deletions.html
  - name: Graceful node shutdown based on pod priority
    description: The kubelet's own order when a node shuts down, which O(drain_order=priority) follows.
    link: https://kubernetes.io/docs/concepts/cluster-administration/node-shutdown/
  - name: API-initiated eviction
    description: The eviction API and its answers (429, 500).
    link: https://kubernetes.io/docs/concepts/scheduling-eviction/api-eviction/
"""

EXAMPLES = r"""
- name: Drain worker-3, leaving its DaemonSet pods in place
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
    delete_emptydir_data: true
    timeout: 600
  delegate_to: localhost
  register: drain

- name: Show the pods a budget held up
  ansible.builtin.debug:
    msg: "{{ drain.pods | selectattr('action', 'equalto', 'failed') | list }}"
  when: drain is failed

- name: Ask the API server which evictions budgets would refuse right now, changing nothing
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
    dry_run: server
  check_mode: true
  delegate_to: localhost

- name: Move only the web pods, without cordoning the node
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    pod_selector: app=web
    cordon: false
  delegate_to: localhost

- name: Drain the database once its clients (order 0) are gone, monitoring after it, critical pods last
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
    drain_rules:
      - selector:
          matchLabels:
            app: postgres
        order: 10
      - selector:
          matchExpressions:
            - key: app.kubernetes.io/part-of
              operator: In
              values: [monitoring]
        namespace_selector:
          matchLabels:
            kubernetes.io/metadata.name: observability
        order: 20
  delegate_to: localhost

- name: Show the tiers a drain would go in, evicting nothing
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
  check_mode: true
  delegate_to: localhost
  register: planned

- name: One line per tier, first evicted first
  ansible.builtin.debug:
    msg: "{{ planned.tiers | map(attribute='index') | zip(planned.tiers | map(attribute='pods')) | list }}"

- name: Drain although Karpenter users marked pods do-not-disrupt (Cluster API's labels still honoured)
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
    ignore_opt_outs: [karpenter]
  delegate_to: localhost

- name: Drain a node that is down, not waiting for pods stuck terminating for more than a minute
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
    force: true
    skip_wait_for_delete_timeout: 60
  delegate_to: localhost

- name: Drain, restarting first the Deployments whose only ready replicas are here (or whose budget is spent)
  kubeops.node_maintenance.k8s_node_drain:
    name: worker-3
    ignore_daemonsets: true
    replacement_first: true
    timeout: 900
  delegate_to: localhost
  register: drained

- name: The Deployments that were replaced first
  ansible.builtin.debug:
    msg: "{{ drained.replacement_first | selectattr('state', 'equalto', 'replaced') | map(attribute='name') | list }}"
"""

RETURN = r"""
node:
  description: Name of the node.
  returned: always
  type: str
  sample: worker-3
cordoned:
  description:
    - Whether the node is unschedulable after the task (in check mode, whether it would be).
  returned: when the node was read
  type: bool
  sample: true
pods:
  description:
    - One entry per pod that was on the node (matching O(pod_selector)) when the drain began.
  returned: when the node was read
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace of the pod.
      type: str
      sample: default
    name:
      description: Name of the pod.
      type: str
      sample: web-7d9f8-abcde
    uid:
      description: UID of the pod; its replacement has another one.
      type: str
    owner_kind:
      description: Kind of the controller that owns the pod (C(ReplicaSet), C(DaemonSet), ...), or null.
      type: str
      sample: ReplicaSet
    owner_name:
      description: Name of that controller, or null.
      type: str
    plan:
      description:
        - What the drain decided for the pod. V(evict), V(delete) (finished pods, or with
          O(disable_eviction)), V(wait) (already terminating), V(wait_completed) (labelled
          C(cluster.x-k8s.io/drain=wait-completed), not evicted, waited for until it finishes), V(skip),
          V(refuse) (stops the drain).
      type: str
      sample: evict
    opt_outs:
      description:
        - The opt-out marks on the pod that speak about it, each with C(vocabulary) (V(karpenter),
          V(cluster-autoscaler), V(cluster-api)), C(key), C(value), C(effect) (V(block), V(skip),
          V(wait_completed) or V(ignored)) and, where there is more to say (why it is ignored, how long
          a do-not-disrupt grace period still protects the pod), a C(note). Empty for most pods.
      type: list
      elements: dict
      sample: [{"vocabulary": "karpenter", "key": "karpenter.sh/do-not-disrupt", "value": "true", "effect": "block"}]
    action:
      description:
        - What was done. V(evicted), V(deleted), V(waited) (it went away without our request, or was
          already gone), V(replaced) (it left with its Deployment's restart, its replacement available
          elsewhere first; O(replacement_first)), V(skipped), V(failed), V(none) (check mode or
          O(dry_run=server), or the drain was refused before it began).
      type: str
      sample: evicted
    reason:
      description: Why, in words; for a failure, what the API server or the budget said.
      type: str
      sample: evicted and gone from the node
    attempts:
      description: Eviction or delete requests sent for this pod (429 answers included).
      type: int
      sample: 1
    seconds:
      description: Seconds from the start of its tier's evictions until the pod was gone (or the drain ended).
      type: float
      sample: 1.52
    tier:
      description:
        - The tier the pod was drained in (see O(drain_order)), null for pods the drain does not move
          (V(skip), V(refuse)). C(index) counts the drain's tiers from 1 (the first evicted);
          C(order) is the pod's O(drain_rules) order; C(critical) whether it is system-critical and
          C(priority) its C(spec.priority), each null when O(drain_order) does not tier by it.
        - A pod whose tier never started because a tier before it did not finish has RV(pods[].action)
          V(failed) and a reason naming that tier and the pods that held it.
      type: dict
      sample: {"index": 1, "order": 0, "critical": false, "priority": 1000}
    drain_rule:
      description: Index in O(drain_rules) of the rule that gave the pod its order, null when none did.
      type: int
      sample: 0
    warnings:
      description: Notes about data or pods that are lost for good (emptyDir data, unmanaged pods).
      type: list
      elements: str
    blockers:
      description:
        - For V(refuse), each rule the pod breaks with the O(force), O(ignore_daemonsets),
          O(delete_emptydir_data) or O(ignore_opt_outs) option that allows it (C(option)), and the
          setting that does (C(override), such as C(force=true) or C(ignore_opt_outs=[karpenter])).
          Empty otherwise.
      type: list
      elements: dict
      sample: [{"reason": "declares no controller, so nothing recreates it", "option": "force", "override": "force: true"}]
    pdb:
      description:
        - The PodDisruptionBudgets covering the pod (when they could be listed), each with
          C(namespace), C(name), C(disruptions_allowed), C(current_healthy), C(desired_healthy),
          C(expected_pods) and C(min_available) or C(max_unavailable).
      type: list
      elements: dict
counts:
  description: Number of pods per RV(pods[].action), and C(total).
  returned: when the node was read
  type: dict
  sample: {"evicted": 12, "deleted": 1, "skipped": 3, "waited": 0, "failed": 0, "none": 0, "total": 16}
tiers:
  description:
    - The tiers of the drain (see O(drain_order)), first evicted first, each with C(index), C(order),
      C(critical), C(priority) (as in RV(pods[].tier)), C(pods) (how many), C(seconds) (from its
      first eviction until its last pod was gone) and C(state).
    - C(state) is V(planned) (check mode), V(drained) (every pod gone; with O(dry_run=server), every
      eviction answered), V(unfinished) (pods still on the node when the drain stopped; C(held_by)
      names them) or V(not_started) (a tier before it did not finish, or the drain was refused).
  returned: when the node's pods were listed
  type: list
  elements: dict
  sample: [{"index": 1, "order": 0, "critical": false, "priority": 0, "pods": 12, "seconds": 2.1, "state": "drained"},
           {"index": 2, "order": 0, "critical": true, "priority": 2000000000, "pods": 1, "seconds": 0.0,
            "state": "not_started"}]
seconds:
  description: Seconds the whole task took.
  returned: always
  type: float
  sample: 4.73
node_deleted:
  description:
    - True when the Node object was deleted by someone else while the drain was going on; the drain
      then stops at once (it checks every few seconds) and fails, leaving the pods still bound to the
      node to the pod garbage collector.
  returned: when the drain failed after it began evicting
  type: bool
  sample: false
recordoned:
  description:
    - How many times the drain found the node schedulable again (uncordoned by someone else) and
      cordoned it again, each with a warning and a C(Warning) Event C(MaintenanceRecordoned) on the node.
      A re-cordon makes C(changed) true.
  returned: with O(cordon=true) (the default), outside check mode and O(dry_run=server), once the pods were listed
  type: int
  sample: 0
arrived_while_uncordoned:
  description:
    - With RV(stopped_by=uncordoned), the pods (C(namespace/name)) scheduled to the node while it was
      uncordoned, which this drain did not move.
  returned: with RV(stopped_by=uncordoned)
  type: list
  elements: str
  sample: [shop/web-7d9f8-zzzzz]
stopped_by:
  description:
    - Why the drain stopped before the node was drained, so a playbook can decide what to do next
      without reading RV(pods) or the message. The module fails whenever it is not V(null).
    - V(null) when nothing stopped it; the node is drained (in check mode, or with O(dry_run=server),
      the plan was made and nothing stopped it).
    - V(refused) when pods the options do not allow are on the node (RV(pods[].plan) V(refuse));
      nothing was evicted, and the node was left as it was.
    - V(timeout) when pods were still on the node when O(timeout) ran out (a PodDisruptionBudget
      without room, or pods slow to terminate).
    - V(node_deleted) when someone else deleted the Node object during the drain (RV(node_deleted)).
    - V(access_lost) when the API server stopped accepting the module's credentials (HTTP 401) or
      its right to list pods (403) while it waited for the pods; it stops at once.
    - V(pod_errors) when, before the timeout, the API server refused to evict or delete some pods
      for a reason waiting does not fix (a pod covered by more than one PodDisruptionBudget, RBAC,
      an invalid request); RV(pods[].reason) says which.
    - V(volumes_attached) when the node was drained but, with O(wait_for_volume_detach), volumes were
      still attached to it at O(volume_detach_timeout) (RV(volumes.pending)).
    - V(uncordoned) when someone uncordoned the node during the drain (cordoned again, RV(recordoned))
      and pods were scheduled to it meanwhile (RV(arrived_while_uncordoned)); every pod the drain
      listed was moved, and a second run moves the newcomers.
    - V(replacement_not_ready) when, with O(replacement_first), the restarted Deployments were not
      replaced within O(timeout) (RV(replacement_first[].detail) says what they wait for); nothing was
      evicted.
    - A failure to reach or read the node or its pods has no RV(stopped_by); its C(status) says what
      the API server answered.
  returned: when the node's pods were listed
  type: str
  choices: [refused, timeout, node_deleted, access_lost, pod_errors, volumes_attached, uncordoned, replacement_not_ready]
  sample: timeout
replacement_first:
  description:
    - The Deployments that O(replacement_first) (or their pods' annotation) applied to, an eviction
      of whose pods would have stopped the service or the drain; empty when none.
    - C(kind) (V(Deployment)), C(namespace), C(name), C(pods) (its pods on the node), C(reason) (every
      ready replica on the node, a budget allowing no disruption), C(state) and, where there is more to
      say, C(detail); C(seconds) the wait took.
    - C(state) V(replaced) (restarted; its replacements were available and its pods left the node),
      V(would_replace) (check mode), V(not_replaced) (its strategy stops old pods first, or it is
      paused; evicted as usual), V(not_cordoned) (O(cordon=false) on a schedulable node; evicted as
      usual), V(timed_out) (restarted, not replaced within O(timeout)).
  returned: when the drain got past its refusal check
  type: list
  elements: dict
  sample: [{"kind": "Deployment", "namespace": "shop", "name": "checkout", "pods": ["checkout-7d9f8-abcde"],
            "reason": "every ready replica (1) is on the node", "state": "replaced", "seconds": 6.2}]
  contains:
    kind:
      description: V(Deployment).
      type: str
    namespace:
      description: The Deployment's namespace.
      type: str
    name:
      description: The Deployment's name.
      type: str
    pods:
      description: Names of its pods on the node.
      type: list
      elements: str
    reason:
      description: Why an eviction would have hurt (every ready replica on the node, a budget allowing no disruption).
      type: str
    state:
      description: What was done.
      type: str
      choices: [replaced, would_replace, not_replaced, not_cordoned, timed_out]
    detail:
      description: Why it was not replaced, or what it still waited for.
      type: str
      returned: when there is more to say
    seconds:
      description: Seconds the wait for the replacements took.
      type: float
      returned: when it was restarted
api_requests:
  description: API requests the drain made, by kind (C(evict), C(list pods), C(list pdbs), ...).
  returned: when the node was read
  type: dict
  sample: {"list pods": 6, "list pdbs": 1, "evict": 12, "get node": 1, "patch node": 1}
volumes:
  description:
    - With O(wait_for_volume_detach), the node's attached volumes at the end of the wait (in check
      mode, at the one look).
  returned: with O(wait_for_volume_detach), when the drain was not stopped before it
  type: dict
  contains:
    detached:
      description: Whether nothing was left to wait for (RV(volumes.pending) is empty).
      type: bool
      sample: true
    pending:
      description:
        - The volumes still attached that the wait was for. Each has C(kind) (V(VolumeAttachment), or
          V(volumesAttached) for an entry of the node's C(status.volumesAttached)), C(name),
          C(persistent_volume) (null when none is known), and for a VolumeAttachment C(attacher),
          C(attached) and C(detach_error).
      type: list
      elements: dict
      sample: [{"kind": "VolumeAttachment", "name": "csi-5f1c", "persistent_volume": "pvc-0b6c",
                "attacher": "ebs.csi.aws.com", "attached": true, "detach_error": null}]
    kept:
      description: The attached volumes of pods the drain leaves on the node, not waited for; as
        RV(volumes.pending), each with C(pods) (C(namespace/name)).
      type: list
      elements: dict
    polls:
      description: How many times the volumes were looked at.
      type: int
      sample: 3
    seconds:
      description: Seconds the wait took.
      type: float
      sample: 4.1
excluded_from_load_balancers:
  description:
    - Whether the node has the label C(node.kubernetes.io/exclude-from-external-load-balancers) after
      the task (in check mode, as it would be).
  returned: when the node was read
  type: bool
  sample: true
labels_added:
  description:
    - Keys of the labels the task added (the load-balancer label with O(exclude_from_load_balancers=true)
      on a node that did not have it); empty when none. With O(record), recorded in the node's record.
  returned: when the node was read
  type: list
  elements: str
  sample: ["node.kubernetes.io/exclude-from-external-load-balancers"]
labels_removed:
  description: Keys of the labels the task removed (O(exclude_from_load_balancers=false)); empty when none.
  returned: when the node was read
  type: list
  elements: str
  sample: []
phase_record:
  description:
    - With O(record), the node's maintenance record after the task wrote its phase (in check mode,
      as it would be), as RV(kubeops.node_maintenance.k8s_node_maintenance_state#module:record) returns it.
  returned: with O(record), on success
  type: dict
  sample: {"rollout": "patch-2026-11", "phase": "drain", "status": "in_progress", "message": "drain started"}
"""

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._drain import drain
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._pod_rules import VOCABULARIES
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._lb_exclusion import labels_to_add
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._k8s_module import (
    NODE_NAME_SPEC,
    RECORD_SPEC,
    K8sModule,
    labels_added,
    timeout_spec,
)


def argument_spec():
    return {
        "name": NODE_NAME_SPEC,
        "cordon": {"type": "bool", "default": True},
        "ignore_daemonsets": {"type": "bool", "default": False},
        "delete_emptydir_data": {"type": "bool", "default": False},
        "force": {"type": "bool", "default": False},
        "disable_eviction": {"type": "bool", "default": False},
        "grace_period": {"type": "int", "default": -1},
        "record": RECORD_SPEC,
        "timeout": timeout_spec(300),
        "skip_wait_for_delete_timeout": {"type": "int", "default": 0},
        "pod_selector": {"type": "str"},
        "ignore_opt_outs": {"type": "list", "elements": "str", "default": [],
                            "choices": ["all"] + list(VOCABULARIES)},
        "max_concurrency": {"type": "int", "default": 50},
        "dry_run": {"type": "str", "choices": ["none", "server"], "default": "none"},
        "exclude_from_load_balancers": {"type": "bool"},
        "wait_for_volume_detach": {"type": "bool", "default": False},
        "volume_detach_timeout": {"type": "int", "default": 300},
        "replacement_first": {"type": "bool", "default": False},
        "drain_order": {"type": "str", "choices": ["priority", "critical_last", "none"], "default": "priority"},
        "drain_rules": {"type": "list", "elements": "dict", "default": [], "options": {
            "selector": {"type": "dict"},
            "namespace_selector": {"type": "dict"},
            "order": {"type": "int", "required": True},
        }},
    }


def main():
    module = K8sModule("k8s_node_drain", argument_spec())
    name = module.params["name"]
    module.about("node/%s" % name, node=name)
    module.run(lambda: drain(module.params, module.check_mode, module.started, lambda: module.api_client, module.warn),
               record_for=name, record_after=lambda result: labels_added(module.params["record"], result),
               record_intent=lambda node: {"labels_added": labels_to_add(
                   node, module.params["exclude_from_load_balancers"])})


if __name__ == "__main__":
    main()
