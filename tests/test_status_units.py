"""Calendar periods, schedules, status buckets and charts: pure functions, no Prometheus."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from sloexporter.status import calendar
from sloexporter.status.charts import line_chart
from sloexporter.status.compute import status_of
from sloexporter.status.config import StatusConfig
from sloexporter.status.delivery import completed_period, next_run
from sloexporter.status.service import downsample

BERLIN = ZoneInfo("Europe/Berlin")


def ts(text: str, tz: ZoneInfo = BERLIN) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()


def test_month_quarter_and_week_in_a_time_zone():
    at = ts("2026-12-01T00:30")  # Berlin; still November in UTC
    month = calendar.containing("month", at, BERLIN)
    assert month.label == "2026-12" and month.start == ts("2026-12-01T00:00")
    assert calendar.containing("month", at, ZoneInfo("UTC")).label == "2026-11"
    q = calendar.containing("quarter", at, BERLIN)
    assert q.label == "2026-Q4" and q.end == ts("2027-01-01T00:00")
    week = calendar.containing("week", ts("2026-11-29T23:00"), BERLIN)  # a Sunday
    assert week.label == "2026-W48" and week.start == ts("2026-11-23T00:00")
    # a month with a DST change is 1 hour shorter or longer than its days
    march = calendar.parse_period("2026-03", BERLIN)
    assert march.seconds == 31 * 86400 - 3600


def test_leap_year_and_year_boundaries():
    utc = ZoneInfo("UTC")
    assert calendar.parse_period("2028-02", utc).seconds == 29 * 86400
    assert calendar.parse_period("2027-02", utc).seconds == 28 * 86400
    assert calendar.parse_period("2028-Q1", utc).seconds == (31 + 29 + 31) * 86400
    # 2026 has an ISO week 53 that ends in January 2027
    w53 = calendar.parse_period("2026-W53", utc)
    assert w53.end == ts("2027-01-04T00:00", utc) and w53.seconds == 7 * 86400
    assert calendar.containing("week", ts("2027-01-03T12:00", utc), utc).label == "2026-W53"
    # the last second of a month belongs to it, the next one to the next month
    end = calendar.parse_period("2028-02", utc).end
    assert calendar.containing("month", end - 1, utc).label == "2028-02"
    assert calendar.containing("month", end, utc).label == "2028-03"
    # a week with the autumn DST change is an hour longer
    assert calendar.parse_period("2026-W43", BERLIN).seconds == 7 * 86400 + 3600


def test_previous_and_history():
    tz = ZoneInfo("UTC")
    jan = calendar.parse_period("2027-01", tz)
    assert calendar.previous(jan, tz).label == "2026-12"
    assert calendar.previous(calendar.parse_period("2027-Q1", tz), tz).label == "2026-Q4"
    assert calendar.previous(calendar.parse_period("2027-W01", tz), tz).label == "2026-W53"
    now = ts("2026-12-15T12:00", tz)
    hist = calendar.history("month", now, tz, 2)
    assert [w.label for w in hist] == ["2026-12", "2026-11", "2026-10"]
    assert hist[0].end == now


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "26-11", "2026-W54", "2026-Q5",
                                  "2027-W53", "2026-W00", "november", ""])
def test_bad_periods_are_refused(text):
    with pytest.raises(ValueError, match="YYYY-MM"):
        calendar.parse_period(text, BERLIN)


def test_status_thresholds():
    assert status_of({"error_budget_remaining": None}, {}, 0.25) == "NO_DATA"
    assert status_of({"error_budget_remaining": 0.0}, {}, 0.25) == "BREACHED"
    assert status_of({"error_budget_remaining": -0.5}, {}, 0.25) == "BREACHED"
    assert status_of({"error_budget_remaining": 0.2}, {}, 0.25) == "WARNING"
    assert status_of({"error_budget_remaining": 0.9}, {"page": "firing"}, 0.25) == "WARNING"
    assert status_of({"error_budget_remaining": 0.9}, {"page": "pending"}, 0.25) == "OK"


def test_delivery_schedule_and_period():
    cfg = StatusConfig.model_validate({"delivery": [{
        "schedule": "0 9 1 * *", "timezone": "Europe/Berlin", "period": "month",
        "slack": {"webhook_url_file": "/x"}}]})
    target = cfg.delivery[0]
    due = next_run(target, ts("2026-11-20T10:00"))
    assert due == ts("2026-12-01T09:00")
    last, before = completed_period(target, due)
    assert (last.label, before.label) == ("2026-11", "2026-10")


def test_a_schedule_that_fires_twice_for_one_period_names_the_same_period():
    """At 02:30 on the autumn DST night Berlin has two 02:30s: both runs are for the
    same completed month, which the scheduler then delivers once (test_status.py)."""
    cfg = StatusConfig.model_validate({"delivery": [{
        "schedule": "30 2 * * *", "timezone": "Europe/Berlin", "period": "month",
        "slack": {"webhook_url_file": "/x"}}]})
    target = cfg.delivery[0]
    first = next_run(target, ts("2026-10-24T12:00"))
    second = next_run(target, first)
    assert second - first == 3600
    assert completed_period(target, first)[0].label == completed_period(target, second)[0].label


@pytest.mark.parametrize("status", [
    {"delivery": [{"schedule": "0 9 1 * *", "slack": {"webhook_url_file": "/x"}},
                  {"schedule": "0 9 1 * *", "slack": {"webhook_url_file": "/x"}}]},
    {"calendar": {"timezone": "Mars/Olympus"}},
    {"delivery": [{"schedule": "every day", "slack": {"webhook_url_file": "/x"}}]},
    {"delivery": [{"schedule": "0 9 * * *"}]},
    {"prometheus": {"basic_auth_username_file": "/u"}},
    {"refresh_interval": 0},
    {"refresh_interval": 300, "stale_after": 200},
    *({"delivery": [{"schedule": "0 9 1 * *", "email": {
        "host": "smtp.example", "from": sender, "to": to}}]}
      for sender, to in (("slo@example.com", ["sre@example.com\nBcc: x@evil.example"]),
                         ("slo@example.com\r\nBcc: x@evil.example", ["sre@example.com"]),
                         ("slo@example.com", ["not-an-address"]),
                         ("slo@example.com", ["a@example.com, b@example.com"]),
                         ("slo@example.com", []))),
    {"refresh_interval": 60, "stale_after": 60},
])
def test_bad_status_config_is_refused(status):
    with pytest.raises(ValidationError):
        StatusConfig.model_validate(status)


def test_downsample_keeps_ends_and_limit():
    points = [(float(t), float(t)) for t in range(1000)]
    out = downsample(points, 200)
    assert len(out) == 200 and out[0] == [0.0, 0.0] and out[-1] == [999.0, 999.0]
    assert downsample(points[:5], 200) == [[float(t), float(t)] for t in range(5)]


def test_chart_escapes_and_says_no_data():
    svg = line_chart([], "<b>x</b>")
    assert "no data" in svg and "<b>" not in svg and "&lt;b&gt;" in svg
    drawn = line_chart([[0, 0.5], [60, 0.7], [120, float("nan")]], "SLI")
    assert drawn.count("<polyline") == 1


def test_a_slow_refresh_keeps_a_default_staleness_longer_than_it():
    assert StatusConfig.model_validate({}).stale_after == 180
    assert StatusConfig.model_validate({"refresh_interval": 30}).stale_after == 180
    assert StatusConfig.model_validate({"refresh_interval": 600}).stale_after == 1800
    assert StatusConfig.model_validate({"refresh_interval": 600,
                                        "stale_after": 900}).stale_after == 900
