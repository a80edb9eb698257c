# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_disk_remount's run: probe the disk, plan fstab and the runtime configuration, then change
them (and the mount) all together, or nothing.

Private to this collection (the leading underscore): other collections must not import it.

The orchestration drives the pure logic beside it (``_fstab``, ``_runtime_config``,
``_file_edit``) and talks to the machine through two small interfaces, so unit tests run it with
fakes and no ``AnsibleModule``:

- ``host``: the disk commands (``blkid``, ``findmnt``, ``mount``, ``mkfs``, ``systemctl``);
  ``_block_devices.HostSystem`` on a real host.
- ``context``: what the module run provides: ``check_mode``, ``diff``, ``warn(msg)``, the hooks of
  the atomic file writes (``backup(path)``, ``set_attributes(tmp, dest)``) and, for ``HostSystem``,
  ``run_command(argv)`` and ``get_bin_path(name, required)``; ``ModuleContext`` over an
  ``AnsibleModule``.

Each container runtime is one ``Runtime`` in ``RUNTIMES``: its default configuration file and
how to set its data root there.

A failure is a ``RemountError`` (message and result fields); ``remount()`` turns it, and a failed
host command, into the module's failed result: the result so far, the error's fields and ``msg``.
"""

from __future__ import annotations

import json
import os
import signal
import time

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _fstab
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _runtime_config
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _file_edit
from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _runtime_data
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._block_devices import (
    BlockDeviceError,
    HostSystem,
)
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._runtime_data import RuntimeHost

_TAGS = {"UUID": "UUID", "LABEL": "LABEL", "PARTUUID": "PART_ENTRY_UUID", "PARTLABEL": "PART_ENTRY_NAME"}
_NEW_UUID = "<uuid-from-mkfs>"


class RemountError(Exception):
    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


# --- container runtimes --------------------------------------------------------------------------

class Runtime:
    """A container runtime whose data root can be moved: its configuration file and one edit, its
    default root and units, and how to ask the running daemon for its root, its images and its
    pods, and to stop them.

    A new runtime, or a new layout of one (another containerd configuration version, a drop-in
    file), is one more subclass here and one more entry in ``RUNTIMES`` (and in the module's
    ``runtime`` choices and documentation).
    """

    name = ""
    default_config = ""
    default_root = ""
    units = ()  # stopped in this order; the .service ones get the drop-in

    def set_data_root(self, text, data_root):
        """The ``_runtime_config.ConfigEdit`` that makes ``data_root`` the runtime's data root in the
        configuration ``text`` (None: the file does not exist). Raises ``RuntimeConfigError`` when
        the file cannot be edited safely."""
        raise NotImplementedError

    def connect(self, text):
        """Remember what the CLI needs from the configuration ``text`` (containerd: its socket)."""

    def reported_root(self, rhost):
        """The root the running daemon uses."""
        raise NotImplementedError

    def images(self, rhost):
        """The IDs of the images the running daemon has."""
        raise NotImplementedError

    def stop_all(self, rhost, timeout):
        """Stop (and where it is the runtime's way, remove) every pod and container; returns
        (pods, containers) stopped."""
        raise NotImplementedError


# crictl's deadline for one call (``--timeout``), beyond the grace period a stop waits.
CRI_CALL_SECONDS = 60


def _grace_seconds(stop_timeout):
    """The grace period a running container gets to exit on SIGTERM before it is killed: the
    module's stop_timeout, bounded to 1..30 s (the field notes' ``docker stop`` gave 10)."""
    return max(1, min(stop_timeout, 30))


class Docker(Runtime):
    name = "docker"
    default_config = "/etc/docker/daemon.json"
    default_root = "/var/lib/docker"
    units = ("docker.socket", "docker.service")

    def set_data_root(self, text, data_root):
        return _runtime_config.set_docker_data_root(text, data_root)

    def reported_root(self, rhost):
        return rhost.cli("docker", ["info", "--format", "{{.DockerRootDir}}"]).strip() or None

    def images(self, rhost):
        return _runtime_data.ids(rhost.cli("docker", ["images", "-q", "--no-trunc"]))

    def stop_all(self, rhost, timeout):
        running = _runtime_data.ids(rhost.cli("docker", ["ps", "-q", "--no-trunc"]))
        if running:  # what the field notes did, with the stop's grace period bounded
            rhost.cli("docker", ["stop", "--time", str(_grace_seconds(timeout))] + running)
        return [], running


class Containerd(Runtime):
    name = "containerd"
    default_config = "/etc/containerd/config.toml"
    default_root = "/var/lib/containerd"
    units = ("containerd.service",)

    def __init__(self):
        self.endpoint = _runtime_data.containerd_address(None)

    def set_data_root(self, text, data_root):
        return _runtime_config.set_containerd_root(text, data_root)

    def connect(self, text):
        try:
            config = _runtime_config.toml_data(text)
        except _runtime_config.RuntimeConfigError:
            config = None
        self.endpoint = _runtime_data.containerd_address(config)

    def crictl(self, rhost, *args, wait=0):
        # crictl's own deadline for each call is 2 s unless crictl.yaml says otherwise: too short
        # for a loaded node, and for a stop that waits ``wait`` seconds for its containers
        return rhost.cli("crictl", list(args), endpoint=self.endpoint, timeout=CRI_CALL_SECONDS + wait)

    def reported_root(self, rhost):
        return _runtime_data.crictl_root(self.crictl(rhost, "info"))

    def images(self, rhost):
        return _runtime_data.ids(self.crictl(rhost, "images", "-q"))

    def stop_all(self, rhost, timeout):
        pods = _runtime_data.ids(self.crictl(rhost, "pods", "-q"))
        containers = _runtime_data.ids(self.crictl(rhost, "ps", "-a", "-q"))
        running = _runtime_data.ids(self.crictl(rhost, "ps", "-q"))
        if running:  # SIGTERM and a grace period first, as docker stop: stopping a sandbox kills at once
            grace = _grace_seconds(timeout)
            self.crictl(rhost, *(["stop", "--timeout", str(grace)] + running), wait=grace)
        if pods:
            self.crictl(rhost, *(["stopp"] + pods))
            self.crictl(rhost, *(["rmp", "--force"] + pods))
        left = _runtime_data.ids(self.crictl(rhost, "ps", "-a", "-q"))
        if left:  # containers without a sandbox of their own (not kubelet's): removed by force
            self.crictl(rhost, *(["rm", "--force"] + left))
        return pods, containers


RUNTIME_CLASSES = {cls.name: cls for cls in (Docker, Containerd)}
RUNTIMES = {name: cls() for name, cls in RUNTIME_CLASSES.items()}


# --- what the module run provides ------------------------------------------------------------------

class ModuleContext:
    """The ``context`` of a run inside an ``AnsibleModule``: the only place the orchestration meets it."""

    def __init__(self, module):
        self._module = module
        self.check_mode = module.check_mode
        self.diff = bool(module._diff)

    def run_command(self, argv):
        return self._module.run_command(argv)

    def get_bin_path(self, name, required=False):
        return self._module.get_bin_path(name, required=required)

    def warn(self, msg):
        self._module.warn(msg)

    def backup(self, path):
        """A timestamped copy of ``path``; returns its path."""
        return self._module.backup_local(path)

    def set_attributes(self, tmp, dest):
        """Give the temporary file ``tmp`` the SELinux context ``dest`` has (or would get)."""
        module = self._module
        if module.selinux_enabled():
            context = module.selinux_context(dest) if os.path.exists(dest) else module.selinux_default_context(dest)
            module.set_context_if_different(tmp, context, False)


# --- probing and naming the device ---------------------------------------------------------------

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
    """One run of the module: plan everything from what is there, then change it, or nothing.

    ``params`` are the module's validated options; ``context`` and ``host`` as in the module
    docstring. ``run()`` returns the result or raises ``RemountError`` / ``BlockDeviceError``, with
    ``result`` holding what was done so far."""

    def __init__(self, params, context, host, runtime_host):
        self.context = context
        self.host = host
        self.runtime_host = runtime_host
        self.runtime = self.old_root = self.marker = None
        self.p = params
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
                self.context.warn("data_root %s is not below the mount point %s, so the runtime's data will not be on the data disk" % (data_root, self.path))
        if p["carry_over"] and p["runtime"] == "none":
            raise RemountError("carry_over needs runtime (docker or containerd): it carries that runtime's data over")
        if p["stop_timeout"] < 0:
            raise RemountError("stop_timeout must not be negative")
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
        runtime = self.runtime = RUNTIME_CLASSES[p["runtime"]]()
        path = self.runtime_config = p["runtime_config"] or runtime.default_config
        before = _file_edit.read_file(path)
        text = _decode(before, runtime.name + " configuration", path, True)
        data_root = os.path.normpath(p["data_root"])
        try:
            edit = runtime.set_data_root(text, data_root)
        except _runtime_config.RuntimeConfigError as exc:
            raise RemountError("%s: %s" % (path, exc))
        runtime.connect(text)
        planned = _file_edit.PlannedFile(os.path.basename(path), path, before, _encode(edit.text))
        info = dict(path=path, runtime=runtime.name, changed=planned.changed, actions=edit.actions,
                    previous_data_root=edit.previous_root, data_root=data_root, backup=None)
        self.old_root = os.path.normpath(edit.previous_root or runtime.default_root)
        return planned, info

    def plan_dropins(self):
        """The drop-ins that make the runtime's units require the disk's mount (when its root is on it)."""
        p = self.p
        if p["runtime"] == "none" or not p["require_mount"]:
            return []
        data_root = os.path.normpath(p["data_root"])
        if data_root != self.path and not _runtime_data.is_below(data_root, self.path):
            return []
        planned = []
        for unit in self.units():
            if unit.endswith(".service"):
                path = _runtime_data.dropin_path(self.runtime_host.unit_dir, unit)
                text = _runtime_data.dropin_text(unit, self.path, data_root)
                planned.append(_file_edit.PlannedFile("%s drop-in" % unit, path, _file_edit.read_file(path), _encode(text)))
        return planned

    def units(self):
        return list(self.p["runtime_units"] or self.runtime.units)

    def services(self):
        return [u for u in self.units() if not u.endswith(".socket")]

    # --- the runtime's side of a root move ---------------------------------------------------------

    def probe_runtime(self, data):
        """Read-only: is the runtime running, on the root its configuration names, with how many images."""
        rhost, runtime = self.runtime_host, self.runtime
        data["runtime_active"] = any(rhost.unit_active(u) for u in self.services())
        if not data["runtime_active"]:
            return
        reported = runtime.reported_root(rhost)
        data["root_in_use"] = reported
        if reported and os.path.normpath(reported) != self.old_root:
            raise RemountError(
                "%s runs with its root in %s, but %s names %s: is that the configuration file it reads? Set "
                "runtime_config to it; nothing was changed" % (runtime.name, reported, self.runtime_config, self.old_root))
        data["images"] = len(runtime.images(rhost))

    def quiesce(self, data):
        """Stop every pod and container, check that none is left, stop the runtime's units."""
        p, rhost, runtime = self.p, self.runtime_host, self.runtime
        kubelet = p["kubelet_service"]
        if kubelet and rhost.unit_active(kubelet):
            raise RemountError(
                "%s is running: it would start the pods again while they are stopped for the move of %s's root. "
                "Stop it first (the kubeops.node_maintenance.data_disk role does); nothing was changed" % (kubelet, runtime.name))
        self.result["changed"] = True
        if data["runtime_active"]:
            pods, containers = runtime.stop_all(rhost, p["stop_timeout"])
            data.update(pods_stopped=len(pods), containers_stopped=len(containers))
        deadline = time.monotonic() + p["stop_timeout"]
        while True:
            left = _runtime_data.container_processes(rhost.processes())
            if not left:
                break
            if time.monotonic() >= deadline:
                how = ("they are still running %ds after every pod was stopped" % p["stop_timeout"] if data["runtime_active"] else
                       "%s is stopped, so they cannot be stopped through it: start it and run again (this module "
                       "stops them through it), or stop them yourself" % ", ".join(self.services()))
                raise RemountError(
                    "container processes of %s's current root %s are left (%s): %s. The root was not moved "
                    "(they would keep running from the old root beside the new one's pods)"
                    % (runtime.name, self.old_root, "; ".join(left[:10]), how))
            rhost.sleep(rhost.poll_interval)
        for unit in self.units():
            if rhost.unit_active(unit):
                rhost.stop_unit(unit)
                data["units_stopped"].append(unit)
                self.result["runtime_restart_needed"] = True
        still = [u for u in self.services() if rhost.unit_active(u)]
        if still:
            raise RemountError("%s still active after `systemctl stop`; the root was not moved" % ", ".join(still))

    def carry_over(self, data):
        """Copy the old root onto the disk: into a temporary directory, compared, renamed into place."""
        rhost, source, dest = self.runtime_host, self.old_root, os.path.normpath(self.p["data_root"])
        parent, base = os.path.dirname(dest), os.path.basename(dest)
        tmp = os.path.join(parent, "." + base + _runtime_data.COPY_SUFFIX)
        marker = os.path.join(parent, "." + base + _runtime_data.MARKER_SUFFIX)
        if os.path.lexists(tmp):
            rhost.remove_tree(tmp)
            data["notes"].append("removed %s, the unfinished copy of an earlier run" % tmp)
        if os.path.lexists(dest):
            if os.path.exists(marker):
                rhost.remove_tree(dest)
                os.unlink(marker)
                data["notes"].append("removed %s, an earlier run's copy that was never configured" % dest)
            elif os.path.isdir(dest) and not os.path.islink(dest) and not os.listdir(dest):
                os.rmdir(dest)
            else:
                data.update(outcome="kept", images_to_pull=None)
                self.context.warn("%s already holds data (a runtime root kept on the disk?): %s uses it as it is, and "
                                  "nothing was copied from %s" % (dest, self.runtime.name, source))
                return
        if not os.path.isdir(source):
            data.update(outcome="nothing to copy")
            self.context.warn("carry_over: %s, the current root, does not exist; %s starts with an empty root" % (source, self.runtime.name))
            return
        held = rhost.mounts_below(source)
        if held:
            raise RemountError("carry_over: %s still has mounts below it (%s), whose contents a copy would miss or "
                               "duplicate; the root was not moved" % (source, ", ".join(held[:5])))
        os.makedirs(parent, mode=0o755, exist_ok=True)
        entries, used = _runtime_data.manifest(source)
        free = rhost.free_bytes(parent)
        if used > free:
            raise RemountError("carry_over: %s takes %d MiB, but %s has only %d MiB free; the root was not moved"
                               % (source, used >> 20, parent, free >> 20))
        started = time.monotonic()
        rhost.copy_tree(source, tmp)
        differences = _runtime_data.manifest_differences(entries, _runtime_data.manifest(tmp)[0])
        differs = _runtime_data.same_contents(source, tmp, entries) if not differences else None
        if differences or differs:
            raise RemountError("carry_over: the copy %s is not the same as %s (%s); the runtime's configuration was not "
                               "changed, the next run copies again" % (tmp, source, "; ".join(differences) or "%s has other bytes" % differs))
        # on the disk before anything names it: cp does not sync, and a power loss right after the
        # configuration points at a copy still in the page cache would leave a root of empty files
        rhost.sync_tree(tmp)
        _file_edit.atomic_write(marker, _encode(json.dumps(dict(source=source, copy=dest, created=time.time())) + "\n"), 0o600)
        os.rename(tmp, dest)
        _file_edit.fsync_directory(parent)
        self.marker = marker
        copied = dict(entries=len(entries), bytes=used, seconds=round(time.monotonic() - started, 1))
        data.update(outcome="copied", images_to_pull=0, copy=copied)

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
        p, r, check = self.p, self.result, self.context.check_mode
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
            self.context.warn("%s is not empty; mounting the disk there hides what is in it now" % self.path)
        if mount and current is None:
            elsewhere = [m.get("target") for m in self.host.mounts_of(device)]
            if elsewhere:
                self.context.warn("%s is also mounted on %s" % (device, ", ".join(map(str, elsewhere))))

        fstab_before, lines = self.read_fstab()
        fstab_file, change = self.plan_fstab(fstab_before, lines, device, found, needs_format)
        runtime_file, runtime_info = self.plan_runtime()
        dropins = self.plan_dropins() if runtime_file is not None else []
        second = [f for f in [runtime_file] + dropins if f is not None]
        moves = runtime_file is not None and self.old_root != os.path.normpath(p["data_root"])
        data = None
        if moves and p["carry_over"]:
            data_root = os.path.normpath(p["data_root"])
            if _runtime_data.is_below(data_root, self.old_root) or _runtime_data.is_below(self.old_root, data_root):
                raise RemountError("carry_over: %s and the current root %s are inside one another; a copy cannot go "
                                   "there. Nothing was changed" % (data_root, self.old_root))
            if mount and current is None and _runtime_data.is_below(self.old_root, self.path):
                raise RemountError("carry_over: the current root %s is below %s, which the disk's mount would hide; "
                                   "nothing was changed" % (self.old_root, self.path))
        if runtime_file is not None:
            data = dict(root_moves=moves, current_root=self.old_root, carry_over=p["carry_over"], outcome="none",
                        runtime_active=None, root_in_use=None, images=None, images_to_pull=0 if not moves else None,
                        pods_stopped=0, containers_stopped=0, units_stopped=[], notes=[])
            r["changes"]["runtime_data"] = data
            if moves:
                self.probe_runtime(data)
                if p["carry_over"]:
                    data.update(outcome="copy", images_to_pull=0)
                else:
                    data.update(outcome="not carried over", images_to_pull=data["images"])
        if not check:
            reasons = [x for x in (_file_edit.unwritable_reason(f.path) for f in [fstab_file] + second
                                   if f.changed and os.path.isdir(os.path.dirname(f.path))) if x]
            reasons += ["cannot create %s (not writable)" % os.path.dirname(f.path) for f in dropins
                        if f.changed and not os.path.isdir(os.path.dirname(f.path))
                        and not os.access(self.runtime_host.unit_dir, os.W_OK | os.X_OK)]
            if reasons:
                raise RemountError("cannot write: %s; nothing was changed" % "; ".join(reasons))

        need_mount = mount and current is None
        opts_changed = change.action == "replaced" and any(
            line.entry.mntops != p["opts"] for line in lines if line.number == change.line_number and line.entry)
        need_remount = mount and ours and opts_changed

        r["fstab_line"] = change.line
        r["changes"]["fstab"] = dict(path=p["fstab"], changed=fstab_file.changed, action=change.action,
                                     line=change.line, previous_lines=change.previous, backup=None)
        if runtime_info is not None:
            r["changes"]["runtime_config"] = runtime_info
            r["changes"]["dropins"] = [dict(path=f.path, changed=f.changed, backup=None) for f in dropins]
            r["runtime_restart_needed"] = runtime_file.changed
        files = [fstab_file] + second
        r["changed"] = any(f.changed for f in files) or need_mount or need_remount or needs_format
        r["mounted"] = mount or ours
        r["mount_action"] = "mount" if need_mount else "remount" if need_remount else "none"
        r["formatted"] = needs_format
        if check:
            if self.context.diff:
                r["diff"] = [_diff(f) for f in files if f.changed]
            return

        if moves:
            self.quiesce(data)
        if needs_format:
            self.host.make_filesystem(device, p["fstype"])
            found = self.host.probe(device)
            if found.get("TYPE") != p["fstype"]:
                raise RemountError("mkfs ran on %s but blkid then found %s" % (device, found or "nothing"), found=found)
            r.update(found=found, uuid=found.get("UUID"))
            fstab_file, change = self.plan_fstab(fstab_before, lines, device, found, False)
            r["fstab_line"] = change.line
            r["changes"]["fstab"].update(line=change.line)
        if self.context.diff:
            r["diff"] = [_diff(f) for f in [fstab_file] + second if f.changed]

        self.write([fstab_file], ["fstab"])
        created, written = None, []
        step = "mounting %s" % self.path if mount else "reloading systemd"
        try:
            if fstab_file.changed:
                self.reload_systemd()
            if mount:
                if need_mount:
                    if not os.path.isdir(self.path):
                        created = self.path
                        os.makedirs(self.path, 0o755)
                    self.host.mount(self.path, p["fstab"])
                elif need_remount:
                    self.host.remount(self.path, p["fstab"])
                self.verify(device)
            if moves and p["carry_over"]:
                step = "carrying %s over to %s" % (self.old_root, p["data_root"])
                self.carry_over(data)
            step = "writing the runtime's configuration"
            for f in dropins:
                if f.changed and not os.path.isdir(os.path.dirname(f.path)):
                    os.makedirs(os.path.dirname(f.path), 0o755)
            written = second
            self.write(second, ["runtime_config"] + ["dropins"] * len(dropins))
            if any(f.changed for f in dropins) and self.host.is_systemd():
                self.host.daemon_reload()
                r["systemd_reloaded"] = True
            if self.marker:
                os.unlink(self.marker)
                _file_edit.fsync_directory(os.path.dirname(self.marker))
        except (BlockDeviceError, RemountError, OSError, _runtime_data.RuntimeDataError) as exc:
            self.undo([fstab_file], written, unmount=need_mount, created=created)
            raise RemountError("%s failed: %s; fstab and the runtime configuration were put back as they were "
                               "(restored, and the disk unmounted if this run mounted it)%s"
                               % (step, getattr(exc, "msg", exc),
                                  " (%s stopped: the caller starts it again, on its old root)" % ", ".join(data["units_stopped"])
                                  if data and data["units_stopped"] else ""),
                               found=found)

    def verify(self, device):
        mounts = self.host.mounts_at(self.path)
        top = mounts[-1] if mounts else None
        if top is None:
            raise RemountError("findmnt shows nothing mounted on %s after mount" % self.path)
        if not _is_ours(self.host, top, device) or top.get("fstype") != self.p["fstype"]:
            raise RemountError("findmnt shows %s (%s) on %s, not %s" % (top.get("source"), top.get("fstype"), self.path, device))
        self.result["mount"] = top

    def write(self, files, keys):
        r = self.result
        try:
            backups = _file_edit.apply(files, backup=self.p["backup"], make_backup=self.context.backup,
                                       set_attributes=self.context.set_attributes)
        except _file_edit.FileEditError as exc:
            raise RemountError(str(exc))
        for index, (planned, key) in enumerate(zip(files, keys)):
            if planned.path in backups:
                change = r["changes"][key][index - 1] if key == "dropins" else r["changes"][key]
                change["backup"] = backups[planned.path]
        r["backup_files"] += list(backups.values())

    def undo(self, first, second, unmount, created=None):
        """Put the files (and the mount) back as they were before this run."""
        problems = _file_edit.restore([f for f in second if f.changed], self.context.set_attributes)
        if unmount:
            try:
                if self.host.mounts_at(self.path):
                    self.host.unmount(self.path)
            except BlockDeviceError as exc:
                self.context.warn("could not unmount %s after the failure: %s" % (self.path, exc))
        problems += _file_edit.restore([f for f in first if f.changed], self.context.set_attributes)
        if problems:
            self.context.warn("could not put back: %s" % "; ".join(problems))
        if first[0].changed or any(f.changed for f in second[1:]):
            try:
                self.reload_systemd(force=any(f.changed for f in second[1:]))
            except BlockDeviceError as exc:
                self.context.warn("fstab was put back, but `systemctl daemon-reload` failed: %s" % exc)
        if created:
            try:
                os.rmdir(created)
            except OSError:
                pass
        if not problems:
            r = self.result
            r.update(mounted=False, mount_action="none", runtime_restart_needed=bool(
                r["changes"].get("runtime_data", {}).get("units_stopped")))
            r["changed"] = r["runtime_restart_needed"]
            for key in ("fstab", "runtime_config"):
                if key in r["changes"]:
                    r["changes"][key].update(changed=False, restored=True)
            for change in r["changes"].get("dropins", []):
                change.update(changed=False, restored=True)

    def reload_systemd(self, force=False):
        fstab = self.p["fstab"]
        if (force or os.path.realpath(fstab) == os.path.realpath(self.host.system_fstab)) and self.host.is_systemd():
            self.host.daemon_reload()
            self.result["systemd_reloaded"] = True

    def ensure_unmounted(self, current):
        r = self.result
        if current is None:
            return
        r.update(changed=True, mount_action="unmount")
        if not self.context.check_mode:
            self.host.unmount(self.path)

    def ensure_absent(self, current):
        p, r = self.p, self.result
        before, lines = self.read_fstab()
        new_lines, change = _fstab.remove_entries(lines, self.path)
        planned = _file_edit.PlannedFile("fstab", p["fstab"], before, _encode(_fstab.render_fstab(new_lines)))
        r["fstab_line"] = None
        r["changes"]["fstab"] = dict(path=p["fstab"], changed=planned.changed, action=change.action,
                                     line=None, previous_lines=change.previous, backup=None)
        if self.context.diff and planned.changed:
            r["diff"] = [_diff(planned)]
        r["changed"] = planned.changed or current is not None
        if current is not None:
            r["mount_action"] = "unmount"
        if self.context.check_mode:
            return
        if planned.changed and _file_edit.unwritable_reason(planned.path):
            raise RemountError("cannot write: %s; nothing was changed" % _file_edit.unwritable_reason(planned.path))
        if current is not None:
            self.host.unmount(self.path)
        if planned.changed:
            self.write([planned], ["fstab"])
            self.reload_systemd()


def remount(params, context, host=None, runtime_host=None):
    """One run with the module's validated ``params``: the module's result dict, with ``failed``
    and ``msg`` when it failed. ``host`` and ``runtime_host`` default to the real ones,
    ``HostSystem(context)`` and ``RuntimeHost(context)``."""
    run = Remount(params, context, HostSystem(context) if host is None else host,
                  RuntimeHost(context) if runtime_host is None else runtime_host)
    try:
        return run.run()
    except RemountError as exc:
        result = dict(run.result, **exc.details)
        msg = exc.msg
    except BlockDeviceError as exc:
        result = dict(run.result)
        msg = "%s; see the changes returned for what had already been done" % exc
    result.update(failed=True, msg=msg)
    return result


def ignore_hangup():
    """A dropped SSH connection hangs up the module's terminal. Dying then could leave fstab
    written and the mount or the runtime config not done; the run is short, so finish it."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def run_module(module):
    """Run with an ``AnsibleModule`` and exit with the result (``fail_json`` when it failed)."""
    result = remount(module.params, ModuleContext(module))
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(**result)
