# -*- coding: utf-8 -*-
# Copyright: kubeops.node_maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Maintenance windows: is the window open now, when does it close, does a node's expected
maintenance fit before it closes? Controller-side, plain functions of their inputs (``now`` included)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]|24):([0-5]\d)\s*$")


class WindowError(ValueError):
    """A window specification that cannot be understood."""


def _timezone(name):
    if not name or name.upper() == "UTC":
        return datetime.timezone.utc
    try:
        from zoneinfo import ZoneInfo  # Python >= 3.9, on the controller
        return ZoneInfo(name)
    except Exception as exc:  # pylint: disable=broad-except  # ZoneInfoNotFoundError, ValueError, ImportError
        raise WindowError("unknown timezone %r (%s)" % (name, exc))


def parse_end(value, tz):
    """An aware datetime from ISO 8601 (``2026-11-14T06:00:00Z``, ``2026-11-14 06:00+01:00``); a
    time without an offset is in ``tz``. None for an empty value."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime.datetime):
        parsed = value
    else:
        text = str(value).strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise WindowError("window end %r is not an ISO 8601 date and time such as 2026-11-14T06:00:00Z" % value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def parse_days(days):
    """Weekday numbers (Monday 0) from names such as ``sat`` or ``Saturday``; all days when empty."""
    if not days:
        return set(range(7))
    if isinstance(days, str):
        days = [d for d in re.split(r"[\s,]+", days) if d]
    numbers = set()
    for day in days:
        key = str(day).strip().lower()[:3]
        if key not in DAYS:
            raise WindowError("unknown day %r (use mon, tue, wed, thu, fri, sat, sun)" % day)
        numbers.add(DAYS.index(key))
    return numbers


def parse_hours(hours):
    """``(start minute, end minute)`` of the day from ``"22:00-06:00"``; None when empty."""
    if not hours:
        return None
    match = _HOURS.match(str(hours))
    if not match:
        raise WindowError("window hours %r are not HH:MM-HH:MM such as 22:00-06:00" % hours)
    start = int(match.group(1)) * 60 + int(match.group(2))
    end = int(match.group(3)) * 60 + int(match.group(4))
    if end > 24 * 60:
        raise WindowError("window hours %r end after 24:00" % hours)
    if start == end:
        raise WindowError("window hours %r are empty (start equals end)" % hours)
    return start, end


def _at_minute(day, minute, tz):
    base = datetime.datetime(day.year, day.month, day.day, tzinfo=tz)
    return base + datetime.timedelta(minutes=minute)


def recurring_close(now, days, hours, tz):
    """When the recurring window (days and hours) that is open at ``now`` closes; None when it is
    closed at ``now``; ``datetime.max`` (aware) when it never closes (every day, no hours)."""
    local = now.astimezone(tz)
    today = local.date()
    minute = local.hour * 60 + local.minute + local.second / 60.0
    if hours is None:
        if local.weekday() not in days:
            return None
        if len(days) == 7:
            return datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
        day = today
        while (day + datetime.timedelta(days=1)).weekday() in days:
            day += datetime.timedelta(days=1)
        return _at_minute(day + datetime.timedelta(days=1), 0, tz)
    start, end = hours
    if start < end:
        if local.weekday() in days and start <= minute < end:
            return _at_minute(today, end, tz)
        return None
    # over midnight: the window opens on one of ``days`` and closes the next morning
    if minute >= start and local.weekday() in days:
        return _at_minute(today + datetime.timedelta(days=1), end, tz)
    if minute < end and (local.weekday() - 1) % 7 in days:
        return _at_minute(today, end, tz)
    return None


def window_status(spec, now, expected_seconds=0.0):
    """Where ``now`` (a POSIX timestamp) stands in the window ``spec`` (``end``, ``days``, ``hours``,
    ``timezone``) for a node expected to take ``expected_seconds``.

    Returns ``{"open", "fits", "closes_at" (ISO 8601 or None), "seconds_left" (or None),
    "expected_seconds", "reason"}``.
    """
    spec = spec or {}
    tz = _timezone(spec.get("timezone") or "UTC")
    end = parse_end(spec.get("end"), tz)
    days = parse_days(spec.get("days"))
    hours = parse_hours(spec.get("hours"))
    current = datetime.datetime.fromtimestamp(float(now), datetime.timezone.utc)
    expected = max(0.0, float(expected_seconds or 0))
    result = {"open": False, "fits": False, "closes_at": None, "seconds_left": None,
              "expected_seconds": round(expected, 1)}

    if end is not None and current >= end:
        result["reason"] = "the maintenance window ended at %s" % end.isoformat()
        return result
    close = recurring_close(current, days, hours, tz)
    if close is None:
        result["reason"] = "outside the maintenance window (%s%s%s)" % (
            ",".join(DAYS[d] for d in sorted(days)), " " if hours else "", spec.get("hours") or "")
        return result
    if end is not None and end < close:
        close = end
    result["open"] = True
    if close.year == datetime.MAXYEAR:
        result.update(fits=True, reason="the maintenance window has no end")
        return result
    left = (close - current).total_seconds()
    result["closes_at"] = close.astimezone(datetime.timezone.utc).isoformat()
    result["seconds_left"] = round(left, 1)
    result["fits"] = expected <= left
    result["reason"] = "%s: expected %ds, %ds left before the window closes at %s" % (
        "fits" if result["fits"] else "does not fit", round(expected), round(left), result["closes_at"])
    return result
