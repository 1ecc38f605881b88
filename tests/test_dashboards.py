"""Grafana dashboards: PromQL from promql.py, thresholds from the model, stable, committed.

The committed dashboards are what `generate` writes for the examples. After a change,
regenerate them (with alerts/ and the chart's copies): `bash scripts/regenerate.sh`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from sloexporter import names, promql
from sloexporter.dashboards import ALL, build_all, dashboard_queries, expand
from sloexporter.dashboards.common import DETAIL
from sloexporter.dashboards.queries import variable_selector
from sloexporter.model import SLO, Service
from sloexporter.rules import meta_rules
from sloexporter.sli import HTTP_CONVENTIONS, HTTP_IN_FLIGHT
from sloexporter.specs import load_paths
from tests.conftest import run_cli
from tests.helm_util import CHART, helm_path, render
from tests.tools import ROOT, doc_section, require_tool, run_sh

SERVICES, _ERRORS = load_paths([str(ROOT / "examples" / "slos")])
assert not _ERRORS
DASHBOARDS = build_all(SERVICES)
SLOS = [slo for svc in SERVICES for slo in svc.slos]


def find_slo(service: str, name: str, services: list[Service] = SERVICES) -> SLO:
    return next(s for svc in services for s in svc.slos if (s.service, s.name) == (service, name))


# --- reading PromQL ----------------------------------------------------------------------

def selectors(node: Any) -> Iterator[promql_parser.VectorSelector]:
    if isinstance(node, list):
        for item in node:
            yield from selectors(item)
        return
    if isinstance(node, promql_parser.VectorSelector):
        yield node
        return
    for attr in ("expr", "lhs", "rhs", "args", "vector_selector", "param"):
        child = getattr(node, attr, None)
        if child is not None:
            yield from selectors(child)


def metric_names(expr: str) -> set[str]:
    return {s.name for s in selectors(promql_parser.parse(expr)) if s.name}


def spec_metrics() -> set[str]:
    """Metrics the specs' SLI queries name, and the HTTP presets' metrics."""
    found: set[str] = set()
    for slo in SLOS:
        for template in (slo.sli.errors, slo.sli.total, slo.sli.ratio, slo.sli.good,
                         *(q for _, q in slo.sli.records)):
            if template:
                found |= metric_names(promql.substitute_window(template, 300))
    for base, _ in HTTP_CONVENTIONS.values():
        found |= {base, f"{base}_count", f"{base}_bucket"}
    return found | set(HTTP_IN_FLIGHT.values())


def allowed_metrics() -> set[str]:
    recorded = {v for k, v in vars(promql).items() if k.isupper() and isinstance(v, str)
                and ":" in v}
    recorded |= {promql.error_ratio_name(w) for slo in SLOS for w in slo.windows}
    exported = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)
                and v.startswith(names.PREFIX)}
    exported |= {f"{names.PROBE_DURATION}_{s}" for s in ("bucket", "sum", "count")}
    return recorded | exported | {"ALERTS"} | spec_metrics()


def unknown_metrics(expr: str) -> set[str]:
    return metric_names(expr) - allowed_metrics()


def all_queries(values: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    for name, data in DASHBOARDS.items():
        for q in dashboard_queries(data, values):
            yield f"{name}: {q.where}", q.expr


def test_every_query_parses_after_variable_expansion():
    checked = 0
    for values in (None, {"service": "checkout", "slo": "availability", "team": "payments"}):
        for where, expr in all_queries(values):
            assert "$" not in expr, where
            promql_parser.parse(expr)  # raises on invalid PromQL
            checked += 1
    assert checked > 100


def test_every_metric_is_recorded_exported_alerts_or_from_a_spec():
    for where, expr in all_queries():
        assert not unknown_metrics(expr), (where, unknown_metrics(expr))


def test_the_metric_check_catches_a_typo():
    typo = promql.select(promql.BUDGET_REMAINING + "_typo", 'service="a"')
    assert unknown_metrics(typo) == {promql.BUDGET_REMAINING + "_typo"}
    assert not unknown_metrics(promql.select(promql.BUDGET_REMAINING, 'service="a"'))


# --- thresholds and windows on the detail dashboard follow the model --------------------

def matches(sel: promql_parser.VectorSelector, labels: dict[str, str]) -> bool:
    for m in sel.matchers.matchers:
        value = labels.get(m.name, "")
        op = str(m.op)
        if op.endswith("NotRe"):
            ok = not re.fullmatch(m.value, value)
        elif op.endswith("Re"):
            ok = bool(re.fullmatch(m.value, value))
        elif op.endswith("NotEqual"):
            ok = value != m.value
        else:
            ok = value == m.value
        if not ok:
            return False
    return True


def or_terms(node: Any) -> list[Any]:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    if isinstance(node, promql_parser.BinaryExpr) and str(node.op) == "or":
        return or_terms(node.lhs) + or_terms(node.rhs)
    return [node]


def info_labels(slo: SLO) -> dict[str, str]:
    """The labels of the SLO's `slo:info` series, as its meta rules record them."""
    [info] = [r for r in meta_rules(slo) if r["record"] == promql.INFO]
    return dict(info["labels"])


