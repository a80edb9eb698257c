# -*- coding: utf-8 -*-
# Copyright: kubeops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where the container runtime keeps its data: Docker's daemon.json and containerd's config.toml.

Pure functions over text. Both editors change only the bytes of the one setting they own and
leave every other byte of the file as it was (keys, order, indentation, comments), then re-read
their own output to prove that nothing but that setting changed.

Docker: ``data-root`` is the setting; ``graph`` is its legacy name (deprecated since 17.05,
fatal from 23.0, unknown from 24.0, and before 23.0 having both keys stops dockerd from
starting), so a ``graph`` key is renamed in place, or dropped when ``data-root`` already holds
the same value.

containerd: the top-level ``root`` key of config.toml. ``tomllib`` (Python 3.11+) can read TOML
but not write it, so the edit is done on lines of the top-level table (the lines before the first
``[table]`` header) and checked with ``tomllib`` when it is available.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

try:
    import tomllib  # Python 3.11+
except ImportError:  # pragma: no cover - older target Pythons
    tomllib = None

DOCKER_KEY = "data-root"
DOCKER_LEGACY_KEY = "graph"
_JSON_WS = " \t\n\r"
_DEFAULT_INDENT = "  "


class RuntimeConfigError(ValueError):
    """The runtime configuration cannot be edited safely; the message says why."""


@dataclass
class ConfigEdit:
    text: str
    changed: bool
    previous_root: Optional[str]
    actions: List[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# daemon.json


@dataclass
class _Member:
    key: str
    key_start: int
    key_end: int
    value_start: int
    value_end: int
    value: object


@dataclass
class _JsonObject:
    open_index: int  # index of '{'
    close_index: int  # index of '}'
    members: List[_Member]


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _JSON_WS:
        i += 1
    return i


def _scan_object(text: str) -> _JsonObject:
    """Locate the members of the top-level JSON object, with their exact positions."""
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "{":
        raise ValueError("the top level is not a JSON object")
    open_index = i
    members: List[_Member] = []
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "}":
        close_index = i
    else:
        while True:
            if i >= len(text) or text[i] != '"':
                raise ValueError("expected a key in double quotes at character %d" % i)
            key, key_end = decoder.raw_decode(text, i)
            colon = _skip_ws(text, key_end)
            if colon >= len(text) or text[colon] != ":":
                raise ValueError("expected ':' at character %d" % colon)
            value_start = _skip_ws(text, colon + 1)
            value, value_end = decoder.raw_decode(text, value_start)
            members.append(_Member(key, i, key_end, value_start, value_end, value))
            i = _skip_ws(text, value_end)
            if i < len(text) and text[i] == ",":
                i = _skip_ws(text, i + 1)
                continue
            if i < len(text) and text[i] == "}":
                close_index = i
                break
            raise ValueError("expected ',' or '}' at character %d" % i)
    if _skip_ws(text, close_index + 1) != len(text):
        raise ValueError("unexpected text after the closing '}' at character %d" % (close_index + 1))
    return _JsonObject(open_index, close_index, members)


def _parse_daemon_json(text: str) -> Tuple[str, _JsonObject]:
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom):]
    try:
        # the authoritative syntax check, with its usual messages; NaN and Infinity are Python's
        # extensions, which dockerd (Go's encoding/json) refuses
        json.loads(body, parse_constant=_reject_constant)
        return bom, _scan_object(body)
    except ValueError as exc:
        raise RuntimeConfigError("daemon.json is not valid JSON (%s); it was left as it was" % exc)
    except RecursionError:
        raise RuntimeConfigError("daemon.json is nested too deeply to be read; it was left as it was")


def _reject_constant(name: str):
    raise ValueError("%s is not a JSON value" % name)


def _remove_member(text: str, obj: _JsonObject, index: int) -> str:
    member = obj.members[index]
    if len(obj.members) == 1:
        return text[: obj.open_index + 1] + text[obj.close_index:]
    if index == 0:
        # from this key up to the next key: takes the comma after it
        return text[: member.key_start] + text[obj.members[1].key_start:]
    # from the end of the previous value: takes the comma before it
    return text[: obj.members[index - 1].value_end] + text[member.value_end:]


