"""External labels, the global rule set and ruler group limits, proven with promtool 2 and 3.

- `--external-labels cluster=eu-1`: the generated promtool tests of every SLI kind still
  pass (the alerts fire at the same step), every recorded series and alert carries the
  labels, and the rules record exactly as many series as without them.
- `--global`: two clusters' recorded series, one with an outage, give the global burn
  rate a hand computation gives (traffic-weighted), and the global set never reads a
  series without a cluster label nor its own output.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.conftest import run_cli
from tests.tools import doc_section, promtool_test_rules, require_tool, run_sh, serving

#: one SLO per SLI shape whose joins differ: errors/total, good/total, a histogram, a
#: gauge condition (per-series records) and a low-traffic guard
SPEC = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: shop
labels: {team: payments}
slos:
  - name: errors
    objective: 99.9
    period: 1d
    sli:
      events:
        errors: sum(rate(http_requests_total{job="shop",code=~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="shop"}[{{window}}]))
  - name: good
    objective: 99
    period: 1d
    min_events: 10
    sli:
      events:
        good: sum(rate(http_requests_total{job="shop",code!~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="shop"}[{{window}}]))
  - name: latency
    objective: 99
    period: 1d
    sli:
      latency: {metric: http_request_duration_seconds, selector: '{job="shop"}',
                threshold: 0.5}
  - name: lag
    objective: 99
    period: 1d
    sli:
      threshold: {query: 'max(pg_replication_lag_seconds{job="db"})', op: "<", value: 900}
"""

EXTERNAL = {"cluster": "eu-1", "region": "eu"}


