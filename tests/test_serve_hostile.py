"""`serve` fed on purpose what nobody feeds it: hostile manifests, floods, slow clients,
signals, no cluster. Each test runs the real process and measures with deadlines."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from sloexporter import names
from tests.promtext import series, value
from tests.test_serve import wait_for as serve_wait_for
from tests.tools import ROOT, free_port

DEMO = ROOT / "examples" / "cluster"


def get(url: str, headers: dict[str, str] | None = None,
        timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def wait_for(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    return serve_wait_for(check, timeout, what)


class Serve:
    """A real `sloexporter serve` process; its log goes to a file the test can read."""

    def __init__(self, tmp: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"serve-{self.port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sloexporter.cli", "serve", "--listen",
             f"127.0.0.1:{self.port}", *args], cwd=ROOT, stdout=self._log,
            stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        assert self.proc.poll() is None, f"serve exited: {self.log[-3000:]}"
        return True

    def metrics(self) -> str:
        return get(self.url + "/metrics")[2].decode()

    def ready(self) -> bool:
        return self.alive() and get(self.url + "/readyz")[0] == 200

    def sigterm(self) -> float:
        """Seconds from SIGTERM to the process's exit (it must exit 0)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        took = time.monotonic() - started
        assert self.proc.returncode == 0, self.log[-3000:]
        return took

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(*args: str, **kw: Any) -> Serve:
        started.append(Serve(tmp_path, *args, **kw))
        return started[-1]
    yield start
    for s in started:
        s.close()


def app(i: int) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": f"app{i}", "namespace": "argocd", "uid": f"uid-app-{i}"},
            "spec": {"project": "p", "destination": {"namespace": f"ns{i % 10}"}},
            "status": {"sync": {"status": "Synced"}, "health": {"status": "Healthy"},
                       "resources": [{"kind": "Deployment", "name": f"d{i}-{j}",
                                      "status": "Synced", "health": {"status": "Healthy"}}
                                     for j in range(3)]}}


def big_manifest(path: Path, megabytes: float) -> int:
    """A valid List of Applications of about `megabytes` MB; returns how many."""
    one = len(json.dumps(app(0))) + 2
    count = int(megabytes * 1e6 / one) + 1
    # JSON is YAML, and far quicker to write than YAML from Python
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                "items": [app(100_000 + i) for i in range(count)]}, indent=1))
    return count


def alias_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: bomb}\n" \
        + "\n".join(lines) + "\n"


HOSTILE: dict[str, str] = {
    "deep.yaml": "apiVersion: v1\nkind: ConfigMap\ndata: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep-block.yaml": "".join("  " * i + "k:\n" for i in range(5000)) + "  " * 5000 + "v: 1\n",
    "bomb.yaml": alias_bomb(),
}
LONG_LABEL = "a" * 64 + ".example.org"
BAD_OBJECTS = [
    # a 7-field cron (seconds and year): croniter would take it, Kubernetes does not
    {"apiVersion": "batch/v1", "kind": "CronJob",
     "metadata": {"name": "seven", "namespace": "b", "uid": "cj-7",
                  "labels": {names.BACKUP_LABEL: "true"}},
     "spec": {"schedule": "0 0 3 * * * 2026", "jobTemplate": {}}},
    # suspend as a string: the API server refuses it, so it is malformed, not truthy
    {"apiVersion": "batch/v1", "kind": "CronJob",
     "metadata": {"name": "stringly", "namespace": "b", "uid": "cj-s",
                  "labels": {names.BACKUP_LABEL: "true"}},
     "spec": {"schedule": "0 3 * * *", "suspend": "false", "jobTemplate": {}}},
    # tls.hosts as a string must not become one probe per character
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
     "metadata": {"name": "chars", "namespace": "w", "uid": "ing-s"},
     "spec": {"tls": [{"hosts": "abcdefgh"}]}},
    # a DNS label of 64 characters: one failure series and one log line, no traceback
    {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
     "metadata": {"name": "long", "namespace": "w", "uid": "ing-l"},
     "spec": {"tls": [{"hosts": [LONG_LABEL]}]}},
]


