"""Backups: CronJobs with their Jobs, Velero Schedules with their Backups."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from sloexporter import names
from sloexporter.sources.backups import (
    CRONJOBS,
    JOBS,
    VELERO_BACKUPS,
    VELERO_SCHEDULES,
    BackupsSource,
    expected_interval,
)
from tests.promtext import samples, value
from tests.sources_util import feed, metrics, text

PG = {"kind": "cronjob", "namespace": "db", "name": "pg-dumpall"}
CRON = {
    "apiVersion": "batch/v1", "kind": "CronJob",
    "metadata": {"name": "pg-dumpall", "namespace": "db", "uid": "c1",
                 "labels": {"sloexporter.dev/backup": "true"}},
    "spec": {"schedule": "0 2 * * *"},
    "status": {"lastScheduleTime": "2026-11-22T02:00:00Z",
               "lastSuccessfulTime": "2026-11-22T02:03:00Z"},
}


def ts(text_: str) -> float:
    return datetime.fromisoformat(text_.replace("Z", "+00:00")).timestamp()


def job(name, uid, started, finished=None, result="Complete", owner_uid="c1"):
    conds = [{"type": result, "status": "True", "lastTransitionTime": finished}] \
        if finished else []
    status = {"startTime": started, "conditions": conds}
    if finished and result == "Complete":
        status["completionTime"] = finished
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "db", "uid": uid, "ownerReferences": [
                {"kind": "CronJob", "name": "pg-dumpall", "uid": owner_uid}]},
            "status": status}


def test_cronjob_backup_series():
    src = BackupsSource(metrics())
    feed(src, CRONJOBS, CRON)
    out = text(src)
    assert value(out, names.BACKUP_LAST_SUCCESS, **PG) == ts("2026-11-22T02:03:00Z")
    assert value(out, names.BACKUP_LAST_ATTEMPT, **PG) == ts("2026-11-22T02:00:00Z")
    assert value(out, names.BACKUP_EXPECTED_INTERVAL, **PG) == 86400
    assert value(out, names.BACKUP_RUNS, **PG, result="success") == 0


def test_jobs_give_duration_and_results_counted_once():
    src = BackupsSource(metrics())
    ok = job("pg-1", "j1", "2026-11-23T02:00:00Z", "2026-11-23T02:04:30Z")
    bad = job("pg-0", "j0", "2026-11-21T02:00:00Z", "2026-11-21T02:10:00Z", "Failed")
    feed(src, JOBS, ok, bad)  # Jobs may arrive before their CronJob
    feed(src, CRONJOBS, CRON)
    feed(src, JOBS, ok, event="MODIFIED")  # a repeated event
    out = text(src)
    assert value(out, names.BACKUP_LAST_DURATION, **PG) == 270
    assert value(out, names.BACKUP_RUNS, **PG, result="success") == 1
    assert value(out, names.BACKUP_RUNS, **PG, result="failure") == 1
    assert value(out, names.BACKUP_LAST_SUCCESS, **PG) == ts("2026-11-23T02:04:30Z")
    assert value(out, names.BACKUP_LAST_ATTEMPT, **PG) == ts("2026-11-23T02:00:00Z")
    feed(src, JOBS, ok, event="DELETED")  # history limits delete Jobs; runs stay counted
    assert value(text(src), names.BACKUP_RUNS, **PG, result="success") == 1


def test_unmarked_cronjobs_are_not_backups_but_annotations_count():
    src = BackupsSource(metrics())
    plain = copy.deepcopy(CRON)
    plain["metadata"].update(labels={}, name="cache", uid="c2")
    annotated = copy.deepcopy(CRON)
    annotated["metadata"].update(labels={}, annotations={"sloexporter.dev/backup": "true"},
                                 name="minio", uid="c3")
    feed(src, CRONJOBS, plain, annotated)
    names_seen = {dict(lbls)["name"] for _, lbls in samples(text(src))}
    assert names_seen == {"minio"}


def test_suspended_cronjob_has_no_expected_interval():
    src = BackupsSource(metrics())
    suspended = copy.deepcopy(CRON)
    suspended["spec"]["suspend"] = True
    feed(src, CRONJOBS, suspended)
    assert value(text(src), names.BACKUP_EXPECTED_INTERVAL, **PG) is None
    assert value(text(src), names.BACKUP_LAST_SUCCESS, **PG) is not None


def test_never_succeeded_has_no_last_success():
    src = BackupsSource(metrics())
    fresh = copy.deepcopy(CRON)
    fresh["status"] = {}
    feed(src, CRONJOBS, fresh)
    assert value(text(src), names.BACKUP_LAST_SUCCESS, **PG) is None
    assert value(text(src), names.BACKUP_EXPECTED_INTERVAL, **PG) == 86400


@pytest.mark.parametrize("schedule,tz,expected", [
    ("0 2 * * *", None, 86400),
    ("*/15 * * * *", None, 900),
    ("@hourly", None, 3600),
    ("0 3 * * 1-5", None, 3 * 86400),  # Friday to Monday
    ("30 1 * * *", "Europe/Berlin", 86400),
])
def test_expected_interval_from_cron(schedule, tz, expected):
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert expected_interval(schedule, tz, now) == expected


def test_time_zone_with_dst_change_is_honoured():
    # 02:30 daily in Berlin across the spring change: one gap is 23 hours, none longer than 24
    now = datetime(2026, 3, 20, tzinfo=UTC)
    assert expected_interval("30 3 * * *", "Europe/Berlin", now) == 86400


def test_invalid_cron_is_skipped_and_counted():
    m = metrics()
    src = BackupsSource(m)
    broken = copy.deepcopy(CRON)
    broken["spec"]["schedule"] = "every night"
    feed(src, CRONJOBS, broken)
    assert m.skipped == {("backups", "invalid_cron"): 1}
    assert text(src) == ""
    bad_tz = copy.deepcopy(CRON)
    bad_tz["spec"]["timeZone"] = "Mars/Olympus"
    feed(src, CRONJOBS, bad_tz)
    assert m.skipped[("backups", "invalid_time_zone")] == 1


def test_velero_schedule_and_backups():
    src = BackupsSource(metrics())
    sched = {"apiVersion": "velero.io/v1", "kind": "Schedule",
             "metadata": {"name": "daily", "namespace": "velero", "uid": "s1"},
             "spec": {"schedule": "0 1 * * *"}}

    def backup(name, uid, phase, start, end):
        return {"apiVersion": "velero.io/v1", "kind": "Backup",
                "metadata": {"name": name, "namespace": "velero", "uid": uid,
                             "labels": {"velero.io/schedule-name": "daily"}},
                "status": {"phase": phase, "startTimestamp": start, "completionTimestamp": end}}

    feed(src, VELERO_SCHEDULES, sched)
    feed(src, VELERO_BACKUPS,
         backup("daily-2", "b2", "Completed", "2026-11-22T01:00:00Z", "2026-11-22T01:10:00Z"),
         backup("daily-1", "b1", "PartiallyFailed", "2026-11-21T01:00:00Z",
                "2026-11-21T01:20:00Z"),
         backup("daily-3", "b3", "InProgress", "2026-11-23T01:00:00Z", None))
    out = text(src)
    v = {"kind": "velero", "namespace": "velero", "name": "daily"}
    assert value(out, names.BACKUP_EXPECTED_INTERVAL, **v) == 86400
    assert value(out, names.BACKUP_LAST_SUCCESS, **v) == ts("2026-11-22T01:10:00Z")
    assert value(out, names.BACKUP_LAST_ATTEMPT, **v) == ts("2026-11-23T01:00:00Z")
    assert value(out, names.BACKUP_LAST_DURATION, **v) == 600
    assert value(out, names.BACKUP_RUNS, **v, result="success") == 1
    assert value(out, names.BACKUP_RUNS, **v, result="failure") == 1
    paused = copy.deepcopy(sched)
    paused["spec"]["paused"] = True
    feed(src, VELERO_SCHEDULES, paused, event="MODIFIED")
    assert value(text(src), names.BACKUP_EXPECTED_INTERVAL, **v) is None


@pytest.mark.parametrize("spec, reason", [
    ({"schedule": "0 2 * * *", "suspend": "false"}, "malformed"),
    ({"schedule": "0 0 2 * * * 2026"}, "invalid_cron"),  # 7 fields: seconds and years
    ({"schedule": "*/5 0 2 * * *"}, "invalid_cron"),  # 6 fields
])
def test_a_string_suspend_or_a_cron_with_seconds_is_bad_input(spec, reason):
    src = BackupsSource(metrics())
    bad = copy.deepcopy(CRON)
    bad["spec"] = spec
    feed(src, CRONJOBS, bad)
    assert src.metrics.skipped == {("backups", reason): 1}
    assert not samples(text(src))


def test_cron_macros_are_accepted():
    assert expected_interval("@daily") == 86400
    assert expected_interval("@hourly") == 3600


#: schedules Kubernetes and Velero run (robfig/cron's standard parser), with the interval
ROBFIG_OK = [
    ("@every 6h", 21600), ("@every 1h30m", 5400), ("@every 1.5h", 5400), ("@every 90s", 90),
    ("@every 500ms", 1), ("@every -5m", 1), ("@every 0", 1),  # robfig: once a second at most
    ("@midnight", 86400), ("@annually", 366 * 86400),
    ("CRON_TZ=Europe/Berlin 30 3 * * *", 86400), ("TZ=UTC 0 4 * * *", 86400),
    ("0 3 ? * *", 86400), ("0 3 * * MON-FRI", 3 * 86400), ("0 3 * * sun", 7 * 86400),
    ("5/15 * * * *", 900), ("0,30 */2 1-15 * *", 5400), ("  0 4 * * *  ", 86400),
    # a schedule limited to some months waits between seasons, not between days
    ("0 3 * jan-mar *", 276 * 86400), ("0 3 1 */3 *", 92 * 86400),
]
#: schedules they refuse (or that never run), which croniter alone would take
ROBFIG_BAD = ["0 0 2 * * * 2026", "*/5 0 2 * * *", "0 3 L * *", "0 3 1W * *", "0 3 * * 1#2",
              "0 3 * * 1L", "H 3 * * *", "0 0 * * 7", "0 0 * * 8", "60 * * * *",
              "*/0 * * * *", "0 3 5-1 * *", "0 3 1-31/0 * *", "@every", "@every 5",
              "@every 5x", "@reboot", "@DAILY", "", "   ", "0 0 31 2 *", "0 0 30 2 *"]


@pytest.mark.parametrize("schedule,expected", ROBFIG_OK)
def test_schedules_kubernetes_and_velero_run_give_their_interval(schedule, expected):
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    assert expected_interval(schedule, None, now) == expected


@pytest.mark.parametrize("schedule", ROBFIG_BAD)
def test_schedules_kubernetes_refuses_or_that_never_run_are_invalid_cron(schedule):
    src = BackupsSource(metrics())
    bad = copy.deepcopy(CRON)
    bad["spec"]["schedule"] = schedule
    feed(src, CRONJOBS, bad)
    assert src.metrics.skipped == {("backups", "invalid_cron"): 1}
    assert not samples(text(src))


def test_a_cron_tz_prefix_gives_way_to_the_time_zone_field_and_a_bad_one_is_named():
    src = BackupsSource(metrics())
    bad = copy.deepcopy(CRON)
    bad["spec"]["schedule"] = "CRON_TZ=Mars/Olympus 0 3 * * *"
    feed(src, CRONJOBS, bad)
    assert src.metrics.skipped == {("backups", "invalid_time_zone"): 1}
    now = datetime(2026, 3, 20, tzinfo=UTC)
    assert expected_interval("CRON_TZ=Mars/Olympus 0 3 * * *", "Europe/Berlin", now) == 86400
