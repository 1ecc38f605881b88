"""The exporter against a real kube-apiserver and etcd (tests/kube_real.py).

The session's apiserver takes the writes; faults (stop, restart, SIGSTOP, a 410 after
`etcdctl compact`) are done to a second apiserver on the same etcd with
`--watch-cache=false`, which the exporter watches. Each test works in its own namespace
and compares the exporter with the API state: a fresh LIST rendered by a new source.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import yaml

from sloexporter import names
from sloexporter.config import Config
from sloexporter.server import Exporter
from sloexporter.sources.argocd import APPLICATIONS
from sloexporter.sources.store import Shard
from tests.kube_real import NAMESPACE, TEAM_NS, APIServer, KubeCluster, api_state
from tests.promtext import samples
from tests.test_serve_hostile import Serve, _flood, wait_for

pytest_plugins = ["tests.kube_real"]

WAIT = 60.0  # generous: a loaded 2-core CI machine
#: the frozen-server bound these tests hold the exporter to (heartbeat 2 s + timeout 2 s,
#: plus 6 s of slack for a loaded machine); with the defaults it is 10 s + 5 s
FAST_WATCH = {"heartbeat_seconds": 2, "heartbeat_timeout": 2, "backoff_max": 1,
              "connect_timeout": 3, "list_timeout": 10}
ONLY = {"argocd": ("backups", "certificates", "services"),
        "backups": ("argocd", "certificates", "services"),
        "certificates": ("argocd", "backups", "services")}
_names = itertools.count()


def fresh_ns(cluster: KubeCluster) -> str:
    ns = f"t{next(_names)}-{uuid.uuid4().hex[:6]}"
    cluster.ensure_namespace(ns)
    return ns


def app(name: str, ns: str, sync: str = "Synced", labels: dict[str, str] | None = None
        ) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"project": "default", "destination": {"namespace": ns},
                     "source": {"repoURL": "https://git.example/x", "path": "."}},
            "status": {"sync": {"status": sync}, "health": {"status": "Healthy"}}}


def config(cluster: KubeCluster, server: APIServer, source: str, user: str = "exporter",
           scope: dict[str, Any] | None = None, **watch: Any) -> Config:
    sources: dict[str, Any] = {s: {"enabled": False} for s in ONLY[source]}
    sources[source] = {"enabled": True, **(scope or {})}
    if source == "certificates":
        sources[source].setdefault("ingresses", False)
    return Config.model_validate({
        "cluster": {"mode": "kubeconfig",
                    "kubeconfig": str(cluster.write_kubeconfig(server, user))},
        "sources": sources, "watch": {**FAST_WATCH, **watch}})


@contextlib.asynccontextmanager
async def exporter_on(cfg: Config) -> AsyncIterator[Exporter]:
    exporter = Exporter(cfg, Shard())
    await exporter.start()
    try:
        yield exporter
    finally:
        await asyncio.wait_for(exporter.stop(), WAIT)


async def until(cond: Callable[[], Any], what: str, wait: float = WAIT) -> Any:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        result = cond()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {wait:.0f}s waiting for {what}")


def object_series(body: bytes, prefix: str) -> dict[Any, float]:
    return {k: v for k, v in samples(body).items() if k[0].startswith(prefix)}


def exact(cluster: KubeCluster, exporter: Exporter, source: str, ns: str | None,
                counters: bool = False) -> Callable[[], bool]:
    """A check: the exporter's series of `source` equal a fresh render of the API state."""
    prefix = f"sloexporter_{'backup' if source == 'backups' else source.rstrip('s')}"
    if source == "argocd":
        prefix = "sloexporter_argocd"

    def check() -> bool:
        want = api_state(cluster, source, ns)
        got = {k: v for k, v in object_series(exporter.render(), prefix).items()
               if ns is None or dict(k[1]).get("namespace") == ns}
        if not counters:  # counters depend on what was observed, not on the state alone
            got = {k: v for k, v in got.items() if not k[0].endswith("_total")}
            want = {k: v for k, v in want.items() if not k[0].endswith("_total")}
        return got == want
    return check