def skipped(text: str, source: str, reason: str) -> float:
    return value(text, names.SKIPPED_OBJECTS, source=source, reason=reason) or 0


def test_hostile_manifests_are_skipped_counted_and_logged_once(spawn, tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    for name, text in HOSTILE.items():
        (folder / name).write_text(text)
    (folder / "bad-objects.yaml").write_text(yaml.safe_dump_all(BAD_OBJECTS))
    (folder / "good.yaml").write_text(yaml.safe_dump(app(1)))
    refused = f"127.0.0.1:{free_port()}"  # a static target: its duration marks each round
    server = spawn("--manifests", str(folder), "--config", str(_config(tmp_path, {
        "tls_probe": {"interval": 0.5, "timeout": 1, "targets": [refused]}})))
    wait_for(server.ready, what="/readyz")
    out = wait_for(lambda: (t := server.metrics()) and series(
        t, names.TLS_PROBE_FAILURE_INFO, reason="invalid_target") and t, what="probe round")
    assert value(out, names.ARGOCD_APP_SYNCED, namespace="argocd", name="app1",
                 project="p") == 1
    assert skipped(out, "manifests", "too_deep") == 2
    assert skipped(out, "manifests", "alias_expansion") == 1
    assert skipped(out, "backups", "invalid_cron") == 1
    assert skipped(out, "backups", "malformed") == 1
    assert skipped(out, "discovery", "malformed") == 1
    assert not series(out, names.TLS_PROBE_SUCCESS, target="a:443")  # no per-character probe
    assert series(out, names.TLS_PROBE_FAILURE_INFO, target=LONG_LABEL,
                  reason="invalid_target")
    # more probe rounds: still one line for the long label, and no traceback
    durations = {value(out, names.TLS_PROBE_DURATION, target=refused)}
    wait_for(lambda: len(durations) > 3 or durations.add(
        value(server.metrics(), names.TLS_PROBE_DURATION, target=refused)), what="rounds")
    log = server.log
    assert "Traceback" not in log, log
    assert log.count(LONG_LABEL) == 1, log
    for name in HOSTILE:
        assert log.count(f"{name} (") == 1, log  # "skipped manifest PATH (reason): ..."
    assert log.count("cj-7") + log.count("b/seven") == 1, log
    # the folder changes: only the changed file is read again; the bad ones are not re-logged
    (folder / "good.yaml").write_text(yaml.safe_dump(app(2)))
    wait_for(lambda: value(server.metrics(), names.ARGOCD_APP_SYNCED, namespace="argocd",
                           name="app2", project="p") == 1, what="reload")
    assert sum(server.log.count(f"{name} (") for name in HOSTILE) == len(HOSTILE)


def test_an_11_mb_manifest_blocks_neither_metrics_nor_sigterm(spawn, tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    big_manifest(folder / "big.yaml", 11)
    assert (folder / "big.yaml").stat().st_size > 10e6
    server = spawn("--manifests", str(folder))
    # serving starts at once: the parse runs beside it
    wait_for(lambda: server.alive() and get(server.url + "/healthz")[0] == 200, timeout=10,
             what="/healthz")
    assert get(server.url + "/readyz")[0] == 503  # still parsing: not ready, but answering
    worst = 0.0
    for _ in range(10):
        started = time.monotonic()
        status, _, body = get(server.url + "/metrics")
        worst = max(worst, time.monotonic() - started)
        assert status == 200 and names.SOURCE_UP.encode() in body
    # 0.15 s at most on 2 cores; up to 1 s with the default 5 ms GIL switch interval
    assert worst < 0.5, f"a scrape took {worst:.2f} s during the parse"
    assert "loaded " not in server.log  # the parse was still running during the scrapes
    assert server.sigterm() < 2.0


async def _flood(url: str, clients: int, stop: asyncio.Event, done: list[int]) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def client(i: int) -> None:
            headers = {"Accept-Encoding": "gzip"} if i % 2 else {}
            while not stop.is_set():
                try:
                    async with session.get(url, headers=headers) as resp:
                        await resp.read()
                        done[0] += 1
                except (aiohttp.ClientError, TimeoutError, OSError):
                    await asyncio.sleep(0.01)
        await asyncio.gather(*(client(i) for i in range(clients)))


def test_sigterm_exits_within_2_s_while_200_clients_scrape(spawn, tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "apps.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": [app(i) for i in range(5000)]}))
    server = spawn("--manifests", str(folder))
    wait_for(server.ready, what="/readyz")

    async def scenario() -> tuple[float, int]:
        stop = asyncio.Event()
        done = [0]
        flood = asyncio.create_task(_flood(server.url + "/metrics", 200, stop, done))
        deadline = time.monotonic() + 60
        while done[0] < 100 and time.monotonic() < deadline:  # the flood is on
            await asyncio.sleep(0.05)
        scraped = done[0]
        # timed in a thread of its own: this loop is as busy as the server's
        took = await asyncio.to_thread(server.sigterm)
        stop.set()
        await flood
        return took, scraped

    took, scraped = asyncio.run(scenario())
    assert scraped >= 100, "the flood never got going"
    assert took < 2.0, f"SIGTERM took {took:.2f} s under 200 scraping clients"