def for_slo(expr: str, slo: SLO) -> Any:
    """The one `or` term of a per-tier query whose selectors pick this SLO's series."""
    labels = info_labels(slo)
    picked = [t for t in or_terms(promql_parser.parse(expr))
              if all(matches(s, labels) for s in selectors(t))]
    assert len(picked) == 1, (slo.name, expr)
    return picked[0]


def panel(name: str, title: str) -> dict[str, Any]:
    return next(p for p in walk(DASHBOARDS[name]["panels"]) if p.get("title") == title)


def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from walk(p.get("panels") or [])


@pytest.mark.parametrize(("service", "name", "period"), [
    ("checkout", "availability", "30d"), ("platform-gitops", "apps-synced-healthy", "7d")])
def test_detail_burn_panels_draw_the_model_windows_and_factors(service, name, period):
    slo = find_slo(service, name)
    assert slo.period_str == period
    values = {"service": service, "slo": name}
    for slot, tier in promql.slo_tiers(slo):
        targets = panel("slo-detail", f"Burn rate, {slot[0]} tier {slot[1]}")["targets"]
        long_q, short_q, threshold_q = (expand(t["expr"], values) for t in targets)
        factor = for_slo(threshold_q, slo).rhs
        assert Decimal(str(factor.val)) == tier.factor
        for query, window in ((long_q, tier.long_window), (short_q, tier.short_window)):
            term = for_slo(query, slo)
            assert term.func.name == "label_replace"
            ratios = {s.name for s in selectors(term) if s.name.startswith("slo:sli_error:")}
            assert ratios == {promql.error_ratio_name(window)}
            assert term.args[2].val == promql.format_duration(window)


def test_the_two_periods_really_differ():
    """Else the test above could pass with one retyped set of numbers."""
    a, b = find_slo("checkout", "availability"), find_slo("platform-gitops", "apps-synced-healthy")
    assert [t.factor for t in a.tiers] != [t.factor for t in b.tiers]
    assert [t.long_window for t in a.tiers] != [t.long_window for t in b.tiers]


def test_a_disabled_tier_has_no_burn_line_for_that_slo():
    slo = find_slo("platform-gitops", "sync-success")  # page is disabled
    targets = panel("slo-detail", "Burn rate, page tier 1")["targets"]
    labels = info_labels(slo)
    for target in targets:
        terms = or_terms(promql_parser.parse(expand(target["expr"])))
        assert not [t for t in terms if all(matches(s, labels) for s in selectors(t))
                    and any(s.matchers.matchers for s in selectors(t))]


# --- identity, datasource, links, determinism ---------------------------------------------