def _generate(tmp_path: Path, name: str, *args: str) -> Path:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    out = tmp_path / name
    result = run_cli("generate", str(spec), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    return out


def _rules(path: Path) -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def _series_counts(tool: str, test_file: Path) -> dict[str, str]:
    """What promtool got for each probe, by its `# tN pM` tag (each expects -1: all fail)."""
    proc = subprocess.run([tool, "test", "rules", str(test_file)], capture_output=True,
                          text=True, timeout=600)
    got = dict(re.findall(r'# (t\d+ p\d+)", time: .*\n.*exp: .*\n\s*got: (nil|\{\} \S+)',
                          proc.stdout + proc.stderr))
    assert got, proc.stdout + proc.stderr
    return got


def _probe_tests(test_file: Path, rules_file: Path, probes: list[str]) -> Path:
    """The generated outage tests' inputs, each with `probes` evaluated at its end."""
    doc = yaml.safe_load(test_file.read_text())
    tests = []
    for i, test in enumerate(t for t in doc["tests"] if "outage" in t["name"]):
        end = max(int(e["eval_time"].rstrip("s")) for e in test["promql_expr_test"])
        tests.append({"interval": test["interval"], "input_series": test["input_series"],
                      "promql_expr_test": [
                          {"expr": f"{p} # t{i} p{j}", "eval_time": f"{end}s",
                           "exp_samples": [{"labels": "{}", "value": -1}]}
                          for j, p in enumerate(probes)]})
    probe = test_file.with_name("probe.test.yaml")
    probe.write_text(yaml.safe_dump({"rule_files": [str(rules_file)], "tests": tests}))
    return probe


def test_external_labels_keep_every_alert_and_series(tmp_path: Path) -> None:
    slos = tmp_path / "slos"
    slos.mkdir()
    (slos / "shop.yaml").write_text(SPEC)
    plain = _generate(tmp_path, "plain", "--with-tests")
    # the docs' commands: generate with the labels, then the generated promtool tests,
    # which prove each alert still fires within its detection time
    for script in _blocks("## External labels"):
        run_sh(script, tmp_path, timeout=600)
    labelled = tmp_path / "out" / "eu-1"
    promtool_test_rules([labelled / "tests" / "shop.test.yaml"], ("promtool3",))
    # every series and alert carries the labels; the joins ignore them on both sides
    for rule in _rules(labelled / "rules" / "shop.yaml"):
        assert {k: rule["labels"].get(k) for k in EXTERNAL} == EXTERNAL, rule
        if "ignoring (" in rule["expr"]:
            assert "ignoring (cluster, region, service, slo, team)" in rule["expr"], rule
    # ... and the same series exist, each once, now with the labels
    probes = ['count({__name__=~"slo:.+"})',
              'count({__name__=~"slo:.+",cluster="eu-1",region="eu"})',
              'count(ALERTS{cluster="eu-1",region="eu"})', "count(ALERTS)"]
    tool = require_tool("promtool3")
    before = _series_counts(tool, _probe_tests(plain / "tests" / "shop.test.yaml",
                                               plain / "rules" / "shop.yaml", probes))
    after = _series_counts(tool, _probe_tests(labelled / "tests" / "shop.test.yaml",
                                              labelled / "rules" / "shop.yaml", probes))
    assert len(before) == len(after) == 4 * 4, (before, after)  # an outage test per SLO
    for test in range(4):
        every, stamped, stamped_alerts, alerts = (f"t{test} p{j}" for j in range(4))
        assert after[stamped] == after[every] == before[every] != "nil", (before, after)
        assert after[stamped_alerts] == after[alerts] == before[alerts], (before, after)


def test_default_output_has_no_external_labels(tmp_path: Path) -> None:
    plain = (_generate(tmp_path, "a") / "rules" / "shop.yaml").read_text()
    again = (_generate(tmp_path, "b", "--external-labels", "") / "rules" / "shop.yaml")
    assert again.read_text() == plain
    assert "cluster" not in plain


@pytest.mark.parametrize(("value", "message"), [
    ("cluster", "expected KEY=VALUE"),
    ("=eu", "expected KEY=VALUE"),
    ("cluster=", "needs a value"),
    ("1cluster=a", "a label name is letters"),
    ("clus-ter=a", "a label name is letters"),
    ("service=a", "set this label themselves"),
    ("slo=a", "set this label themselves"),
    ("severity=a", "set this label themselves"),
    ("le=a", "set this label themselves"),
    ("__name__=a", "set this label themselves"),
    ("__meta=a", "set this label themselves"),
    ("cluster=a,cluster=b", "given twice"),
    ("cluster={{ $value }}", "templates"),
    ("team=x", "already has the label team"),
])
def test_bad_external_labels_are_clear_errors(tmp_path: Path, value: str, message: str) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    result = run_cli("generate", str(spec), "-o", str(out), "--external-labels", value)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()


def test_external_label_clashes(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    both = run_cli("generate", str(spec), "-o", "-", "--external-labels", "cluster=a",
                   "--rule-labels", "cluster=a")
    assert both.returncode == 2 and "both set 'cluster'" in both.stderr, both.stderr
    grouped = tmp_path / "grouped.yaml"
    grouped.write_text(SPEC.replace("sum(rate(http_requests_total{job=\"shop\"}",
                                    "sum by (cluster) (rate(http_requests_total{job=\"shop\"}")
                       .replace('sum(rate(http_requests_total{job="shop",code',
                                'sum by (cluster) (rate(http_requests_total{job="shop",code'))
    split = run_cli("generate", str(grouped), "-o", "-", "--external-labels", "cluster=a")
    assert split.returncode == 2 and "splits its series by cluster" in split.stderr, \
        split.stderr


def test_a_gauge_series_named_like_an_external_label_stays_apart(tmp_path: Path) -> None:
    """A threshold SLI records one series per gauge series; two that differ only in
    `cluster` must not collide with the constant cluster label."""
    spec = tmp_path / "db.yaml"
    spec.write_text("""\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: db
slos:
  - name: up
    objective: 99
    period: 7d
    sli:
      threshold: {query: 'db_up{job="db"}', op: "==", value: 1}
""")
    out = tmp_path / "out"
    assert run_cli("generate", str(spec), "-o", str(out), "--external-labels",
                   "cluster=eu-1").returncode == 0
    test = {"rule_files": [str(out / "rules" / "db.yaml")], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": [
                {"series": 'db_up{job="db",cluster="a"}', "values": "1x30"},
                {"series": 'db_up{job="db",cluster="b"}', "values": "0x30"}],
                "promql_expr_test": [{
                    "expr": "slo:sli_condition_good:bool", "eval_time": "10m",
                    "exp_samples": [
                        {"labels": 'slo:sli_condition_good:bool{cluster="eu-1",'
                                   'exported_cluster="a",job="db",service="db",slo="up"}',
                         "value": 1},
                        {"labels": 'slo:sli_condition_good:bool{cluster="eu-1",'
                                   'exported_cluster="b",job="db",service="db",slo="up"}',
                         "value": 0}]}, {
                    "expr": 'slo:sli_bad_objects:sum{cluster="eu-1"}', "eval_time": "10m",
                    "exp_samples": [{"labels": 'slo:sli_bad_objects:sum{cluster="eu-1",'
                                               'service="db",slo="up"}', "value": 1}]}]}]}
    path = tmp_path / "db.test.yaml"
    path.write_text(yaml.safe_dump(test))
    promtool_test_rules([path])


# ---- the global view ---------------------------------------------------------------------

