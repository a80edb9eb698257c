# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The container runtime's side of a root move: stop every pod and container, stop the runtime,
carry its data onto the data disk, and make its unit require the disk's mount.

Private to this collection (the leading underscore): other collections must not import it.

Why each step is needed on a real node (kwok hides all of it):

- ``systemctl stop containerd`` does not stop containers: its unit has ``KillMode=process``, so
  the shims (``containerd-shim-runc-v2``) and every pod's processes keep running from the old root.
  Moving the root under them leaves orphans (DaemonSet and static pods running twice once kubelet
  starts again) and mounts held on the old path. So, with kubelet stopped, every pod sandbox is
  stopped and removed through the CRI (``crictl stopp`` / ``rmp``; Docker: ``docker stop``), the
  node is checked to have no shim or container process left, and only then is the runtime (and its
  socket) stopped.
- A root moved to an empty directory has no images: kubelet must pull them all again (slow, and
  impossible on an air-gapped node; a control-plane node's static pods cannot start at all). With
  carry-over the old root is copied onto the disk while everything is stopped (``cp -a``: hard
  links, xattrs (overlayfs whiteouts and opaque directories are xattrs and device nodes), ACLs,
  sparse files, timestamps), into a temporary directory beside the new root, compared with the
  source, written to the disk (``os.sync``: a copy still in the page cache would be lost, its files
  empty or missing, to a power loss right after the configuration names it), then renamed into
  place; the configuration points at it only after that, and the old
  root is never deleted. A copy killed half way leaves the temporary directory behind and the old
  root configured and untouched; the next run removes that directory and copies again. A finished
  copy that is not configured yet carries a marker file beside it, so a run that finds it knows it
  is its own and never used.
- A boot without the data disk must not start the runtime on the root filesystem (an empty root
  there, images and containers gone from view): a systemd drop-in gives the runtime's unit
  ``RequiresMountsFor=<mount point>`` (which adds ``Requires=`` and ``After=`` on the mount units).

Pure functions (process classification, tree manifests compared, drop-in text, command output)
beside ``RuntimeHost``, the only place that runs the commands; the orchestration in
``_disk_remount.Remount`` drives them and unit tests run it against fakes.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ansible_collections.kubeops.node_maintenance.plugins.module_utils._block_devices import (
    BlockDeviceError,
    parse_findmnt_json,
)

DROPIN_NAME = "kubeops-data-disk.conf"
COPY_SUFFIX = ".kubeops-carry-over"
MARKER_SUFFIX = ".kubeops-unconfigured"
_CONTAINER_CGROUP = re.compile(r"kubepods|(?:^|/)docker[-/][0-9a-f]{12,}|(?:^|/)cri-containerd-[0-9a-f]{12,}")


class RuntimeDataError(Exception):
    """A step of the root move cannot be done safely; the message says what and what to do."""


# --- processes -----------------------------------------------------------------------------------

def container_processes(processes: Iterable[Tuple[int, str, str, str]]) -> List[str]:
    """The shims and container processes among ``(pid, comm, cmdline, cgroup)`` tuples, described
    as ``"pid <pid> <what> (<cmdline>)"``: what must be gone before a runtime's root moves."""
    found = []
    for pid, comm, cmdline, cgroup in processes:
        if comm.startswith("containerd-shim") or os.path.basename(cmdline.split(" ", 1)[0]).startswith("containerd-shim"):
            what = "shim"
        elif _CONTAINER_CGROUP.search(cgroup or ""):
            what = "container process"
        else:
            continue
        found.append("pid %d %s (%s)" % (pid, what, (cmdline or comm)[:120]))
    return found


def read_processes(proc="/proc") -> List[Tuple[int, str, str, str]]:
    """``(pid, comm, cmdline, cgroup)`` of every process (kernel threads have an empty cmdline)."""
    out = []
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        base = os.path.join(proc, name)
        try:
            with open(os.path.join(base, "comm"), encoding="utf-8", errors="replace") as handle:
                comm = handle.read().strip()
            with open(os.path.join(base, "cmdline"), "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
            with open(os.path.join(base, "cgroup"), encoding="utf-8", errors="replace") as handle:
                cgroup = handle.read()
        except OSError:  # gone while we looked
            continue
        out.append((int(name), comm, cmdline, cgroup))
    return out


# --- command output ------------------------------------------------------------------------------

def ids(text: str) -> List[str]:
    """The IDs ``crictl ... -q`` / ``docker ... -q`` print, one a line, each once, in order."""
    seen = []
    for line in text.split():
        if line not in seen:
            seen.append(line)
    return seen


def crictl_root(info_text: str) -> Optional[str]:
    """containerd's root as the running daemon reports it: ``crictl info``'s
    ``config.containerdRootDir`` (None when it is not there)."""
    try:
        info = json.loads(info_text)
    except ValueError:
        return None
    config = info.get("config") if isinstance(info, dict) else None
    root = config.get("containerdRootDir") if isinstance(config, dict) else None
    return root if isinstance(root, str) and root else None


def containerd_address(config: Optional[dict]) -> str:
    """The CRI socket of a containerd configuration (``[grpc] address``), as crictl's endpoint."""
    grpc = (config or {}).get("grpc")
    address = grpc.get("address") if isinstance(grpc, dict) else None
    return "unix://" + (address if isinstance(address, str) and address else "/run/containerd/containerd.sock")


# --- the drop-in -----------------------------------------------------------------------------------

def _unit_path(path: str) -> str:
    """A path as one word of a unit file's list setting: ``%`` is a specifier, blanks split words."""
    value = path.replace("%", "%%")
    if re.search(r"[\s\"'\\]", value):
        value = '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
    return value


def dropin_text(unit: str, mount_point: str, data_root: str) -> str:
    """The drop-in that makes ``unit`` require the data disk's mount."""
    return (
        "# Written by kubeops.node_maintenance.node_disk_remount: %s keeps its data in %s,\n"
        "# on the data disk mounted on %s. Without that mount it must not start (it would start on\n"
        "# the root filesystem, with none of its data). RequiresMountsFor= adds Requires= and After=\n"
        "# on the mount units of that path.\n"
        "[Unit]\n"
        "RequiresMountsFor=%s\n"
        % (unit, data_root.replace("\n", " "), mount_point.replace("\n", " "), _unit_path(mount_point))
    )


def dropin_path(unit_dir: str, unit: str) -> str:
    return os.path.join(unit_dir, unit + ".d", DROPIN_NAME)


# --- tree manifests --------------------------------------------------------------------------------

def _xattrs(path: str) -> Tuple[Tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return ()
        raise
    out = []
    for name in sorted(names):
        try:
            out.append((name, os.getxattr(path, name, follow_symlinks=False)))
        except OSError as exc:
            if exc.errno != errno.ENODATA:
                raise
    return tuple(out)


def manifest(root: str) -> Tuple[Dict[str, tuple], int]:
    """Every entry below ``root`` (relative path -> what a faithful copy keeps: type, mode,
    owner, size, mtime, device number, link target, xattrs (ACLs are xattrs), and for a hard link
    the first path of its inode) and the bytes the tree occupies."""
    entries: Dict[str, tuple] = {}
    inodes: Dict[Tuple[int, int], str] = {}
    used = 0
    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(root, rel) if rel else root
        st = os.lstat(path)
        used += st.st_blocks * 512
        kind = stat.S_IFMT(st.st_mode)
        link = None
        if kind != stat.S_IFDIR and st.st_nlink > 1:
            link = inodes.setdefault((st.st_dev, st.st_ino), rel)
            if link != rel:
                used -= st.st_blocks * 512
        target = os.readlink(path) if kind == stat.S_IFLNK else None
        entries[rel] = (
            kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
            st.st_size if kind == stat.S_IFREG else None,
            None if kind == stat.S_IFLNK else st.st_mtime_ns,
            st.st_rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else None,
            target, _xattrs(path), link,
        )
        if kind == stat.S_IFDIR:
            for name in sorted(os.listdir(path), reverse=True):
                stack.append(os.path.join(rel, name) if rel else name)
    return entries, used


_FIELDS = ("type", "mode", "owner", "group", "size", "mtime", "device number", "link target", "xattrs",
           "hard links")


def manifest_differences(source: Dict[str, tuple], copy: Dict[str, tuple], limit=5) -> List[str]:
    """How ``copy`` differs from ``source`` (at most ``limit`` findings; empty: the same tree).
    The root's own entry ("") is compared but for its mtime (the copy's top is renamed)."""
    out = []
    for rel in sorted(set(source) | set(copy)):
        if rel not in copy:
            out.append("%s is missing from the copy" % (rel or "."))
        elif rel not in source:
            out.append("%s is in the copy only" % (rel or "."))
        else:
            a, b = source[rel], copy[rel]
            if rel == "":
                a, b = a[:5] + a[6:], b[:5] + b[6:]
                fields = _FIELDS[:5] + _FIELDS[6:]
            else:
                fields = _FIELDS
            diff = [name for name, x, y in zip(fields, a, b) if x != y]
            if diff:
                out.append("%s differs in %s" % (rel or ".", ", ".join(diff)))
        if len(out) >= limit:
            out.append("...")
            break
    return out


def same_contents(source: str, copy: str, entries: Dict[str, tuple], chunk=1 << 20) -> Optional[str]:
    """The first regular file whose bytes differ between the two trees, or None."""
    for rel, entry in sorted(entries.items()):
        if entry[0] != stat.S_IFREG or entry[9] not in (None, rel):
            continue
        with open(os.path.join(source, rel), "rb") as a, open(os.path.join(copy, rel), "rb") as b:
            while True:
                x, y = a.read(chunk), b.read(chunk)
                if x != y:
                    return rel
                if not x:
                    break
    return None


def is_below(path: str, parent: str) -> bool:
    path, parent = os.path.normpath(path), os.path.normpath(parent)
    return path != parent and os.path.commonpath([path, parent]) == parent


# --- the host ------------------------------------------------------------------------------------------

class RuntimeHost:
    """The real host's units, runtime CLIs, processes and files (``module`` as for
    ``_block_devices.HostSystem``: ``run_command`` and ``get_bin_path``)."""

    unit_dir = "/etc/systemd/system"
    poll_interval = 1.0

    def __init__(self, module):
        self.module = module

    def _run(self, argv, ok=(0,)):
        rc, out, err = self.module.run_command(argv)
        if rc not in ok:
            said = (err or out or "").strip()
            raise BlockDeviceError("`%s` exited with %d%s" % (" ".join(argv), rc, ": %s" % said if said else ""))
        return out

    def have(self, name) -> bool:
        return bool(self.module.get_bin_path(name, required=False))

    def unit_active(self, unit: str) -> bool:
        rc, out, dummy = self.module.run_command([self.module.get_bin_path("systemctl", required=True), "is-active", unit])
        return rc == 0 or out.strip() in ("activating", "reloading", "deactivating")

    def stop_unit(self, unit: str) -> None:
        self._run([self.module.get_bin_path("systemctl", required=True), "stop", unit])

    def cli(self, tool: str, args: Sequence[str], endpoint: Optional[str] = None, timeout: Optional[int] = None) -> str:
        """``crictl`` (with ``endpoint`` and a deadline of ``timeout`` seconds for each call) or
        ``docker``, its stdout."""
        argv = [self.module.get_bin_path(tool, required=True)]
        if tool == "crictl" and endpoint:
            argv += ["--runtime-endpoint", endpoint]
        if tool == "crictl" and timeout:
            argv += ["--timeout", "%ds" % timeout]
        return self._run(argv + list(args))

    def processes(self):
        return read_processes()

    def sleep(self, seconds):
        time.sleep(seconds)

    def mounts_below(self, path: str) -> List[str]:
        """Mount points at or below ``path``."""
        out = self._run([self.module.get_bin_path("findmnt", required=True), "-J", "-n", "-o", "TARGET"], ok=(0, 1))
        targets = [m.get("target") or "" for m in parse_findmnt_json(out)] if out.strip() else []
        return [t for t in targets if t == os.path.normpath(path) or is_below(t, path)]

    def copy_tree(self, source: str, dest: str) -> None:
        """``cp -a``: hard links, xattrs (explicitly: a failure to keep one fails the copy), ACLs,
        SELinux contexts where possible, timestamps, sparse files (sparse stays sparse)."""
        self._run([self.module.get_bin_path("cp", required=True), "-a", "--preserve=links,xattr",
                   "--sparse=auto", "--no-target-directory", source, dest])

    def sync_tree(self, path: str) -> None:
        """Write ``path``'s data (and everything else not yet written) to the disk."""
        os.sync()

    def free_bytes(self, path: str) -> int:
        st = os.statvfs(path)
        return st.f_bavail * st.f_frsize

    def remove_tree(self, path: str) -> None:
        shutil.rmtree(path)