def test_uids_are_stable():
    assert {name: d["uid"] for name, d in DASHBOARDS.items()} == {
        "slo-overview": "sloexporter-slo-overview", "slo-detail": "sloexporter-slo-detail",
        "argocd": "sloexporter-argocd", "backups": "sloexporter-backups",
        "certificates": "sloexporter-certificates",
        "golden-signals": "sloexporter-golden-signals"}


def test_the_example_dashboard_url_opens_the_detail_dashboard():
    url = find_slo("checkout", "availability").alerting.dashboard_url
    assert url and f"/d/{DETAIL.uid}?" in url


def test_every_dashboard_has_the_datasource_variable_and_every_query_uses_it():
    for name, data in DASHBOARDS.items():
        variables = data["templating"]["list"]
        assert variables[0]["type"] == "datasource" and variables[0]["name"] == "datasource"
        assert variables[0]["query"] == "prometheus"
        users = [t for p in walk(data["panels"]) for t in p.get("targets", [])]
        users += variables[1:] + data.get("annotations", {}).get("list", [])
        assert users, name
        for user in users:
            assert user["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, name


def test_every_dashboard_links_to_all_the_others():
    for name, data in DASHBOARDS.items():
        urls = {link["url"] for link in data["links"]}
        assert urls == {f"/d/{m.uid}" for m in ALL if m.file != name}, name
        assert all(link["keepTime"] and link["includeVars"] for link in data["links"])


def test_panel_ids_are_set_and_unique():
    for data in DASHBOARDS.values():
        ids = [p["id"] for p in walk(data["panels"])]
        assert all(isinstance(i, int) and i > 0 for i in ids)
        assert len(ids) == len(set(ids))


def generated(tmp_path: Path) -> dict[str, bytes]:
    result = run_cli("generate", "examples/slos", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    return {p.name: p.read_bytes() for p in sorted((tmp_path / "dashboards").iterdir())}


def test_generation_is_byte_for_byte_deterministic(tmp_path):
    first, second = generated(tmp_path / "a"), generated(tmp_path / "b")
    assert len(first) == len(ALL)
    assert first == second


def test_committed_dashboards_match_a_fresh_generation(tmp_path):
    fresh = generated(tmp_path)
    committed = {p.name: p.read_bytes() for p in sorted((ROOT / "dashboards").iterdir())}
    assert fresh.keys() == committed.keys(), "run `bash scripts/regenerate.sh`"
    for name in fresh:
        assert fresh[name] == committed[name], f"dashboards/{name} is stale; see the top"


# --- each dashboard shows what the issue asks for ------------------------------------------

def queried(name: str, title: str) -> set[str]:
    found = set()
    for target in panel(name, title)["targets"]:
        found |= metric_names(expand(target["expr"]))
    return found


def slots_titles() -> list[str]:
    return [f"{sev} tier {n}" for sev, n in promql.tier_slots(SLOS)]


def test_overview_has_a_row_per_slo_with_every_column():
    table = panel("slo-overview", "SLOs")
    assert table["type"] == "table"
    assert all(t["instant"] for t in table["targets"])
    columns = table["transformations"][1]["options"]["renameByName"].values()
    assert list(columns) == ["Objective", "SLI over the period", "Error budget remaining",
                             *(f"Burn rate, {s}" for s in slots_titles()), "Alert state"]
    assert len(slots_titles()) == 4
    assert {promql.OBJECTIVE, promql.PERIOD_ERROR, promql.BUDGET_REMAINING, "ALERTS",
            promql.error_ratio_name(3600)} <= queried("slo-overview", "SLOs")
    for target in table["targets"]:
        assert target["expr"].startswith("max by (service, slo) ("), target["expr"]


def test_each_overview_row_links_to_its_slo_detail():
    [override] = [o for o in panel("slo-overview", "SLOs")["fieldConfig"]["overrides"]
                  if o["matcher"]["options"] == "slo"]
    [link] = override["properties"][0]["value"]
    assert link["url"].startswith(f"/d/{DETAIL.uid}?var-service=${{__data.fields.service}}"
                                  "&var-slo=${__data.fields.slo}&")


def test_overview_filters_by_service_slo_and_team_and_all_matches_a_missing_team():
    variables = {v["name"]: v for v in DASHBOARDS["slo-overview"]["templating"]["list"]}
    assert {"service", "slo", "team"} <= set(variables)
    for name in ("service", "slo", "team"):
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
        assert variable_selector(variables[name]["query"]).startswith(promql.INFO)
    for target in panel("slo-overview", "SLOs")["targets"]:
        assert 'team=~"$team"' in target["expr"]


def test_detail_shows_burn_down_burn_per_window_errors_traffic_alerts():
    d = "slo-detail"
    variables = [v["name"] for v in DASHBOARDS[d]["templating"]["list"]]
    assert variables == ["datasource", "service", "slo"]
    assert queried(d, "Error budget burn-down") == {promql.BUDGET_REMAINING}
    for slot in slots_titles():
        assert promql.INFO in queried(d, f"Burn rate, {slot}")
    assert promql.error_ratio_name(300) in queried(d, "Error ratio (5m)")
    assert {promql.TOTAL_RATE5M, promql.ERRORS_RATE5M} == queried(d, "Traffic (5m)")
    assert panel(d, "Alert history")["type"] == "state-timeline"
    assert queried(d, "Alert history") == {"ALERTS"}


def test_detail_annotates_the_argocd_syncs_of_each_services_apps(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text((ROOT / "examples" / "slos" / "checkout-api.yaml").read_text()
                    .replace("argocd_apps: [payments]", "argocd_apps: [checkout-api, "
                             "checkout-worker]", 1))
    services, errors = load_paths([str(spec), str(ROOT / "examples" / "slos" / "auth.yaml")])
    assert not errors
    [ann] = build_all(services)["slo-detail"]["annotations"]["list"]
    assert ann["name"] == "ArgoCD syncs" and ann["enable"]
    expr = expand(ann["expr"], {"service": "checkout", "slo": "availability"})
    assert metric_names(expr) == {names.ARGOCD_APP_SYNC_OPERATIONS, promql.INFO}
    apps = {t.lhs.lhs.expr.args[0].vector_selector.matchers.matchers[0].value: t
            for t in or_terms(promql_parser.parse(expr))}
    assert set(apps) == {"checkout-api|checkout-worker", "auth"}  # auth: its own name
    gate = apps["checkout-api|checkout-worker"].rhs
    assert all(matches(s, {"service": "checkout", "slo": "availability"})
               for s in selectors(gate))
    assert not all(matches(s, {"service": "auth", "slo": "availability"})
                   for s in selectors(gate))


@pytest.mark.parametrize(("name", "title", "metrics"), [
    ("argocd", "Apps by sync status", {names.ARGOCD_APP_INFO}),
    ("argocd", "Apps by health status", {names.ARGOCD_APP_INFO}),
    ("argocd", "OutOfSync apps and for how long", {names.ARGOCD_APP_SYNCED}),
    ("argocd", "Degraded and other unhealthy apps, and for how long",
     {names.ARGOCD_APP_HEALTHY, names.ARGOCD_APP_INFO}),
    ("argocd", "Sync operations by result", {names.ARGOCD_APP_SYNC_OPERATIONS}),
    ("argocd", "Failed syncs in range", {names.ARGOCD_APP_SYNC_OPERATIONS}),
    ("backups", "Last success age against the expected interval",
     {names.BACKUP_LAST_SUCCESS, names.BACKUP_EXPECTED_INTERVAL, names.BACKUP_LAST_DURATION}),
    ("backups", "Overdue backups", {names.BACKUP_LAST_SUCCESS, names.BACKUP_EXPECTED_INTERVAL}),
    ("backups", "Runs by result", {names.BACKUP_RUNS}),
    ("backups", "Last run duration", {names.BACKUP_LAST_DURATION}),
    ("certificates", "Days left per certificate", {names.CERT_NOT_AFTER}),
    ("certificates", "Expiring within 7 days", {names.CERT_NOT_AFTER}),
    ("certificates", "Expiring within 14 days", {names.CERT_NOT_AFTER}),
    ("certificates", "Expiring within 28 days", {names.CERT_NOT_AFTER}),
    ("certificates", "TLS probe failures with reasons", {names.TLS_PROBE_FAILURE_INFO}),
])
def test_platform_dashboards_have_the_panels_the_issue_names(name, title, metrics):
    assert queried(name, title) == metrics


def test_the_expiry_counts_use_their_horizon():
    for days in (7, 14, 28):
        expr = panel("certificates", f"Expiring within {days} days")["targets"][0]["expr"]
        assert f"< {days * 86400}" in expr


def test_days_left_are_sorted_soonest_first():
    assert panel("certificates", "Days left per certificate")["options"]["sortBy"] == [
        {"displayName": "Days left", "desc": False}]


def rows(name: str) -> dict[str, list[dict[str, Any]]]:
    """Row title -> its panels, whether the row is collapsed (nested) or not."""
    out: dict[str, list[dict[str, Any]]] = {}
    current = ""
    for p in DASHBOARDS[name]["panels"]:
        if p["type"] == "row":
            current = p["title"]
            out[current] = list(p.get("panels") or [])
        else:
            out.setdefault(current, []).append(p)
    return out


def test_golden_signals_per_probe_target_and_per_instrumented_service():
    found = rows("golden-signals")
    titles = {row: [p["title"] for p in panels] for row, panels in found.items()}
    probe = next(r for r in titles if "probe" in r)
    assert titles[probe] == ["Request rate", "Error ratio", "Latency p50 / p95 / p99"]
    auth = next(r for r in titles if r.startswith("auth:"))
    assert titles[auth] == ["Request rate", "Error ratio", "Latency p50 / p95 / p99",
                            "Saturation: requests in flight"]
    checkout = next(r for r in titles if r.startswith("checkout:"))
    assert titles[checkout] == ["Request rate", "Error ratio", "Latency p50 / p95 / p99"]
    assert len(found) == 3  # the probes, and the two services with `http` SLIs
    metrics = {m for p in found[auth] for t in p["targets"]
               for m in metric_names(expand(t["expr"]))}
    base = HTTP_CONVENTIONS["otel"][0]
    assert metrics == {f"{base}_count", f"{base}_bucket", HTTP_IN_FLIGHT["otel"]}
    quantiles = [t["expr"] for t in found[probe][2]["targets"]]
    assert [q.split(",")[0] for q in quantiles] == [
        "histogram_quantile(0.5", "histogram_quantile(0.95", "histogram_quantile(0.99"]


def test_golden_signal_selectors_come_from_the_spec():
    auth = next(p for r, ps in rows("golden-signals").items() if r.startswith("auth:")
                for p in ps if p["title"] == "Error ratio")
    expr = auth["targets"][0]["expr"]
    assert '{service_name="auth",http_response_status_code=~"5.."}' in expr


# --- query expansion ------------------------------------------------------------------------

def test_expand_fills_template_and_builtin_variables():
    expr = 'rate(x{a=~"$a",b=~"${b}"}[$__rate_interval]) * $__range_s + y[$__range]'
    assert expand(expr, {"b": "v"}, interval="30s", range_="2h") == \
        'rate(x{a=~".*",b=~"v"}[30s]) * 7200 + y[2h]'


def test_expand_refuses_unknown_builtins_and_the_datasource():
    with pytest.raises(ValueError, match="unknown Grafana variable"):
        expand("x[$__nope]")
    with pytest.raises(ValueError, match="datasource"):
        expand("x{a=\"${datasource}\"}")


def test_variable_queries_become_selectors():
    assert variable_selector('label_values(slo:info{service=~"$service"}, slo)') == \
        'slo:info{service=~"$service"}'
    assert variable_selector("label_values(slo:info, team)") == "slo:info"
    assert variable_selector("label_values(team)") == '{team!=""}'
    assert variable_selector("query_result(up == 1)") == "up == 1"
    with pytest.raises(ValueError):
        variable_selector("metrics(up)")


def test_dashboard_queries_cover_panels_rows_variables_and_annotations():
    where = [q.where for q in dashboard_queries(DASHBOARDS["slo-detail"])]
    assert any(w.startswith("variable slo") for w in where)
    assert any(w.startswith("annotation 'ArgoCD syncs'") for w in where)
    collapsed = [p for p in DASHBOARDS["golden-signals"]["panels"] if p.get("panels")]
    assert collapsed
    nested = {f"panel {p['id']} " for row in collapsed for p in row["panels"]}
    found = {q.where for q in dashboard_queries(DASHBOARDS["golden-signals"])}
    assert all(any(w.startswith(n) for w in found) for n in nested)


def test_the_dashboards_are_json_grafana_reads():
    for path in sorted((ROOT / "dashboards").glob("*.json")):
        data = json.loads(path.read_text())
        assert data["schemaVersion"] >= 39 and data["title"].startswith("sloexporter / ")
        assert path.read_text().endswith("}\n")


def test_an_empty_app_list_draws_no_syncs(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text((ROOT / "examples" / "slos" / "checkout-api.yaml").read_text()
                    .replace("argocd_apps: [payments]", "argocd_apps: []", 1))
    services, errors = load_paths([str(spec)])
    assert not errors and services[0].apps == ()
    [ann] = build_all(services)["slo-detail"]["annotations"]["list"]
    assert metric_names(ann["expr"]) == set()


# --- docs/wiring.md's "Import the dashboards" -------------------------------------------------

SECTION = doc_section("wiring", "## Import the dashboards")
COMMANDS = re.findall(r"```sh\n(.*?)\n```", SECTION, re.S)


@pytest.fixture
def readme_out(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    run_sh(COMMANDS[0], tmp_path)
    return tmp_path


def test_readme_lists_the_uids_and_the_saturation_metric():
    assert len(COMMANDS) == 4
    assert set(re.findall(r"`(sloexporter-[a-z-]+)`", SECTION)) == {m.uid for m in ALL}
    assert f"`{HTTP_IN_FLIGHT['otel']}`" in SECTION and list(HTTP_IN_FLIGHT) == ["otel"]
    assert re.search(r"`argocd_apps: \[payments\]`", SECTION)
    assert "argocd_apps: [payments]" in (ROOT / "examples/slos/checkout-api.yaml").read_text()


def test_readme_curl_posts_every_dashboard_to_the_grafana_api(readme_out):
    received: list[tuple[str, str, dict[str, Any]]] = []

    class Grafana(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the handler API's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, self.headers["Authorization"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": "success"}')

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Grafana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        run_sh(COMMANDS[1], readme_out, GRAFANA_URL=f"http://127.0.0.1:{server.server_port}",
               GRAFANA_TOKEN="glsa_test")
    finally:
        server.shutdown()
    files = sorted((readme_out / "out" / "dashboards").glob("*.json"))
    assert len(received) == len(files) == len(ALL)
    for (path, auth, body), file in zip(received, files, strict=True):
        assert (path, auth) == ("/api/dashboards/db", "Bearer glsa_test")
        assert body == {"dashboard": json.loads(file.read_text()), "overwrite": True}


def test_readme_configmap_holds_every_dashboard_with_the_sidecar_label(readme_out):
    require_tool("kubectl")
    create, apply = COMMANDS[2].splitlines()
    run_sh(create, readme_out, KUBECONFIG=os.devnull)
    [target] = re.findall(r"-f (\S+)$", apply)
    doc = yaml.safe_load((readme_out / target).read_text())
    assert apply.startswith("kubectl apply --server-side ")
    assert doc["kind"] == "ConfigMap" and doc["metadata"]["namespace"] == "monitoring"
    values = yaml.safe_load((CHART / "values.yaml").read_text())["dashboards"]
    assert doc["metadata"]["labels"] == {values["label"]: values["labelValue"]} == \
        {"grafana_dashboard": "1"}
    files = {p.name: p.read_text() for p in (readme_out / "out" / "dashboards").iterdir()}
    assert doc["data"] == files


def test_readme_helm_command_puts_labelled_dashboards_in_the_namespace():
    helm = helm_path()
    sets = dict(s.split("=", 1) for s in re.findall(r"--set (\S+)", COMMANDS[3]))
    assert sets == {"dashboards.namespace": "monitoring"}
    docs = render(helm, {"dashboards": {"namespace": "monitoring"}})
    maps = [d for d in docs if d["kind"] == "ConfigMap" and
            d["metadata"]["labels"].get("grafana_dashboard") == "1"]
    assert sorted(name for m in maps for name in m["data"]) == \
        sorted(f"{m.file}.json" for m in ALL)
    assert {m["metadata"]["namespace"] for m in maps} == {"monitoring"}


# --- what the queries compute, evaluated by promtool's PromQL engine -------------------------

def promtool_eval(promtool: str, tmp_path: Path, series: dict[str, str],
                  checks: list[tuple[str, str, list[tuple[str, float]]]]) -> None:
    """Feed `series` (1m apart) and assert each (expr, eval_time, [(labels, value)])."""
    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "promql_expr_test": [{"expr": expr, "eval_time": at, "exp_samples": [
            {"labels": labels, "value": value} for labels, value in samples]}
            for expr, at, samples in checks]}]}
    path = tmp_path / "dash.test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", path.name], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def overview_column(title: str) -> str:
    table = panel("slo-overview", "SLOs")
    names_by_ref = {f"Value #{k[-1]}": v for k, v in
                    table["transformations"][1]["options"]["renameByName"].items()}
    [ref] = [k[-1] for k, v in names_by_ref.items() if v == title]
    return expand(next(t["expr"] for t in table["targets"] if t["refId"] == ref))


def test_overview_alert_state_and_all_teams_in_promtool(promtool, tmp_path):
    checkout = 'service="checkout",slo="availability",team="payments"'
    auth = 'service="auth",slo="availability"'  # no team label: "All" must keep it
    gitops = 'service="platform-gitops",slo="sync-success",team="platform"'
    promtool_eval(promtool, tmp_path, {
        f"slo:info{{{checkout}}}": "1x10", f"slo:info{{{auth}}}": "1x10",
        f"slo:info{{{gitops}}}": "1x10",
        f'ALERTS{{alertname="ErrorBudgetBurn",alertstate="firing",severity="page",{checkout}}}':
            "1x10",
        f'ALERTS{{alertname="ErrorBudgetBurn",alertstate="firing",severity="ticket",{gitops}}}':
            "1x10",
    }, [(overview_column("Alert state"), "5m", [
        ('{service="checkout",slo="availability"}', 2),
        ('{service="auth",slo="availability"}', 0),
        ('{service="platform-gitops",slo="sync-success"}', 1)])])


def test_detail_burn_and_threshold_in_promtool(promtool, tmp_path):
    slo = find_slo("checkout", "availability")
    tier = slo.tiers[0]
    ident = ",".join(f'{k}="{v}"' for k, v in slo.identity)
    info = ",".join(f'{k}="{v}"' for k, v in info_labels(slo).items())
    targets = panel("slo-detail", "Burn rate, page tier 1")["targets"]
    values = {"service": slo.service, "slo": slo.name}
    long_q, _, threshold_q = (expand(t["expr"], values) for t in targets)
    # binary fractions, so the burn rate (ratio / budget) is exact in floating point
    promtool_eval(promtool, tmp_path, {
        f"{promql.error_ratio_name(tier.long_window)}{{{ident}}}": "0.5x10",
        f"{promql.ERROR_BUDGET}{{{ident}}}": "0.03125x10",
        f"{promql.INFO}{{{info}}}": "1x10",
    }, [(long_q, "5m", [(f"{{{ident},window=\"{tier.long}\"}}", 16)]),
        (threshold_q, "5m", [(f"{{{info}}}", float(tier.factor))])])


def test_argocd_out_of_sync_for_in_promtool(promtool, tmp_path):
    app = 'namespace="argocd",name="shop",project="production"'
    other = 'namespace="argocd",name="web",project="production"'
    expr = expand(panel("argocd", "OutOfSync apps and for how long")["targets"][0]["expr"],
                  range_="1h")
    promtool_eval(promtool, tmp_path, {
        f"{names.ARGOCD_APP_SYNCED}{{{app}}}": "1 1 1 0 0 0 0 0",
        f"{names.ARGOCD_APP_SYNCED}{{{other}}}": "0x8",
    }, [(expr, "6m", [(f"{{{app}}}", 240), (f"{{{other}}}", 3600)])])


def test_custom_tiers_get_their_own_threshold_beside_default_ones_of_the_same_period(tmp_path):
    custom = tmp_path / "custom.yaml"
    custom.write_text("""\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: search
slos:
  - name: availability
    objective: 99.5
    period: 30d
    sli: {probe: {selector: '{target="https://search.example.com/"}'}}
    alerting:
      tiers: [{severity: page, long_window: 2h, short_window: 10m, budget_consumed: 5}]
""")
    services, errors = load_paths([str(ROOT / "examples" / "slos"), str(custom)])
    assert not errors
    detail = build_all(services)["slo-detail"]
    [threshold] = [t["expr"] for p in walk(detail["panels"])
                   if p.get("title") == "Burn rate, page tier 1" for t in p["targets"]
                   if t["legendFormat"] == "threshold"]
    for slo in (find_slo("search", "availability", services),
                find_slo("checkout", "availability", services)):
        assert Decimal(str(for_slo(expand(threshold), slo).rhs.val)) == slo.tiers[0].factor
    assert find_slo("search", "availability", services).tiers[0].factor != \
        find_slo("checkout", "availability", services).tiers[0].factor


def test_dashboard_modules_write_no_promql_of_their_own():
    """Queries come from promql.py; a literal like `rate(` or `== 0` here would drift."""
    import ast

    promqlish = re.compile(r"\w\(|==|!=|=~|<=|>=|\[\$__|\bby \(")
    for path in sorted((ROOT / "sloexporter" / "dashboards").glob("*.py")):
        if path.name == "queries.py":  # reads queries, builds none
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    not (node.value.startswith('"""') or "\n" in node.value):
                assert not promqlish.search(node.value), (path.name, node.value)


def test_more_than_26_overview_columns_keep_unique_refs(tmp_path):
    tiers = ", ".join(f"{{severity: ticket, long_window: {h}h, short_window: 5m, "
                      "budget_consumed: 1}" for h in range(1, 31))
    spec = tmp_path / "many.yaml"
    spec.write_text(f"""\
apiVersion: sloexporter.dev/v1
kind: ServiceLevels
service: many
slos:
  - name: tiers
    objective: 99
    sli: {{probe: {{}}}}
    alerting: {{tiers: [{tiers}]}}
""")
    services, errors = load_paths([str(spec)])
    assert not errors
    table = next(p for p in build_all(services)["slo-overview"]["panels"]
                 if p["title"] == "SLOs")
    refs = [t["refId"] for t in table["targets"]]
    assert len(refs) == len(set(refs)) == 3 + 30 + 1
    renames = table["transformations"][1]["options"]["renameByName"]
    assert set(renames) == {f"Value #{r}" for r in refs}
    assert renames[f"Value #{refs[-1]}"] == "Alert state"
