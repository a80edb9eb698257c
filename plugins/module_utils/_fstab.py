# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fstab as data, without losing a byte of the lines we do not own.

Pure functions over text. A parsed fstab is a list of ``FstabLine``; each keeps its exact raw
text (line ending included), so ``render_fstab(parse_fstab(text)) == text`` for any text at all.
Only the line we set is ever rewritten, and even then its indentation, column alignment and any
trailing words after the sixth field are carried over from the line it replaces.

The reading rules follow libmount (what ``mount``, ``findmnt`` and systemd's fstab generator use):
a line whose first non-blank character is ``#`` is a comment; fields are separated by spaces and
tabs; source, target and type are required; freq and passno default to 0 and must be integers;
words after the sixth field are ignored; ``\\ooo`` octal escapes (``\\040`` for a space) are
decoded in every field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, List, Optional, Sequence, Tuple

_BLANKS = " \t"
_SPLIT = re.compile(r"([ \t]+)")
_OCTAL = re.compile(r"\\([0-7]{3})")
# Characters that cannot appear literally inside a field.
_MANGLE = {" ": "\\040", "\t": "\\011", "\n": "\\012", "\\": "\\134"}


class FstabError(ValueError):
    """The fstab cannot be edited safely; the message says what was found and where."""


@dataclass(frozen=True)
class FstabEntry:
    spec: str
    file: str
    vfstype: str
    mntops: str = "defaults"
    freq: int = 0
    passno: int = 0

    def fields(self) -> Tuple[str, ...]:
        return (self.spec, self.file, self.vfstype, self.mntops, str(self.freq), str(self.passno))


@dataclass(frozen=True)
class FstabLine:
    number: int  # 1-based line number in the file it was read from
    raw: str  # the exact text, line ending included
    entry: Optional[FstabEntry] = None
    error: Optional[str] = None  # why a non-blank, non-comment line is not a valid entry

    @property
    def is_entry(self) -> bool:
        return self.entry is not None


@dataclass(frozen=True)
class FstabChange:
    action: str  # "added", "replaced", "removed" or "unchanged"
    line: Optional[str]  # the line we own now (no line ending), None after removal
    previous: List[str] = field(default_factory=list)  # lines we replaced or removed
    line_number: Optional[int] = None


def decode_field(text: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), text)


def encode_field(value: str) -> str:
    if not value:
        raise FstabError("an fstab field cannot be empty")
    out = "".join(_MANGLE.get(ch, ch) for ch in value)
    if out.startswith("#"):
        # A leading '#' would turn the whole line into a comment.
        out = "\\043" + out[1:]
    return out


def normalize_mount_point(path: str) -> str:
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return path


def _split_line(raw: str) -> Tuple[str, str]:
    """Split a line into its body and its ending ('\\n', '\\r\\n' or '')."""
    if raw.endswith("\r\n"):
        return raw[:-2], "\r\n"
    if raw.endswith("\n"):
        return raw[:-1], "\n"
    return raw, ""


def _tokenize(body: str) -> Tuple[str, List[str], List[str]]:
    """Return (indent, fields, separators-after-each-field) of a line body."""
    stripped = body.lstrip(_BLANKS)
    indent = body[: len(body) - len(stripped)]
    parts = _SPLIT.split(stripped)
    fields = parts[0::2]
    seps = parts[1::2]
    if fields and fields[-1] == "":
        fields.pop()
    while len(seps) < len(fields):
        seps.append("")
    return indent, fields, seps


def _parse_body(body: str) -> Tuple[Optional[FstabEntry], Optional[str]]:
    stripped = body.strip(_BLANKS + "\r")
    if not stripped or stripped.startswith("#"):
        return None, None
    fields = _tokenize(body.rstrip("\r"))[1]
    if len(fields) < 3:
        return None, "expected at least 3 fields (device, mount point, type), found %d" % len(fields)
    numbers = []
    for name, text in zip(("dump", "passno"), fields[4:6]):
        if not re.fullmatch(r"[0-9]+", text):
            return None, "the %s field must be a number, found %r" % (name, text)
        numbers.append(int(text))
    numbers += [0] * (2 - len(numbers))
    spec, file_, vfstype = (decode_field(f) for f in fields[:3])
    mntops = decode_field(fields[3]) if len(fields) > 3 else "defaults"
    return FstabEntry(spec, file_, vfstype, mntops, numbers[0], numbers[1]), None


