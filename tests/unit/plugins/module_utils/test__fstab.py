from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.module_utils import _fstab
from ansible_collections.kubeops.node_maintenance.plugins.module_utils._fstab import (
    FstabEntry,
    FstabError,
    parse_fstab,
    remove_entries,
    render_fstab,
    set_entry,
)

DEBIAN = (
    "# /etc/fstab: static file system information.\n"
    "#\n"
    "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n"
    "UUID=0a1b2c3d-0000-4000-8000-000000000001 /               ext4    errors=remount-ro 0       1\n"
    "/dev/sr0        /media/cdrom0   udf,iso9660 user,noauto     0       0\n"
    "\n"
    "  \t# indented comment with trailing blanks  \t\n"
    "//nas/My\\040Share /mnt/my\\040share cifs credentials=/root/.smb,nofail 0 0\n"
    "tmpfs\t/tmp\ttmpfs\tdefaults,size=2g\t0\t0\n"
)
DATA = FstabEntry("UUID=11111111-2222-4333-8444-555555555555", "/data", "ext4", "defaults,nofail", 0, 2)


def never(_spec):
    return False


# --- generated fstab text, nasty on purpose --------------------------------------------------

_field_chars = st.text(alphabet=st.characters(blacklist_characters=" \t\n"), min_size=1, max_size=12)
_blanks = st.text(alphabet=" \t", min_size=1, max_size=4)
_number = st.one_of(st.integers(0, 9).map(str), st.sampled_from(["x", "-1", "01", ""]))


@st.composite
def _entry_line(draw):
    fields = [draw(_field_chars) for dummy in range(draw(st.integers(1, 8)))]
    if len(fields) >= 5 and draw(st.booleans()):
        fields[4:6] = [draw(_number) or "0" for dummy in fields[4:6]]
    out = draw(st.text(alphabet=" \t", max_size=3))
    for f in fields:
        out += f + draw(_blanks)
    return out if draw(st.booleans()) else out.rstrip(" \t")


_line = st.one_of(
    _entry_line(),
    st.text(max_size=30).map(lambda t: "#" + t.replace("\n", "")),
    st.text(alphabet=" \t\r\x0b\x0c", max_size=5),
    st.text(max_size=40).map(lambda t: t.replace("\n", "")),  # anything at all
    st.just("/dev/vdb /da\\040ta ext4 defaults 0 0"),
)
_ending = st.sampled_from(["\n", "\r\n", "\n"])


@st.composite
def fstab_text(draw):
    lines = draw(st.lists(st.tuples(_line, _ending), max_size=12))
    text = "".join(line + ending for line, ending in lines)
    if text and draw(st.booleans()):
        text = text.rstrip("\n")  # no newline at the end of the file
    return text


def _valid_only(text):
    return [line for line in parse_fstab(text) if not line.error]


_path = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), min_size=1, max_size=12,
).map(lambda s: "/" + s.strip("/") if s.strip("/") else "/x")


# --- parse / render --------------------------------------------------------------------------

@given(fstab_text())
@settings(max_examples=400)
def test_parse_render_is_identity_on_generated_fstabs(text):
    assert render_fstab(parse_fstab(text)) == text


@given(st.text())
@settings(max_examples=300)
def test_parse_render_is_identity_on_any_text(text):
    assert render_fstab(parse_fstab(text)) == text


def test_parse_render_identity_on_bytes_via_surrogateescape():
    raw = b"/dev/vdb /data ext4 defaults 0 0 # caf\xe9 \xff\n\x00weird\r\n"
    text = raw.decode("utf-8", "surrogateescape")
    assert render_fstab(parse_fstab(text)).encode("utf-8", "surrogateescape") == raw


def test_parse_reads_fields_like_libmount():
    lines = parse_fstab(DEBIAN)
    entries = [line.entry for line in lines if line.entry]
    assert [e.file for e in entries] == ["/", "/media/cdrom0", "/mnt/my share", "/tmp"]
    assert entries[2].spec == "//nas/My Share"
    assert entries[0] == FstabEntry("UUID=0a1b2c3d-0000-4000-8000-000000000001", "/", "ext4", "errors=remount-ro", 0, 1)
    assert not _fstab.malformed_lines(lines)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("/dev/vdb /data ext4", FstabEntry("/dev/vdb", "/data", "ext4", "defaults", 0, 0)),
        ("/dev/vdb /data ext4 noatime 1", FstabEntry("/dev/vdb", "/data", "ext4", "noatime", 1, 0)),
        ("/dev/vdb /data ext4 noatime 1 2 # trailing words", FstabEntry("/dev/vdb", "/data", "ext4", "noatime", 1, 2)),
        ("\t /dev/vdb\t/data  ext4 defaults 0 0\r", FstabEntry("/dev/vdb", "/data", "ext4", "defaults", 0, 0)),
        # libmount reads freq and passno with strtol: a sign is fine (test__fstab_findmnt.py)
        ("/dev/vdb /data ext4 defaults 0 -1", FstabEntry("/dev/vdb", "/data", "ext4", "defaults", 0, -1)),
    ],
)
def test_optional_fields_and_blanks(line, expected):
    assert parse_fstab(line + "\n")[0].entry == expected


