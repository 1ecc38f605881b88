"""The documented serve block against the history Prometheus, pages in headless Chromium,
and a Prometheus that is unreachable, slow or answering errors."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from sloexporter.config import Config
from sloexporter.server import Exporter
from sloexporter.sources.store import Shard
from sloexporter.status.config import StatusConfig
from sloexporter.status.service import StatusService
from sloexporter.status.web import build_status_app
from tests import status_history as hist
from tests.tools import LOCAL_TOOLS, ROOT, free_port, require_tool

DOC = ROOT / "docs" / "status.md"
MARKER = "<!-- status-serve-block"


def serve_block() -> str:
    """The command block that follows the marker in docs/status.md."""
    text = DOC.read_text()
    after = text[text.index(MARKER):]
    match = re.search(r"```sh\n(.*?)```", after, re.S)
    assert match
    return match.group(1)


def test_readme_shows_the_same_block():
    readme = (ROOT / "README.md").read_text()
    assert "docs/status.md" in readme
    after = readme[readme.index(MARKER):]
    match = re.search(r"```sh\n(.*?)```", after, re.S)
    assert match and match.group(1) == serve_block()


@pytest.fixture(scope="module")
def served(history: hist.History) -> Iterator[str]:
    """The documented block, run as a user would, with PROMETHEUS_URL and LISTEN set."""
    port = free_port()
    env = dict(os.environ, PROMETHEUS_URL=history.url, LISTEN=f"127.0.0.1:{port}",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), str(LOCAL_TOOLS),
                                     os.environ["PATH"]]))
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", serve_block()], cwd=ROOT,
                            env=env, stdout=log, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, _log(log)
            try:
                import urllib.request
                with urllib.request.urlopen(base + "/api/v1/slos", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, _log(log)
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def _log(log: Any) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-3000:]


async def fetch(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s, \
            s.get(url) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_documented_block_serves_slos_from_prometheus(history, served):
    status, body = await fetch(served + "/api/v1/slos")
    slos = {(i["service"], i["slo"]): i for i in body["slos"]}
    checkout = slos[("checkout", "availability")]
    now = body["computed_at"]
    # live: the window has moved on from T0 by the time the test runs
    edge = int(now) // 300 * 300  # the service reads the 5m series every 5 minutes
    expected = 1 - history.jobs["checkout"].ratio(edge - 30 * hist.DAY, edge)
    assert checkout["sli"] == pytest.approx(expected, abs=2e-5)
    assert ("shop", "pyrra-errors") in slos and ("api", "requests-availability") in slos
    # the spec folder's own SLOs are listed even without data
    assert any(i["origin"] == "native" and i["status"] == "NO_DATA" for i in body["slos"])
    status, gate = await fetch(served + "/api/v1/gate?service=search")
    assert status == 423 and gate["allowed"] is False


def chromium(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require_tool("chromium")
    profile = tempfile.mkdtemp(prefix="chromium-")
    try:
        return subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--window-size=1400,1000", *args, url],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "CONSOLE" in line or "Failed to load resource" in line or "Uncaught" in line]


PAGES = {"list": "/", "detail": "/slo/checkout/availability", "platform": "/platform"}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_pages_in_chromium(history, served, page, tmp_path):
    url = served + PAGES[page]
    dom = chromium(url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_errors(dom.stderr) == []
    html = dom.stdout
    if page == "list":
        assert "checkout / availability" in html and "pyrra-errors" in html
        assert "BREACHED" in html and "&lt;script&gt;" in html and "<script>alert" not in html
    if page == "detail":
        assert "Error budget remaining" in html and html.count("<polyline") == 3
        assert "14.400" in html and "Calendar periods" not in html
    if page == "platform":
        assert "shop" in html and "nightly" in html and "db.example:5432" in html
    shot = tmp_path / f"status-{page}.png"
    taken = chromium(url, f"--screenshot={shot}")
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
    committed = ROOT / "docs" / shot.name
    if os.environ.get("SLOEXPORTER_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, committed)
    assert committed.exists(), "run with SLOEXPORTER_UPDATE_SCREENSHOTS=1 to create it"
    assert f"({shot.name})" in DOC.read_text()
    if page == "list":  # the README shows the list page
        assert f"(docs/{shot.name})" in (ROOT / "README.md").read_text()


# --- Prometheus down, slow, or answering errors ----------------------------------------

class BadPrometheus:
    """A stand-in for what a real Prometheus never answers on purpose: hangs and errors."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def handle(self, request: web.Request) -> web.Response:
        if self.mode == "slow":
            await asyncio.sleep(30)
        if self.mode == "html":
            return web.Response(status=502, text="<html>Bad Gateway</html>",
                                content_type="text/html")
        return web.json_response({"status": "error", "errorType": "execution",
                                  "error": "query processing would load too many samples"},
                                 status=422)


