"""Backups: CronJobs marked as backups with their Jobs, and Velero Backups and Schedules.

Every backup is one `{kind, namespace, name}`: a CronJob, or a Velero Schedule (or an
unscheduled Velero Backup under its own name). CronJob series are rendered under the
CronJob's key and its Jobs' results under the same key, so a shard owns all of them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

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


@functools.lru_cache(maxsize=4096)
def _interval(schedule: str, time_zone: str, hour: int) -> float:
    # Kubernetes takes the standard 5 fields or a macro (@daily); croniter would also take
    # seconds and years (6 or 7 fields), which the API server refuses
    fields = schedule.split()
    if not fields or (len(fields) != 5 and not (len(fields) == 1 and fields[0][0] == "@")) \
            or not croniter.is_valid(schedule):
        raise BadInput("invalid_cron")
    tz: Any = UTC
    if time_zone:
        try:
            tz = ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise BadInput("invalid_time_zone") from None
    base = datetime.fromtimestamp(hour * 3600, UTC).astimezone(tz)
    it = croniter(schedule, base)
    times = [it.get_next(datetime) for _ in range(CRON_HORIZON)]
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
