"""docs/wiring.md's "Scrape the exporter and load the rules": its commands, run for real."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from tests.e2e_app import Prometheus, serve, wait_until
from tests.helm_util import one, render
from tests.tools import ROOT, doc_section, free_port, require_tool, run_sh

SECTION = doc_section("wiring", "## Scrape the exporter and load the rules")
PLAIN, OPERATOR = re.findall(r"```sh\n(.*?)\n```", SECTION, re.S)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    return tmp_path


def test_the_scrape_target_is_where_the_run_command_serves():
    config = yaml.safe_load(PLAIN.split("<<'EOF'\n", 1)[1].split("\nEOF", 1)[0])
    [target] = config["scrape_configs"][0]["static_configs"][0]["targets"]
    assert f'SLOEXPORTER_LISTEN:-{target}' in (ROOT / "scripts" / "run.sh").read_text()


async def test_prometheus_with_the_readme_config_scrapes_serve_and_evaluates_the_rules(
        workdir: Path):
    require_tool("promtool")
    res = run_sh(PLAIN, workdir, KUBECONFIG=os.devnull)
    rule_files = sorted((workdir / "out" / "rules").glob("*.yaml"))
    assert rule_files and f"SUCCESS: {len(rule_files)} rule files found" in res.stdout

    # the same file, pointed at a free port and evaluated every second, on a real Prometheus
    config = yaml.safe_load((workdir / "prometheus.yml").read_text())
    port = free_port()
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{port}"]
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = Prometheus(require_tool("prometheus"), workdir, free_port())
    slos = sum(len(yaml.safe_load(p.read_text())["groups"]) // 2 for p in rule_files)
    async with serve(workdir, port), prom.running(workdir / "prometheus.yml"):
        await wait_until(lambda: prom.value('up{job="sloexporter"}'), "the scrape")
        # every SLO's metadata recorded, and a preset computed from serve's metrics
        await wait_until(lambda: prom.value(f"count(slo:objective:ratio) == {slos}"),
                         f"{slos} SLOs' recorded objectives")
        await wait_until(lambda: prom.value(
            'slo:sli_objects:count{service="platform-backups",slo="minio-rpo"}'),
            "the backup preset over serve's metrics")


def test_operator_commands_label_the_rules_for_kube_prometheus_stack(workdir: Path):
    require_tool("kubectl")
    generate, label, apply = OPERATOR.splitlines()[1:]
    run_sh(generate + "\n" + label, workdir, KUBECONFIG=os.devnull)
    target = re.findall(r"> (\S+)$", label)[0]
    doc = yaml.safe_load((workdir / target).read_text())
    assert doc["kind"] == "PrometheusRule"
    assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert apply.endswith(f"-f {target}")


@pytest.mark.helm
def test_operator_helm_command_labels_the_servicemonitor_and_rules():
    helm = require_tool("helm")
    [install] = [ln for ln in OPERATOR.splitlines() if ln.startswith("helm ")]
    sets = dict(s.split("=", 1) for s in re.findall(r"--set (\S+)", install))
    values: dict = {}
    for key, value in sets.items():
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    docs = render(helm, values)
    assert one(docs, "ServiceMonitor")["metadata"]["labels"]["release"] == \
        "kube-prometheus-stack"
    rules = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rules and all(r["metadata"]["labels"]["release"] == "kube-prometheus-stack"
                         for r in rules)
