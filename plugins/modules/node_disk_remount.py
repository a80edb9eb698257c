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
  - Files are written atomically (a temporary file in the same directory, then a rename), all or
    none; if mounting or the check after it fails, both files are put back as they were.
  - After an fstab change on a systemd host it runs C(systemctl daemon-reload), so systemd's mount
    units match the new fstab before anything is mounted.
  - Stopping and starting kubelet and the container runtime (and C(docker.socket), or socket
    activation restarts Docker) is the caller's job, around this module; the module returns
    RV(runtime_restart_needed). The C(kubeops.node_maintenance.data_disk) role does all of it.
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
attributes:
  check_mode:
    support: full
    details: Probes the disk and reads the files; writes, mounts and formats nothing.
  diff_mode:
    support: full
    details: One diff for fstab and one for the runtime configuration file.
  platform:
    platforms: posix
    support: full
notes:
  - Needs C(blkid), C(findmnt) and C(mount) from util-linux on the host, and root privileges.
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
- name: Mount the kept data disk by UUID and move Docker onto it (kubelet and Docker stopped first)
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
  description: Whether the runtime configuration changed, so the runtime must be (re)started to use it.
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

import os
import signal

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _fstab
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _runtime_config
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _file_edit
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._block_devices import (
    BlockDeviceError,
    HostSystem,
)

RUNTIME_CONFIG_DEFAULTS = {
    "docker": "/etc/docker/daemon.json",
    "containerd": "/etc/containerd/config.toml",
}
_TAGS = {"UUID": "UUID", "LABEL": "LABEL", "PARTUUID": "PART_ENTRY_UUID", "PARTLABEL": "PART_ENTRY_NAME"}
_NEW_UUID = "<uuid-from-mkfs>"


class RemountError(Exception):
    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


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
    )


def _split_tag(spec):
    tag, sep, value = spec.partition("=")
    if sep and tag.upper() in _TAGS:
        return tag.upper(), value.strip("\"'")
    return None, None


def _identify(host, device_param, fstype, format_if_blank):
    """Resolve and probe the device. Returns (device path, blkid findings, needs_format)."""
    tag, value = _split_tag(device_param)
    if tag:
        device = host.find_device(tag, value)
        if not device:
            raise RemountError("no device with %s=%s was found (blkid; is the disk attached?); nothing was "
                               "changed" % (tag, value))
    else:
        device = device_param
    if not host.device_exists(device):
        raise RemountError("%s does not exist or is not a block device (is the disk attached? `lsblk` lists the "
                           "disks); nothing was changed" % device)
    found = host.probe(device)
    if tag and not _tag_matches(tag, value, found):
        raise RemountError(
            "%s was found on %s by the blkid cache, but probing the disk shows %s=%s; nothing was changed"
            % (device_param, device, _TAGS[tag], found.get(_TAGS[tag])), found=found)
    if not found:
        if format_if_blank:
            return device, found, True
        raise RemountError(
            "%s has no filesystem (blkid found no signature at all). This module never formats a disk "
            "unless format_if_blank=true; nothing was changed" % device, found=found)
    if found.get("TYPE") == fstype:
        return device, found, False
    if "TYPE" not in found:
        what = "a %s partition table" % found["PTTYPE"] if "PTTYPE" in found else "no filesystem but these signatures: %s" % found
        raise RemountError(
            "%s holds %s, not a %s filesystem; point device at the partition that holds the data. "
            "Nothing was changed" % (device, what, fstype), found=found)
    raise RemountError(
        "%s holds %s (UUID=%s%s), not %s as asked. This module never reformats a disk; check the "
        "device name and fstype. Nothing was changed"
        % (device, found["TYPE"], found.get("UUID"), ", LABEL=%s" % found["LABEL"] if "LABEL" in found else "", fstype),
        found=found)


def _describe_found(found):
    if not found:
        return "no filesystem"
    if "TYPE" not in found:
        return "no filesystem (%s)" % ", ".join("%s=%s" % kv for kv in sorted(found.items()))
    return "%s UUID=%s%s" % (found["TYPE"], found.get("UUID"), ", LABEL=%s" % found["LABEL"] if "LABEL" in found else "")


def _tag_matches(tag, value, found):
    have = found.get(_TAGS[tag])
    if tag in ("UUID", "PARTUUID"):  # blkid prints them in lower case; people paste upper case
        return bool(have) and have.lower() == value.lower()
    return bool(have) and have == value


def _same_device_predicate(host, device, found):
    real = host.realpath(device)

    def same_device(spec):
        tag, value = _split_tag(spec)
        if tag:
            return _tag_matches(tag, value, found)
        if spec.startswith("/"):
            return host.realpath(spec) == real
        return False

    return same_device