GLOBAL_SPEC = """\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: shop
labels: {team: payments}
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        errors: sum(rate(http_requests_total{job="shop",code=~"5.."}[{{window}}]))
        total: sum(rate(http_requests_total{job="shop"}[{{window}}]))
  - name: jobs
    objective: 99
    sli:
      ratio:
        query: sum(rate(jobs_failed_total[{{window}}])) / sum(rate(jobs_total[{{window}}]))
"""


def _recorded(cluster: str | None, metric: str, per_second: float,
              slo: str = "availability") -> dict[str, str]:
    """A cluster's recorded 5m rate, constant for two hours of 1m samples."""
    where = f',cluster="{cluster}"' if cluster else ""
    return {"series": f'slo:{metric}:rate5m{{service="shop",slo="{slo}",team="payments"'
                      f'{where}}}', "values": f"{per_second}x120"}


def _global_case(name: str, clusters: dict[str, tuple[float, float]], ratio: float,
                 page: bool) -> dict[str, Any]:
    """Clusters as {cluster: (total/s, errors/s)}; `ratio` is the hand-computed global
    error ratio: the sum of errors over the sum of totals."""
    series = [_recorded(c, m, v) for c, (total, errors) in clusters.items()
              for m, v in (("sli_total", total), ("sli_errors", errors))]
    # decoys the global set must not read: a Prometheus that stamped no cluster label,
    # and another SLO's series
    series += [_recorded(None, "sli_errors", 1000), _recorded(None, "sli_total", 1000),
               _recorded("eu-1", "sli_errors", 50, slo="other"),
               _recorded("eu-1", "sli_total", 50, slo="other")]
    ident = 'service="shop",slo="availability",team="payments"'
    labels = 'ALERTS{alertname="ErrorBudgetBurn",alertstate="firing",long_window="1h",' \
             'service="shop",severity="page",short_window="5m",slo="availability",' \
             'slo_scope="global",team="payments"}'
    checks = [(f"slo_global:sli_error:ratio_{w}", f"slo_global:sli_error:ratio_{w}{{{ident}}}",
               ratio) for w in ("rate5m", "rate1h", "rate6h")]
    checks.append(("slo_global:sli_total:rate5m", f"slo_global:sli_total:rate5m{{{ident}}}",
                   sum(t for t, _ in clusters.values())))
    tests = [{"expr": expr, "eval_time": "90m", "exp_samples": [{"labels": labels_, "value": v}]}
             for expr, labels_, v in checks]
    tests.append({"expr": 'ALERTS{alertstate="firing",long_window="1h"}', "eval_time": "90m",
                  "exp_samples": [{"labels": labels, "value": 1}] if page else []})
    return {"name": name, "interval": "1m", "input_series": series,
            "promql_expr_test": tests}


def test_global_rules_weigh_clusters_by_traffic(tmp_path: Path) -> None:
    (tmp_path / "slos").mkdir()
    spec = tmp_path / "slos" / "shop.yaml"
    spec.write_text(GLOBAL_SPEC)
    [script] = _blocks("## The global view")  # generate --global, promtool check rules
    result = run_sh(script, tmp_path)
    assert "shop/jobs: a ratio SLI has no totals" in result.stderr
    out, plain = tmp_path / "out" / "global", tmp_path / "plain"
    assert run_cli("generate", "slos", "-o", str(plain), cwd=tmp_path).returncode == 0
    # the per-cluster rules are the same with or without the global set
    assert (out / "rules" / "shop.yaml").read_text() == \
        (plain / "rules" / "shop.yaml").read_text()
    rules = _rules(out / "global" / "shop.yaml")
    assert {r.get("record") for r in rules if "record" in r} >= {
        "slo_global:sli_errors:rate5m", "slo_global:sli_total:rate5m"}
    # it reads only what clusters recorded, and writes names no cluster rule reads
    for rule in rules:
        assert "cluster" not in rule["labels"], rule
        assert rule.get("record", "slo_global:").startswith("slo_global:"), rule
        for name in re.findall(r"\bslo:[a-z_0-9:]+", rule["expr"]):
            assert name in ("slo:sli_errors:rate5m", "slo:sli_total:rate5m"), rule
            assert 'cluster!=""' in rule["expr"], rule
    cases = [
        # a small cluster in an outage next to a big healthy one: 2/100 errors, a 20x
        # burn over the 99.9% objective, above the 14.4x page (an average of the two
        # ratios, (0 + 1) / 2, would say 500x)
        _global_case("outage in the small cluster", {"eu-1": (98, 0), "us-1": (2, 2)},
                     0.02, page=True),
        # a small cluster at 1% errors (10x its budget alone): 0.1/100 = 0.001 overall,
        # a 1x burn, so the global set stays quiet
        _global_case("budget-rate errors overall",
                     {"eu-1": (90, 0.0), "us-1": (10, 0.1)}, 0.001, page=False),
    ]
    test = tmp_path / "global.test.yaml"
    test.write_text(yaml.safe_dump({"rule_files": [str(out / "global" / "shop.yaml")],
                                    "evaluation_interval": "1m", "tests": cases}))
    promtool_test_rules([test])


