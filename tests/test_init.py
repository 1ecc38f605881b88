"""`sloexporter init`: a commented starter spec that validates, and that never clobbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sloexporter.specs import load_paths
from tests.conftest import run_cli


def _init(tmp_path: Path, *args: str) -> tuple[Path, dict]:
    target = tmp_path / "slos" / "spec.yaml"
    result = run_cli("init", *args, "-o", str(target))
    assert result.returncode == 0, result.stderr
    return target, yaml.safe_load(target.read_text())


def test_stdout_spec_is_commented_and_valid(tmp_path):
    result = run_cli("init", "checkout", "--job", "checkout")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n#") + result.stdout.count("  #") >= 8  # it explains itself
    (tmp_path / "checkout.yaml").write_text(result.stdout)
    services, errors = load_paths([str(tmp_path)])
    assert not errors
    [service] = services
    assert service.name == "checkout"
    assert [s.name for s in service.slos] == ["availability", "latency"]


@pytest.mark.parametrize(("convention", "label", "latency"), [
    ("otel", "service_name", True), ("prometheus", "job", True),
    ("requests_total", "job", False)])
def test_each_convention_generates_rules_whose_promtool_tests_pass(
        tmp_path, promtool, convention, label, latency):
    import subprocess

    target, spec = _init(tmp_path, "web-shop", "--convention", convention, "--job", "shop",
                         "--objective", "99.5", "--latency-threshold", "0.25",
                         "--period", "28d", "--team", "payments")
    slos = {s["name"]: s for s in spec["slos"]}
    assert set(slos) == ({"availability", "latency"} if latency else {"availability"})
    assert slos["availability"]["objective"] == 99.5
    assert slos["availability"]["sli"]["http"] == {
        "convention": convention, "selector": f'{{{label}="shop"}}', "signal": "availability"}
    assert spec["labels"] == {"team": "payments"}
    if latency:
        assert slos["latency"]["sli"]["http"]["threshold"] == 0.25
    out = tmp_path / "out"
    result = run_cli("generate", str(target), "-o", str(out), "--with-tests")
    assert result.returncode == 0, result.stderr
    run = subprocess.run([promtool, "test", "rules", "web-shop.test.yaml"],
                         cwd=out / "tests", capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_values_that_need_quoting_survive(tmp_path):
    _, spec = _init(tmp_path, "shop", "--job", 'we"ird\\job', "--team", "a: b # c",
                    "--period", "4w")
    assert spec["slos"][0]["sli"]["http"]["selector"] == '{job="we\\"ird\\\\job"}'
    assert spec["labels"] == {"team": "a: b # c"}
    services, errors = load_paths([str(tmp_path / "slos")])
    assert not errors and services[0].slos[0].period == 28 * 86400


def test_any_selector_and_no_latency_slo(tmp_path):
    _, spec = _init(tmp_path, "shop", "--selector", '{namespace="shop",app="web"}',
                    "--latency-threshold", "none")
    [slo] = spec["slos"]
    assert slo["sli"]["http"]["selector"] == '{namespace="shop",app="web"}'


def test_an_existing_file_is_kept_unless_forced(tmp_path):
    target = tmp_path / "spec.yaml"
    target.write_text("my own spec\n")
    result = run_cli("init", "shop", "-o", str(target))
    assert result.returncode == 2
    assert "--force" in result.stderr
    assert target.read_text() == "my own spec\n"
    assert run_cli("init", "shop", "-o", str(target), "--force").returncode == 0
    assert yaml.safe_load(target.read_text())["service"] == "shop"
    assert not [p for p in tmp_path.iterdir() if p.name != "spec.yaml"]  # no temp leftovers


def test_a_folder_as_output_is_a_usage_error(tmp_path):
    result = run_cli("init", "shop", "-o", str(tmp_path))
    assert result.returncode == 2
    assert "is a folder" in result.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--objective", "100"], "objective"),
    (["--objective", "abc"], "not a number"),
    (["--objective", "nan"], "not a number"),
    (["--latency-threshold", "-1"], "threshold"),
    (["--period", "0d"], "period"),
    (["--selector", 'job="x"'], "braces"),
    (["--selector", '{job="x",}}'], "selector"),
])
def test_bad_values_exit_2_and_write_nothing(tmp_path, args, says):
    target = tmp_path / "spec.yaml"
    result = run_cli("init", "shop", *args, "-o", str(target))
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists()


def test_a_bad_service_name_is_a_usage_error():
    result = run_cli("init", "my shop!")
    assert result.returncode == 2
    assert "service" in result.stderr and not result.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["a" * 5000], "service must be 1-63 characters"),
    (["shop", "--job", "x" * 100_000], "at most 16,384"),
    (["shop", "--objective", "99.99999999999999999999"], "significant digits"),
])
def test_huge_values_are_refused_not_written(tmp_path, args, says):
    target = tmp_path / "spec.yaml"
    result = run_cli("init", *args, "-o", str(target))
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert not target.exists()
