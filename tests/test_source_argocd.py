"""ArgoCD Applications: what each object exports, and sync operations counted once."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

from sloexporter import names
from sloexporter.sources.argocd import APPLICATIONS, ArgoCDSource
from tests.promtext import samples, value
from tests.sources_util import feed, metrics, text

APP = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
    "metadata": {"name": "shop", "namespace": "argocd", "uid": "u1"},
    "spec": {"project": "prod", "source": {"repoURL": "https://git/x.git"},
             "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"}},
    "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"},
               "history": [{"deployedAt": "2026-11-22T10:00:00Z"}]},
}
IDENT = {"namespace": "argocd", "name": "shop", "project": "prod"}


def with_op(app, phase, started, revision="r1"):
    app = copy.deepcopy(app)
    app["status"]["operationState"] = {"phase": phase, "startedAt": started,
                                       "finishedAt": started, "syncResult": {"revision": revision}}
    return app


def ops(source, phase):
    return value(text(source), names.ARGOCD_APP_SYNC_OPERATIONS, **IDENT, phase=phase)


def test_synced_healthy_app():
    src = ArgoCDSource(metrics())
    feed(src, APPLICATIONS, APP)
    out = text(src)
    assert value(out, names.ARGOCD_APP_SYNCED, **IDENT) == 1
    assert value(out, names.ARGOCD_APP_HEALTHY, **IDENT) == 1
    deployed = datetime(2026, 11, 22, 10, tzinfo=UTC).timestamp()
    assert value(out, names.ARGOCD_APP_LAST_SYNCED, **IDENT) == deployed
    assert value(out, names.ARGOCD_APP_INFO, **IDENT, dest_server="https://kubernetes.default.svc",
                 dest_namespace="shop", sync_status="Synced", health_status="Healthy",
                 repo="https://git/x.git") == 1


def test_out_of_sync_and_degraded():
    app = copy.deepcopy(APP)
    app["status"].update(sync={"status": "OutOfSync"}, health={"status": "Degraded"})
    src = ArgoCDSource(metrics())
    feed(src, APPLICATIONS, app)
    assert value(text(src), names.ARGOCD_APP_SYNCED, **IDENT) == 0
    assert value(text(src), names.ARGOCD_APP_HEALTHY, **IDENT) == 0


def test_missing_status_means_absent_series_not_zero():
    app = copy.deepcopy(APP)
    del app["status"]
    app["spec"].pop("project")
    src = ArgoCDSource(metrics())
    feed(src, APPLICATIONS, app)
    out = text(src)
    ident = {**IDENT, "project": "default"}
    assert value(out, names.ARGOCD_APP_SYNCED, **ident) is None
    assert value(out, names.ARGOCD_APP_HEALTHY, **ident) is None
    assert value(out, names.ARGOCD_APP_LAST_SYNCED, **ident) is None
    info = [k for k in samples(out) if k[0] == names.ARGOCD_APP_INFO]
    assert dict(info[0][1])["sync_status"] == "Unknown"


def test_each_completed_operation_counts_once():
    src = ArgoCDSource(metrics())
    feed(src, APPLICATIONS, APP)
    assert ops(src, "Succeeded") == 0 and ops(src, "Failed") == 0 and ops(src, "Error") == 0
    running = with_op(APP, "Running", "2026-11-22T11:00:00Z")
    feed(src, APPLICATIONS, running, event="MODIFIED")
    assert ops(src, "Succeeded") == 0
    done = with_op(APP, "Succeeded", "2026-11-22T11:00:00Z")
    feed(src, APPLICATIONS, done, done, event="MODIFIED")  # a repeated event
    assert ops(src, "Succeeded") == 1
    feed(src, APPLICATIONS, done)  # a re-list replays it as ADDED
    assert ops(src, "Succeeded") == 1
    failed = with_op(APP, "Failed", "2026-11-22T12:00:00Z", "r2")
    feed(src, APPLICATIONS, failed, event="MODIFIED")
    assert ops(src, "Failed") == 1 and ops(src, "Succeeded") == 1


def test_operation_complete_at_first_sight_is_the_baseline():
    src = ArgoCDSource(metrics())
    feed(src, APPLICATIONS, with_op(APP, "Succeeded", "2026-11-22T09:00:00Z"))
    assert ops(src, "Succeeded") == 0


def test_deleted_app_disappears_and_prune_removes_unlisted():
    src = ArgoCDSource(metrics())
    other = copy.deepcopy(APP)
    other["metadata"].update(name="other", uid="u2")
    feed(src, APPLICATIONS, APP, other)
    feed(src, APPLICATIONS, other, event="DELETED")
    assert "other" not in text(src)
    src.prune(APPLICATIONS, "", set())
    assert text(src) == ""


def test_hostile_label_values_are_escaped_and_capped():
    app = copy.deepcopy(APP)
    app["metadata"]["name"] = 'evil"} 1\nfake_metric 2 '
    app["spec"]["project"] = 'evil"} 1\nfake_metric 2 ' + "x" * 5000
    src = ArgoCDSource(metrics())
    feed(src, APPLICATIONS, app)
    out = text(src)
    parsed = samples(out)  # parses: no injected series
    assert parsed and not any(name.startswith("fake_metric") for name, _ in parsed)
    assert max(len(line) for line in out.splitlines()) < 1500


def test_names_longer_than_kubernetes_allows_are_skipped_not_cut_into_one_series():
    """From --manifests, two 2,000-character names that differ only at the end would be
    cut to one label value (two series with one label set): the API server never stores
    a name over 253 characters, or a namespace over 63, so such objects are malformed."""
    src = ArgoCDSource(metrics())
    for i, (name, ns) in enumerate([("a" * 2000 + "1", "argocd"), ("a" * 2000 + "2", "argocd"),
                                    ("ok", "n" * 64), ("b" * 253, "n" * 63)]):
        app = copy.deepcopy(APP)
        app["metadata"].update(name=name, namespace=ns, uid=f"u{i}")
        feed(src, APPLICATIONS, app)
    assert src.metrics.skipped == {("argocd", "malformed"): 3}
    names_ = {dict(labels)["name"] for _, labels in samples(text(src))}
    assert names_ == {"b" * 253}


def test_odd_status_fields_never_crash_and_export_no_guess():
    src = ArgoCDSource(metrics())
    feed(src, APPLICATIONS, {"kind": "Application", "metadata": {"name": "x"},
                             "status": "not-a-mapping", "spec": ["odd"]},
         {"kind": "Application", "metadata": {"name": "y", "namespace": "a"},
          "status": {"sync": {"status": 7}, "history": [None, {"deployedAt": "yesterday"}],
                     "operationState": {"phase": "Succeeded"}}})
    out = samples(text(src))
    # x's status and spec are not mappings: a malformed object, skipped and counted
    assert {dict(lbls)["name"] for n, lbls in out if n == names.ARGOCD_APP_INFO} == {"y"}
    assert src.metrics.skipped == {("argocd", "malformed"): 1}
    assert not [k for k in out if k[0] in (names.ARGOCD_APP_SYNCED,
                                           names.ARGOCD_APP_LAST_SYNCED)]
