"""``_fstab.parse_fstab`` reads fstab as libmount does, with util-linux's ``findmnt`` as the judge.

``mount``, systemd's fstab generator and ``findmnt --fstab`` read fstab with libmount's
``mnt_table_parse_fstab``. Whatever we accept as an entry, libmount must accept with the same six
fields, and every line libmount rejects we must call malformed (so ``set_entry`` refuses to edit
the file and no such line is ever replaced or removed). The property test writes generated fstab
text to a file, many lines at a time, and compares our reading of every line with findmnt's JSON
and its "parse error at line N" messages.

``--fstab`` matters: ``findmnt --tab-file F`` alone guesses the format from the first line, and
reads a file starting with ``1 2 ...`` as mountinfo; ``mount`` never guesses for fstab.
``KUBEOPS_FINDMNT_EXAMPLES`` sets the number of generated files (default 300; each runs findmnt once).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
from hypothesis import example, given, settings, strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _fstab
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._fstab import (
    FstabEntry,
    FstabError,
    parse_fstab,
    remove_entries,
    render_fstab,
    set_entry,
)

FINDMNT = shutil.which("findmnt") or "/usr/bin/findmnt"
COLUMNS = "SOURCE,TARGET,FSTYPE,OPTIONS,FREQ,PASSNO"
EXAMPLES = int(os.environ.get("KUBEOPS_FINDMNT_EXAMPLES", "300"))
_PARSE_ERROR = re.compile(rb"^findmnt: .*: parse error at line (\d+) -- ignored$")


@pytest.fixture(autouse=True, scope="module")
def findmnt_present():
    """The reference must be there: a skipped comparison would pass while proving nothing."""
    if not os.access(FINDMNT, os.X_OK):
        pytest.fail("findmnt (util-linux, essential on Debian) is missing: it is the reference these tests compare with")


def findmnt_reading(data):
    """(line numbers findmnt rejects, the entries it reads as dicts) for fstab bytes ``data``."""
    fd, path = tempfile.mkstemp(prefix="fstab.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        proc = subprocess.run([FINDMNT, "--fstab", "--tab-file", path, "-J", "-o", COLUMNS],
                              capture_output=True, env=dict(os.environ, LC_ALL="C"), check=False)
    finally:
        os.unlink(path)
    errors = []
    for line in proc.stderr.splitlines():
        match = _PARSE_ERROR.match(line)
        assert match, "findmnt said something else: %r" % proc.stderr
        errors.append(int(match.group(1)))
    out = proc.stdout.decode("utf-8", "surrogateescape")
    assert proc.returncode == (0 if out.strip() else 1), (proc.returncode, proc.stdout, proc.stderr)
    return errors, (json.loads(out)["filesystems"] if out.strip() else [])


def our_reading(data):
    """(line numbers we call malformed, the entries we read), from the bytes as the module reads them."""
    lines = parse_fstab(data.decode("utf-8", "surrogateescape"))
    assert render_fstab(lines).encode("utf-8", "surrogateescape") == data
    return [line.number for line in lines if line.error], [line for line in lines if line.entry]


def assert_read_like_findmnt(data):
    fm_errors, fm_entries = findmnt_reading(data)
    our_errors, our_lines = our_reading(data)
    raw = data.split(b"\n")
    assert our_errors == fm_errors, "malformed by us %s, rejected by findmnt %s: %s" % (
        our_errors, fm_errors, [raw[n - 1] for n in sorted(set(our_errors) ^ set(fm_errors))])
    assert len(our_lines) == len(fm_entries)
    for line, theirs in zip(our_lines, fm_entries):
        entry = line.entry
        ours = {"source": entry.spec, "target": entry.file, "fstype": entry.vfstype, "options": entry.mntops,
                "freq": entry.freq, "passno": entry.passno}
        # findmnt prints an empty value as null; a missing options field is "defaults" to us (and mount)
        expected = {key: "" if value is None else value for key, value in theirs.items()}
        if theirs["options"] is None and entry.mntops == "defaults":
            expected["options"] = "defaults"
        assert ours == expected, "line %d %r" % (line.number, raw[line.number - 1])
    return fm_errors, fm_entries


# --- generated fstab text --------------------------------------------------------------------------

_SEP = st.text(alphabet=" \t", min_size=1, max_size=3)
_ODD = ["\\040", "\\011", "\\134", "\\012", "\\043", "\\000", "\\777", "\\303\\251", "\\04", "\\4", "\\",
        "\\\\040", "\\08", "\r", "\x0b", "\x0c", "\x7f", "\x00", "#", "=", ",", '"', "'", "\u00e9", "\udcff",
        "\udcc3", "\u2028", "\u0085", "\u3000", "\u00a0"]
_atom = st.one_of(
    st.sampled_from(_ODD),
    st.text(alphabet="abcXYZ019/-_.:@[]", min_size=1, max_size=6),
)
_word = st.lists(_atom, min_size=1, max_size=4).map("".join)
_spec = st.one_of(
    st.sampled_from(["/dev/vdb", "/dev/disk/by-uuid/5e256bce-a9b7-431d-986a-9aeef664fcb3", "tmpfs", "none", "proc",
                     "UUID=5e256bce-a9b7-431d-986a-9aeef664fcb3", "uuid=5E256BCE-A9B7-431D-986A-9AEEF664FCB3",
                     "LABEL=k8s\\040data", "LABEL=\"quoted\"", "PARTUUID=0a0b0c0d-01", "PARTLABEL=data",
                     "//nas/My\\040Share", "server:/export", "UUID=", "=x", "FOO=bar"]),
    _word,
)
_target = st.one_of(st.sampled_from(["/", "/data", "/data/", "/mnt/my\\040share", "none", "swap", "/tmp//x/"]), _word)
_fstype = st.one_of(st.sampled_from(["ext4", "xfs", "tmpfs", "swap", "nfs4", "auto", "udf,iso9660"]), _word)
_options = st.one_of(
    st.sampled_from(["defaults", "defaults,nofail", "noatime,acl,user_xattr,nofail,x-systemd.device-timeout=10s",
                     "ro,uid=1000,gid=1000", ",", "a,,b", ",,", "\"unterminated", "x=y=z", "=", "-", "#",
                     "credentials=/root/.smb,nofail", "errors=remount-ro"]),
    _word,
)
_number = st.one_of(
    st.integers(0, 9).map(str),
    st.sampled_from(["-1", "+1", "-0", "01", "007", "x", "1x", "0x1", "-", "+", "1.0", "99999999999",
                     "4294967298", "9223372036854775808", "-99999999999999999999999", "#", "\uff12", "1\r", "\\061", ""]),
)


@st.composite
def _entry_line(draw):
    fields = [draw(_spec), draw(_target), draw(_fstype), draw(_options), draw(_number), draw(_number)]
    fields = [f for f in fields[:draw(st.integers(1, 6))] if f]
    fields += draw(st.lists(st.one_of(_word, st.just("#"), st.just("# trailing comment")), max_size=2))
    line = draw(st.sampled_from(["", " ", "\t", " \t "]))
    for value in fields:
        line += value + draw(_SEP)
    if draw(st.booleans()):
        line = line.rstrip(" \t")
    return line + draw(st.sampled_from(["", "", "\r", "\r\r", " \r"]))


_line = st.one_of(
    _entry_line(),
    _entry_line(),
    st.tuples(st.sampled_from(["", " ", "\t "]), st.text(max_size=20)).map(lambda t: t[0] + "#" + t[1].replace("\n", "")),
    st.text(alphabet=" \t\r\x0b\x0c\x00", max_size=4),  # blank, or almost
    st.text(alphabet=st.sampled_from(list(" \t\r\x00#\\0123abc/=,\u00e9\udcff")), max_size=30),  # garbage
)


@st.composite
def fstab_bytes(draw):
    lines = draw(st.lists(st.tuples(_line, st.sampled_from(["\n", "\n", "\r\n"])), min_size=1, max_size=40))
    text = "".join(line + ending for line, ending in lines)
    if draw(st.booleans()):
        text = text[:-1]  # no newline at the end of the file
    return text.encode("utf-8", "surrogateescape")


@given(fstab_bytes())
@settings(max_examples=EXAMPLES)
@example(b"1 2 ext4 defaults 0 0\n/dev/vdb /data ext4\n")  # mountinfo-looking first line (the --fstab trap)
@example(b"/dev/vdb /data ext4 defaults 0 -1\n/dev/vdc /srv xfs defaults +1 007 trailing\n")
@example(b"# c\x00omment\n/dev/a /b c\r\r\n  \r\r\n\x00\nlast /line\x00 ext4")
@example(b"\\000 /x ext4\n/a \\000 b\n/a /b c \\000 1 2\n/a\\777 /b\\303\\251 c\n/a /b c d 99999999999 -99999999999999999999999\n")
@example(b"/dev/a /b c d 0x1 0\n/dev/a /b c d 1 2x\n/dev/a /b c d 1\t\t-\n/dev/a /b c d # comment\n")
@example(b"a b c d 99999999999999999999\na b c d 99999999999999999999 \na b c d 1 9223372036854775808\r\n")
def test_we_read_every_line_as_findmnt_does(data):
    assert_read_like_findmnt(data)


@given(fstab_bytes(), st.sampled_from(["/data", "/", "/mnt/my share", "/tmp/x"]), st.booleans())
@settings(max_examples=max(1, EXAMPLES // 3))
def test_an_edit_changes_how_findmnt_reads_only_our_line(data, path, remove):
    """After set_entry or remove_entries, findmnt reads every other line as before, and ours as set."""
    lines = parse_fstab(data.decode("utf-8", "surrogateescape"))
    entry = FstabEntry("UUID=5e256bce-a9b7-431d-986a-9aeef664fcb3", path, "ext4", "defaults,nofail", 0, 2)
    try:
        new, change = remove_entries(lines, path) if remove else set_entry(lines, entry, lambda spec: spec == "/dev/vdb")
    except FstabError:
        return  # refused: nothing was written
    out = render_fstab(new).encode("utf-8", "surrogateescape")
    errors, entries = assert_read_like_findmnt(out)
    ours = [line for line in new if line.entry and _fstab.normalize_mount_point(line.entry.file) == path]
    assert [line.entry for line in ours] == ([] if remove else [entry])
    others = [(line.error is not None, line.entry) for line in new if line not in ours]
    before = [(line.error is not None, line.entry) for line in lines
              if not (line.entry and _fstab.normalize_mount_point(line.entry.file) == path)
              and not (not remove and line.number == change.line_number)]
    assert others == before


def test_the_check_fails_when_we_read_a_line_otherwise(monkeypatch):
    """The comparison is not vacuous: findmnt's answer is as below, and a parser that calls a
    negative passno malformed (as ours once did) or decodes a field otherwise fails the check."""
    data = b"/dev/vdb /data ext4 defaults 0 -1\n/dev/vdc /srv\n\\000 /x ext4\n"
    errors, entries = assert_read_like_findmnt(data)
    assert errors == [2]
    assert [(e["source"], e["target"], e["passno"]) for e in entries] == [("/dev/vdb", "/data", -1), (None, "/x", 0)]
    module = sys.modules[__name__]

    def strict(text):
        return [dataclasses.replace(line, entry=None, error="negative") if line.entry and line.entry.passno < 0 else line
                for line in _fstab.parse_fstab(text)]

    def literal(text):
        return [dataclasses.replace(line, entry=dataclasses.replace(line.entry, spec=line.entry.spec or "\\000"))
                if line.entry else line for line in _fstab.parse_fstab(text)]

    for wrong, words in ((strict, "malformed by us [1, 2], rejected by findmnt [2]"), (literal, "line 3")):
        monkeypatch.setattr(module, "parse_fstab", wrong)
        with pytest.raises(AssertionError, match=re.escape(words)):
            assert_read_like_findmnt(data)
        monkeypatch.undo()


# --- libmount's rules, one line each (no findmnt needed) -----------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("/dev/vdb /data ext4 defaults 0 -1\n", FstabEntry("/dev/vdb", "/data", "ext4", "defaults", 0, -1)),
        ("/dev/vdb /data ext4 defaults +1 -0\n", FstabEntry("/dev/vdb", "/data", "ext4", "defaults", 1, 0)),
        ("/dev/vdb /data ext4 a,,b 99999999999 4294967298\n", FstabEntry("/dev/vdb", "/data", "ext4", "a,,b", 1215752191, 2)),
        ("/dev/vdb /data ext4 defaults 99999999999999999999", FstabEntry("/dev/vdb", "/data", "ext4", "defaults", -1, 0)),
        ("/dev/vdb /data ext4 defaults 0 -99999999999999999999\r\n", FstabEntry("/dev/vdb", "/data", "ext4", "defaults", 0, 0)),
        ("/dev/vdb /data ext4 defaults 99999999999999999999 0\n", "dump field is out of range"),
        ("/dev/vdb /data ext4 defaults 0 99999999999999999999 \n", "passno field is out of range"),
        ("/dev/vdb /data ext4\r\r\n", FstabEntry("/dev/vdb", "/data", "ext4\r", "defaults", 0, 0)),
        ("/dev/vdb /da\\303\\251ta\\000x ext4\n", FstabEntry("/dev/vdb", "/da\u00e9ta", "ext4", "defaults", 0, 0)),
        ("/dev/vdb\\777 /data ext4\n", FstabEntry("/dev/vdb\udcff", "/data", "ext4", "defaults", 0, 0)),
        ("/dev/vdb /data\x0bx ext4\n", FstabEntry("/dev/vdb", "/data\x0bx", "ext4", "defaults", 0, 0)),
        ("/dev/vdb /data ext4 defaults 0 2\x00", FstabEntry("/dev/vdb", "/data", "ext4", "defaults", 0, 2)),
        ("  \r\r\n", "expected at least 3 fields"),
        ("# a comment with a \x00 NUL\n", "NUL byte"),
        ("/dev/vdb /data ext4 defaults 0 2\x00\n", "NUL byte"),
        ("/dev/vdb /data ext4 defaults 0x1 0\n", "dump field must be a number"),
        ("/dev/vdb /data ext4 defaults 1 -\n", "passno field must be a number"),
        ("/dev/vdb /data ext4 defaults # comment\n", "dump field must be a number"),
        ("\r\n", None),
        (" \t# comment\r\n", None),
    ],
)
def test_libmount_rules(text, expected):
    line = parse_fstab(text)[0]
    if isinstance(expected, FstabEntry):
        assert line.entry == expected and line.error is None
    elif expected is None:
        assert line.entry is None and line.error is None
    else:
        assert line.entry is None and expected in line.error


def test_appending_after_a_last_line_that_ends_at_a_nul_is_refused():
    """libmount reads that line up to the NUL; the newline an added line needs would make it an error."""
    text = "/dev/vda / ext4 defaults 0 1\n# end\x00junk"
    lines = parse_fstab(text)
    assert not [line for line in lines if line.error]
    with pytest.raises(FstabError) as err:
        set_entry(lines, FstabEntry("UUID=x", "/data", "ext4"), lambda spec: False)
    assert str(err.value).startswith("fstab ends with a line holding a NUL byte") and "line 2" in str(err.value)
    # replacing a line in place leaves the last line alone, so that is fine
    new, change = set_entry(lines, FstabEntry("/dev/vda", "/", "ext4", "defaults", 0, 2), lambda spec: False)
    assert change.action == "replaced" and render_fstab(new) == "/dev/vda / ext4 defaults 0 2\n# end\x00junk"


def test_a_last_line_ending_in_cr_gets_only_a_newline():
    """libmount drops one \\r at the end of a line: "x\\r" last in the file reads as "x", and so does
    "x\\r\\n", but "x\\r\\r\\n" (a CRLF file's ending added) would read as "x\\r"."""
    for last in ("\r", "/dev/vdc /srv xfs\r"):
        text = "# crlf\r\n" + last
        new, change = set_entry(parse_fstab(text), FstabEntry("UUID=x", "/data", "ext4"), lambda spec: False)
        assert render_fstab(new) == text + "\n" + change.line + "\r\n"
        assert [line.entry for line in parse_fstab(render_fstab(new))] == [line.entry for line in new]


def test_a_nul_in_a_value_we_write_is_refused():
    with pytest.raises(FstabError) as err:
        set_entry(parse_fstab(""), FstabEntry("UUID=x", "/da\x00ta", "ext4"), lambda spec: False)
    assert str(err.value).startswith("fstab fields cannot hold a NUL character")
