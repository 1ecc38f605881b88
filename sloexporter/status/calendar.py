"""Calendar periods (month, ISO week, quarter) in a time zone, as [start, end) Unix times.

PromQL rules cannot express "since the 1st of this month", so the service turns each
period into a range that ends at a time: `avg_over_time(x[<end - start>s])` evaluated at
`end`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Window:
    """A time range: `start` to `end` (Unix seconds) with a label such as `2026-11`."""

    label: str
    start: float
    end: float
    kind: str = "custom"

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 0.0)

    def clipped(self, now: float) -> Window:
        """The part of the window that has happened by `now`."""
        return Window(self.label, self.start, min(self.end, now), self.kind)


def _month_start(year: int, month: int, tz: ZoneInfo) -> datetime:
    return datetime(year, month, 1, tzinfo=tz)


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def month(year: int, month_: int, tz: ZoneInfo) -> Window:
    ny, nm = _add_months(year, month_, 1)
    return Window(f"{year:04d}-{month_:02d}", _month_start(year, month_, tz).timestamp(),
                  _month_start(ny, nm, tz).timestamp(), "month")


def quarter(year: int, q: int, tz: ZoneInfo) -> Window:
    first = 3 * (q - 1) + 1
    ny, nm = _add_months(year, first, 3)
    return Window(f"{year:04d}-Q{q}", _month_start(year, first, tz).timestamp(),
                  _month_start(ny, nm, tz).timestamp(), "quarter")


def week(year: int, w: int, tz: ZoneInfo) -> Window:
    monday = date.fromisocalendar(year, w, 1)
    start = datetime(monday.year, monday.month, monday.day, tzinfo=tz)
    nxt = monday + timedelta(days=7)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)
    return Window(f"{year:04d}-W{w:02d}", start.timestamp(), end.timestamp(), "week")


def containing(kind: str, at: float, tz: ZoneInfo) -> Window:
    """The calendar period of `kind` that contains time `at`."""
    local = datetime.fromtimestamp(at, tz)
    if kind == "month":
        return month(local.year, local.month, tz)
    if kind == "quarter":
        return quarter(local.year, (local.month - 1) // 3 + 1, tz)
    if kind == "week":
        iso = local.isocalendar()
        return week(iso.year, iso.week, tz)
    raise ValueError(f"unknown calendar period {kind!r}")


def previous(window: Window, tz: ZoneInfo) -> Window:
    """The period of the same kind just before `window` (a custom one: same length)."""
    if window.kind == "custom":
        return Window(f"before {window.label}", window.start - window.seconds, window.start)
    return containing(window.kind, window.start - 1, tz)


def history(kind: str, now: float, tz: ZoneInfo, count: int) -> list[Window]:
    """The current period (so far) and `count` completed ones before it, newest first."""
    current = containing(kind, now, tz)
    out = [current.clipped(now)]
    for _ in range(count):
        current = previous(current, tz)
        out.append(current)
    return out


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


def parse_period(text: str, tz: ZoneInfo) -> Window:
    """`2026-11`, `2026-W47` or `2026-Q4` as a Window; ValueError with the accepted forms."""
    text = text.strip()
    if m := _MONTH.match(text):
        y, mo = int(m[1]), int(m[2])
        if 1 <= mo <= 12:
            return month(y, mo, tz)
    if m := _WEEK.match(text):
        try:
            return week(int(m[1]), int(m[2]), tz)
        except ValueError:
            pass
    if m := _QUARTER.match(text):
        return quarter(int(m[1]), int(m[2]), tz)
    raise ValueError(f"period {text!r}: use YYYY-MM (2026-11), YYYY-Www (2026-W47) or "
                     "YYYY-Qn (2026-Q4)")


def parse_time(text: str, tz: ZoneInfo) -> float:
    """An ISO date or date-time; without an offset it is read in `tz`."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"time {text!r}: use an ISO date such as 2026-11-01 or "
                         "2026-11-01T09:00") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.timestamp()