@pytest.fixture(scope="module")
def faulty(kube_cluster: KubeCluster) -> Any:
    """A second apiserver with --watch-cache=false: the one the exporter watches here."""
    with kube_cluster.extra_apiserver(watch_cache=False) as server:
        yield server


@pytest.fixture
def running(faulty: APIServer) -> APIServer:
    """`faulty`, started and not frozen, whatever the previous test left."""
    if faulty.proc is not None and faulty.proc.poll() is None:
        faulty.thaw()
    faulty.start()
    return faulty


# --- the sources on the real server, through the chart's RBAC -------------------------------

async def test_argocd_follows_creates_updates_deletes_with_the_charts_rbac(kube_crds, running):
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    for i in range(3):
        cluster.create(app(f"a{i}", ns))
    # the chart's ClusterRole, all namespaces
    async with exporter_on(config(cluster, running, "argocd")) as exporter:
        await until(exporter.ready, "ready")
        check = exact(cluster, exporter, "argocd", ns)
        await until(check, "the first list")
        cluster.patch(app("a1", ns), {"status": {"sync": {"status": "OutOfSync"}}})
        cluster.delete(app("a2", ns))
        cluster.create(app("a3", ns))
        await until(check, "three watch events")
        body = exporter.render()
        synced = {dict(k[1])["name"]: v for k, v in samples(body).items()
                  if k[0] == names.ARGOCD_APP_SYNCED and dict(k[1])["namespace"] == ns}
        assert synced == {"a0": 1, "a1": 0, "a3": 1}
        assert exporter.up() == {"argocd": True}
        assert not any(reason != "timeout" for (_, reason) in exporter.metrics.restarts)