@pytest.mark.parametrize("line", ["/dev/vdb /data", "/dev/vdb", "/dev/vdb /data ext4 defaults x 0", "/dev/vdb /data ext4 defaults 0 -"])
def test_malformed_lines_are_flagged_not_lost(line):
    text = "# ok\n" + line + "\n"
    lines = parse_fstab(text)
    assert lines[1].error and lines[1].entry is None
    assert render_fstab(lines) == text


def test_escapes_round_trip():
    value = "a b\tc\\d\ne"
    assert _fstab.decode_field(_fstab.encode_field(value)) == value
    assert _fstab.encode_field("#x") == "\\043x"
    with pytest.raises(FstabError):
        _fstab.encode_field("")


# --- set_entry -------------------------------------------------------------------------------

def test_append_keeps_every_other_byte_and_follows_the_layout():
    new, change = set_entry(parse_fstab(DEBIAN), DATA, never)
    out = render_fstab(new)
    assert out.startswith(DEBIAN)
    assert change.action == "added"
    # the last entry line is tab-separated, so the new one is too
    assert out[len(DEBIAN):] == "UUID=11111111-2222-4333-8444-555555555555\t/data\text4\tdefaults,nofail\t0\t2\n"


def test_append_to_file_without_final_newline_and_crlf():
    new, dummy = set_entry(parse_fstab("/dev/vda / ext4 defaults 0 1"), DATA, never)
    assert render_fstab(new) == "/dev/vda / ext4 defaults 0 1\n" + _fstab.format_entry(DATA, "/dev/vda / ext4 defaults 0 1") + "\n"
    new, dummy = set_entry(parse_fstab("# c\r\n"), DATA, never)
    assert render_fstab(new).endswith("\r\n") and render_fstab(new).count("\r\n") == 2


def test_append_to_empty_file():
    new, change = set_entry(parse_fstab(""), DATA, never)
    assert render_fstab(new) == " ".join(DATA.fields()) + "\n"
    assert change.line_number == 1


def test_replace_by_mount_point_in_place_keeping_columns_and_tail():
    text = "# top\n/dev/vdb   /data/    ext4   noatime,acl,user_xattr 1 1   # old data disk\n# bottom\n"
    new, change = set_entry(parse_fstab(text), DATA, never)
    out = render_fstab(new).splitlines()
    assert out[0] == "# top" and out[2] == "# bottom"
    # the new device name is longer than the old column, so the columns after it close up
    assert out[1] == "UUID=11111111-2222-4333-8444-555555555555 /data ext4 defaults,nofail 0 2   # old data disk"
    assert change.action == "replaced"
    assert change.previous == ["/dev/vdb   /data/    ext4   noatime,acl,user_xattr 1 1   # old data disk"]
    assert change.line_number == 2


def test_replace_keeps_column_alignment_when_it_fits():
    new, dummy = set_entry(parse_fstab(DEBIAN), FstabEntry("/dev/sr1", "/media/cdrom0", "udf", "user,noauto,ro", 0, 0), never)
    assert render_fstab(new).splitlines()[4] == "/dev/sr1        /media/cdrom0   udf         user,noauto,ro  0       0"


def test_replace_by_device_when_mounted_elsewhere_before():
    text = "/dev/vdb /mnt/old ext4 defaults 0 0\n"
    new, change = set_entry(parse_fstab(text), DATA, lambda spec: spec == "/dev/vdb")
    assert change.action == "replaced"
    assert render_fstab(new) == "UUID=11111111-2222-4333-8444-555555555555 /data ext4 defaults,nofail 0 2\n"


def test_unchanged_entry_keeps_its_bytes():
    text = "UUID=11111111-2222-4333-8444-555555555555   /data  ext4 defaults,nofail 0   2  # mine\n"
    new, change = set_entry(parse_fstab(text), DATA, never)
    assert render_fstab(new) == text
    assert change.action == "unchanged"


@pytest.mark.parametrize(
    "text, words",
    [
        ("/dev/vdb /data ext4 defaults 0 0\n/dev/vdc /data xfs defaults 0 0\n", ["2 lines for mount point /data", "line 1", "line 2"]),
        ("/dev/vdc /data ext4 defaults 0 0\n/dev/vdb /mnt ext4 defaults 0 0\n", ["another device on /data", "line 1", "line 2"]),
        ("/dev/vdb /a ext4 defaults 0 0\n/dev/vdb /b ext4 defaults 0 0\n", ["2 lines for this device"]),
        ("/dev/vdb /data\n", ["not valid entries", "line 1: /dev/vdb /data", "at least 3 fields"]),
        ("# fine\n/dev/vdx /x ext4 defaults zero 0\n", ["line 2", "dump field must be a number"]),
    ],
)
def test_refuses_ambiguous_or_malformed_fstab(text, words):
    with pytest.raises(FstabError) as err:
        set_entry(parse_fstab(text), DATA, lambda spec: spec == "/dev/vdb")
    for word in words:
        assert word in str(err.value)