def parse_fstab(text: str) -> List[FstabLine]:
    """Parse fstab text. Never fails: malformed lines carry an ``error`` instead."""
    lines = []
    for number, raw in enumerate(_split_keep_newlines(text), 1):
        entry, error = _parse_body(_split_line(raw)[0])
        lines.append(FstabLine(number, raw, entry, error))
    return lines


def _split_keep_newlines(text: str) -> List[str]:
    # str.splitlines() also splits on \r, \v, \f, \x1c.. and U+2028; fstab lines end at \n only.
    pieces = text.split("\n")
    out = [p + "\n" for p in pieces[:-1]]
    if pieces[-1]:
        out.append(pieces[-1])
    return out


def render_fstab(lines: Sequence[FstabLine]) -> str:
    return "".join(line.raw for line in lines)


def malformed_lines(lines: Sequence[FstabLine]) -> List[FstabLine]:
    return [line for line in lines if line.error]


def describe_line(line: FstabLine) -> str:
    return "line %d: %s" % (line.number, _split_line(line.raw)[0].rstrip("\r"))


def format_entry(entry: FstabEntry, template: Optional[str] = None, keep_tail: bool = False) -> str:
    """Render ``entry`` as one line (no ending), in the layout of ``template`` if given.

    The template's indentation and separators are reused. When the template's columns were
    aligned with runs of spaces, each space separator is widened or narrowed (down to the
    template's narrowest gap) so the next column starts where it started in the template. With ``keep_tail`` the words after the template's sixth field
    (often a trailing comment) are kept too.
    """
    values = [encode_field(v) for v in entry.fields()]
    if template is None:
        return " ".join(values)
    body = _split_line(template)[0]
    cr = "\r" if body.endswith("\r") else ""
    indent, t_fields, t_seps = _tokenize(body[: len(body) - len(cr)])
    if not t_fields:
        return " ".join(values)
    default_sep = next((s for s in reversed(t_seps) if s), " ")
    space_gaps = [len(s) for s in t_seps[:5] if s and set(s) == {" "}]
    aligned = any(gap > 1 for gap in space_gaps)
    min_gap = min(space_gaps) if space_gaps else 1  # "a  b  c" style keeps its two spaces
    out = indent
    template_col = len(indent)
    for i, value in enumerate(values):
        out += value
        if i == len(values) - 1:
            break
        if i < len(t_fields):
            template_col += len(t_fields[i])
        sep = t_seps[i] if i < len(t_seps) and t_seps[i] else default_sep
        if aligned and i < len(t_fields) - 1 and set(sep) == {" "}:
            target = template_col + len(sep)
            sep = " " * max(min_gap, target - len(out))
        if i < len(t_seps):
            template_col += len(t_seps[i])
        out += sep
    if keep_tail and len(t_fields) > 6:
        out += t_seps[5] + "".join(f + s for f, s in zip(t_fields[6:], t_seps[6:]))
        out = out.rstrip(_BLANKS)
    return out + cr


def _line_ending(lines: Sequence[FstabLine]) -> str:
    for line in lines:
        ending = _split_line(line.raw)[1]
        if ending:
            return ending
    return "\n"


def _renumber(lines: List[FstabLine]) -> List[FstabLine]:
    return [replace(line, number=i) for i, line in enumerate(lines, 1)]


