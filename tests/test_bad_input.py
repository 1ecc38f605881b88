"""Malformed objects in `serve --manifests`: each is skipped and counted; none stops a source.

Defect 2: a Velero Backup with `metadata.labels: "x"` or a Job with `ownerReferences: 5`
stopped `serve` from starting (`shard_key()` ran outside the per-object guard). Defect 3:
the same object added after start killed the reload task silently.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import yaml

from sloexporter import names
from tests.promtext import samples
from tests.test_serve import Server, get, wait_for

GOOD_APP = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "good", "namespace": "argocd", "uid": "g1"},
            "spec": {"project": "default"}, "status": {"sync": {"status": "Synced"}}}
CRON = {"apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "dump", "namespace": "db", "uid": "c1",
                     "labels": {"sloexporter.dev/backup": "true"}},
        "spec": {"schedule": "0 2 * * *"}}

#: wrong types anywhere an object can have them: (kind header, the bad part)
HOSTILE = [
    ("velero.io/v1", "Backup", {"metadata": {"name": "b1", "namespace": "v", "labels": "x"}}),
    ("batch/v1", "Job", {"metadata": {"name": "j1", "namespace": "db", "ownerReferences": 5}}),
    ("batch/v1", "Job", {"metadata": {"name": "j2", "namespace": "db",
                                      "ownerReferences": [{"kind": "CronJob", "uid": [1]}]}}),
    ("batch/v1", "CronJob", {"metadata": {"name": "c2", "namespace": "db", "labels": {
        "sloexporter.dev/backup": "true"}}, "spec": "x"}),
    ("batch/v1", "CronJob", {"metadata": {"name": "c3", "namespace": "db", "labels": {
        "sloexporter.dev/backup": "true"}}, "spec": {"schedule": 5}}),
    ("velero.io/v1", "Schedule", {"metadata": {"name": "s1", "namespace": "v"},
                                  "spec": {"schedule": ["0 2 * * *"]}}),
    ("argoproj.io/v1alpha1", "Application", {"metadata": "str"}),
    ("argoproj.io/v1alpha1", "Application", {"metadata": {"name": "h", "namespace": "a"},
                                             "status": {"history": 5}}),
    ("argoproj.io/v1alpha1", "Application", {"metadata": {"name": ["x"], "namespace": {}},
                                             "spec": 3}),
    ("cert-manager.io/v1", "Certificate", {"metadata": {"name": "c", "namespace": "x"},
                                           "spec": {"dnsNames": 7}, "status": 5}),
    ("v1", "Secret", {"metadata": {"name": "s", "namespace": "x"}, "type": "kubernetes.io/tls",
                      "data": "x"}),
]


def hostile_objects() -> list[dict]:
    return [{"apiVersion": api, "kind": kind, **part} for api, kind, part in HOSTILE]


def skipped_total(text: str) -> float:
    return sum(v for (name, _), v in samples(text).items() if name == names.SKIPPED_OBJECTS)


def test_hostile_objects_at_start_and_after_are_skipped_and_counted(tmp_path: Path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "good.yaml").write_text(yaml.safe_dump_all([GOOD_APP, CRON]))
    (folder / "bad.json").write_text(json.dumps({"kind": "List", "items": hostile_objects()}))
    server = Server("--manifests", str(folder))
    try:
        wait_for(lambda: get(server.url + "/readyz")[0] == 200, what="/readyz")
        text = server.metrics()
        assert 'name="good"' in text and 'name="dump"' in text
        assert skipped_total(text) >= len(HOSTILE) - 1  # the metadata: "str" one may be
        # dropped before a source sees it; every other one is counted
        # defect 3: bad objects added after start do not kill the reload; a later good
        # change is still picked up
        (folder / "more.json").write_text(json.dumps(hostile_objects()))
        before = skipped_total(text)
        wait_for(lambda: skipped_total(server.metrics()) > before, what="the second load")
        later = dict(GOOD_APP, metadata={**GOOD_APP["metadata"], "name": "later", "uid": "g2"})
        (folder / "later.yaml").write_text(yaml.safe_dump(later))
        wait_for(lambda: 'name="later"' in server.metrics(), what="a later change")
        assert server.proc.poll() is None
    finally:
        server.stop()


def test_a_manifest_file_absent_huge_not_utf8_or_with_a_key_twice_is_one_reason(tmp_path: Path):
    """Each bad file is one Rejected with its skip-counter reason, never a crash."""
    import pytest

    from sloexporter.sources.manifests import MAX_FILE_BYTES, Rejected, parse_file, read_objects

    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as fh:  # sparse: over the limit without writing 64 MiB
        fh.truncate(MAX_FILE_BYTES + 1)
    (tmp_path / "latin1.yaml").write_bytes(b"kind: ConfigMap\nname: caf\xe9\n")
    (tmp_path / "twice.yaml").write_text("kind: ConfigMap\nkind: Secret\n")
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List", "items": [GOOD_APP, CRON]}))
    cases = {"huge.yaml": "too_large", "latin1.yaml": "unreadable",
             "twice.yaml": "unparsable_yaml", "absent.yaml": "unreadable"}
    for name, reason in cases.items():
        with pytest.raises(Rejected) as info:
            parse_file(tmp_path / name, datetime.now(UTC))
        assert info.value.reason == reason, (name, info.value)
    objects, bad = read_objects(tmp_path)
    assert [o["metadata"]["name"] for o in objects] == ["good", "dump"] and bad == 3


def test_a_configmap_volume_is_read_once_and_hidden_files_not_at_all(tmp_path: Path):
    """A ConfigMap mount holds every file twice: `apps.yaml`, a symlink through `..data`,
    and the real file in a timestamped `..2026_...` folder, where an old version lingers
    during an update. Only the visible files count, so no object arrives twice or stale."""
    from sloexporter.sources.manifests import read_objects

    def version(folder: Path, sync: str) -> None:
        folder.mkdir()
        (folder / "apps.yaml").write_text(yaml.safe_dump(
            {**GOOD_APP, "status": {"sync": {"status": sync}}}))

    mount = tmp_path / "mount"
    mount.mkdir()
    version(mount / "..2026_12_01_03_00_00.1", "Synced")  # the old one, still there
    version(mount / "..2026_12_02_03_00_00.2", "OutOfSync")
    (mount / "..data").symlink_to("..2026_12_02_03_00_00.2")
    (mount / "apps.yaml").symlink_to("..data/apps.yaml")
    (mount / ".apps.yaml").write_text(yaml.safe_dump(CRON))  # an editor's or a tool's copy
    (mount / "team").mkdir()
    (mount / "team" / "cron.yml").write_text(yaml.safe_dump(CRON))
    objects, bad = read_objects(mount)
    assert bad == 0
    assert [(o["kind"], o.get("status")) for o in objects] == [
        ("Application", {"sync": {"status": "OutOfSync"}}), ("CronJob", None)]


def test_two_manifest_objects_with_one_uid_keep_the_first_and_count_the_second(tmp_path: Path):
    """A manifest copied from another and renamed keeps its `uid`. The API server never
    gives two objects one UID; here the second replaced the first's series, silently."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    copy = {**GOOD_APP, "metadata": {**GOOD_APP["metadata"], "name": "copy"}}  # uid g1 too
    again = dict(GOOD_APP)  # the same object a second time: harmless
    (folder / "a.yaml").write_text(yaml.safe_dump_all([GOOD_APP, again, copy]))
    server = Server("--manifests", str(folder))
    try:
        wait_for(lambda: get(server.url + "/readyz")[0] == 200, what="/readyz")
        text = server.metrics()
        info = [dict(labels)["name"] for (name, labels) in samples(text)
                if name == names.ARGOCD_APP_INFO]
        assert info == ["good"]
        assert samples(text)[(names.SKIPPED_OBJECTS, frozenset(
            {"source": "argocd", "reason": "duplicate_uid"}.items()))] == 1
    finally:
        server.stop()


def test_entries_that_are_not_objects_are_counted_not_dropped_silently(tmp_path: Path):
    """A document that is a string or a list, a List whose items are no list or hold a
    number: each is one malformed entry, counted once per load and logged; an empty
    document (a trailing ---) is nothing."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "odd.yaml").write_text(
        "just a string\n---\n- a\n- list\n---\n---\n"
        + yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": "nope"}) + "---\n"
        + yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [GOOD_APP, 7, None]}))
    server = Server("--manifests", str(folder))
    try:
        wait_for(lambda: get(server.url + "/readyz")[0] == 200, what="/readyz")
        text = server.metrics()
        assert 'name="good"' in text
        assert samples(text)[(names.SKIPPED_OBJECTS, frozenset(
            {"source": "manifests", "reason": "malformed"}.items()))] == 4
    finally:
        server.stop()
