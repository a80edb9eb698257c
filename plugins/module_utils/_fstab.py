# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""fstab as data, without losing a byte of the lines we do not own.

Pure functions over text. A parsed fstab is a list of ``FstabLine``; each keeps its exact raw
text (line ending included), so ``render_fstab(parse_fstab(text)) == text`` for any text at all.
Only the line we set is ever rewritten, and even then its indentation, column alignment and any
trailing words after the sixth field are carried over from the line it replaces.

The reading rules are libmount's (``mnt_table_parse_fstab``: what ``mount``, ``findmnt --fstab``
and systemd's fstab generator use), and a differential test holds them to ``findmnt``'s:

- a line ends at ``\\n`` only; one ``\\r`` before it (or at the end of a last line without one) is
  dropped; a NUL byte ends a last line without ``\\n`` and makes any other line an error, even a
  comment;
- a line whose first character other than space and tab is ``#``, or that has none, is skipped;
- fields are separated by runs of spaces and tabs only (``\\r``, ``\\v``, ``\\f`` belong to fields);
- source, target and type are required, options are optional ("defaults" here);
- freq and passno are optional (0) and, when present, a whole decimal ``strtol`` number with an
  optional sign, stored as libmount's C ``int`` stores it; one beyond a 64-bit ``long`` passes
  (clamped) only as the very last thing on the line; words after the sixth field are ignored,
  whatever they are;
- ``\\ooo`` octal escapes (``\\040`` for a space) are decoded to bytes in every field; a decoded NUL
  ends the field. Nothing else is checked: libmount accepts any option string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, List, Optional, Sequence, Tuple

_BLANKS = " \t"
_SPLIT = re.compile(r"([ \t]+)")
_OCTAL = re.compile(rb"\\([0-7]{3})")
_NUMBER = re.compile(r"[+-]?[0-9]+")
_LONG_MIN, _LONG_MAX = -(2 ** 63), 2 ** 63 - 1
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
    """A field's value as libmount's ``unmangle`` makes it: each ``\\ooo`` is one byte (``\\777`` wraps
    to 0xff, as a C ``char`` does), a NUL byte ends the value. Text is bytes read with
    ``surrogateescape``, and so is the value."""
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates: text that was never bytes; parse it all the same
        data = text.encode("utf-8", "surrogatepass")
    data = _OCTAL.sub(lambda m: bytes((int(m.group(1), 8) & 0xFF,)), data)
    return data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def encode_field(value: str) -> str:
    if not value:
        raise FstabError("an fstab field cannot be empty")
    if "\0" in value:
        raise FstabError("fstab fields cannot hold a NUL character, found %r" % value)
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


def _c_int(text: str) -> int:
    """What libmount stores for a freq or passno: ``strtol`` (clamped to a 64-bit long) into an ``int``."""
    value = max(_LONG_MIN, min(_LONG_MAX, int(text)))
    return (value + 2 ** 31) % 2 ** 32 - 2 ** 31


def _libmount_text(raw: str) -> Tuple[Optional[str], Optional[str]]:
    """(the text libmount parses for the line ``raw``, or None and why the line is an error)."""
    if raw.endswith("\n"):
        body = raw[:-1]
        if "\0" in body:
            # getline() reads it, but strchr() finds no newline before the NUL: a corrupt line
            return None, "the line contains a NUL byte"
    else:
        body = raw.split("\0", 1)[0]  # the last line, without a newline: it ends at a NUL
    return (body[:-1] if body.endswith("\r") else body), None


def _parse_body(raw: str) -> Tuple[Optional[FstabEntry], Optional[str]]:
    body, error = _libmount_text(raw)
    if error:
        return None, error
    stripped = body.lstrip(_BLANKS)
    if not stripped or stripped.startswith("#"):
        return None, None
    dummy, fields, seps = _tokenize(body)
    if len(fields) < 3:
        return None, "expected at least 3 fields (device, mount point, type), found %d" % len(fields)
    numbers = []
    for index, name in ((4, "dump"), (5, "passno")):
        if index >= len(fields):
            break
        text = fields[index]
        if not _NUMBER.fullmatch(text):
            return None, "the %s field must be a number, found %r" % (name, text)
        if not _LONG_MIN <= int(text) <= _LONG_MAX and (seps[index] or index < len(fields) - 1):
            # strtol() sets ERANGE; libmount lets that pass only when nothing at all follows
            return None, "the %s field is out of range, found %r" % (name, text)
        numbers.append(_c_int(text))
    numbers += [0] * (2 - len(numbers))
    spec, file_, vfstype = (decode_field(f) for f in fields[:3])
    mntops = decode_field(fields[3]) if len(fields) > 3 else "defaults"
    return FstabEntry(spec, file_, vfstype, mntops, numbers[0], numbers[1]), None


def parse_fstab(text: str) -> List[FstabLine]:
    """Parse fstab text. Never fails: malformed lines carry an ``error`` instead."""
    lines = []
    for number, raw in enumerate(_split_keep_newlines(text), 1):
        entry, error = _parse_body(raw)
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
    # A template body ending in "\r" (a last line "...\r" without newline, or "...\r\r\n"): libmount
    # drops that one \r, so it is no part of the layout; carried over, it would end our passno field.
    indent, t_fields, t_seps = _tokenize(body[:-1] if body.endswith("\r") else body)
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
    return out


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
        return new, FstabChange("replaced", text, [old_body.rstrip("\r")], old.number)
    template = next((_split_line(line.raw)[0] for line in reversed(lines) if line.entry), None)
    text = format_entry(entry, template=template)
    ending = _line_ending(lines)
    if new and not _split_line(new[-1].raw)[1]:
        last = new[-1]
        if "\0" in last.raw:
            raise FstabError(
                "fstab ends with a line holding a NUL byte and no newline (%s); libmount reads it up to "
                "the NUL, but with a newline after it, as a line added below needs, libmount would reject "
                "it. Refusing to edit it" % describe_line(last))
        # "x\r" at the end of the file reads as "x"; "x\r" + "\r\n" would read as "x\r"
        new[-1] = replace(last, raw=last.raw + ("\n" if last.raw.endswith("\r") else ending))
    new.append(FstabLine(len(new) + 1, text + ending, entry))
    return new, FstabChange("added", text, [], len(new))


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