@pytest.fixture
async def app_for() -> AsyncIterator[Any]:
    opened: list[Any] = []

    async def make(url: str, timeout: float = 0.5, **status: Any) -> tuple[TestClient,
                                                                             StatusService]:
        cfg = StatusConfig.model_validate({"prometheus": {"url": url, "query_timeout": timeout},
                                           **status})
        svc = StatusService(cfg, [])
        exporter = Exporter(Config(), Shard(0, 1))
        client = TestClient(TestServer(build_status_app(exporter, svc)))
        await client.start_server()
        opened.append((client, svc))
        return client, svc

    yield make
    for client, svc in opened:
        await client.close()
        await svc.client.close()


@pytest.mark.parametrize("mode", ["slow", "html", "error"])
async def test_bad_prometheus_gives_503_with_reason(mode, app_for):
    bad = BadPrometheus(mode)
    app = web.Application()
    app.router.add_route("*", "/api/v1/{tail:.*}", bad.handle)
    server = TestServer(app)
    await server.start_server()
    try:
        client, svc = await app_for(str(server.make_url("")))
        refresh = asyncio.create_task(svc.refresh())
        # /metrics answers while the refresh waits on Prometheus
        metrics = await asyncio.wait_for(client.get("/metrics"), 5)
        assert metrics.status == 200
        await refresh
        resp = await client.get("/api/v1/slos")
        body = await resp.json()
        assert resp.status == 503
        expected = {"slow": "no answer within 0.5s", "html": "HTTP 502",
                    "error": "too many samples"}[mode]
        assert expected in body["error"]
        page = await (await client.get("/")).text()
        assert "Prometheus is unavailable" in page and "No data to show yet" in page
        assert "sloexporter_status_up 0" in await (await client.get("/metrics")).text()
        assert (await client.get("/api/v1/gate?service=x")).status == 503
    finally:
        await server.close()


async def test_unreachable_prometheus_after_success_shows_data_age(history, app_for):
    client, svc = await app_for(history.url, timeout=60)
    await svc.refresh()
    assert svc.error is None
    svc.client.base = f"http://127.0.0.1:{free_port()}"
    await svc.refresh()
    body = await (await client.get("/api/v1/slos")).json()
    assert "Prometheus query failed" in body["error"] and body["data_age_seconds"] is not None
    page = await (await client.get("/")).text()
    assert "Showing data from" in page and "checkout / availability" in page


def test_serve_rejects_bad_status_options(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "sloexporter.cli", "serve", *args],
                              capture_output=True, text=True, timeout=60, cwd=ROOT)

    bad_url = run("--prometheus-url", "localhost:9090", "--manifests", "examples/cluster")
    assert bad_url.returncode == 2 and "http://" in bad_url.stderr
    no_url = run("--slos", "examples/slos", "--manifests", "examples/cluster")
    assert no_url.returncode == 2 and "--prometheus-url" in no_url.stderr
    spec = tmp_path / "bad.yaml"
    spec.write_text("apiVersion: sloexporter.dev/v1\nkind: ServiceLevels\nservice: x\n"
                    "slos: [{name: a, objective: 120, sli: {ratio: {query: up}}}]\n")
    invalid = run("--prometheus-url", "http://127.0.0.1:1", "--slos", str(spec),
                  "--manifests", "examples/cluster")
    assert invalid.returncode == 1 and "bad.yaml:" in invalid.stderr


