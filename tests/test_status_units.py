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
                                  "november", ""])
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


@pytest.mark.parametrize("status", [
    {"calendar": {"timezone": "Mars/Olympus"}},
    {"delivery": [{"schedule": "every day", "slack": {"webhook_url_file": "/x"}}]},
    {"delivery": [{"schedule": "0 9 * * *"}]},
    {"prometheus": {"basic_auth_username_file": "/u"}},
    {"refresh_interval": 0},
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