def _insert_member(text: str, obj: _JsonObject, key: str, value: str) -> str:
    def member(colon):
        # concatenated, not %-formatted: the value is a path and may contain '%'
        return json.dumps(key) + colon + json.dumps(value)

    if not obj.members:
        inner = text[obj.open_index + 1: obj.close_index]
        colon = ": "
        if "\n" in inner or not inner:
            closing_indent = inner[inner.rfind("\n") + 1:] if "\n" in inner else ""
            body = "\n" + closing_indent + _DEFAULT_INDENT + member(colon) + "\n" + closing_indent
        else:
            body = inner + member(colon) + inner
        return text[: obj.open_index + 1] + body + text[obj.close_index:]
    last = obj.members[-1]
    before_last = obj.members[-2].value_end if len(obj.members) > 1 else obj.open_index + 1
    # the white space before the last key, after the comma that separates it (a comma may follow a
    # line break: "}\n, \n  \"key\"")
    gap = text[before_last: last.key_start]
    lead = gap[gap.rfind(",") + 1:]
    colon = text[last.key_end: last.value_start]
    return text[: last.value_end] + "," + lead + member(colon) + text[last.value_end:]


def docker_data_root(text: Optional[str]) -> Optional[str]:
    """The data root daemon.json asks for (``data-root``, else ``graph``), or None."""
    if text is None or not text.strip():
        return None
    obj = _parse_daemon_json(text)[1]
    values = {m.key: m.value for m in obj.members}
    return values.get(DOCKER_KEY, values.get(DOCKER_LEGACY_KEY))


def set_docker_data_root(text: Optional[str], data_root: str) -> ConfigEdit:
    """Return daemon.json text whose data root is ``data_root``; ``text`` None = no file yet."""
    if text is None or not text.strip(_JSON_WS):
        # dockerd reads an empty file as "no settings"
        new = "{\n%s%s: %s\n}\n" % (_DEFAULT_INDENT, json.dumps(DOCKER_KEY), json.dumps(data_root))
        action = "created the file" if text is None else "filled the empty file"
        return ConfigEdit(new, True, None, ["%s with %s" % (action, DOCKER_KEY)])

    bom, obj = _parse_daemon_json(text)
    body = text[len(bom):]
    for key in (DOCKER_KEY, DOCKER_LEGACY_KEY):
        found = [m for m in obj.members if m.key == key]
        if len(found) > 1:
            raise RuntimeConfigError("daemon.json has the key %r %d times; it was left as it was" % (key, len(found)))
    index = {m.key: i for i, m in enumerate(obj.members)}
    for key in (DOCKER_KEY, DOCKER_LEGACY_KEY):
        if key in index and not isinstance(obj.members[index[key]].value, str):
            raise RuntimeConfigError(
                "daemon.json has %r set to %s, not a path; it was left as it was"
                % (key, json.dumps(obj.members[index[key]].value))
            )
    current = obj.members[index[DOCKER_KEY]].value if DOCKER_KEY in index else None
    legacy = obj.members[index[DOCKER_LEGACY_KEY]].value if DOCKER_LEGACY_KEY in index else None
    if current is not None and legacy is not None and current != legacy:
        raise RuntimeConfigError(
            "daemon.json has both %r (%s) and the legacy %r (%s) with different values; dockerd "
            "refuses both, and which one was meant is not clear. Remove one and run again; the "
            "file was left as it was" % (DOCKER_KEY, current, DOCKER_LEGACY_KEY, legacy)
        )
    previous = current if current is not None else legacy
    actions = []
    # What the file must read back as after the edit, as (key, value) pairs all the way down: a
    # dict would fold a nested object's duplicate keys, which JSON allows and the edit keeps.
    try:
        expected = json.loads(body, object_pairs_hook=list)
    except RecursionError:
        raise RuntimeConfigError("daemon.json is nested too deeply to be checked after the edit; it was left as it was")
    value_text = json.dumps(data_root)

    if legacy is not None and current is not None:
        # same value twice: drop the legacy key, then set data-root below if needed
        body = _remove_member(body, obj, index[DOCKER_LEGACY_KEY])
        expected = [(k, v) for k, v in expected if k != DOCKER_LEGACY_KEY]
        actions.append("removed the legacy %r key (same value as %r)" % (DOCKER_LEGACY_KEY, DOCKER_KEY))
        obj = _scan_object(body)
        index = {m.key: i for i, m in enumerate(obj.members)}
    if DOCKER_LEGACY_KEY in index:
        m = obj.members[index[DOCKER_LEGACY_KEY]]
        body = body[: m.key_start] + json.dumps(DOCKER_KEY) + body[m.key_end: m.value_start] + value_text + body[m.value_end:]
        expected = [(DOCKER_KEY, data_root) if k == DOCKER_LEGACY_KEY else (k, v) for k, v in expected]
        actions.append("renamed the legacy %r key to %r" % (DOCKER_LEGACY_KEY, DOCKER_KEY))
        if legacy != data_root:
            actions.append("set %r to %s (was %s)" % (DOCKER_KEY, data_root, legacy))
    elif DOCKER_KEY in index:
        m = obj.members[index[DOCKER_KEY]]
        if m.value != data_root:
            body = body[: m.value_start] + value_text + body[m.value_end:]
            expected = [(k, data_root if k == DOCKER_KEY else v) for k, v in expected]
            actions.append("set %r to %s (was %s)" % (DOCKER_KEY, data_root, m.value))
    else:
        body = _insert_member(body, obj, DOCKER_KEY, data_root)
        expected.append((DOCKER_KEY, data_root))
        actions.append("added %r: %s" % (DOCKER_KEY, data_root))

    new = bom + body
    try:
        reads_back = json.loads(body, object_pairs_hook=list) == _pairs(expected)
    except ValueError:
        reads_back = False
    except RecursionError:
        raise RuntimeConfigError("daemon.json is nested too deeply to be checked after the edit; it was left as it was")
    if not reads_back:
        # cannot happen unless the editor above is wrong; never write what we cannot prove
        raise RuntimeConfigError("internal error: the edited daemon.json does not read back as intended; nothing written")
    return ConfigEdit(new, new != text, previous, actions if new != text else [])


