"""`sloexporter serve` as a real process: the demo cluster on /metrics, and the service."""

from __future__ import annotations

import gzip
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from sloexporter import names
from tests.promtext import samples, series, value
from tests.tools import ROOT, free_port

DEMO = ROOT / "examples" / "cluster"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def wait_for(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sloexporter.cli", "serve", "--listen",
             f"127.0.0.1:{self.port}", *args], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)

    def metrics(self, **headers: str) -> str:
        return get(self.url + "/metrics", headers)[2].decode()

    def stop(self) -> float:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        return time.monotonic() - started


def ready(server: Server) -> bool:
    assert server.proc.poll() is None, server.proc.stdout.read()
    return get(server.url + "/readyz")[0] == 200


@pytest.fixture
def demo(tmp_path) -> Iterator[tuple[Server, Path]]:
    folder = tmp_path / "cluster"
    shutil.copytree(DEMO, folder)
    server = Server("--manifests", str(folder))
    try:
        wait_for(lambda: ready(server), what="/readyz")
        yield server, folder
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(timeout=10)


def test_demo_cluster_on_metrics(demo):
    server, _ = demo
    out = server.metrics()
    now = time.time()
    app = {"namespace": "argocd", "project": "production"}
    assert value(out, names.ARGOCD_APP_SYNCED, **app, name="shop-frontend") == 1
    assert value(out, names.ARGOCD_APP_SYNCED, **app, name="shop-api") == 0
    assert value(out, names.ARGOCD_APP_HEALTHY, **app, name="payments") == 0
    pg = {"kind": "cronjob", "namespace": "databases", "name": "postgres-pg-dumpall"}
    minio = {"kind": "cronjob", "namespace": "storage", "name": "minio-mirror"}
    assert value(out, names.BACKUP_EXPECTED_INTERVAL, **pg) == 86400
    assert now - value(out, names.BACKUP_LAST_SUCCESS, **pg) < 86400  # on time
    overdue = now - value(out, names.BACKUP_LAST_SUCCESS, **minio)
    assert overdue > value(out, names.BACKUP_EXPECTED_INTERVAL, **minio) + 900  # overdue
    assert value(out, names.BACKUP_RUNS, **pg, result="failure") == 1
    assert series(out, names.BACKUP_LAST_SUCCESS, name="cache-warmer") == []
    days_left = {s["name"]: (value(out, names.CERT_NOT_AFTER, **s) - now) / 86400
                 for s in series(out, names.CERT_NOT_AFTER, source="certificate")}
    assert days_left["shop-tls"] > 28
    assert 0 < days_left["api-tls"] < 7  # near expiry
    assert days_left["legacy-tls"] < 0  # expired
    secrets = series(out, names.CERT_NOT_AFTER, source="secret", name="legacy-tls")
    assert secrets and value(out, names.CERT_NOT_AFTER, **secrets[0]) < now
    assert value(out, names.SKIPPED_OBJECTS, source="certificates",
                 reason="unparsable_pem") >= 1
    # the Ingress host is probed live once discovered; nothing listens on localhost:443
    probed = wait_for(lambda: value(server.metrics(), names.TLS_PROBE_SUCCESS,
                                    target="localhost:443") is not None, what="TLS probe")
    assert probed and value(server.metrics(), names.TLS_PROBE_SUCCESS, target="localhost:443") == 0
    assert value(out, names.SOURCE_UP, source="argocd") == 1
    assert "cmVkYWN0ZWQtbm90LWEta2V5" not in out  # a Secret's tls.key never appears