def _config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closes `sock` (reads EOF); fails after `seconds`."""
    sock.settimeout(seconds)
    started = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        raise AssertionError(f"connection still open after {seconds} s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_slow_headers_and_idle_keepalive_connections_are_closed(spawn, tmp_path):
    server = spawn("--manifests", str(DEMO), "--config",
                   str(_config(tmp_path, {"server": {"idle_timeout": 1}})))
    wait_for(server.ready, what="/readyz")
    # 50 clients that send half a request and stall (slowloris)
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    for s in slow:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
    # a client that connects and never sends anything
    silent = socket.create_connection(("127.0.0.1", server.port))
    # a keep-alive client that scraped once and stays idle
    idle = socket.create_connection(("127.0.0.1", server.port))
    idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in idle.recv(65536)
    for s in [*slow, silent, idle]:
        assert _closed_within(s, 10) < 10
        s.close()
    assert get(server.url + "/healthz")[0] == 200  # and the server still serves


def test_a_client_that_never_reads_its_scrape_is_cut_off_after_write_timeout(spawn, tmp_path):
    """A scrape of several MB to a client that stops reading: the server abandons it after
    `server.write_timeout` (it would otherwise hold the body and the socket forever)."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "apps.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": [app(i) for i in range(9000)]}))
    server = spawn("--manifests", str(folder), "--config",
                   str(_config(tmp_path, {"server": {"write_timeout": 1}})))
    wait_for(server.ready, 120, what="/readyz")
    size = len(get(server.url + "/metrics", timeout=30)[2])
    # more than the kernel holds: a 4 MB send buffer at most, and a 4 kB receive window
    assert size > 5e6, size
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", server.port))
    stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(4)  # the stall itself: the scenario, not a wait for a result
    got = 0
    stalled.settimeout(10)
    try:
        while chunk := stalled.recv(1 << 20):
            got += len(chunk)
    except ConnectionResetError:
        pass
    finally:
        stalled.close()
    assert got < size, "the whole scrape was kept for a client that stopped reading"
    assert get(server.url + "/healthz")[0] == 200  # and the server still serves