async def test_a_real_service_account_token_with_the_charts_rbac(kube_crds, running, tmp_path):
    """A token the apiserver issues (TokenRequest) for the chart's own ServiceAccount, as a
    pod's projected token is: authenticated as the ServiceAccount, authorised by the
    chart's rendered ClusterRole, and enough for the exporter to list and watch."""
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    cluster.create(app("a0", ns))
    issued = cluster.api(
        "POST", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/sloexporter/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": 3600}})
    token = issued["status"]["token"]
    assert token.count(".") == 2  # a signed JWT, not one of the static test tokens
    kubeconfig = json.loads(cluster.write_kubeconfig(running, "exporter").read_text())
    kubeconfig["users"][0]["user"]["token"] = token
    path = tmp_path / "kubeconfig-sa"
    path.write_text(json.dumps(kubeconfig))
    cfg = config(cluster, running, "argocd").model_copy(update={
        "cluster": Config.model_validate({"cluster": {
            "mode": "kubeconfig", "kubeconfig": str(path)}}).cluster})
    async with exporter_on(cfg) as exporter:
        check = exact(cluster, exporter, "argocd", ns)
        await until(check, "the first list")
        cluster.create(app("a1", ns))
        await until(check, "a watch event")
        assert exporter.up() == {"argocd": True}
    review = cluster.api("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token}})
    assert review["status"]["user"]["username"] == \
        f"system:serviceaccount:{NAMESPACE}:sloexporter"


# --- the faults ------------------------------------------------------------------------------

async def test_changes_made_while_the_apiserver_is_down_are_exact_with_no_duplicate_in_any_scrape(
        kube_crds, running):
    """Defect 1: objects deleted and re-created under the same name (a new UID) while the
    exporter is cut off. The re-list is paged (limit 5); /metrics, read every 5 ms
    through it, never has a duplicate series nor misses an application."""
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    apps = [f"app{i:03d}" for i in range(60)]
    for name in apps:
        cluster.create(app(name, ns))
    cfg = config(cluster, running, "argocd", scope={"namespaces": [ns]}, page_size=5)
    async with exporter_on(cfg) as exporter:
        check = exact(cluster, exporter, "argocd", ns)
        await until(check, "the first list")
        running.stop()
        await until(lambda: not exporter.up()["argocd"], "the source to go down")
        # through the session's apiserver, while the exporter's is down: re-create every
        # other app (a new UID, now OutOfSync), delete some, add some
        for name in apps[::2]:
            cluster.delete(app(name, ns))
            cluster.create(app(name, ns, sync="OutOfSync"))
        for name in apps[1:10:2]:
            cluster.delete(app(name, ns))
        for i in range(5):
            cluster.create(app(f"new{i}", ns))
        problems: list[str] = []
        scrapes = 0
        stop = asyncio.Event()

        async def scrape() -> None:
            nonlocal scrapes
            while not stop.is_set():
                body = exporter.render()
                scrapes += 1
                try:
                    series = samples(body)  # fails on an exact duplicate
                except AssertionError as exc:
                    problems.append(str(exc))
                    await asyncio.sleep(0.005)
                    continue
                per_app: dict[str, int] = {}
                for (name, labels), _ in series.items():
                    if name == names.ARGOCD_APP_SYNCED:
                        app_name = dict(labels)["name"]
                        per_app[app_name] = per_app.get(app_name, 0) + 1
                doubled = sorted(a for a, n in per_app.items() if n > 1)
                if doubled:
                    problems.append(f"two series for {doubled[:5]}")
                # an app that exists before and after the re-list never goes missing
                gone = [a for a in apps[11::2] if a not in per_app]
                if gone:
                    problems.append(f"missing {gone[:5]}")
                await asyncio.sleep(0.005)  # often enough to land inside a paged re-list

        scraper = asyncio.create_task(scrape())
        running.start()
        await until(check, "the re-list to reach the API state")
        stop.set()
        await scraper
    assert scrapes > 3
    assert not problems, problems[:5]


async def test_410_after_etcd_compaction_relists_once_with_one_log_line(
        kube_crds, running, caplog):
    """A real 410 Gone: --watch-cache=false and `etcdctl compact` past the exporter's
    resourceVersion; the next re-watch (timeoutSeconds 2) gets 410 and re-lists."""
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    cluster.create(app("a0", ns))
    caplog.set_level(logging.INFO, "sloexporter")
    cfg = config(cluster, running, "argocd", scope={"namespaces": [ns]}, timeout_seconds=2)
    async with exporter_on(cfg) as exporter:
        check = exact(cluster, exporter, "argocd", ns)
        await until(check, "the first list")
        other = fresh_ns(cluster)  # revisions move on elsewhere, then etcd forgets them
        for i in range(3):
            cluster.create(app(f"x{i}", other))
        cluster.compact()
        await until(lambda: exporter.metrics.restarts.get((APPLICATIONS.name, "expired")),
                    "a 410")
        cluster.create(app("a1", ns))
        await until(check, "the state after the re-list")
        await until(lambda: exporter.up()["argocd"], "up")
        expired = exporter.metrics.restarts[(APPLICATIONS.name, "expired")]
        # the server ends each watch after 2 s: normal, counted as `timeout`, not a failure
        await until(lambda: exporter.metrics.restarts.get((APPLICATIONS.name, "timeout")),
                    "a normal watch end")
        reasons = {r for (_, r) in exporter.metrics.restarts}
        assert reasons <= {"timeout", "expired"}, reasons
        assert exporter.up()["argocd"]
    assert expired <= 2  # no hot loop
    relisted = [r for r in caplog.records if "re-listed" in r.getMessage()]
    assert len(relisted) == expired and "410" in relisted[0].getMessage()
    # a 410 is not a failure: the source never went down
    assert not [r for r in caplog.records if "is down" in r.getMessage()]


async def test_a_frozen_apiserver_is_noticed_within_the_bound_and_recovers(
        kube_crds, running, caplog):
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    cluster.create(app("a0", ns))
    caplog.set_level(logging.INFO, "sloexporter")
    cfg = config(cluster, running, "argocd", scope={"namespaces": [ns]})
    async with exporter_on(cfg) as exporter:
        await until(lambda: exporter.ready(), "ready")
        before = exporter.render()
        running.freeze()
        try:
            frozen = time.monotonic()
            await until(lambda: not exporter.up()["argocd"], "the freeze to be noticed")
            noticed = time.monotonic() - frozen
            assert exporter.not_ready() == [
                f"argocd ({APPLICATIONS.name} in namespace {ns}: unresponsive)"]
            # the last known state is still served
            assert object_series(exporter.render(), "sloexporter_argocd") == \
                object_series(before, "sloexporter_argocd")
        finally:
            running.thaw()
        await until(lambda: exporter.up()["argocd"], "recovery")
    # heartbeat after 2 s of quiet, answered within 2 s: 4 s, plus slack for a loaded
    # machine (the default bound is 10 s + 5 s)
    assert noticed < 2 + 2 + 6, noticed
    downs = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
    ups = [r.getMessage() for r in caplog.records if "is up again" in r.getMessage()]
    assert len(downs) == 1 and "unresponsive" in downs[0], downs
    assert len(ups) == 1, ups


async def test_an_apiserver_frozen_before_the_first_list_is_not_ready_then_recovers(
        kube_crds, running):
    """The LIST itself hangs (the server accepts and never answers): the first list must
    time out, back off and retry, with /readyz naming why, not wait forever."""
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    cluster.create(app("a0", ns))
    cfg = config(cluster, running, "argocd", scope={"namespaces": [ns]})
    running.freeze()
    try:
        async with exporter_on(cfg) as exporter:
            hung = {"unresponsive", "connection"}
            await until(lambda: any(r in hung and n >= 2 for (_, r), n
                                    in exporter.metrics.restarts.items()), "two timed-out lists")
            assert exporter.up() == {"argocd": False}
            waiting = exporter.not_ready()
            assert len(waiting) == 1 and waiting[0].startswith("argocd (") and \
                "waiting for the first list" in waiting[0], waiting
            running.thaw()
            await until(exact(cluster, exporter, "argocd", ns), "the list after the thaw")
            await until(exporter.ready, "ready")
    finally:
        running.thaw()


async def test_rbac_403_is_one_log_line_with_resource_verb_namespace_and_user(
        kube_crds, running, caplog):
    """exporter-ns may read team-a only; asked for another namespace it gets 403."""
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    caplog.set_level(logging.INFO, "sloexporter")
    cfg = config(cluster, running, "argocd", user="exporter-ns", scope={"namespaces": [ns]})
    async with exporter_on(cfg) as exporter:
        await until(lambda: exporter.metrics.restarts.get(
            (APPLICATIONS.name, "forbidden"), 0) >= 3, "three forbidden retries")
        assert exporter.up() == {"argocd": False}
        body = exporter.render()
        assert f'{names.SOURCE_UP}{{source="argocd"}} 0' in body.decode()
    lines = [r.getMessage() for r in caplog.records if "is down" in r.getMessage()]
    assert len(lines) == 1, lines  # one line, not one per retry
    line = lines[0]
    for part in ("forbidden", '"applications"', "list", f'"{ns}"',
                 "system:serviceaccount:sloexporter:sloexporter-ns"):
        assert part in line, (part, line)


async def test_namespaced_mode_with_namespaced_rbac(kube_crds, running):
    """The chart rendered with every source limited to team-a: Roles only, and it works."""
    cluster = kube_crds
    cluster.create(app(f"ns-{uuid.uuid4().hex[:6]}", TEAM_NS))
    other = fresh_ns(cluster)
    cluster.create(app("elsewhere", other))
    cfg = config(cluster, running, "argocd", user="exporter-ns",
                 scope={"namespaces": [TEAM_NS]})
    async with exporter_on(cfg) as exporter:
        check = exact(cluster, exporter, "argocd", TEAM_NS)
        await until(check, "team-a's applications")
        await until(lambda: exporter.up()["argocd"], "up")
        assert f'namespace="{other}"' not in exporter.render().decode()


async def test_pagination_and_selectors_narrow_what_is_listed(kube_crds, running):
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    for i in range(7):
        cluster.create(app(f"pay{i}", ns, labels={"team": "payments"}))
    for i in range(4):
        cluster.create(app(f"web{i}", ns, labels={"team": "web"}))
    cfg = config(cluster, running, "argocd", page_size=2, scope={
        "namespaces": [ns], "label_selector": "team=payments",
        "field_selector": "metadata.name!=pay6"})
    async with exporter_on(cfg) as exporter:
        await until(exporter.ready, "ready")
        informer = exporter.informers["argocd"][0]
        # the server narrowed the list: 6 objects in 3 pages of 2 (plus a last empty one
        # at most), not 11
        pages, count = informer.last_list
        assert count == 6 and 3 <= pages <= 4, informer.last_list
        listed = sorted(dict(k[1])["name"] for k in samples(exporter.render())
                        if k[0] == names.ARGOCD_APP_INFO)
        assert listed == [f"pay{i}" for i in range(6)]
        # and the watch too: a web app changing is not even an event
        events = dict(exporter.metrics.events)
        cluster.patch(app("web0", ns), {"status": {"sync": {"status": "OutOfSync"}}})
        cluster.patch(app("pay0", ns), {"status": {"sync": {"status": "OutOfSync"}}})
        await until(lambda: exporter.metrics.events.get((APPLICATIONS.name, "MODIFIED"), 0)
                    > events.get((APPLICATIONS.name, "MODIFIED"), 0), "pay0's event")
        await asyncio.sleep(0.5)  # a window for a wrong extra event to arrive, not a wait
        assert exporter.metrics.events[(APPLICATIONS.name, "MODIFIED")] == \
            events.get((APPLICATIONS.name, "MODIFIED"), 0) + 1


# --- backups and certificates, with bad objects among them ---------------------------------

def cronjob(name: str, ns: str, schedule: str = "0 2 * * *") -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"sloexporter.dev/backup": "true"}},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "dump", "image": "busybox"}]}}}}}}


