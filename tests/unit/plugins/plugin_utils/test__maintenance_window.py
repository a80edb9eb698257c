"""Unit tests for _maintenance_window: absolute end, recurring days and hours, fitting a node."""
import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kubeops.node_maintenance.plugins.plugin_utils import _maintenance_window as mw

UTC = datetime.timezone.utc


def ts(text):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# 2026-11-14 is a Saturday
SAT_2300 = ts("2026-11-14T23:00:00")


def test_no_window_is_always_open_and_fits():
    result = mw.window_status({}, SAT_2300, 10 ** 6)
    assert result["open"] and result["fits"] and result["closes_at"] is None


def test_an_absolute_end():
    spec = {"end": "2026-11-15T00:00:00Z"}
    assert mw.window_status(spec, SAT_2300, 3000)["fits"]
    late = mw.window_status(spec, SAT_2300, 3601)
    assert late["open"] and not late["fits"] and late["seconds_left"] == 3600.0
    assert "does not fit" in late["reason"]
    over = mw.window_status(spec, ts("2026-11-15T00:00:00"), 0)
    assert not over["open"] and "ended" in over["reason"]


def test_an_end_without_offset_is_in_the_window_timezone():
    spec = {"end": "2026-11-15T01:00:00", "timezone": "Europe/Berlin"}  # 00:00 UTC in November
    assert mw.window_status(spec, SAT_2300, 0)["seconds_left"] == 3600.0


def test_hours_over_midnight_belong_to_the_day_they_start():
    spec = {"days": ["sat"], "hours": "22:00-06:00"}
    saturday_night = mw.window_status(spec, SAT_2300, 0)
    assert saturday_night["open"] and saturday_night["closes_at"] == "2026-11-15T06:00:00+00:00"
    sunday_morning = mw.window_status(spec, ts("2026-11-15T05:00:00"), 0)
    assert sunday_morning["open"] and sunday_morning["seconds_left"] == 3600.0
    assert not mw.window_status(spec, ts("2026-11-15T23:00:00"), 0)["open"]  # sunday night is not in days
    assert not mw.window_status(spec, ts("2026-11-14T05:00:00"), 0)["open"]  # friday night's morning


def test_days_without_hours_run_to_the_end_of_the_last_consecutive_day():
    result = mw.window_status({"days": "sat,sun"}, SAT_2300, 0)
    assert result["closes_at"] == "2026-11-16T00:00:00+00:00"


def test_the_absolute_end_cuts_the_recurring_window():
    spec = {"days": ["sat"], "hours": "22:00-06:00", "end": "2026-11-15T01:00:00+00:00"}
    assert mw.window_status(spec, SAT_2300, 0)["closes_at"] == "2026-11-15T01:00:00+00:00"


@pytest.mark.parametrize("spec", [{"end": "tomorrow"}, {"days": ["someday"]}, {"hours": "25:00-01:00"},
                                  {"hours": "10:00-10:00"}, {"hours": "10-12"}, {"timezone": "Mars/Olympus"}])
def test_nonsense_is_refused(spec):
    with pytest.raises(mw.WindowError):
        mw.window_status(spec, SAT_2300, 0)


@given(st.integers(0, 23), st.integers(0, 59), st.integers(0, 23), st.integers(0, 59),
       st.integers(0, 7 * 24 * 3600), st.sets(st.sampled_from(mw.DAYS), min_size=1))
def test_an_open_window_closes_in_the_future_within_a_week_and_is_open_until_then(
        h1, m1, h2, m2, offset, days):
    if (h1, m1) == (h2, m2):
        return
    spec = {"days": sorted(days), "hours": "%02d:%02d-%02d:%02d" % (h1, m1, h2, m2)}
    now = ts("2026-11-09T00:00:00") + offset
    result = mw.window_status(spec, now, 0)
    if not result["open"]:
        return
    left = result["seconds_left"]
    assert 0 < left <= 24 * 3600
    # still open a moment before it closes, closed a moment after
    assert mw.window_status(spec, now + left - 1, 0)["open"]
    assert not mw.window_status(spec, now + left + 1, 0)["open"] or \
        mw.window_status(spec, now + left + 1, 0)["closes_at"] != result["closes_at"]


@given(st.floats(0, 10 ** 5), st.integers(-10 ** 5, 10 ** 5))
def test_fits_exactly_when_the_expected_duration_is_within_the_time_left(expected, end_offset):
    now = SAT_2300
    end = datetime.datetime.fromtimestamp(now + end_offset, UTC).isoformat()
    result = mw.window_status({"end": end}, now, expected)
    assert result["open"] == (end_offset > 0)
    assert result["fits"] == (end_offset > 0 and expected <= end_offset)