def test_gzip_only_when_acceptable(spawn):
    server = spawn("--manifests", str(DEMO))
    wait_for(server.ready, what="/readyz")
    for header, gzipped in (("gzip", True), ("gzip;q=0", False), ("gzip; q=0.0, identity", False),
                            ("br, gzip;q=0.5", True), ("*", True), ("*;q=0", False),
                            ("identity", False),
                            # parameter names are case-insensitive; q may follow another
                            # parameter; a weight that is no number in 0..1 is a refusal
                            ("GZIP;Q=0", False), ("x-gzip;q=0", False), ("x-gzip", True),
                            ("gzip;level=1;q=0", False), ("gzip ; q = 0", False),
                            ("gzip;q=nan", False), ("gzip;q=-1", False), ("gzip;q=2", False),
                            ("gzip;q=0, gzip;q=1", False), ("*;q=0, gzip", True),
                            ("deflate, gzip;q=0.001", True), (",,", False)):
        status, headers, body = get(server.url + "/metrics", {"Accept-Encoding": header})
        assert status == 200
        assert (headers.get("Content-Encoding") == "gzip") is gzipped, header
        text = gzip.decompress(body) if gzipped else body
        assert names.SOURCE_UP.encode() in text
    for header, openmetrics in (("application/openmetrics-text; version=1.0.0; q=0.5, "
                                 "text/plain; q=0.3", True),
                                ("APPLICATION/OpenMetrics-Text", True),
                                ("application/openmetrics-text;Q=0", False),
                                ("application/openmetrics-text;q=0.0;version=1.0.0", False),
                                ("application/openmetrics-text;q=junk", False)):
        status, headers, body = get(server.url + "/metrics", {"Accept": header})
        assert status == 200
        assert headers["Content-Type"].startswith("application/openmetrics-text") \
            is openmetrics, header
        assert body.endswith(b"# EOF\n") is openmetrics, header


def test_landing_build_info_process_metrics_and_readyz(spawn, tmp_path):
    server = spawn("--manifests", str(DEMO))
    wait_for(server.ready, what="/readyz")
    status, headers, page = get(server.url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    for path in ("/metrics", "/healthz", "/readyz"):
        assert f'href="{path}"'.encode() in page
    out = server.metrics()
    info = series(out, names.BUILD_INFO)
    assert len(info) == 1 and info[0]["version"] and info[0]["python_version"]
    for family in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                   "process_open_fds", "process_start_time_seconds"):
        assert value(out, family) is not None, family
    om = get(server.url + "/metrics", {"Accept": "application/openmetrics-text"})[2].decode()
    assert om.endswith("# EOF\n") and om.count("# EOF") == 1
    assert "# TYPE process_cpu_seconds counter" in om
    # the startup summary: one line per source, with its objects and readiness
    log = wait_for(lambda: "source tls_probe:" in server.log and server.log, what="summary")
    assert "source argocd: 4 objects (applications.argoproj.io), ready" in log
    # the demo's broken Secret is said to be broken on purpose
    assert "broken-tls: unparsable_pem (deliberate:" in log