def test_openmetrics_and_gzip(demo):
    server, _ = demo
    status, headers, body = get(server.url + "/metrics", {
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        "Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(body).decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["sloexporter_argocd_app_sync_operations"].type == "counter"
    assert families["sloexporter_backup_runs"].type == "counter"
    plain = server.metrics()
    assert len(samples(plain)) > 40


def test_reloads_manifests_when_they_change(demo):
    server, folder = demo
    app = {"namespace": "argocd", "name": "shop-api", "project": "production"}
    path = folder / "argocd.yaml"

    def gzipped() -> str:
        return gzip.decompress(get(server.url + "/metrics", {"Accept-Encoding": "gzip"})[2]
                               ).decode()

    assert value(gzipped(), names.ARGOCD_APP_SYNCED, **app) == 0  # fills the gzip cache
    path.write_text(path.read_text().replace("status: OutOfSync", "status: Synced"))
    wait_for(lambda: value(server.metrics(), names.ARGOCD_APP_SYNCED, **app) == 1,
             what="reload")
    assert value(gzipped(), names.ARGOCD_APP_SYNCED, **app) == 1  # the cache follows the store
    (folder / "backups.yaml").unlink()
    wait_for(lambda: not series(server.metrics(), names.BACKUP_LAST_SUCCESS), what="removal")


def test_healthz_and_sigterm_stops_within_2_seconds(demo):
    server, _ = demo
    assert get(server.url + "/healthz")[0] == 200
    assert server.stop() < 2.0
    assert server.proc.returncode == 0


def test_not_ready_while_a_source_cannot_list(tmp_path):
    port = free_port()  # nothing listens there: every list fails
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""
apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
""")
    config = tmp_path / "config.yaml"
    config.write_text(f"cluster: {{mode: kubeconfig, kubeconfig: {kubeconfig}}}\n"
                      "sources: {backups: {enabled: false}, certificates: {enabled: false},"
                      " services: {enabled: false}}\n")
    server = Server("--config", str(config))
    try:
        wait_for(lambda: get(server.url + "/healthz")[0] == 200, what="healthz")
        out = wait_for(lambda: (m := server.metrics()) and
                       value(m, names.WATCH_RESTARTS, resource="applications.argoproj.io",
                             reason="connection") and m, what="a failed list")
        assert value(out, names.SOURCE_UP, source="argocd") == 0
        status, _, body = get(server.url + "/readyz")
        # /readyz names the source that is not ready, and why
        assert status == 503 and "argocd (applications.argoproj.io (all namespaces): " \
            "waiting for the first list, connection)" in body.decode()
    finally:
        server.stop()


def test_config_errors_are_one_line_each(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("listen: 0.0.0.0:9469\nsources:\n  argocd: {enabeld: true}\n"
                      "cluster: {mode: sometimes}\n")
    result = subprocess.run([sys.executable, "-m", "sloexporter.cli", "serve", "--config",
                             str(config)], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{config}:3: sources.argocd.enabeld: unknown field 'enabeld'; did you mean "
        "'enabled'?",
        f"{config}:4: cluster.mode: mode must be one of 'auto', 'in-cluster', 'kubeconfig', "
        "'none', not 'sometimes'",
    ]


@pytest.mark.parametrize("value, message", [
    ('[""]', "at least 1 characters"),  # an empty name would watch every namespace
    ('["team-a", "team-a"]', "namespaces listed twice: team-a"),  # two watches of one
    ('["Team_A"]', "must match the pattern"),
    ('["../../api/v1/secrets"]', "must match the pattern"),  # a `/` changes the API path
    ('["' + "a" * 64 + '"]', "at most 63 characters"),
    ('"team-a"', "must be a list"),
])
@pytest.mark.parametrize("key", ["argocd.namespaces", "certificates.secret_namespaces"])
def test_namespaces_are_names_kubernetes_allows_each_once(tmp_path, key, value, message):
    from sloexporter.config import load_config
    from sloexporter.specs.errors import SpecErrors

    source, field = key.split(".")
    config = tmp_path / "serve.yaml"
    config.write_text(f"sources:\n  {source}:\n    {field}: {value}\n")
    with pytest.raises(SpecErrors) as info:
        load_config(str(config))
    lines = [str(e) for e in info.value.errors]
    assert len(lines) == 1 and f"{config}:3: sources.{key}" in lines[0], lines
    assert message in lines[0], lines


def test_bad_listen_and_missing_folder_are_usage_errors(tmp_path):
    for args in (["--listen", "nowhere"], ["--manifests", str(tmp_path / "nope")]):
        result = subprocess.run([sys.executable, "-m", "sloexporter.cli", "serve", *args],
                                capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr


def test_an_annotated_service_is_probed_until_the_annotation_goes(tmp_path):
    """Service manifest -> discovery -> HTTP prober -> /metrics, and back out again."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "shop", "uid": "svc-1",
                            "annotations": {names.PROBE_ANNOTATION: "true",
                                            names.PROBE_PATH_ANNOTATION: "/healthz"}},
               "spec": {"ports": [{"name": "http", "port": 8080}]}}
    (folder / "service.yaml").write_text(json.dumps(service))
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"http_probe": {"interval": "1s", "timeout": "1s"}}))
    target = "http://web.shop.svc:8080/healthz"
    server = Server("--manifests", str(folder), "--config", str(config))
    try:
        wait_for(lambda: ready(server), what="/readyz")
        # no cluster DNS here: the probe runs and counts its failure as code="error"
        wait_for(lambda: (value(server.metrics(), names.PROBE_REQUESTS, target=target,
                                code=names.PROBE_ERROR_CODE) or 0) >= 1, what="a probe")
        assert value(server.metrics(), names.PROBE_SUCCESS, target=target) == 0
        del service["metadata"]["annotations"][names.PROBE_ANNOTATION]
        (folder / "service.yaml").write_text(json.dumps(service))
        wait_for(lambda: not series(server.metrics(), names.PROBE_SUCCESS, target=target),
                 what="the target to go")
    finally:
        server.stop()
