#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_disk_remount
short_description: Put a node's data disk in fstab, mount it, and move the container runtime onto it
version_added: 0.1.0
description:
  - Makes an existing data disk a node's data disk again, typically after the node was reinstalled
    with the disk kept. It gets one fstab line (by filesystem UUID by default), the filesystem
    mounted and verified with C(findmnt), and Docker's C(data-root) or containerd's C(root) pointing
    at it.
  - B(Never formats a disk.) When the device holds no filesystem, another filesystem type than
    O(fstype), or a partition table, or when O(path) is already mounted from another device, the
    module fails, says what it found, and changes nothing. The one exception is
    O(format_if_blank=true), which runs C(mkfs) only when C(blkid) finds no signature at all.
  - When fstab already mounts a filesystem on O(path) by C(UUID=), C(LABEL=), C(PARTUUID=) or
    C(PARTLABEL=) and the device does not carry it, the module fails and changes nothing. The data
    disk is then detached, or its device name belongs to another disk now (a reboot without the
    volume renames the disks after it). Remove that line first (O(state=absent)) to put another
    filesystem there on purpose.
  - A dropped connection (C(SIGHUP)) does not stop the module half way; it finishes, or puts the
    files back as it would have anyway.
  - Edits keep every byte of the files they do not own. In fstab, only the one line for O(path) (or
    for this device) is added or replaced in place, keeping its column layout and trailing comment;
    comments, spacing and C(\040) escapes elsewhere stay as they were. In C(daemon.json), a legacy
    C(graph) key is renamed to C(data-root) in place and every other key keeps its place and
    formatting. In containerd's C(config.toml), only the value of the top-level C(root) is changed
    (or one line added).
  - fstab is read as libmount reads it (C(mount), C(findmnt --fstab), systemd). With O(state=mounted)
    or O(state=present), when fstab has a line libmount rejects, or two lines for O(path), the module
    fails naming the lines and changes nothing. O(state=absent) removes the lines for O(path) and keeps
    every other line, valid or not.
  - Files are written atomically (a temporary file in the same directory, then a rename), all or
    none; if mounting or the check after it fails, both files are put back as they were.
  - After an fstab change on a systemd host it runs C(systemctl daemon-reload), so systemd's mount
    units match the new fstab before anything is mounted.
  - >-
    When the runtime's root moves (O(data_root) is not the root its configuration names now), the
    module first stops what runs from the old root, because C(systemctl stop containerd) does not
    (its unit has C(KillMode=process), so the shims and every pod's containers keep running). With
    O(kubelet_service) stopped (the module fails while it runs, as kubelet would start the pods
    again), it stops every running container with SIGTERM and a grace period of O(stop_timeout)
    seconds, at most 30 (C(crictl stop); for Docker, C(docker stop)), then stops and removes every
    pod sandbox (C(crictl stopp), C(crictl rmp)), checks that no shim (C(containerd-shim*)) and no
    container process is left (waiting up to O(stop_timeout) seconds), then stops O(runtime_units)
    (Docker's socket too, or socket activation starts it again). Starting the runtime and kubelet
    again is the caller's job, also when the module fails: it returns RV(runtime_restart_needed).
    When the root does not move, nothing is stopped. The C(kubeops.node_maintenance.data_disk) role
    stops kubelet, calls this module and starts both again.
  - >-
    Before that, with the runtime running, the module asks it for the root it uses (C(crictl info),
    C(docker info)) and fails, changing nothing, when that is not the one its configuration file
    names (the runtime reads another file), and counts its images: with O(carry_over=false) the
    result says how many the node will have to pull again (C(images_to_pull) in RV(changes.runtime_data)).
  - >-
    O(carry_over=true) copies the current root onto the disk once everything is stopped, so the
    images (and everything else in it) survive: C(cp -a) (hard links, xattrs, ACLs, timestamps,
    sparse files) into a temporary directory beside O(data_root), compared with the source (every
    entry's type, mode, owner, size, times, link target, xattrs, hard links, and the bytes of every
    file), then renamed to O(data_root). The configuration points at it only after that; the old
    root is never deleted. A copy killed half way (or a power cut) leaves the old root configured
    and untouched; the next run removes the unfinished copy and copies again. When O(data_root)
    already holds data (a root kept on the disk through a reimage), that is used as it is and
    nothing is copied (a warning says so).
  - When O(data_root) is on the disk, each C(.service) unit of O(runtime_units) gets a systemd
    drop-in, C(/etc/systemd/system/<unit>.d/kubeops-data-disk.conf), with
    C(RequiresMountsFor=<path>) (which adds C(Requires=) and C(After=) on the mount units), so a
    boot without the disk does not start the runtime on the root filesystem, and the module runs
    C(systemctl daemon-reload) when it writes one (O(require_mount=false) writes none).
author:
  - kubeops maintainers (@kubeops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  device:
    description:
      - The data disk or partition, as a path (V(/dev/vdb), V(/dev/disk/by-id/...)) or as
        V(UUID=...), V(LABEL=...), V(PARTUUID=...) or V(PARTLABEL=...).
      - Required when O(state) is V(mounted) or V(present).
    type: str
    aliases: [src]
  path:
    description:
      - The mount point, an absolute path such as V(/data). Created (mode C(0755)) when missing and
        O(state=mounted).
    type: path
    required: true
    aliases: [name]
  fstype:
    description:
      - The filesystem type the device must already have, for example V(ext4) or V(xfs).
      - Required when O(state) is V(mounted) or V(present).
    type: str
  opts:
    description:
      - Mount options for the fstab line.
      - V(nofail) keeps a missing disk from stopping the boot; systemd then waits up to 90 seconds
        for it, which V(x-systemd.device-timeout=10s) shortens.
    type: str
    default: defaults,nofail
  dump:
    description: The fifth fstab field (used by C(dump)).
    type: int
    default: 0
  passno:
    description:
      - The sixth fstab field, the C(fsck) order at boot; V(2) checks the disk after the root
        filesystem, V(0) never checks it.
    type: int
    default: 2
  identify_by:
    description:
      - How the fstab line names the device.
      - V(uuid) writes V(UUID=<filesystem uuid>), which survives device names changing between boots.
      - V(label) writes V(LABEL=<filesystem label>); the filesystem must have a label.
      - V(device) writes the device path (the resolved path when O(device) is a V(UUID=) or V(LABEL=)
        form).
    type: str
    choices: [uuid, device, label]
    default: uuid
  state:
    description:
      - V(mounted) - the fstab line is present and the filesystem is mounted on O(path) (mounted from
        the fstab line, so a line that does not work fails here and not at the next boot).
      - V(present) - the fstab line is present; nothing is mounted or unmounted.
      - V(unmounted) - O(path) is not mounted; fstab is left alone.
      - V(absent) - O(path) is unmounted and every fstab line for it is removed.
      - O(runtime) settings apply only with V(mounted) and V(present).
    type: str
    choices: [mounted, present, unmounted, absent]
    default: mounted
  fstab:
    description:
      - The fstab file to edit. Only V(/etc/fstab) triggers C(systemctl daemon-reload); another file
        is passed to C(mount --fstab), which is how tests use it.
    type: path
    default: /etc/fstab
  runtime:
    description:
      - Which container runtime to point at the data disk.
      - V(docker) sets C(data-root) in O(runtime_config) (replacing a legacy C(graph) key).
      - V(containerd) sets the top-level C(root) of O(runtime_config).
      - V(none) leaves runtime configuration alone.
    type: str
    choices: [docker, containerd, none]
    default: none
  runtime_config:
    description:
      - The runtime configuration file. Defaults to V(/etc/docker/daemon.json) for O(runtime=docker)
        and V(/etc/containerd/config.toml) for O(runtime=containerd). Created when missing.
      - Invalid JSON or TOML, C(graph) and C(data-root) with different values, or the key set twice
        make the module fail with the file left as it was.
    type: path
  data_root:
    description:
      - Where the runtime keeps its data, for example V(/data/docker). Required unless
        O(runtime=none). Should be below O(path); the module warns when it is not.
      - The directory itself is created by the runtime when it starts.
    type: path
  format_if_blank:
    description:
      - Run C(mkfs -t <fstype>) on O(device) when, and only when, C(blkid -p) finds no signature on it
        at all (no filesystem, no partition table, no RAID or LUKS header).
      - Off by default. Not allowed with O(identify_by=label).
    type: bool
    default: false
  backup:
    description:
      - Keep a timestamped copy of each file before changing it. Backup paths are returned in
        RV(backup_files).
    type: bool
    default: false
  carry_over:
    description:
      - When the root moves, copy the runtime's current root (the one its configuration names, or
        C(/var/lib/docker), C(/var/lib/containerd)) to O(data_root) once everything is stopped,
        verify the copy, and only then point the configuration at it. The old root is kept.
      - V(false) leaves the new root to the runtime to fill, and kubelet pulls every image again.
      - Needs free space on the disk for the whole root; the module fails first when there is not.
    type: bool
    default: false
  runtime_units:
    description:
      - The runtime's systemd units, stopped in this order when its root moves. Defaults to
        V([docker.socket, docker.service]) for O(runtime=docker) and V([containerd.service]) for
        O(runtime=containerd). Their C(.service) units get the C(RequiresMountsFor=) drop-in.
    type: list
    elements: str
  kubelet_service:
    description:
      - The kubelet's unit, which must be stopped before the runtime's root moves (else it starts
        the pods again as they are stopped). An empty string skips this check.
    type: str
    default: kubelet.service
  require_mount:
    description:
      - Give the runtime's C(.service) units the drop-in with C(RequiresMountsFor=) O(path) when
        O(data_root) is on the disk.
    type: bool
    default: true
  stop_timeout:
    description:
      - Seconds a running container gets to exit on SIGTERM before it is killed (at most 30), and
        seconds to wait, after every pod and container was stopped, for the last shim and container
        process to be gone.
    type: int
    default: 120
attributes:
  check_mode:
    support: full
    details: >-
      Probes the disk, reads the files and asks the running runtime for its root and images;
      stops, copies, writes, mounts and formats nothing.
  diff_mode:
    support: full
    details: One diff for fstab, one for the runtime configuration file and one for each drop-in.
  platform:
    platforms: posix
    support: full
notes:
  - Needs C(blkid), C(findmnt) and C(mount) from util-linux on the host, and root privileges; C(crictl)
    (containerd) or C(docker) when the runtime's root moves with the runtime running.
  - C(daemon.json) and C(config.toml) must be UTF-8; fstab may contain any bytes.
seealso:
  - module: ansible.posix.mount
    description: General-purpose mounts and fstab entries; it does not check the disk or move a runtime.
  - name: fstab(5)
    description: The format of the fstab file.
    link: https://man7.org/linux/man-pages/man5/fstab.5.html
  - name: Docker daemon configuration file
    description: The C(data-root) setting and the retired C(graph) key.
    link: https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file
"""

EXAMPLES = r"""
- name: Mount the kept data disk by UUID and move Docker onto it (kubelet stopped first; Docker is stopped by the module)
  kubeops.node_maintenance.node_disk_remount:
    device: /dev/vdb
    path: /data
    fstype: ext4
    opts: noatime,acl,user_xattr,nofail,x-systemd.device-timeout=10s
    runtime: docker
    data_root: /data/docker
    backup: true
  register: remount

- name: Start Docker again when its root moved
  ansible.builtin.systemd_service:
    name: docker.service
    state: restarted
  when: remount.runtime_restart_needed

- name: Move containerd onto the disk with its images (kubelet stopped first; containerd is stopped by the module)
  kubeops.node_maintenance.node_disk_remount:
    device: /dev/vdb
    path: /data
    fstype: ext4
    runtime: containerd
    data_root: /data/containerd
    carry_over: true
  register: remount

- name: Start containerd again (also when the module failed)
  ansible.builtin.systemd_service:
    name: containerd.service
    state: started

- name: Point containerd at the disk, identifying it by label
  kubeops.node_maintenance.node_disk_remount:
    device: LABEL=k8s-data
    path: /data
    fstype: xfs
    identify_by: label
    runtime: containerd
    data_root: /data/containerd

- name: Only write the fstab line (mounted at next boot)
  kubeops.node_maintenance.node_disk_remount:
    device: UUID=4b0e3c2a-6e0b-4f4c-9a49-3c1a0c6f0d11
    path: /data
    fstype: ext4
    state: present

- name: A brand-new, blank disk may be formatted, and only then
  kubeops.node_maintenance.node_disk_remount:
    device: /dev/vdc
    path: /scratch
    fstype: ext4
    format_if_blank: true

- name: Unmount and forget the data disk
  kubeops.node_maintenance.node_disk_remount:
    path: /data
    state: absent
"""

RETURN = r"""
mount_point:
  description: The mount point, normalized (no trailing slash).
  returned: always
  type: str
  sample: /data
fstab_line:
  description: The fstab line for O(path) after the run (without the line ending); null after O(state=absent).
  returned: when O(state) is V(mounted), V(present) or V(absent)
  type: str
  sample: UUID=4b0e3c2a-6e0b-4f4c-9a49-3c1a0c6f0d11 /data ext4 defaults,nofail 0 2
uuid:
  description: The filesystem UUID found on the device (null in check mode when it is still to be formatted).
  returned: when O(state) is V(mounted) or V(present)
  type: str
  sample: 4b0e3c2a-6e0b-4f4c-9a49-3c1a0c6f0d11
device:
  description: The device path O(device) resolved to.
  returned: when O(state) is V(mounted) or V(present)
  type: str
  sample: /dev/vdb
found:
  description: What C(blkid -p) found on the device (its export keys, such as C(TYPE), C(UUID), C(LABEL), C(PTTYPE)).
  returned: when O(state) is V(mounted) or V(present), also on failure
  type: dict
  sample: {TYPE: ext4, UUID: 4b0e3c2a-6e0b-4f4c-9a49-3c1a0c6f0d11, USAGE: filesystem}
formatted:
  description: Whether C(mkfs) ran (or would run, in check mode). Only ever true with O(format_if_blank=true).
  returned: always
  type: bool
mounted:
  description: Whether the filesystem is mounted on O(path) at the end (in check mode, whether it would be).
  returned: always
  type: bool
mount_action:
  description: What was done to the mount, V(mount), V(remount), V(unmount) or V(none).
  returned: always
  type: str
  sample: mount
mount:
  description: The mount as C(findmnt) reports it after the run (source, target, fstype, options, maj:min, fsroot).
  returned: when the filesystem is mounted at the end and not in check mode
  type: dict
systemd_reloaded:
  description: Whether C(systemctl daemon-reload) ran after the fstab change.
  returned: always
  type: bool
runtime_restart_needed:
  description: >-
    Whether the runtime must be (re)started: its configuration changed, or this run stopped it
    (also when the run failed after that).
  returned: always
  type: bool
changes:
  description: What changed in each file.
  returned: always
  type: dict
  contains:
    fstab:
      description: >-
        C(path), C(changed), C(action) (V(added), V(replaced), V(removed) or V(unchanged)),
        C(line), C(previous_lines) and C(backup).
      type: dict
      returned: when fstab was looked at
    runtime_config:
      description: >-
        C(path), C(runtime), C(changed), C(actions) (what was done, in words),
        C(previous_data_root), C(data_root) and C(backup).
      type: dict
      returned: when O(runtime) is not V(none)
    runtime_data:
      description: >-
        The root move. C(root_moves), C(current_root) (the root the configuration named),
        C(carry_over) (asked for), C(outcome) (V(none): the root does not move; V(copy): it would be
        copied (check mode); V(copied); V(kept): O(data_root) already held data and is used as it is;
        V(nothing to copy): the current root does not exist; V(not carried over)), C(runtime_active),
        C(root_in_use) (what the running daemon reported), C(images) (how many the running runtime
        had; null when it was not running), C(images_to_pull) (how many the node has to pull again
        because of the move: 0 with the images carried over, the number of images without carry-over,
        null when not known), C(pods_stopped), C(containers_stopped), C(units_stopped), C(copy)
        (C(entries), C(bytes), C(seconds) of the copy) and C(notes) (unfinished copies removed).
      type: dict
      returned: when O(runtime) is not V(none)
    dropins:
      description: The C(RequiresMountsFor=) drop-ins, each with C(path), C(changed) and C(backup).
      type: list
      elements: dict
      returned: when O(runtime) is not V(none)
  sample:
    fstab: {path: /etc/fstab, changed: true, action: added, line: "UUID=4b0e... /data ext4 defaults,nofail 0 2", previous_lines: [], backup: null}
    runtime_config:
      path: /etc/docker/daemon.json
      runtime: docker
      changed: true
      actions: ["renamed the legacy 'graph' key to 'data-root'", "set 'data-root' to /data/docker (was /var/lib/docker)"]
      previous_data_root: /var/lib/docker
      data_root: /data/docker
      backup: /etc/docker/daemon.json.1234.2025-01-01@10:00:00~
backup_files:
  description: Paths of the backup copies made (O(backup=true)).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _disk_remount


def argument_spec():
    return dict(
        device=dict(type="str", aliases=["src"]),
        path=dict(type="path", required=True, aliases=["name"]),
        fstype=dict(type="str"),
        opts=dict(type="str", default="defaults,nofail"),
        dump=dict(type="int", default=0),
        passno=dict(type="int", default=2, no_log=False),
        identify_by=dict(type="str", choices=["uuid", "device", "label"], default="uuid"),
        state=dict(type="str", choices=["mounted", "present", "unmounted", "absent"], default="mounted"),
        fstab=dict(type="path", default="/etc/fstab"),
        runtime=dict(type="str", choices=["docker", "containerd", "none"], default="none"),
        runtime_config=dict(type="path"),
        data_root=dict(type="path"),
        format_if_blank=dict(type="bool", default=False),
        backup=dict(type="bool", default=False),
        carry_over=dict(type="bool", default=False),
        runtime_units=dict(type="list", elements="str"),
        kubelet_service=dict(type="str", default="kubelet.service"),
        require_mount=dict(type="bool", default=True),
        stop_timeout=dict(type="int", default=120),
    )


def main():
    _disk_remount.ignore_hangup()
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _disk_remount.run_module(module)


if __name__ == "__main__":
    main()
