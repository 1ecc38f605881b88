"""The burn-rate math: windows and factors follow the SRE workbook."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from sloexporter.model import (
    WORKBOOK_TIERS,
    burn_factor,
    decimal_str,
    detection_seconds,
    format_duration,
    parse_duration,
    resolve_tiers,
)

DAY = 86400


def workbook_factor(budget_percent: int, period_days: int, long_window_s: int) -> Fraction:
    """Chapter 5: factor = budget consumed x period / long window."""
    return Fraction(budget_percent, 100) * Fraction(period_days * DAY, long_window_s)


@pytest.mark.parametrize("period_days", [7, 28, 30])
def test_factor_table_equals_the_workbook_formula(period_days):
    tiers = resolve_tiers(period_days * DAY)
    assert [t.budget_percent for t in tiers] == [2, 5, 10, 10]
    for tier in tiers:
        exact = workbook_factor(int(tier.budget_percent), period_days, tier.long_window)
        assert abs(Fraction(str(tier.factor)) - exact) <= Fraction(1, 2000)


def test_30d_table_is_the_workbook_table():
    tiers = resolve_tiers(30 * DAY)
    assert [(t.severity, t.long, t.short, decimal_str(t.factor)) for t in tiers] == [
        ("page", "1h", "5m", "14.4"), ("page", "6h", "30m", "6"),
        ("ticket", "1d", "2h", "3"), ("ticket", "3d", "6h", "1")]


def test_28d_factors_are_exact_decimals():
    assert [decimal_str(t.factor) for t in resolve_tiers(28 * DAY)] == [
        "13.44", "5.6", "2.8", "0.933"]


def test_7d_scales_windows_and_keeps_factors_above_one_for_pages():
    tiers = resolve_tiers(7 * DAY)
    assert [t.long for t in tiers] == ["15m", "1h30m", "6h", "18h"]
    assert all(t.factor > 1 for t in tiers if t.severity == "page")
    assert all(t.short_window <= t.long_window for t in tiers)


@pytest.mark.parametrize("days", range(1, 91))
def test_every_period_from_1d_to_90d_resolves(days):
    tiers = resolve_tiers(days * DAY)
    assert len(tiers) == len(WORKBOOK_TIERS)
    assert all(300 <= t.short_window <= t.long_window <= days * DAY for t in tiers)


def test_factor_prints_without_float_noise():
    assert str(burn_factor(Decimal(2), 30 * DAY, 3600)) == "14.4"
    assert repr(float(burn_factor(Decimal(2), 30 * DAY, 3600))) == "14.4"


def test_detection_time_of_a_total_outage_at_999():
    page = resolve_tiers(30 * DAY)[0]
    seconds = detection_seconds(page, Decimal("99.9"), Decimal(1), 30 * DAY)
    assert seconds == Decimal("51.84")  # 0.864 min
    assert detection_seconds(page, Decimal("99"), Decimal(1), 30 * DAY) == Decimal("518.4")


def test_detection_never_below_threshold():
    page = resolve_tiers(30 * DAY)[0]
    assert detection_seconds(page, Decimal("99.9"), Decimal("0.0144"), 30 * DAY) is None


@pytest.mark.parametrize("text,seconds", [("30d", 2592000), ("1h30m", 5400), ("5m", 300),
                                          ("4w", 2419200), ("90s", 90)])
def test_durations_round_trip(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("bad", ["", "30", "d", "1.5h", "-1d", "0m", "1y"])
def test_bad_durations_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)