def job(name: str, ns: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "CronJob", "controller": True,
                "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "dump", "image": "busybox"}]}}}}


def velero(kind: str, name: str, ns: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "velero.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns, **extra.pop("metadata", {})}, **extra}


async def test_backups_cronjobs_jobs_and_velero_with_a_bad_schedule_skipped(kube_crds, running):
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    cj = cluster.create(cronjob("pg-dump", ns))
    cluster.replace_status({**cj, "status": {"lastScheduleTime": "2026-11-22T02:00:00Z",
                                             "lastSuccessfulTime": "2026-11-22T02:03:00Z"}})
    done = cluster.create(job("pg-dump-1", ns, cj))
    cluster.replace_status({**done, "status": {
        "startTime": "2026-11-22T02:00:00Z", "completionTime": "2026-11-22T02:03:00Z",
        "succeeded": 1, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True",
             "lastTransitionTime": "2026-11-22T02:03:00Z"},
            {"type": "Complete", "status": "True",
             "lastTransitionTime": "2026-11-22T02:03:00Z"}]}})
    cluster.create(velero("Schedule", "nightly", ns, spec={"schedule": "0 3 * * *",
                                                            "template": {}}))
    cluster.create(velero("Backup", "nightly-1", ns,
                          metadata={"labels": {"velero.io/schedule-name": "nightly"}},
                          spec={}, status={"phase": "Completed",
                                           "startTimestamp": "2026-11-22T03:00:00Z",
                                           "completionTimestamp": "2026-11-22T03:10:00Z"}))
    # a schedule the CRD accepts (a string) but no cron parser does
    cluster.create(velero("Schedule", "broken", ns, spec={"schedule": "every tuesday-ish",
                                                           "template": {}}))
    cfg = config(cluster, running, "backups", scope={"namespaces": [ns]})
    async with exporter_on(cfg) as exporter:
        await until(exporter.ready, "ready")
        check = exact(cluster, exporter, "backups", ns, counters=True)
        await until(check, "the backups")
        body = samples(exporter.render())
        pg = frozenset({"kind": "cronjob", "namespace": ns, "name": "pg-dump"}.items())
        assert body[(names.BACKUP_LAST_DURATION, pg)] == 180
        assert body[(names.BACKUP_RUNS, pg | {("result", "success")})] == 1
        nightly = frozenset({"kind": "velero", "namespace": ns, "name": "nightly"}.items())
        assert body[(names.BACKUP_LAST_SUCCESS, nightly)] > 0
        assert body[(names.BACKUP_EXPECTED_INTERVAL, nightly)] == 86400
        # the bad schedule is skipped and counted; the source stays up
        assert exporter.metrics.skipped[("backups", "invalid_cron")] >= 1
        assert exporter.up() == {"backups": True}


