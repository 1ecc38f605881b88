"""Backups: CronJobs marked as backups with their Jobs, and Velero Backups and Schedules.

Every backup is one `{kind, namespace, name}`: a CronJob, or a Velero Schedule (or an
unscheduled Velero Backup under its own name). CronJob series are rendered under the
CronJob's key and its Jobs' results under the same key, so a shard owns all of them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from sloexporter import names
from sloexporter.sources.base import BadInput, Source, field, meta, object_key, timestamp
from sloexporter.sources.informer import Resource
from sloexporter.sources.store import Family, Obj, Sample

CRONJOBS = Resource("batch", "v1", "cronjobs", "CronJob")
JOBS = Resource("batch", "v1", "jobs", "Job")
VELERO_BACKUPS = Resource("velero.io", "v1", "backups", "Backup")
VELERO_SCHEDULES = Resource("velero.io", "v1", "schedules", "Schedule")
SCHEDULE_LABEL = "velero.io/schedule-name"
VELERO_SUCCESS = {"Completed"}
VELERO_FAILURE = {"Failed", "PartiallyFailed", "FailedValidation",
                  "FinalizingPartiallyFailed", "WaitingForPluginOperationsPartiallyFailed"}
#: gaps to look at: weekday-only schedules have a long weekend gap, which is the interval
CRON_HORIZON = 32
#: at most this many runs to find a seasonal schedule's gap between its months
CRON_YEAR_RUNS = 2000

FAMILIES = (
    Family(names.BACKUP_LAST_SUCCESS, "When the backup last succeeded.", "gauge"),
    Family(names.BACKUP_LAST_ATTEMPT, "When the backup last started.", "gauge"),
    Family(names.BACKUP_EXPECTED_INTERVAL,
           "Longest gap between scheduled runs; absent while suspended.", "gauge"),
    Family(names.BACKUP_LAST_DURATION, "Duration of the last finished run.", "gauge"),
    Family(names.BACKUP_RUNS, "Finished runs observed, by result.", "counter"),
)


def is_backup(cronjob: Obj) -> bool:
    m = meta(cronjob)
    for where in (m.get("labels"), m.get("annotations")):
        if isinstance(where, dict) and str(where.get(names.BACKUP_LABEL, "")).lower() == "true":
            return True
    return False


def expected_interval(schedule: Any, time_zone: Any = None,
                      now: datetime | None = None) -> float:
    """The longest gap between the next scheduled runs, honouring `timeZone`."""
    if not isinstance(schedule, str):
        raise BadInput("invalid_cron")
    moment = (now or datetime.now(UTC)).timestamp()
    # Walking the cron horizon costs ~5 ms; thousands of CronJobs share a few schedules,
    # and the answer only moves with DST, so an hour's bucket is exact enough.
    return _interval(schedule, str(time_zone) if time_zone else "", int(moment // 3600))


# What Kubernetes and Velero accept: robfig/cron's standard parser (cron.ParseStandard).
# Five fields of numbers, names, `*` and `?`, with ranges, lists and steps; a macro; or
# `@every <Go duration>`; optionally after `CRON_TZ=` or `TZ=`. croniter alone would also
# take seconds and years (6 or 7 fields), `L`, `W`, `#` and `H`, which they refuse.
_MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
           "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@hourly": "0 * * * *"}
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_BOUNDS = ((0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS))
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
             "m": 60.0, "h": 3600.0}


def _go_duration(text: str) -> float:
    """Seconds of a Go duration (`1h30m`, `90s`, `1.5h`, `-5m`, `0`); BadInput when it
    is not one."""
    sign = -1.0 if text.startswith("-") else 1.0
    text = text[1:] if text[:1] in ("-", "+") else text
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match[1]) * _GO_UNITS[match[2]]
        pos = match.end()
    if not text or pos != len(text):
        raise BadInput("invalid_cron")
    return sign * total


def _cron_field(text: str, low: int, high: int, names_: dict[str, int]) -> None:
    """One robfig/cron field, or BadInput (`7` as Sunday and `*/0` included)."""
    def number(token: str) -> int:
        if token.isdigit():
            return int(token)
        if token.lower() in names_:
            return names_[token.lower()]
        raise BadInput("invalid_cron")

    for part in text.split(","):
        span, slash, step = part.partition("/")
        if slash and (not step.isdigit() or int(step) == 0):
            raise BadInput("invalid_cron")
        if span in ("*", "?"):
            continue
        first, dash, last = span.partition("-")
        start = number(first)
        end = number(last) if dash else (high if slash else start)
        if not low <= start <= end <= high:
            raise BadInput("invalid_cron")


def _parse_cron(schedule: str) -> tuple[str, float | None, str]:
    """(5-field cron or "", @every seconds or None, time zone of a CRON_TZ= prefix)."""
    text, zone = schedule.strip(), ""
    if text.startswith(("CRON_TZ=", "TZ=")):
        prefix, _, text = text.partition(" ")
        zone, text = prefix.partition("=")[2], text.strip()
    if text.startswith("@every "):
        seconds = _go_duration(text[len("@every "):].strip())
        # robfig runs in whole seconds, at least one apart (`@every -5m` too)
        return "", float(max(1, int(seconds))), zone
    cron = _MACROS.get(text, text)  # robfig: `@daily`, never `@DAILY`
    fields = cron.split()
    if len(fields) != 5:
        raise BadInput("invalid_cron")
    for field_text, (low, high, names_) in zip(fields, _BOUNDS, strict=True):
        _cron_field(field_text, low, high, names_)
    return " ".join(fields), None, zone


@functools.lru_cache(maxsize=4096)
def _interval(schedule: str, time_zone: str, hour: int) -> float:
    cron, every, prefix_zone = _parse_cron(schedule)
    if every is not None:
        return every
    if not croniter.is_valid(cron):
        raise BadInput("invalid_cron")
    tz: Any = UTC
    zone = time_zone or prefix_zone
    if zone:
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadInput("invalid_time_zone") from None
    base = datetime.fromtimestamp(hour * 3600, UTC).astimezone(tz)
    it = croniter(cron, base)
    # a schedule limited to some months (`0 3 * jan-mar *`) has its longest gap between
    # seasons: walk a whole year of runs then, up to a bound on the work
    seasonal = cron.split()[3] not in ("*", "?")
    try:
        times = [it.get_next(datetime) for _ in range(CRON_HORIZON)]
        while seasonal and len(times) < CRON_YEAR_RUNS and \
                (times[-1] - times[0]).total_seconds() < 366 * 86400:
            times.append(it.get_next(datetime))
    except CroniterBadDateError:  # `0 0 31 2 *`: valid, but it never runs
        raise BadInput("invalid_cron") from None
    return max((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))


def flag(spec: Obj, name: str) -> bool:
    """A boolean field; anything but true, false or absent makes the object malformed.

    The API server refuses `suspend: "false"` (a string) on a CronJob; it can only reach
    us through --manifests, where it is skipped and counted like any malformed object
    rather than read as truthy.
    """
    value = spec.get(name)
    if value is None or isinstance(value, bool):
        return bool(value)
    raise BadInput("malformed")


@dataclass
class Run:
    """One finished or running attempt: a Job or a Velero Backup."""

    group: str
    started: float | None
    finished: float | None
    result: str | None  # success, failure, or None while running


def job_run(job: Obj, group: str) -> Run:
    started = timestamp(field(job, "status", "startTime"))
    result, finished = None, None
    for cond in field(job, "status", "conditions") or ():
        if isinstance(cond, dict) and cond.get("status") == "True":
            if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
                result = "success"
                finished = timestamp(field(job, "status", "completionTime")) or \
                    timestamp(cond.get("lastTransitionTime"))
            elif cond.get("type") == "Failed":
                result = "failure"
                finished = timestamp(cond.get("lastTransitionTime"))
    return Run(group, started, finished, result)


def velero_run(backup: Obj, group: str) -> Run:
    phase = field(backup, "status", "phase")
    result = "success" if phase in VELERO_SUCCESS else \
        "failure" if phase in VELERO_FAILURE else None
    return Run(group, timestamp(field(backup, "status", "startTimestamp")),
               timestamp(field(backup, "status", "completionTimestamp")), result)


def _owner(job: Obj) -> str | None:
    for ref in meta(job).get("ownerReferences") or ():
        if isinstance(ref, dict) and ref.get("kind") == "CronJob":
            uid = ref.get("uid")
            ns = meta(job).get("namespace", "")
            return str(uid) if uid else f"CronJob/{ns}/{ref.get('name')}"
    return None


def _velero_group(backup: Obj) -> str:
    m = meta(backup)
    schedule = (m.get("labels") or {}).get(SCHEDULE_LABEL) or m.get("name", "")
    return f"velero/{m.get('namespace', '')}/{schedule}"


class BackupsSource(Source):
    name = "backups"
    families = FAMILIES

    def __init__(self, *args: Any, velero: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.velero = velero
        self._labels: dict[str, dict[str, str]] = {}  # group -> {kind, namespace, name}
        self._cron: dict[str, Obj] = {}  # group -> the CronJob's status fields we need
        self._runs: dict[str, Run] = {}  # Job/Backup key -> run
        #: group -> keys of its runs: an event touches its group's runs, never all runs
        self._group_runs: dict[str, dict[str, None]] = {}  # insertion-ordered, like _runs
        self._counted: set[str] = set()  # runs already counted in runs_total
        self._counts: dict[str, dict[str, int]] = {}

    @property
    def resources(self) -> tuple[Resource, ...]:
        base = (CRONJOBS, JOBS)
        return base + (VELERO_SCHEDULES, VELERO_BACKUPS) if self.velero else base

    def shard_key(self, resource: Resource, obj: Obj) -> str:
        if resource == JOBS:
            return _owner(obj) or self.key_of(obj)
        if resource == VELERO_BACKUPS:
            return _velero_group(obj)
        if resource == VELERO_SCHEDULES:
            return f"velero/{meta(obj).get('namespace', '')}/{meta(obj).get('name', '')}"
        return self.key_of(obj)

    def update(self, resource: Resource, key: str, obj: Obj) -> None:
        m = meta(obj)
        ns, name = str(m.get("namespace", "")), str(m.get("name", ""))
        if resource == CRONJOBS:
            if not is_backup(obj):
                self.remove(resource, key, obj)
                return
            self._labels[key] = {"kind": "cronjob", "namespace": ns, "name": name}
            self._counts.setdefault(key, {"success": 0, "failure": 0})
            spec = obj.get("spec") or {}
            interval = None if flag(spec, "suspend") else \
                expected_interval(spec.get("schedule"), spec.get("timeZone"))
            self._cron[key] = {"interval": interval,
                               "success": timestamp(field(obj, "status", "lastSuccessfulTime")),
                               "attempt": timestamp(field(obj, "status", "lastScheduleTime"))}
            self._render(key)
        elif resource == VELERO_SCHEDULES:
            group = self.shard_key(resource, obj)
            self._labels[group] = {"kind": "velero", "namespace": ns, "name": name}
            self._counts.setdefault(group, {"success": 0, "failure": 0})
            spec = obj.get("spec") or {}
            interval = None if flag(spec, "paused") else expected_interval(spec.get("schedule"))
            self._cron[group] = {"interval": interval, "success": None, "attempt": None}
            self._render(group)
        elif resource == JOBS:
            owner = _owner(obj)
            if owner is None:
                return
            self._record(key, job_run(obj, owner))
        elif resource == VELERO_BACKUPS:
            group = _velero_group(obj)
            sched = (m.get("labels") or {}).get(SCHEDULE_LABEL) or name
            self._labels.setdefault(group, {"kind": "velero", "namespace": ns, "name": sched})
            self._record(key, velero_run(obj, group))

    def _record(self, key: str, run: Run) -> None:
        old = self._runs.get(key)
        if old is not None and old.group != run.group:
            self._forget_run(key, old)
        self._runs[key] = run
        self._group_runs.setdefault(run.group, {})[key] = None
        counts = self._counts.setdefault(run.group, {"success": 0, "failure": 0})
        if run.result and key not in self._counted:
            self._counted.add(key)
            counts[run.result] += 1
        self._render(run.group)

    def remove(self, resource: Resource, key: str, obj: Obj | None) -> None:
        if resource in (JOBS, VELERO_BACKUPS):
            run = self._runs.pop(key, None)
            if run is not None:
                self._forget_run(key, run)
            self._counted.discard(key)
            if run is not None:
                self._render(run.group)  # keep the counter: deleting a Job is not un-running it
            return
        group = key if resource == CRONJOBS else self.shard_key(resource, obj) if obj else key
        self._cron.pop(group, None)
        if resource == CRONJOBS or not self._group_runs.get(group):
            self._labels.pop(group, None)
            self._counts.pop(group, None)
        self._render(group)

    def _forget_run(self, key: str, run: Run) -> None:
        keys = self._group_runs.get(run.group)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._group_runs[run.group]

    def key_of(self, obj: Obj) -> str:
        if obj.get("kind") == "Schedule":
            return f"velero/{meta(obj).get('namespace', '')}/{meta(obj).get('name', '')}"
        return object_key(obj)

    def _render(self, group: str) -> None:
        labels = self._labels.get(group)
        if labels is None:
            self.store.delete(group)
            return
        cron = self._cron.get(group, {})
        runs = [self._runs[k] for k in self._group_runs.get(group, ())]
        successes = [r.finished for r in runs if r.result == "success" and r.finished]
        attempts = [r.started for r in runs if r.started]
        finished = [r for r in runs if r.result and r.finished and r.started]
        rows: dict[str, Iterable[Sample]] = {}

        def put(family: str, *values: float | None) -> None:
            known = [v for v in values if v is not None]
            if known:
                rows[family] = [(labels, max(known))]

        put(names.BACKUP_LAST_SUCCESS, cron.get("success"), *successes)
        put(names.BACKUP_LAST_ATTEMPT, cron.get("attempt"), *attempts)
        put(names.BACKUP_EXPECTED_INTERVAL, cron.get("interval"))
        if finished:
            last = max(finished, key=lambda r: r.finished or 0)
            duration = (last.finished or 0) - (last.started or 0)
            rows[names.BACKUP_LAST_DURATION] = [(labels, duration)]
        counts = self._counts.get(group)
        if counts is not None:
            rows[names.BACKUP_RUNS] = [({**labels, "result": r}, n) for r, n in counts.items()]
        self.store.put(group, rows)