def test_readyz_names_the_sources_not_ready(spawn, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({  # nothing listens there: every list fails
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    server = spawn("--config", str(_config(tmp_path, {
        "cluster": {"mode": "kubeconfig", "kubeconfig": str(kubeconfig)},
        "sources": {"backups": {"enabled": False}, "certificates": {"enabled": False},
                    "services": {"enabled": False}}})))
    status, _, body = wait_for(lambda: server.alive() and get(server.url + "/readyz"),
                               what="/readyz answer")
    assert status == 503 and b"argocd" in body and b"backups" not in body


def test_no_cluster_says_so_and_points_to_manifests_before_listening(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": ""}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    res = subprocess.run([sys.executable, "-m", "sloexporter.cli", "serve", "--listen",
                          f"127.0.0.1:{free_port()}"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert "no Kubernetes cluster found" in res.stderr and "--manifests" in res.stderr
    assert "listening on" not in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("content", [
    "not: [valid",  # not YAML
    "",  # empty
    "- a list\n",  # YAML, not a mapping
    "apiVersion: v1\nkind: Config\ncurrent-context: nope\ncontexts: []\n",  # no such context
])
def test_an_unusable_kubeconfig_is_one_line_naming_it_before_listening(tmp_path, content):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(content)
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    res = subprocess.run([sys.executable, "-m", "sloexporter.cli", "serve", "--listen",
                          f"127.0.0.1:{free_port()}"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert f"cannot use the kubeconfig {kubeconfig}" in lines[0] and "--manifests" in lines[0]
    assert "listening on" not in res.stderr and "Traceback" not in res.stderr


def test_json_logs_are_one_object_per_line(spawn, tmp_path):
    server = spawn("--manifests", str(DEMO), "--log-format", "json")
    wait_for(server.ready, what="/readyz")
    wait_for(lambda: "source argocd" in server.log, what="summary")
    assert server.sigterm() < 2.0
    records = [json.loads(line) for line in server.log.splitlines() if line.strip()]
    assert {"time", "level", "logger", "msg"} <= set(records[0])
    messages = [r["msg"] for r in records]
    assert any(m.startswith("listening on 127.0.0.1:") for m in messages)
    assert any(m.startswith("skipped Secret legacy/broken-tls") for m in messages)
    assert "stopping" in messages


def test_sighup_reloads_the_config_and_keeps_it_when_the_new_one_is_bad(spawn, tmp_path):
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({"sources": {"backups": {"enabled": False}}}))
    server = spawn("--manifests", str(DEMO), "--config", str(config))
    wait_for(server.ready, what="/readyz")
    assert not series(server.metrics(), names.BACKUP_LAST_SUCCESS)
    assert series(server.metrics(), names.ARGOCD_APP_SYNCED)
    config.write_text(yaml.safe_dump({"sources": {"backups": {"enabled": True}}}))
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: series(server.metrics(), names.BACKUP_LAST_SUCCESS), what="reload")
    assert "reloaded" in server.log
    config.write_text("sources:\n  backups:\n    enabeld: false\n")  # a typo: rejected
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "rejected, keeping the running one" in server.log, what="rejection")
    assert server.alive()
    assert series(server.metrics(), names.BACKUP_LAST_SUCCESS)  # the running config stays
    assert "enabeld" in server.log  # the log line says what is wrong
    assert server.sigterm() < 2.0


def test_a_bad_object_added_after_start_does_not_stop_later_reloads(spawn, tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "a.yaml").write_text(yaml.safe_dump(app(1)))
    server = spawn("--manifests", str(folder))
    wait_for(server.ready, what="/readyz")
    bad = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": "j", "namespace": "b", "uid": "j-1", "ownerReferences": 5,
        "labels": "x"}}
    (folder / "bad.yaml").write_text(yaml.safe_dump(bad))
    wait_for(lambda: skipped(server.metrics(), "backups", "malformed") >= 1, what="the skip")
    (folder / "a.yaml").write_text(yaml.safe_dump(app(2)))  # a later change still applies
    wait_for(lambda: value(server.metrics(), names.ARGOCD_APP_SYNCED, namespace="argocd",
                           name="app2", project="p") == 1, what="the later change")
    assert value(server.metrics(), names.SOURCE_UP, source="argocd") == 1


def test_a_manifests_folder_that_goes_away_keeps_the_last_state_with_source_up_0(
        spawn, tmp_path):
    """A folder that is gone (a dangling symlink while git-sync swaps it, an unmounted
    volume) read as empty, and every object was pruned: series and counters lost."""
    real = tmp_path / "cluster-v1"
    real.mkdir()
    (real / "a.yaml").write_text(yaml.safe_dump(app(1)))
    link = tmp_path / "cluster"
    link.symlink_to(real)
    server = spawn("--manifests", str(link))
    wait_for(server.ready, what="/readyz")
    real.rename(tmp_path / "elsewhere")  # the symlink dangles
    out = wait_for(lambda: (t := server.metrics()) and value(
        t, names.SOURCE_UP, source="argocd") == 0 and t, what="source_up 0")
    assert value(out, names.ARGOCD_APP_SYNCED, namespace="argocd", name="app1",
                 project="p") == 1  # the last state is still served
    status, _, body = get(server.url + "/readyz")
    assert status == 503 and b"manifests (folder gone)" in body
    (tmp_path / "elsewhere").rename(real)
    wait_for(lambda: value(server.metrics(), names.SOURCE_UP, source="argocd") == 1,
             what="back")
    assert server.log.count("is gone") == 1 and server.log.count("is back") == 1