def test_global_labels_options(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(GLOBAL_SPEC)
    result = run_cli("generate", str(spec), "-o", "-", "--global", "--global-labels",
                     "cluster,region")
    assert result.returncode == 0, result.stderr
    assert 'cluster!="",region!=""' in result.stdout
    assert "slo:sli_error:ratio_rate" not in result.stdout  # only the global set
    for args, message in ((["--global-labels", "cluster"], "needs --global"),
                          (["--global", "--global-labels", "slo"], "the SLO's own label"),
                          (["--global", "--global-labels", "a-b"], "a label name")):
        bad = run_cli("generate", str(spec), "-o", "-", *args)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr


# ---- rule group limits, and the recipes of docs/many-clusters.md -----------------------

def test_split_groups_keep_every_rule_in_order(tmp_path: Path) -> None:
    """Split event SLIs still pass their generated tests. (A time-share SLI counts a
    missing record as bad, so it can see one bad evaluation when a later part runs first
    at load; docs/many-clusters.md says so.)"""
    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC.split("  - name: lag")[0])
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert run_cli("generate", str(spec), "-o", str(whole)).returncode == 0
    assert run_cli("generate", str(spec), "-o", str(split), "--max-rules-per-group", "3",
                   "--with-tests").returncode == 0
    groups = yaml.safe_load((split / "rules" / "shop.yaml").read_text())["groups"]
    names = [g["name"] for g in groups]
    assert len(set(names)) == len(names) and all(len(g["rules"]) <= 3 for g in groups)
    assert "sloexporter-shop-errors-sli-2" in names and "sloexporter-shop-errors-sli" in names
    assert [r for g in groups for r in g["rules"]] == _rules(whole / "rules" / "shop.yaml")
    # the generated tests still pass on the split rules (promtool evaluates the groups in
    # file order; a ruler may see a record from an earlier part one evaluation late)
    promtool_test_rules([split / "tests" / "shop.test.yaml"])
    for bad in ("0", "-1", "x"):
        result = run_cli("generate", str(tmp_path / "shop.yaml"), "-o", "-",
                         "--max-rules-per-group", bad)
        assert result.returncode == 2 and "--max-rules-per-group" in result.stderr