class Gateway:
    """An HTTPS gateway in front of the real Prometheus that, like a Mimir or Cortex
    gateway, requires credentials and a tenant (X-Scope-OrgID) on every call."""

    def __init__(self, upstream: str, authorization: str, tenant: str) -> None:
        self.upstream, self.authorization, self.tenant = upstream, authorization, tenant
        self.seen: list[tuple[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        tenant = request.headers.get("X-Scope-OrgID", "")
        self.seen.append((auth, tenant))
        if auth != self.authorization:
            return web.json_response({"status": "error", "error": "unauthorized"}, status=401)
        if tenant != self.tenant:
            return web.json_response({"status": "error", "error": "no org id"}, status=401)
        form = await request.post()
        async with aiohttp.ClientSession() as session, \
                session.post(self.upstream + request.path, data=dict(form)) as resp:
            return web.Response(body=await resp.read(), status=resp.status,
                                content_type="application/json")


@pytest.mark.parametrize("kind", ["bearer", "basic"])
async def test_auth_ca_and_tenant_reach_prometheus_through_a_gateway(history, tmp_path, kind):
    import base64
    import ssl

    from tests.certs import make_ca, make_leaf, write_chain

    ca = make_ca()
    crt, key = write_chain(tmp_path, "gateway", make_leaf(ca))
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    secret = "s3cret-token"
    (tmp_path / "token").write_text(secret + "\n")
    (tmp_path / "user").write_text("slo\n")
    (tmp_path / "password").write_text(secret + "\n")
    expected = f"Bearer {secret}" if kind == "bearer" else \
        "Basic " + base64.b64encode(f"slo:{secret}".encode()).decode()
    gateway = Gateway(history.url, expected, "team-a")
    app = web.Application()
    app.router.add_route("*", "/api/v1/{tail:.*}", gateway.handle)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(crt, key)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    auth = {"bearer_token_file": str(tmp_path / "token")} if kind == "bearer" else \
        {"basic_auth_username_file": str(tmp_path / "user"),
         "basic_auth_password_file": str(tmp_path / "password")}
    try:
        cfg = StatusConfig.model_validate({"prometheus": {
            "url": f"https://localhost:{port}", "ca_file": str(tmp_path / "ca.crt"),
            "org_id": "team-a", **auth}})
        svc = StatusService(cfg, [])
        try:
            await svc.refresh()
            assert svc.error is None, svc.error
            assert ("checkout", "availability") in svc.snapshot.by_key
            (tmp_path / ("token" if kind == "bearer" else "password")).write_text("rotated")
            await svc.refresh()  # credentials are read again on every refresh
            assert svc.error and "401" in svc.error and "rotated" not in svc.error
        finally:
            await svc.client.close()
        untrusted = StatusService(StatusConfig.model_validate(
            {"prometheus": {"url": f"https://localhost:{port}", **auth}}), [])
        try:
            await untrusted.refresh()
            assert untrusted.error and "certificate" in untrusted.error.lower()
        finally:
            await untrusted.client.close()
    finally:
        await runner.cleanup()


# --- The deploy-gate recipes of docs/status.md, as the tools they configure run them ------

def recipe(heading: str) -> dict[str, Any]:
    import yaml
    text = DOC.read_text()
    after = text[text.index(heading):]
    match = re.search(r"```yaml\n(.*?)```", after, re.S)
    assert match, heading
    return yaml.safe_load(match.group(1))  # type: ignore[no-any-return]


def _local(url: str, served: str) -> str:
    """The recipe's in-cluster address, pointed at the test's serve."""
    return re.sub(r"^http://[^/]+", served, url)


async def _rollouts_measure(metric: dict[str, Any], url: str) -> tuple[str, Any]:
    """What Argo Rollouts' web provider makes of one answer: a non-2xx status is an Error
    measurement (no value); otherwise the jsonPath value is checked by successCondition."""
    web_ = metric["provider"]["web"]
    timeout = aiohttp.ClientTimeout(total=web_.get("timeoutSeconds", 10))
    async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url) as resp:
        if not 200 <= resp.status < 300:
            return "Error", resp.status
        body = await resp.json(content_type=None)
    assert web_["jsonPath"] == "{$.allowed}"
    result = body["allowed"]
    assert metric["successCondition"] == "result == true"
    return ("Successful" if result is True else "Failed"), result


async def test_rollouts_analysis_template_recipe_aborts_on_a_blocked_gate(history, served):
    template = recipe("### Gate a rollout: Argo Rollouts AnalysisTemplate")
    assert template["kind"] == "AnalysisTemplate"
    (metric,) = template["spec"]["metrics"]
    # the first Error ends the analysis (Argo's default is 4 errors in a row)
    assert metric["consecutiveErrorLimit"] == 0 and metric["failureLimit"] == 0
    url = metric["provider"]["web"]["url"]
    assert "{{args.service}}" in url
    _, body = await fetch(served + "/api/v1/slos")
    services = sorted({i["service"] for i in body["slos"]})
    phases = {}
    for service in services:
        phases[service] = await _rollouts_measure(
            metric, _local(url.replace("{{args.service}}", service), served))
    assert phases["search"] == ("Error", 423)
    assert any(p == ("Successful", True) for p in phases.values()), phases


def test_presync_hook_job_fails_on_a_blocked_gate_and_passes_otherwise(history, served):
    job = recipe("### Gate a sync: Argo CD PreSync hook Job")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert job["spec"]["backoffLimit"] == 0
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("curlimages/curl:")
    curl = require_tool("curl")
    args = [_local(a, served) for a in container["args"]]

    def run(service: str) -> subprocess.CompletedProcess[str]:
        argv = [re.sub(r"service=[^&]+", f"service={service}", a) for a in args]
        return subprocess.run([curl, *argv], capture_output=True, text=True, timeout=30)

    blocked = run("search")
    assert blocked.returncode != 0 and '"allowed": false' in blocked.stdout
    assert "search/availability" in blocked.stdout  # the reason, in the Job's log
    import json
    slos = json.loads(run("nobody").stdout or "{}")
    assert slos.get("allowed") is False  # an unknown service never passes
    allowed = [s for s in ("shop", "checkout", "api") if run(s).returncode == 0]
    assert allowed, "no service passed the gate"


def _doc_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


async def test_the_documented_curl_answers_what_the_example_shows(history, served):
    """docs/status.md's curl of /api/v1/slos, against the served block: the example's
    fields are the API's, and it holds every field the issue names."""
    import json
    import shlex
    (curl_line,) = [b for b in _doc_blocks("sh") if b.startswith("curl ")]
    url = _local(shlex.split(curl_line)[-1], served)
    example = json.loads(next(b for b in _doc_blocks("json") if b.startswith('{"slos"')))
    status, body = await fetch(url)
    assert status == 200 and body["slos"], body
    assert {i["service"] for i in body["slos"]} == {"checkout"}
    documented, real = example["slos"][0], body["slos"][0]
    # the served block sets no status.calendar, so its items have no `calendar`
    assert "calendar" not in real and "`calendar`" in DOC.read_text()
    assert set(documented) - {"calendar"} <= set(real), set(documented) - set(real)
    assert set(example) == set(body)
    for field in ("service", "slo", "objective", "period", "sli", "error_budget_remaining",
                  "burn_rates", "alerts", "status", "labels"):
        assert field in documented, field
    assert set(documented["alerts"]) == set(real["alerts"]) == {"page", "ticket"}
    assert set(documented["tiers"][0]) == set(real["tiers"][0])
    assert set(documented["error_budget"]) <= set(real["error_budget"] or {}) | {"events"}


def test_the_documented_report_command_runs(history, tmp_path):
    (block,) = [b for b in _doc_blocks("sh") if b.startswith("sloexporter report")]
    command = block.replace("http://localhost:9090", history.url)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                 os.environ["PATH"]]))
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    label = re.search(r"--period (\S+)", command)
    assert label
    for ext in ("html", "md", "json"):
        assert (tmp_path / "reports" / f"slo-report-{label[1]}.{ext}").is_file()