def _is_ours(host, mount, device):
    """Whether a findmnt entry is this device's filesystem mounted as a whole (not a bind of a subdir)."""
    if mount.get("fsroot") not in (None, "/"):
        return False
    number = host.device_number(device)
    # btrfs and some others report an anonymous device (0:N) rather than the block device
    if number and mount.get("maj:min") and not mount["maj:min"].startswith("0:"):
        return mount["maj:min"] == number
    return host.realpath(mount.get("source") or "") == host.realpath(device)


def _fstab_spec(identify_by, device, found, needs_format):
    if identify_by == "device":
        return device
    if identify_by == "label":
        if not found.get("LABEL"):
            raise RemountError("identify_by=label, but the filesystem on %s has no label; nothing was changed" % device, found=found)
        return "LABEL=%s" % found["LABEL"]
    if needs_format:
        return "UUID=%s" % _NEW_UUID
    if not found.get("UUID"):
        raise RemountError("the filesystem on %s has no UUID; use identify_by=device or label. Nothing was changed" % device, found=found)
    return "UUID=%s" % found["UUID"]


def _decode(data, label, path, strict):
    if data is None:
        return None
    try:
        return data.decode("utf-8", "strict" if strict else "surrogateescape")
    except UnicodeDecodeError as exc:
        raise RemountError("%s %s is not valid UTF-8 (%s); it was left as it was" % (label, path, exc))


def _encode(text):
    return text.encode("utf-8", "surrogateescape")


def _diff(planned):
    return dict(
        before_header=planned.path,
        after_header=planned.path,
        before=_decode(planned.before, planned.label, planned.path, False) or "",
        after=_decode(planned.after, planned.label, planned.path, False),
    )


