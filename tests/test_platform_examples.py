"""Every `examples/platforms/<name>/` validates, generates, and its generated tests pass.

Each platform folder holds `slos/` (specs), `cluster/` (objects for `serve --manifests`),
`alertmanager-settings.yaml` and a README; promtool checks the rules and runs the
generated tests, amtool checks the Alertmanager config built with the folder's settings.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from sloexporter.sources.manifests import read_objects
from tests.conftest import run_cli
from tests.stack import with_secret_files
from tests.tools import ROOT, require_tool

PLATFORMS_DIR = ROOT / "examples" / "platforms"
PLATFORMS = sorted(p.name for p in PLATFORMS_DIR.iterdir() if p.is_dir())


def test_one_folder_per_seed_platform():
    assert PLATFORMS == ["bullmq-workers", "gitops-platform", "invoicing", "polyglot-services",
                         "supabase-microservices"]
    for name in PLATFORMS:
        folder = PLATFORMS_DIR / name
        assert {p.name for p in folder.iterdir()} >= {"slos", "cluster", "README.md",
                                                      "alertmanager-settings.yaml"}, name


@pytest.mark.parametrize("name", PLATFORMS)
def test_platform_validates_generates_and_its_tests_pass(tmp_path, promtool, name):
    folder = PLATFORMS_DIR / name
    slos = str(folder.relative_to(ROOT) / "slos")
    result = run_cli("validate", slos)
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "out"
    result = run_cli("generate", slos, "-o", str(out), "--with-tests",
                     "--alertmanager-settings", str(with_secret_files(
                         tmp_path, folder / "alertmanager-settings.yaml")))
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, "every SLO of an example has its tests"
    rules = sorted((out / "rules").glob("*.yaml"))
    assert rules
    check = subprocess.run([promtool, "check", "rules", *map(str, rules)], capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = sorted((out / "tests").glob("*.test.yaml"))
    assert len(tests) == len(rules)
    # one promtool per file, side by side: the files are independent
    runs = [subprocess.Popen([promtool, "test", "rules", t.name], cwd=out / "tests",
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for t in tests]
    try:
        for test, run in zip(tests, runs, strict=True):
            output, _ = run.communicate(timeout=900)
            assert run.returncode == 0, f"{test.name}: {output}"
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    amtool = subprocess.run([require_tool("amtool"), "check-config",
                             str(out / "alertmanager" / "alertmanager.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert amtool.returncode == 0, amtool.stdout + amtool.stderr


@pytest.mark.parametrize("name", PLATFORMS)
def test_platform_manifests_load_without_bad_files(name):
    objects, bad = read_objects(PLATFORMS_DIR / name / "cluster")
    assert bad == 0
    kinds = {o["kind"] for o in objects}
    assert "Application" in kinds, "every platform is deployed by ArgoCD"


def test_invoicing_pages_pagerduty():
    settings = yaml.safe_load((PLATFORMS_DIR / "invoicing" / "alertmanager-settings.yaml")
                              .read_text())
    assert "pagerduty" in settings


BACKUP_SCHEDULES = {("gitops-platform", "postgres-pg-dumpall"): "0 3 * * *",
                    ("gitops-platform", "minio-mirror"): "0 4 * * *"}


def test_backup_cronjobs_run_on_the_stated_schedules():
    for (platform, name), schedule in BACKUP_SCHEDULES.items():
        objects, _ = read_objects(PLATFORMS_DIR / platform / "cluster")
        job = next(o for o in objects if o["kind"] == "CronJob" and
                   o["metadata"]["name"] == name)
        assert job["spec"]["schedule"] == schedule, name
        assert job["metadata"]["labels"]["sloexporter.dev/backup"] == "true"
    mirror = next(o for o in read_objects(PLATFORMS_DIR / "gitops-platform" / "cluster")[0]
                  if o["metadata"]["name"] == "minio-mirror")
    assert "--older-than 7d" in " ".join(
        mirror["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"])


def _example_slos() -> dict[str, set[str]]:
    """platform -> {"service/slo", ...} from the example specs."""
    out: dict[str, set[str]] = {}
    for name in PLATFORMS:
        for spec in (PLATFORMS_DIR / name / "slos").glob("*.yaml"):
            doc = yaml.safe_load(spec.read_text())
            out.setdefault(name, set()).update(f"{doc['service']}/{s['name']}"
                                               for s in doc["slos"])
    return out


def test_the_examples_page_maps_every_target_to_an_existing_slo():
    text = (ROOT / "docs" / "examples.md").read_text()
    table = text.split("## Each stated target and the SLO that holds it", 1)[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith("| Platform")]
    listed: dict[str, set[str]] = {}
    for platform, _target, slos, _sli in rows:
        listed.setdefault(platform, set()).update(s.strip() for s in slos.split(","))
    assert listed == _example_slos()
    for target in ("error rate under 1%", "p95 under 500 ms", "RPO 15 min", "RTO 1 h"):
        assert f"| invoicing | {target} |" in text


def test_the_threshold_snippets_validate_and_the_examples_use_them(tmp_path):
    text = (ROOT / "docs" / "sli-kinds.md").read_text()
    snippets = re.findall(r"`query: (.+?)`, `op: \"(.+?)\"`, `value: ([0-9.]+)`", text)
    assert len(snippets) >= 10
    used = "".join(p.read_text() for p in PLATFORMS_DIR.glob("*/slos/*.yaml"))
    unused = []
    for i, (query, op, value) in enumerate(snippets):
        spec = tmp_path / f"s{i}.yaml"
        spec.write_text(yaml.safe_dump({
            "apiVersion": "sloexporter.dev/v1", "kind": "ServiceLevels", "service": "s",
            "slos": [{"name": "x", "objective": 99,
                      "sli": {"threshold": {"query": query, "op": op, "value": value}}}]}))
        result = run_cli("validate", str(spec))
        assert result.returncode == 0, (query, result.stdout + result.stderr)
        # the examples add their own job labels; the metric names must be theirs
        names = set(re.findall(r"([a-z_]+)\{", query))
        if not all(n in used for n in names):
            unused.append(query)
    assert unused == ['max(bullmq_job_count{queue="metrics-sync",state="waiting"})'], unused