async def test_certificates_from_cert_manager_and_tls_secrets_with_bad_pem_skipped(
        kube_crds, running):
    from tests.certs import make_ca, make_leaf, tls_secret

    cluster, ns = kube_crds, fresh_ns(kube_crds)
    ca = make_ca()
    leaf = make_leaf(ca, "shop.example.com", dns_names=("shop.example.com",))
    secret = tls_secret(ns, "shop-tls", leaf, ca)
    del secret["metadata"]["uid"]
    cluster.create(secret)
    bad = tls_secret(ns, "garbage-tls", leaf)
    del bad["metadata"]["uid"]
    bad["data"]["tls.crt"] = "bm90IGEgY2VydGlmaWNhdGU="  # "not a certificate"
    cluster.create(bad)
    cluster.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "password", "namespace": ns},
                    "data": {"tls.crt": "eA=="}})
    cert = cluster.create({
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": "shop", "namespace": ns},
        "spec": {"secretName": "shop-tls", "dnsNames": ["shop.example.com"],
                 "issuerRef": {"name": "letsencrypt"}}})
    cluster.replace_status({**cert, "status": {
        "notBefore": "2026-11-01T00:00:00Z", "notAfter": "2027-01-30T00:00:00Z",
        "conditions": [{"type": "Ready", "status": "True",
                        "lastTransitionTime": "2026-11-01T00:00:00Z"}]}})
    cfg = config(cluster, running, "certificates", scope={"namespaces": [ns]})
    async with exporter_on(cfg) as exporter:
        await until(exporter.ready, "ready")
        check = exact(cluster, exporter, "certificates", ns)
        await until(check, "the certificates")
        secrets = next(i for i in exporter.informers["certificates"]
                       if i.resource.plural == "secrets")
        assert secrets.last_list[1] == 2  # the field selector left the Opaque Secret out
        body = exporter.render().decode()
        assert f'name="shop-tls",namespace="{ns}"' in body or "shop-tls" in body
        assert exporter.metrics.skipped[("certificates", "unparsable_pem")] == 1
        assert exporter.up() == {"certificates": True}
        # the bad one fixed in place: it appears, and nothing else changes
        cluster.delete(bad)
        await until(check, "the deletion")