class Remount:
    """One run of the module: plan everything from what is there, then change it, or nothing."""

    def __init__(self, module, host):
        self.module = module
        self.host = host
        self.p = module.params
        self.path = _fstab.normalize_mount_point(os.path.normpath(self.p["path"]))
        self.result = dict(
            changed=False, mount_point=self.path, formatted=False, mounted=False, mount_action="none",
            systemd_reloaded=False, runtime_restart_needed=False, changes={}, backup_files=[],
        )

    # --- planning ------------------------------------------------------------------------------

    def validate(self):
        p = self.p
        if not os.path.isabs(self.path):
            raise RemountError("path must be absolute, got %r" % p["path"])
        if p["state"] in ("mounted", "present"):
            missing = [name for name in ("device", "fstype") if not p[name]]
            if missing:
                raise RemountError("state=%s needs %s" % (p["state"], " and ".join(missing)))
        if p["runtime"] != "none":
            if p["state"] not in ("mounted", "present"):
                raise RemountError("runtime settings apply only with state=mounted or present")
            if not p["data_root"] or not os.path.isabs(p["data_root"]):
                raise RemountError("runtime=%s needs data_root, an absolute path" % p["runtime"])
            data_root = os.path.normpath(p["data_root"])
            if os.path.commonpath([data_root, self.path]) != self.path:
                self.module.warn("data_root %s is not below the mount point %s, so the runtime's data will not be on the data disk" % (data_root, self.path))
        if p["format_if_blank"] and p["identify_by"] == "label":
            raise RemountError("format_if_blank cannot be combined with identify_by=label: mkfs here sets no label")
        for name in ("dump", "passno"):
            if p[name] < 0:
                raise RemountError("%s must not be negative" % name)

    def read_fstab(self):
        before = _file_edit.read_file(self.p["fstab"])
        lines = _fstab.parse_fstab(_decode(before, "fstab", self.p["fstab"], False) or "")
        return before, lines

    def plan_fstab(self, before, lines, device, found, needs_format):
        p = self.p
        entry = _fstab.FstabEntry(
            _fstab_spec(p["identify_by"], device, found, needs_format),
            self.path, p["fstype"], p["opts"], p["dump"], p["passno"])
        same_device = _same_device_predicate(self.host, device, found)
        other = _fstab.line_for_another_filesystem(lines, self.path, same_device)
        if other is not None:
            raise RemountError(
                "%s line %d mounts %s on %s, but %s holds %s: another filesystem. The data disk may be "
                "detached, or its device name may now belong to another disk (`lsblk -f` shows the disks "
                "attached). Attach the data disk, or correct device; nothing was changed. To put another "
                "filesystem on %s on purpose, remove its line first (state=absent)"
                % (p["fstab"], other.number, other.entry.spec, self.path, device, _describe_found(found), self.path),
                found=found)
        try:
            new_lines, change = _fstab.set_entry(lines, entry, same_device)
        except _fstab.FstabError as exc:
            raise RemountError("%s: %s; nothing was changed" % (p["fstab"], exc))
        planned = _file_edit.PlannedFile("fstab", p["fstab"], before, _encode(_fstab.render_fstab(new_lines)))
        return planned, change

    def plan_runtime(self):
        p = self.p
        if p["runtime"] == "none":
            return None, None
        path = p["runtime_config"] or RUNTIME_CONFIG_DEFAULTS[p["runtime"]]
        before = _file_edit.read_file(path)
        text = _decode(before, p["runtime"] + " configuration", path, True)
        data_root = os.path.normpath(p["data_root"])
        try:
            if p["runtime"] == "docker":
                edit = _runtime_config.set_docker_data_root(text, data_root)
            else:
                edit = _runtime_config.set_containerd_root(text, data_root)
        except _runtime_config.RuntimeConfigError as exc:
            raise RemountError("%s: %s" % (path, exc))
        planned = _file_edit.PlannedFile(os.path.basename(path), path, before, _encode(edit.text))
        info = dict(path=path, runtime=p["runtime"], changed=planned.changed, actions=edit.actions,
                    previous_data_root=edit.previous_root, data_root=data_root, backup=None)
        return planned, info

    # --- running ---------------------------------------------------------------------------------

    def run(self):
        self.validate()
        state = self.p["state"]
        mounts = self.host.mounts_at(self.path)
        current = mounts[-1] if mounts else None
        if state in ("mounted", "present"):
            self.ensure_present(current, mount=state == "mounted")
        elif state == "unmounted":
            self.ensure_unmounted(current)
        else:
            self.ensure_absent(current)
        return self.result

    def ensure_present(self, current, mount):
        p, r, check = self.p, self.result, self.module.check_mode
        device, found, needs_format = _identify(self.host, p["device"], p["fstype"], p["format_if_blank"])
        r.update(device=device, found=found, uuid=found.get("UUID"))
        ours = current is not None and _is_ours(self.host, current, device)
        if current is not None and not ours:
            raise RemountError(
                "%s is already mounted from %s (%s%s), not from %s; nothing was changed"
                % (self.path, current.get("source"), current.get("fstype"),
                   ", a bind mount of %s" % current["fsroot"] if current.get("fsroot") not in (None, "/") else "",
                   device), mount=current, found=found)
        if mount and os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise RemountError("%s exists and is not a directory; nothing was changed" % self.path)
        if mount and current is None and os.path.isdir(self.path) and os.listdir(self.path):
            self.module.warn("%s is not empty; mounting the disk there hides what is in it now" % self.path)
        if mount and current is None:
            elsewhere = [m.get("target") for m in self.host.mounts_of(device)]
            if elsewhere:
                self.module.warn("%s is also mounted on %s" % (device, ", ".join(map(str, elsewhere))))

        fstab_before, lines = self.read_fstab()
        fstab_file, change = self.plan_fstab(fstab_before, lines, device, found, needs_format)
        runtime_file, runtime_info = self.plan_runtime()
        files = [f for f in (fstab_file, runtime_file) if f is not None]
        if not check:
            reasons = [x for x in (_file_edit.unwritable_reason(f.path) for f in files if f.changed) if x]
            if reasons:
                raise RemountError("cannot write: %s; nothing was changed" % "; ".join(reasons))

        need_mount = mount and current is None
        opts_changed = change.action == "replaced" and any(
            line.entry.mntops != p["opts"] for line in lines if line.number == change.line_number and line.entry)
        need_remount = mount and ours and opts_changed

        if needs_format:
            r["formatted"] = True
            if not check:
                self.host.make_filesystem(device, p["fstype"])
                found = self.host.probe(device)
                if found.get("TYPE") != p["fstype"]:
                    raise RemountError("mkfs ran on %s but blkid then found %s" % (device, found or "nothing"), found=found)
                r.update(found=found, uuid=found.get("UUID"))
                fstab_file, change = self.plan_fstab(fstab_before, lines, device, found, False)
                files[0] = fstab_file

        r["fstab_line"] = change.line
        r["changes"]["fstab"] = dict(path=p["fstab"], changed=fstab_file.changed, action=change.action,
                                     line=change.line, previous_lines=change.previous, backup=None)
        if runtime_info is not None:
            r["changes"]["runtime_config"] = runtime_info
            r["runtime_restart_needed"] = runtime_file.changed
        if self.module._diff:
            r["diff"] = [_diff(f) for f in files if f.changed]
        r["changed"] = any(f.changed for f in files) or need_mount or need_remount or needs_format
        r["mounted"] = mount or ours
        r["mount_action"] = "mount" if need_mount else "remount" if need_remount else "none"
        if check:
            return

        self.write(files)
        created = None
        try:
            if files[0].changed:
                self.reload_systemd()
            if not mount:
                return
            if need_mount:
                if not os.path.isdir(self.path):
                    created = self.path
                    os.makedirs(self.path, 0o755)
                self.host.mount(self.path, p["fstab"])
            elif need_remount:
                self.host.remount(self.path, p["fstab"])
            self.verify(device)
        except (BlockDeviceError, RemountError, OSError) as exc:
            self.undo(files, unmount=need_mount, created=created)
            raise RemountError("%s failed: %s; fstab and the runtime configuration were put back as they were"
                               % ("mounting %s" % self.path if mount else "reloading systemd", getattr(exc, "msg", exc)),
                               found=found)

    def verify(self, device):
        mounts = self.host.mounts_at(self.path)
        top = mounts[-1] if mounts else None
        if top is None:
            raise RemountError("findmnt shows nothing mounted on %s after mount" % self.path)
        if not _is_ours(self.host, top, device) or top.get("fstype") != self.p["fstype"]:
            raise RemountError("findmnt shows %s (%s) on %s, not %s" % (top.get("source"), top.get("fstype"), self.path, device))
        self.result["mount"] = top

    def write(self, files):
        r = self.result
        try:
            backups = _file_edit.apply(files, backup=self.p["backup"], make_backup=self.module.backup_local,
                                       set_attributes=self._set_attributes)
        except _file_edit.FileEditError as exc:
            raise RemountError(str(exc))
        for planned, key in zip(files, ("fstab", "runtime_config")):
            if planned.path in backups:
                r["changes"][key]["backup"] = backups[planned.path]
        r["backup_files"] = list(backups.values())

    def undo(self, files, unmount, created=None):
        """Put the files (and the mount) back as they were before this run."""
        if unmount:
            try:
                if self.host.mounts_at(self.path):
                    self.host.unmount(self.path)
            except BlockDeviceError as exc:
                self.module.warn("could not unmount %s after the failure: %s" % (self.path, exc))
        problems = _file_edit.restore([f for f in files if f.changed], self._set_attributes)
        if problems:
            self.module.warn("could not put back: %s" % "; ".join(problems))
        if files[0].changed:
            try:
                self.reload_systemd()
            except BlockDeviceError as exc:
                self.module.warn("fstab was put back, but `systemctl daemon-reload` failed: %s" % exc)
        if created:
            try:
                os.rmdir(created)
            except OSError:
                pass
        if not problems:
            r = self.result
            r.update(changed=False, mounted=False, mount_action="none", runtime_restart_needed=False)
            for change in r["changes"].values():
                change.update(changed=False, restored=True)

    def reload_systemd(self):
        fstab = self.p["fstab"]
        if os.path.realpath(fstab) == os.path.realpath(self.host.system_fstab) and self.host.is_systemd():
            self.host.daemon_reload()
            self.result["systemd_reloaded"] = True

    def _set_attributes(self, tmp, dest):
        if self.module.selinux_enabled():
            context = self.module.selinux_context(dest) if os.path.exists(dest) else self.module.selinux_default_context(dest)
            self.module.set_context_if_different(tmp, context, False)

    def ensure_unmounted(self, current):
        r = self.result
        if current is None:
            return
        r.update(changed=True, mount_action="unmount")
        if not self.module.check_mode:
            self.host.unmount(self.path)

    def ensure_absent(self, current):
        p, r = self.p, self.result
        before, lines = self.read_fstab()
        new_lines, change = _fstab.remove_entries(lines, self.path)
        planned = _file_edit.PlannedFile("fstab", p["fstab"], before, _encode(_fstab.render_fstab(new_lines)))
        r["fstab_line"] = None
        r["changes"]["fstab"] = dict(path=p["fstab"], changed=planned.changed, action=change.action,
                                     line=None, previous_lines=change.previous, backup=None)
        if self.module._diff and planned.changed:
            r["diff"] = [_diff(planned)]
        r["changed"] = planned.changed or current is not None
        if current is not None:
            r["mount_action"] = "unmount"
        if self.module.check_mode:
            return
        if planned.changed and _file_edit.unwritable_reason(planned.path):
            raise RemountError("cannot write: %s; nothing was changed" % _file_edit.unwritable_reason(planned.path))
        if current is not None:
            self.host.unmount(self.path)
        if planned.changed:
            self.write([planned])
            self.reload_systemd()


def main():
    # A dropped SSH connection hangs up the module's terminal. Dying then could leave fstab
    # written and the mount or the runtime config not done; the run is short, so finish it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    remount = Remount(module, HostSystem(module))
    try:
        result = remount.run()
    except RemountError as exc:
        result = dict(remount.result, **exc.details)
        module.fail_json(msg=exc.msg, **result)
    except BlockDeviceError as exc:
        result = dict(remount.result)
        module.fail_json(msg="%s; see the changes returned for what had already been done" % exc, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
