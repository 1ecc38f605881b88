"""`generate` writes all of its output or nothing, and cleans up only what it wrote."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from sloexporter.output import MANIFEST, parse_rule_labels, write_tree
from tests.conftest import run_cli
from tests.tools import ROOT

SPEC = (ROOT / "examples" / "slos" / "checkout-api.yaml").read_text()


def _spec(folder: Path, service: str = "checkout") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "spec.yaml"
    path.write_text(SPEC.replace("service: checkout", f"service: {service}"))
    return path


def _files(outdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(outdir)): p.read_bytes() for p in sorted(outdir.rglob("*"))
            if p.is_file() and p.name != ".sloexporter.lock"}


def _generate(*args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("generate", *args)


def test_a_renamed_service_leaves_no_duplicate_alerts_behind(tmp_path, promtool):
    spec, out = _spec(tmp_path / "slos"), tmp_path / "out"
    assert _generate(str(spec), "-o", str(out), "--with-tests").returncode == 0
    assert (out / "rules" / "checkout.yaml").is_file()
    _spec(tmp_path / "slos", "payments")
    result = _generate(str(spec), "-o", str(out), "--with-tests")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (out / "rules").iterdir()) == ["payments.yaml"]
    assert sorted(p.name for p in (out / "tests").iterdir()) == ["payments.test.yaml"]
    check = subprocess.run([promtool, "check", "rules", *map(str, (out / "rules").iterdir())],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    alerts = (out / "alertmanager" / "alertmanager.yaml").read_text()
    assert "payments" in alerts and "checkout" not in alerts.split("Do not edit")[1]


def test_files_it_did_not_write_are_never_removed(tmp_path):
    spec, out = _spec(tmp_path / "slos"), tmp_path / "out"
    (out / "rules").mkdir(parents=True)
    mine = {out / "rules" / "mine.yaml": "groups: []\n", out / "README": "my notes\n",
            out / "dashboards" / "custom.json": "{}\n"}
    for path, text in mine.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert _generate(str(spec), "-o", str(out), "--with-tests").returncode == 0
    _spec(tmp_path / "slos", "renamed")
    assert _generate(str(spec), "-o", str(out)).returncode == 0
    for path, text in mine.items():
        assert path.read_text() == text
    assert not (out / "tests").exists()  # only our files were in it: the folder goes too


def test_a_file_it_wrote_but_someone_changed_is_kept_with_a_note(tmp_path):
    spec, out = _spec(tmp_path / "slos"), tmp_path / "out"
    assert _generate(str(spec), "-o", str(out)).returncode == 0
    edited = out / "rules" / "checkout.yaml"
    edited.write_text(edited.read_text() + "# my local change\n")
    _spec(tmp_path / "slos", "renamed")
    result = _generate(str(spec), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert edited.read_text().endswith("# my local change\n")
    assert f"kept {edited}" in result.stderr


@pytest.mark.parametrize("manifest", [
    "not json at all {", '{"files": ["a list"]}', '{"files": {"../victim.txt": "x"}}',
    "[]", '{"files": {"/etc/hostname": "x", "rules/../../victim.txt": "x"}}'])
def test_a_damaged_or_hostile_manifest_removes_nothing_outside(tmp_path, manifest):
    import hashlib

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    digest = hashlib.sha256(victim.read_bytes()).hexdigest()
    (out / MANIFEST).write_text(manifest.replace('"x"', json.dumps(digest)))
    written, notes = write_tree(out, {"rules/a.yaml": "groups: []\n"})
    assert written == [out / "rules" / "a.yaml"] and not notes
    assert victim.read_text() == "keep me\n"
    assert json.loads((out / MANIFEST).read_text())["files"] == {
        "rules/a.yaml": hashlib.sha256(b"groups: []\n").hexdigest()}


def test_an_obstacle_fails_the_run_before_anything_changes(tmp_path):
    spec, out = _spec(tmp_path / "slos"), tmp_path / "out"
    assert _generate(str(spec), "-o", str(out)).returncode == 0
    before = _files(out)
    # a second service whose rule file's place is taken by a folder
    (tmp_path / "slos" / "second.yaml").write_text(SPEC.replace("service: checkout",
                                                                "service: second"))
    (out / "rules" / "second.yaml").mkdir()
    result = _generate(str(tmp_path / "slos"), "-o", str(out))
    assert result.returncode == 2
    assert "in the way" in result.stderr and "nothing was written" in result.stderr
    assert _files(out) == before
    assert not list(out.glob(".sloexporter-staging-*"))


def test_output_that_is_a_file_is_a_path_error(tmp_path):
    spec, out = _spec(tmp_path / "slos"), tmp_path / "out"
    out.write_text("a file\n")
    result = _generate(str(spec), "-o", str(out))
    assert result.returncode == 2
    assert "not a folder" in result.stderr
    assert out.read_text() == "a file\n"


def test_invalid_input_writes_nothing(tmp_path):
    spec, out = _spec(tmp_path / "slos"), tmp_path / "out"
    assert _generate(str(spec), "-o", str(out)).returncode == 0
    before = _files(out)
    spec.write_text(SPEC.replace("objective: 99.9", "objective: 100"))
    assert _generate(str(spec), "-o", str(out)).returncode == 1
    bad = tmp_path / "settings.yaml"
    bad.write_text("slack: {channels: []}\n")
    _spec(tmp_path / "slos", "renamed")
    assert _generate(str(spec), "-o", str(out), "--alertmanager-settings",
                     str(bad)).returncode == 1
    assert _files(out) == before


def test_a_failed_rename_rolls_back_the_ones_already_done(tmp_path):
    """The swap itself: when the n-th rename fails, the first n-1 files are restored."""
    from sloexporter import output

    out = tmp_path / "out"
    write_tree(out, {"a/one.yaml": "old one\n", "b/two.yaml": "old two\n"})
    before = _files(out)
    # the third staged file is missing, so its rename fails after the first two are done
    staging = _staged(tmp_path, {"a/one.yaml": "new one\n", "b/two.yaml": "new two\n"})
    with pytest.raises(OSError):
        output._swap_in(staging, {rel: out / rel
                                  for rel in ("a/one.yaml", "b/two.yaml", "c/three.yaml")})
    assert _files(out) == before


def _staged(tmp_path: Path, files: dict[str, str]) -> Path:
    staging = tmp_path / "staging"
    for rel, text in files.items():
        (staging / "new" / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / "new" / rel).write_text(text)
    return staging


def test_a_killed_runs_staging_folder_is_cleaned_up(tmp_path):
    spec, out = _spec(tmp_path / "slos"), tmp_path / "out"
    (out / ".sloexporter-staging-dead" / "new").mkdir(parents=True)
    assert _generate(str(spec), "-o", str(out)).returncode == 0
    assert not list(out.glob(".sloexporter-staging-*"))


# ---- -o - and --rule-labels -------------------------------------------------------------

def test_stdout_gets_one_rule_file_with_every_service(tmp_path, promtool):
    result = _generate(str(ROOT / "examples" / "slos"), "-o", "-")
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load(result.stdout)
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names)) > 5
    path = tmp_path / "all.yaml"
    path.write_text(result.stdout)
    check = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert not list(tmp_path.glob("-*")) and not Path("-").exists()


def test_stdout_in_operator_format_is_one_prometheusrule_per_service():
    result = _generate(str(ROOT / "examples" / "slos"), "-o", "-", "--format",
                       "prometheus-operator", "--rule-labels", "release=kube-prometheus-stack")
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert len(docs) == 5 and {d["kind"] for d in docs} == {"PrometheusRule"}
    assert all(d["metadata"]["labels"]["release"] == "kube-prometheus-stack" for d in docs)


def test_stdout_and_tests_do_not_mix():
    result = _generate(str(ROOT / "examples" / "slos"), "-o", "-", "--with-tests")
    assert result.returncode == 2 and not result.stdout


def test_rule_labels_reach_every_rule_and_the_tests_still_pass(tmp_path, promtool):
    out = tmp_path / "out"
    spec = _spec(tmp_path / "slos")
    result = _generate(str(spec), "-o", str(out), "--with-tests",
                       "--rule-labels", "release=kps,env=prod", "--rule-labels", "region=eu")
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load((out / "rules" / "checkout.yaml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    alerts = [r for r in rules if "alert" in r]
    assert alerts and all({"release": "kps", "env": "prod", "region": "eu"}.items()
                          <= r["labels"].items() for r in alerts)
    # recorded series keep their labels: the rules join them with raw series
    assert not [r for r in rules if "record" in r and "release" in r.get("labels", {})]
    run = subprocess.run([promtool, "test", "rules", "checkout.test.yaml"], cwd=out / "tests",
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_rule_labels_label_the_prometheusrule_objects(tmp_path):
    out = tmp_path / "out"
    result = _generate(str(_spec(tmp_path / "slos")), "-o", str(out), "--format",
                       "prometheus-operator", "--rule-labels", "release=kube-prometheus-stack")
    assert result.returncode == 0, result.stderr
    doc = yaml.safe_load((out / "rules" / "checkout.yaml").read_text())
    assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert doc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "sloexporter"


@pytest.mark.parametrize(("value", "fmt"), [
    ("service=x", "prometheus"), ("slo=x", "prometheus"), ("__name__=x", "prometheus"),
    ("bad-key=x", "prometheus"), ("novalue", "prometheus"), ("=x", "prometheus"),
    ("a=1,a=2", "prometheus"), ("release=" + "x" * 64, "prometheus-operator"),
    ("release=has space", "prometheus-operator")])
def test_bad_rule_labels_are_refused(value, fmt):
    with pytest.raises(ValueError, match="--rule-labels"):
        parse_rule_labels([value], fmt)


def test_a_bad_rule_label_is_a_usage_error_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = _generate(str(_spec(tmp_path / "slos")), "-o", str(out), "--rule-labels",
                       "severity=x")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--rule-labels" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_the_cli_pages_generate_blocks_run_as_written(tmp_path):
    """docs/cli.md's `generate` and `-o -` commands, pasted into a shell."""
    import re

    from tests.tools import doc_section, require_tool, run_sh

    first = str(Path(require_tool("promtool")).parent)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    # (the `## generate` block runs in test_generate.py's promtool test)
    block = re.findall(r"```sh\n(.*?)\n```",
                       doc_section("cli", "### Rules to stdout, and rule labels"), re.S)[0]
    result = run_sh(block, tmp_path, first=(first,))
    assert "SUCCESS" in result.stdout
    docs = list(yaml.safe_load_all((tmp_path / "prometheusrules.yaml").read_text()))
    assert {d["metadata"]["labels"]["release"] for d in docs} == {"kube-prometheus-stack"}