class MimirRuler:
    """A stand-in for Mimir's ruler config API: `POST /prometheus/config/v1/rules/{ns}`
    with one rule group as YAML, per the Mimir HTTP API reference, answered 202."""

    def __init__(self, tenant: str, limit: int = 20) -> None:
        self.tenant, self.limit = tenant, limit
        self.groups: dict[tuple[str, str], dict[str, Any]] = {}
        self.posts = 0

    async def set_group(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Scope-OrgID") != self.tenant:
            return web.Response(status=401, text="no org id")
        if request.content_type != "application/yaml":
            return web.Response(status=400, text=f"content type {request.content_type}")
        try:
            group = yaml.safe_load(await request.text())
        except yaml.YAMLError as exc:
            return web.Response(status=400, text=str(exc))
        if not isinstance(group, dict) or "groups" in group or not group.get("name") \
                or not isinstance(group.get("rules"), list) or not group["rules"]:
            return web.Response(status=400, text="the body is one rule group: name, rules")
        if set(group) - {"name", "interval", "rules", "limit", "source_tenants"}:
            return web.Response(status=400, text=f"unknown fields {sorted(group)}")
        if len(group["rules"]) > self.limit:
            return web.Response(status=400, text="per-tenant rules per rule group limit")
        for rule in group["rules"]:
            if ("record" in rule) == ("alert" in rule) or not rule.get("expr"):
                return web.Response(status=400, text=f"bad rule {rule}")
        self.groups[(request.match_info["namespace"], group["name"])] = group
        self.posts += 1
        return web.Response(status=202, text='{"status":"success"}')

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/prometheus/config/v1/rules/{namespace}", self.set_group)
        return app


def _blocks(heading: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", doc_section("many-clusters", heading), flags=re.S)


@pytest.fixture
def slos(tmp_path: Path) -> Path:
    folder = tmp_path / "slos"
    folder.mkdir()
    (folder / "shop.yaml").write_text(SPEC)
    return tmp_path


async def test_docs_mimir_recipe_posts_every_group(slos: Path) -> None:
    ruler = MimirRuler("eu-1-tenant")
    [script] = _blocks("## Loading into a Mimir or Cortex ruler")
    async with serving(ruler.app()) as address:
        await asyncio.to_thread(run_sh, script, slos, TENANT="eu-1-tenant",
                                MIMIR_URL=f"http://{address}")
    rules = yaml.safe_load((slos / "out/mimir/rules/shop.yaml").read_text())["groups"]
    assert ruler.posts == len(rules) == len(ruler.groups)
    assert {(ns, g["name"]): g for (ns, _), g in ruler.groups.items()} == \
        {("shop", g["name"]): g for g in rules}
    assert all(r["labels"]["cluster"] == "eu-1" for g in rules for r in g["rules"])


async def test_docs_mimir_recipe_fails_on_a_refused_group(slos: Path) -> None:
    """curl -f: a ruler that refuses a group (here: a 5-rule limit) fails the recipe."""
    ruler = MimirRuler("eu-1-tenant", limit=5)
    [script] = _blocks("## Loading into a Mimir or Cortex ruler")
    async with serving(ruler.app()) as address:
        result = await asyncio.to_thread(run_sh, script, slos, check=False,
                                         TENANT="eu-1-tenant",
                                         MIMIR_URL=f"http://{address}")
    assert result.returncode != 0


def test_global_prometheus_operator_and_unique_group_names(tmp_path: Path) -> None:
    spec = tmp_path / "shop.yaml"
    spec.write_text(GLOBAL_SPEC)
    result = run_cli("generate", str(spec), "-o", "-", "--global", "--format",
                     "prometheus-operator", "--max-rules-per-group", "4")
    assert result.returncode == 0, result.stderr
    [doc] = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["name"] == "sloexporter-global-shop"
    names = [g["name"] for g in doc["spec"]["groups"]]
    assert names[:2] == ["sloexporter-shop-availability-global",
                         "sloexporter-shop-availability-global-2"]
    assert len(set(names)) == len(names) and all(len(g["rules"]) <= 4
                                                 for g in doc["spec"]["groups"])
    # service a-b's SLO c and service a's SLO b-c would share group names in one file
    for service, slo in (("a-b", "c"), ("a", "b-c")):
        (tmp_path / f"{service}.yaml").write_text(
            GLOBAL_SPEC.replace("service: shop", f"service: {service}")
            .replace("name: availability", f"name: {slo}").split("  - name: jobs")[0])
    clash = run_cli("generate", str(tmp_path / "a-b.yaml"), str(tmp_path / "a.yaml"),
                    "-o", "-")
    assert clash.returncode == 1 and "sloexporter-a-b-c-sli" in clash.stderr, clash.stderr


async def test_one_clusters_page_does_not_silence_anothers_ticket(tmp_path: Path) -> None:
    """The generated Alertmanager config, with --external-labels, inhibits a ticket only
    by a page of the same cluster (a central Alertmanager takes every cluster's alerts)."""
    from tests.stack import Alertmanager

    spec = tmp_path / "shop.yaml"
    spec.write_text(GLOBAL_SPEC)
    out = tmp_path / "out"
    result = run_cli("generate", str(spec), "-o", str(out), "--external-labels",
                     "cluster=eu-1")
    assert result.returncode == 0, result.stderr

    def alert(severity: str, cluster: str) -> dict[str, Any]:
        return {"labels": {"alertname": "ErrorBudgetBurn", "service": "shop",
                           "slo": "availability", "team": "payments",
                           "severity": severity, "cluster": cluster}}

    binary = require_tool("prometheus-alertmanager")
    async with Alertmanager(binary, tmp_path).running(
            out / "alertmanager" / "alertmanager.yaml") as am:
        await am.post([alert("page", "eu-1"), alert("ticket", "us-1"),
                       alert("ticket", "eu-1")])

        async def states() -> dict[str, list[str]] | None:
            held = await am.alerts(severity="ticket")
            if len(held) < 2:
                return None
            got = {a["labels"]["cluster"]: a["status"]["inhibitedBy"] for a in held}
            return got if got["eu-1"] else None  # inhibition shows once the page is in

        from tests.e2e_app import wait_until

        inhibited = await wait_until(states, "the eu-1 ticket inhibited", 20)
    assert inhibited["us-1"] == [], inhibited