def _pairs(pairs):
    return [(k, _as_pairs(v)) for k, v in pairs]


def _as_pairs(value):
    if isinstance(value, dict):
        return [(k, _as_pairs(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_as_pairs(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# containerd config.toml

_BARE_KEY = r"[A-Za-z0-9_-]+"
_QUOTED_KEY = r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\''
_KEY_PART = r"(?:%s|%s)" % (_BARE_KEY, _QUOTED_KEY)
_KEYVAL = re.compile(r"^(?P<indent>[ \t]*)(?P<key>%s(?:[ \t]*\.[ \t]*%s)*)(?P<eq>[ \t]*=[ \t]*)" % (_KEY_PART, _KEY_PART))
_ROOT_KEY = re.compile(r"^(?:root|\"root\"|'root')$")
_SIMPLE_STRING = re.compile(r'^(?:"(?!"")(?:[^"\\\n]|\\.)*"|\'(?!\'\')[^\'\n]*\')')
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


@dataclass
class _TopLevelKey:
    key: str
    first: int  # index of the line where the key is
    last: int  # index of the line where its value ends
    value_col: int  # column where the value starts on the first line


def _split_lines(text: str) -> List[str]:
    pieces = text.split("\n")
    out = [p + "\n" for p in pieces[:-1]]
    if pieces[-1]:
        out.append(pieces[-1])
    return out


class _Lexer:
    """Tracks just enough TOML to know where statements start: strings, comments, brackets."""

    def __init__(self):
        self.in_string: Optional[str] = None  # '"""' or "'''" while inside a multi-line string
        self.depth = 0  # open [ and { inside a value

    @property
    def at_statement(self) -> bool:
        return self.in_string is None and self.depth == 0

    def feed(self, line: str) -> None:
        i, n = 0, len(line)
        while i < n:
            if self.in_string:
                end = self._find_close(line, i, self.in_string)
                if end < 0:
                    return
                self.in_string, i = None, end
                continue
            ch = line[i]
            if ch == "#":
                return
            if line.startswith('"""', i) or line.startswith("'''", i):
                self.in_string, i = line[i:i + 3], i + 3
                continue
            if ch in "\"'":
                i = self._find_close(line, i + 1, ch)
                if i < 0:
                    raise RuntimeConfigError("config.toml has an unterminated string")
                continue
            if ch in "[{":
                self.depth += 1
            elif ch in "]}":
                self.depth -= 1
            i += 1

    @staticmethod
    def _find_close(line: str, i: int, quote: str) -> int:
        """Index just after the closing ``quote`` (1 or 3 chars) from ``i``, or -1."""
        basic = quote[0] == '"'
        while i < len(line):
            if basic and line[i] == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                end = i + len(quote)
                # a multi-line string may end with up to two extra quote characters
                while len(quote) == 3 and end < len(line) and line[end] == quote[0] and end - i < 5:
                    end += 1
                return end
            i += 1
        return -1


def _top_level(lines: List[str]) -> Tuple[int, List[_TopLevelKey]]:
    """(index of the first table header or len(lines), keys of the top-level table)."""
    lexer = _Lexer()
    keys: List[_TopLevelKey] = []
    for i, line in enumerate(lines):
        if lexer.at_statement:
            stripped = line.lstrip(" \t")
            if stripped.startswith("["):
                return i, keys
            m = _KEYVAL.match(line)
            if m:
                keys.append(_TopLevelKey(m.group("key"), i, i, m.end()))
                lexer.feed(line[m.end():])
            else:
                lexer.feed(line)
        else:
            lexer.feed(line)
            if keys:
                keys[-1].last = i
    return len(lines), keys


def _toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u%04X" % ord(ch))
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_load(text: str, what: str):
    if tomllib is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuntimeConfigError("%s is not valid TOML (%s); it was left as it was" % (what, exc))
    except RecursionError:
        raise RuntimeConfigError("%s is nested too deeply to be read; it was left as it was" % what)


def toml_data(text: Optional[str]):
    """config.toml read as TOML (a dict), or None without a file or without ``tomllib``."""
    return None if text is None else _toml_load(text, "config.toml")


def _decode_simple_string(token: str) -> str:
    if token.startswith("'"):
        return token[1:-1]
    # TOML basic-string escapes are JSON's plus \e and \UXXXXXXXX, which paths do not use
    try:
        return json.loads(token)
    except ValueError:
        raise RuntimeConfigError("config.toml has a root value this module cannot read: %s" % token)


def _root_line_value(lines: List[str], key: _TopLevelKey) -> Optional[str]:
    """The raw string token of a single-line ``root = "..."``, else None."""
    if key.last != key.first:
        return None
    m = _SIMPLE_STRING.match(lines[key.first][key.value_col:])
    return m.group(0) if m else None


def containerd_root(text: Optional[str]) -> Optional[str]:
    """The top-level ``root`` of config.toml, or None when it is not set."""
    if text is None:
        return None
    data = _toml_load(text, "config.toml")
    if data is not None:
        value = data.get("root")
        return value if isinstance(value, str) else None
    lines = _split_lines(text)
    for key in _top_level(lines)[1]:
        if _ROOT_KEY.match(key.key):
            token = _root_line_value(lines, key)
            return _decode_simple_string(token) if token else None
    return None


def set_containerd_root(text: Optional[str], root: str) -> ConfigEdit:
    """Return config.toml text whose top-level ``root`` is ``root``; ``text`` None = no file yet."""
    value = _toml_string(root)
    if text is None:
        return ConfigEdit("root = %s\n" % value, True, None, ["created the file with root"])
    before = _toml_load(text, "config.toml")
    lines = _split_lines(text)
    header, keys = _top_level(lines)
    roots = [k for k in keys if _ROOT_KEY.match(k.key)]
    if len(roots) > 1:
        raise RuntimeConfigError("config.toml sets the top-level root %d times; it was left as it was" % len(roots))
    previous = before.get("root") if isinstance(before, dict) else None
    ending = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    if roots:
        key = roots[0]
        line = lines[key.first]
        old_value = _root_line_value(lines, key)
        if old_value is None:
            raise RuntimeConfigError(
                "config.toml sets root in a form this module does not edit (%s); set it to a plain "
                "string and run again; the file was left as it was" % line.strip()
            )
        if before is None:
            previous = _decode_simple_string(old_value)
        if previous == root:
            return ConfigEdit(text, False, previous, [])
        start = key.value_col
        lines[key.first] = line[:start] + value + line[start + len(old_value):]
        actions = ["set root to %s (was %s)" % (root, previous)]
    else:
        if keys:
            at = keys[-1].last + 1
            insert = ["root = %s%s" % (value, ending)]
        elif header < len(lines):
            at = header
            # keep a comment block that introduces the first table attached to it
            while at > 0 and lines[at - 1].lstrip(" \t").startswith("#"):
                at -= 1
            insert = ["root = %s%s" % (value, ending)]
            if lines[at].strip():
                insert.append(ending)
        else:
            at = len(lines)
            insert = ["root = %s%s" % (value, ending)]
        if at > 0 and not lines[at - 1].endswith("\n"):
            lines[at - 1] += ending
        lines[at:at] = insert
        actions = ["added root = %s" % root]
    new = "".join(lines)
    after = _toml_load(new, "the edited config.toml")
    if before is not None:
        expected = dict(before)
        expected["root"] = root
        if after != expected:
            raise RuntimeConfigError("internal error: the edited config.toml does not read back as intended; nothing written")
    return ConfigEdit(new, True, previous, actions)