async def test_ingress_and_service_discovery_on_the_real_server(kube_crds, running):
    """Ingress TLS hosts and annotated Services, watched through the chart's RBAC, become
    probe targets; removing the annotation or the Ingress takes their series away."""
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    host = f"shop.{ns}.invalid"  # no DNS here: each probe fails, with its own series
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
               "metadata": {"name": "web", "namespace": ns},
               "spec": {"tls": [{"hosts": [host]}], "rules": [{"host": host, "http": {
                   "paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {
                       "name": "web", "port": {"number": 8080}}}}]}}]}}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": ns,
                            "annotations": {names.PROBE_ANNOTATION: "true",
                                            names.PROBE_PATH_ANNOTATION: "/healthz"}},
               "spec": {"ports": [{"name": "http", "port": 8080}]}}
    cluster.create(ingress)
    cluster.create(service)
    cfg = Config.model_validate({
        "cluster": {"mode": "kubeconfig",
                    "kubeconfig": str(cluster.write_kubeconfig(running, "exporter"))},
        "sources": {"argocd": {"enabled": False}, "backups": {"enabled": False},
                    "certificates": {"enabled": True, "cert_manager": False,
                                     "tls_secrets": False, "ingresses": True},
                    "services": {"enabled": True}},
        "watch": FAST_WATCH,
        "tls_probe": {"interval": "1s", "timeout": "1s"},
        "http_probe": {"interval": "1s", "timeout": "1s"}})
    tls_target, http_target = f"{host}:443", f"http://web.{ns}.svc:8080/healthz"

    def has(name: str, target: str) -> bool:
        return any(k[0] == name and dict(k[1]).get("target") == target
                   for k in samples(exporter.render()))

    async with exporter_on(cfg) as exporter:
        await until(lambda: has(names.TLS_PROBE_SUCCESS, tls_target), "the Ingress host")
        await until(lambda: has(names.PROBE_SUCCESS, http_target), "the Service URL")
        assert exporter.up() == {"certificates": True, "discovery": True,
                                 "http_probe": True, "tls_probe": True}
        cluster.patch(service, {"metadata": {"annotations": {names.PROBE_ANNOTATION: None}}})
        cluster.delete(ingress)
        await until(lambda: not has(names.PROBE_SUCCESS, http_target), "the URL to go")
        await until(lambda: not has(names.TLS_PROBE_SUCCESS, tls_target), "the host to go")


