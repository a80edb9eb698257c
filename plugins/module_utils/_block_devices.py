# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the host says about its disks and mounts: blkid, findmnt, mount, mkfs, systemctl.

``HostSystem`` is the only place that runs these commands (argv lists through
``module.run_command``; ``module`` is anything with ``run_command`` and ``get_bin_path``, such as
``_disk_remount.ModuleContext``), so the module's logic can be unit tested against a fake with the
same methods. Output parsing is kept in pure functions next to it.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Dict, List, Optional

# blkid exit codes (blkid(8)): 2 = nothing found, 8 = ambivalent low-level probing result
BLKID_NOTHING_FOUND = 2
BLKID_AMBIVALENT = 8
FINDMNT_COLUMNS = "SOURCE,TARGET,FSTYPE,OPTIONS,MAJ:MIN,FSROOT"


class BlockDeviceError(Exception):
    """A host command failed; the message names the command, its exit code and what it said."""


def parse_blkid_export(text: str) -> Dict[str, str]:
    """``blkid -o export`` output (KEY=value lines) as a dict."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            found[key.strip()] = value
    return found


def parse_findmnt_json(text: str) -> List[Dict[str, Optional[str]]]:
    """``findmnt -J`` output as a flat list of filesystems (children flattened, in order)."""
    if not text.strip():
        return []
    data = json.loads(text)
    out: List[Dict[str, Optional[str]]] = []

    def walk(items):
        for item in items or []:
            children = item.pop("children", None)
            out.append(item)
            walk(children)

    walk(data.get("filesystems"))
    return out


def _describe(argv, rc, out, err) -> str:
    said = (err or out or "").strip()
    return "`%s` exited with %d%s" % (" ".join(argv), rc, ": %s" % said if said else "")


class HostSystem:
    """The real host: every method runs one command or reads one thing from the system."""

    system_fstab = "/etc/fstab"

    def __init__(self, module):
        self.module = module

    def _run(self, argv, ok=(0,)):
        rc, out, err = self.module.run_command(argv)
        if rc not in ok:
            raise BlockDeviceError(_describe(argv, rc, out, err))
        return rc, out, err

    def _bin(self, name):
        return self.module.get_bin_path(name, required=True)

    # --- looking -------------------------------------------------------------------------

    def device_exists(self, path: str) -> bool:
        try:
            return stat.S_ISBLK(os.stat(path).st_mode)
        except OSError:
            return False

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def device_number(self, path: str) -> Optional[str]:
        """'major:minor' of a block device, the way findmnt's MAJ:MIN column shows it."""
        try:
            rdev = os.stat(path).st_rdev
        except OSError:
            return None
        return "%d:%d" % (os.major(rdev), os.minor(rdev))

    def find_device(self, tag: str, value: str) -> Optional[str]:
        """The device whose filesystem has ``tag`` (UUID, LABEL, PARTUUID, ...) = ``value``."""
        rc, out, dummy = self._run([self._bin("blkid"), "-l", "-o", "device", "-t", "%s=%s" % (tag, value)],
                                   ok=(0, BLKID_NOTHING_FOUND))
        device = out.strip()
        return device if rc == 0 and device else None

    def probe(self, device: str) -> Dict[str, str]:
        """Low-level probe (no cache): signatures found on ``device``; {} when there are none."""
        argv = [self._bin("blkid"), "-p", "-o", "export", device]
        rc, out, err = self.module.run_command(argv)
        if rc == BLKID_NOTHING_FOUND:
            return {}
        if rc == BLKID_AMBIVALENT:
            raise BlockDeviceError(
                "%s carries more than one signature (blkid: ambivalent result), which usually means "
                "old filesystem remnants; inspect it with `wipefs --no-act %s`" % (device, device)
            )
        if rc != 0:
            raise BlockDeviceError(_describe(argv, rc, out, err))
        return parse_blkid_export(out)

    def mounts_at(self, path: str) -> List[Dict[str, Optional[str]]]:
        """What is mounted on ``path`` (bottom first; the last one is what users see)."""
        return self._findmnt(["--mountpoint", path])

    def mounts_of(self, device: str) -> List[Dict[str, Optional[str]]]:
        return self._findmnt(["--source", device])

    def _findmnt(self, selector):
        argv = [self._bin("findmnt"), "-J", "-n", "-o", FINDMNT_COLUMNS] + selector
        rc, out, err = self.module.run_command(argv)
        if rc == 1 and not out.strip():
            return []  # nothing mounted there
        if rc != 0:
            raise BlockDeviceError(_describe(argv, rc, out, err))
        try:
            return parse_findmnt_json(out)
        except ValueError as exc:
            raise BlockDeviceError("could not read the output of `%s`: %s" % (" ".join(argv), exc))

    def is_systemd(self) -> bool:
        # sd_booted(3): the directory exists only when systemd is PID 1
        return os.path.isdir("/run/systemd/system")

    # --- changing --------------------------------------------------------------------------

    def _fstab_args(self, fstab: str):
        if os.path.realpath(fstab) == os.path.realpath(self.system_fstab):
            return []
        return ["--fstab", fstab]

    def mount(self, path: str, fstab: str) -> None:
        """Mount ``path`` from its fstab line, so the line itself is what gets tested."""
        self._run([self._bin("mount")] + self._fstab_args(fstab) + [path])

    def remount(self, path: str, fstab: str) -> None:
        self._run([self._bin("mount")] + self._fstab_args(fstab) + ["-o", "remount", path])

    def unmount(self, path: str) -> None:
        self._run([self._bin("umount"), path])

    def make_filesystem(self, device: str, fstype: str) -> None:
        self._run([self._bin("mkfs"), "-t", fstype, device])

    def daemon_reload(self) -> None:
        self._run([self._bin("systemctl"), "daemon-reload"])