@given(fstab_text(), _path, st.sampled_from(["ext4", "xfs"]), st.booleans())
@settings(max_examples=300)
def test_setting_an_entry_twice_equals_once(text, path, fstype, by_device):
    lines = _valid_only(text)
    entry = FstabEntry("UUID=abc", path, fstype, "defaults,nofail", 0, 2)
    same = (lambda spec: spec == "/dev/vdb") if by_device else never
    try:
        once, dummy = set_entry(lines, entry, same)
    except FstabError:
        return  # duplicates or conflicts in the generated text: refusing is the right answer
    twice, change = set_entry(parse_fstab(render_fstab(once)), entry, same)
    assert render_fstab(twice) == render_fstab(once)
    assert change.action == "unchanged"
    found = _fstab.entries_for(parse_fstab(render_fstab(once)), path)
    assert [line.entry for line in found] == [entry]


@given(fstab_text(), _path)
@settings(max_examples=200)
def test_other_lines_are_untouched(text, path):
    lines = _valid_only(text)
    entry = FstabEntry("/dev/vdz", path, "ext4", "defaults", 0, 0)
    try:
        new, change = set_entry(lines, entry, never)
    except FstabError:
        return
    before = [line.raw for line in lines]
    after = [line.raw for line in new]
    if change.action == "added":
        # only a missing final newline may have been added to the previous last line
        assert [a.rstrip("\r\n") for a in after[:-1]] == [b.rstrip("\r\n") for b in before]
    else:
        changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
        assert len(before) == len(after) and len(changed) <= 1


def test_remove_entries_keeps_the_rest():
    text = DEBIAN + "UUID=x /data ext4 defaults 0 2\n# tail\n"
    new, change = remove_entries(parse_fstab(text), "/data/")
    assert render_fstab(new) == DEBIAN + "# tail\n"
    assert change.action == "removed" and change.previous == ["UUID=x /data ext4 defaults 0 2"]
    again, change = remove_entries(new, "/data")
    assert render_fstab(again) == render_fstab(new) and change.action == "unchanged"


def test_mount_point_with_space_is_encoded():
    entry = FstabEntry("LABEL=my data", "/srv/my data", "ext4")
    new, change = set_entry(parse_fstab(""), entry, never)
    assert change.line == "LABEL=my\\040data /srv/my\\040data ext4 defaults 0 0"
    assert parse_fstab(render_fstab(new))[0].entry == entry


def test_single_spaces_stay_single_when_a_field_gets_shorter():
    text = "UUID=8aa6a9fd-aa82-4027-b620-68ca85388dc4 /data ext4 defaults,nofail 0 2\n"
    new, dummy = set_entry(parse_fstab(text), FstabEntry("LABEL=kdata", "/data", "ext4", "defaults,nofail", 0, 2), never)
    assert render_fstab(new) == "LABEL=kdata /data ext4 defaults,nofail 0 2\n"


def test_two_space_style_is_followed():
    text = "# The data disk is deliberately absent\nLABEL=kubeops-root  /  ext4  defaults,errors=remount-ro  0  1\n"
    new, change = set_entry(parse_fstab(text), DATA, never)
    assert change.line == "UUID=11111111-2222-4333-8444-555555555555  /data  ext4  defaults,nofail  0  2"
    assert render_fstab(new) == text + change.line + "\n"


# --- a mount point whose line names another filesystem ----------------------------------------------

@pytest.mark.parametrize("spec", ["UUID=11111111-2222-4333-8444-555555555555", "LABEL=kdata", "label=kdata",
                                  "PARTUUID=0a0b0c0d-01", "PARTLABEL=data"])
def test_a_line_naming_another_filesystem_on_the_mount_point_is_found(spec):
    text = DEBIAN + "%s /data/ ext4 defaults,nofail 0 2\n" % spec
    line = _fstab.line_for_another_filesystem(parse_fstab(text), "/data", never)
    assert line is not None and line.entry.spec == spec and line.number == len(DEBIAN.splitlines()) + 1


def test_a_line_naming_this_filesystem_or_a_device_path_is_not_another_filesystem():
    lines = parse_fstab(DEBIAN + "UUID=11111111-2222-4333-8444-555555555555 /data ext4 defaults 0 2\n"
                        "/dev/vdc /scratch ext4 defaults 0 2\n")
    assert _fstab.line_for_another_filesystem(lines, "/data", lambda spec: spec.startswith("UUID=1111")) is None
    # a device path says nothing about the filesystem: set_entry may replace it as before
    assert _fstab.line_for_another_filesystem(lines, "/scratch", never) is None
    # no line for the mount point at all
    assert _fstab.line_for_another_filesystem(lines, "/srv", never) is None
    assert _fstab.source_tag("uuid=x") == "UUID" and _fstab.source_tag("/dev/disk/by-uuid/x") is None
    assert _fstab.source_tag("tmpfs") is None and _fstab.source_tag("//nas/share=x") is None