def test_sigterm_exits_within_2_s_with_open_watches_while_200_clients_scrape(
        kube_crds, running, tmp_path):
    """docs/serve.md's 2 s, on the real server: `serve` holds live watches (and the
    apiserver keeps them open) while 200 clients scrape; SIGTERM still ends it in 2 s."""
    cluster, ns = kube_crds, fresh_ns(kube_crds)
    for i in range(50):
        cluster.create(app(f"a{i}", ns))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config(cluster, running, "argocd").model_dump(
        mode="json", exclude_none=True)))
    server = Serve(tmp_path, "--config", str(cfg))
    try:
        wait_for(server.ready, WAIT, "/readyz")
        assert f'namespace="{ns}"' in server.metrics()

        async def scenario() -> tuple[float, int]:
            stop, done = asyncio.Event(), [0]
            flood = asyncio.create_task(_flood(server.url + "/metrics", 200, stop, done))
            until_flooding = time.monotonic() + WAIT
            while done[0] < 100 and time.monotonic() < until_flooding:
                await asyncio.sleep(0.05)
            scraped = done[0]
            took = await asyncio.to_thread(server.sigterm)  # this loop is busy too
            stop.set()
            await flood
            return took, scraped

        took, scraped = asyncio.run(scenario())
        assert scraped >= 100, "the flood never got going"
        assert took < 2.0, f"SIGTERM took {took:.2f} s with watches open under 200 clients"
    finally:
        server.close()


def test_the_apiserver_and_the_exporter_agree_on_which_schedules_run(kube_cluster):
    """Every schedule the exporter reads (tests/test_source_backups.py) is one a real
    apiserver stores, and each it refuses is refused there too; two refusals are the
    exporter's own: a schedule that never runs, and a CRON_TZ= prefix, which Kubernetes
    no longer stores but keeps on CronJobs created before 1.27 (the exporter reads it)."""
    from sloexporter.sources.backups import expected_interval
    from sloexporter.sources.base import BadInput
    from tests.test_source_backups import ROBFIG_BAD, ROBFIG_OK

    ns = fresh_ns(kube_cluster)
    never_runs = {"0 0 31 2 *", "0 0 30 2 *"}
    disagree = []
    for schedule in [s for s, _ in ROBFIG_OK] + ROBFIG_BAD:
        status, body = kube_cluster.request(
            "POST", f"/apis/batch/v1/namespaces/{ns}/cronjobs?dryRun=All",
            cronjob("probe", ns, schedule))
        try:
            expected_interval(schedule)
            ours = True
        except BadInput:
            ours = False
        theirs = status == 201
        if schedule in never_runs:
            assert theirs and not ours, (schedule, status)
        elif schedule.startswith(("CRON_TZ=", "TZ=")):
            assert not theirs and ours and "TZ" in str(body), (schedule, status, body)
        elif theirs != ours:
            disagree.append((schedule, status, str(body)[:200]))
    assert not disagree, disagree