def set_entry(
    lines: Sequence[FstabLine],
    entry: FstabEntry,
    same_device: Optional[Callable[[str], bool]] = None,
) -> Tuple[List[FstabLine], FstabChange]:
    """Make ``entry`` the one fstab line for its mount point and its device.

    An existing line for the same mount point, or for the same device (``same_device(spec)``
    decides, so ``/dev/vdb``, ``UUID=...`` and ``/dev/disk/by-uuid/...`` can all match), is
    replaced in place; otherwise the entry is appended. Refuses (``FstabError``) when the file
    has malformed lines, more than one line for the mount point, or when the mount point and the
    device are claimed by different lines: guessing there could unmount someone's data at boot.
    """
    bad = malformed_lines(lines)
    if bad:
        raise FstabError(
            "fstab has lines that are not valid entries, refusing to edit it: "
            + "; ".join("%s (%s)" % (describe_line(line), line.error) for line in bad)
        )
    target = normalize_mount_point(entry.file)
    by_path = [i for i, line in enumerate(lines) if line.entry and normalize_mount_point(line.entry.file) == target]
    by_device = []
    if same_device is not None:
        by_device = [
            i for i, line in enumerate(lines)
            if line.entry and i not in by_path and same_device(line.entry.spec)
        ]
    if len(by_path) > 1:
        raise FstabError(
            "fstab has %d lines for mount point %s, refusing to choose: %s"
            % (len(by_path), target, "; ".join(describe_line(lines[i]) for i in by_path))
        )
    if by_path and by_device:
        raise FstabError(
            "fstab already mounts another device on %s and this device elsewhere, refusing to "
            "guess which line to change: %s"
            % (target, "; ".join(describe_line(lines[i]) for i in by_path + by_device))
        )
    if len(by_device) > 1:
        raise FstabError(
            "fstab has %d lines for this device, refusing to choose: %s"
            % (len(by_device), "; ".join(describe_line(lines[i]) for i in by_device))
        )
    matches = by_path or by_device
    new = list(lines)
    if matches:
        index = matches[0]
        old = lines[index]
        old_body = _split_line(old.raw)[0]
        if old.entry == entry:
            return new, FstabChange("unchanged", old_body.rstrip("\r"), [], old.number)
        text = format_entry(entry, template=old_body, keep_tail=True)
        new[index] = FstabLine(old.number, text + _split_line(old.raw)[1], entry)
        return new, FstabChange("replaced", text.rstrip("\r"), [old_body.rstrip("\r")], old.number)
    template = next((_split_line(line.raw)[0] for line in reversed(lines) if line.entry), None)
    text = format_entry(entry, template=template)
    ending = _line_ending(lines)
    if new and not _split_line(new[-1].raw)[1]:
        last = new[-1]
        new[-1] = replace(last, raw=last.raw + ending)
    new.append(FstabLine(len(new) + 1, text + ending, entry))
    return new, FstabChange("added", text.rstrip("\r"), [], len(new))


def remove_entries(lines: Sequence[FstabLine], mount_point: str) -> Tuple[List[FstabLine], FstabChange]:
    """Drop every line for ``mount_point``; everything else stays byte for byte."""
    target = normalize_mount_point(mount_point)
    keep, removed = [], []
    for line in lines:
        if line.entry and normalize_mount_point(line.entry.file) == target:
            removed.append(_split_line(line.raw)[0].rstrip("\r"))
        else:
            keep.append(line)
    if not removed:
        return list(lines), FstabChange("unchanged", None)
    return _renumber(keep), FstabChange("removed", None, removed)


# Sources that name a filesystem (or partition) rather than a device path: libmount's tags.
FILESYSTEM_TAGS = ("UUID", "LABEL", "PARTUUID", "PARTLABEL")


def source_tag(spec: str) -> Optional[str]:
    """The tag (UUID, LABEL, ...) of a ``TAG=value`` source, None for a path or anything else."""
    tag, sep, dummy = spec.partition("=")
    return tag.upper() if sep and tag.upper() in FILESYSTEM_TAGS else None


def line_for_another_filesystem(
    lines: Sequence[FstabLine],
    mount_point: str,
    same_device: Callable[[str], bool],
) -> Optional[FstabLine]:
    """The line that mounts another filesystem on ``mount_point``, by tag, or None.

    A line ``UUID=X /data ...`` says which filesystem belongs on /data. When the device we were
    given does not carry X (``same_device`` says so), that device is not the data disk: it was
    detached, or its name now belongs to another disk. Replacing the line would make the next
    boot mount the wrong disk there. A line naming a device path says nothing about the
    filesystem, so it is not counted here."""
    for line in entries_for(lines, mount_point):
        if source_tag(line.entry.spec) and not same_device(line.entry.spec):
            return line
    return None


def entries_for(lines: Sequence[FstabLine], mount_point: str) -> List[FstabLine]:
    target = normalize_mount_point(mount_point)
    return [line for line in lines if line.entry and normalize_mount_point(line.entry.file) == target]
