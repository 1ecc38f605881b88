"""A newcomer follows the README in a fresh clone: the quick start, then "your first SLO".

The clone is a real `git clone` of this repository (plus uncommitted edits of tracked
files, so a change is tested before it is committed). To keep the suite fast it reuses
this checkout's `.venv` and `.tools` through symlinks; everything else (the scripts, the
README's commands, exactly as written) runs in the clone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.tools import ROOT, doc_section, free_port, require_tool


def _blocks(heading: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", doc_section("README", heading), re.S)


def _clean_path() -> str:
    """PATH without any virtualenv or the project's tools: what a new shell has."""
    keep = [p for p in os.environ["PATH"].split(os.pathsep)
            if p and "/.venv" not in p and "/.tools" not in p and "/venv" not in p]
    return os.pathsep.join(keep)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    git = require_tool("git")
    dest = tmp_path_factory.mktemp("newcomer") / "sloexporter"
    subprocess.run([git, "clone", "-q", "--no-hardlinks", str(ROOT), str(dest)], check=True,
                   capture_output=True, timeout=120)
    changed = subprocess.run([git, "diff", "--name-only", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    untracked = subprocess.run([git, "ls-files", "--others", "--exclude-standard"], cwd=ROOT,
                               check=True, capture_output=True, text=True).stdout.split()
    for name in [*changed, *untracked]:
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
        elif not source.exists() and (dest / name).exists():
            (dest / name).unlink()
    (dest / ".venv").symlink_to((ROOT / ".venv").resolve())
    if (ROOT / ".tools").exists():
        (dest / ".tools").symlink_to((ROOT / ".tools").resolve())
    # the venv is this checkout's, installed from the same pyproject.toml: mark it so, the
    # way scripts/lib.sh does after an install, so run.sh takes its "up to date" path
    stamp = subprocess.run(["bash", "-c", ". scripts/lib.sh && venv_stamp"], cwd=dest,
                           check=True, capture_output=True, text=True).stdout
    for name in (".sloexporter-installed", ".sloexporter-installed-test"):
        path = ROOT / ".venv" / name
        if not path.exists() or path.read_text() != stamp:
            path.write_text(stamp)
    return dest


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""
    except OSError:
        return 0, ""


def test_the_quick_start_runs_as_written_in_a_fresh_clone(clone: Path):
    run, activate, test = _blocks("## Quick start")
    assert (run, activate, test) == ("bash scripts/run.sh", ". .venv/bin/activate",
                                     "bash scripts/test.sh")
    port = free_port()
    env = dict(os.environ, PATH=_clean_path(), SLOEXPORTER_LISTEN=f"127.0.0.1:{port}")
    log = clone.parent / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(["bash", "-c", run], cwd=clone, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, status = time.monotonic() + 120, 0
        while time.monotonic() < deadline and proc.poll() is None:
            status, _ = _get(f"http://127.0.0.1:{port}/readyz")
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, log.read_text()
        _, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        for family in ("sloexporter_argocd_app_synced",
                       "sloexporter_backup_last_success_timestamp_seconds",
                       "sloexporter_certificate_not_after_timestamp_seconds"):
            assert family in metrics
        assert (clone / "out" / "rules" / "checkout.yaml").is_file()
        assert (clone / "out" / "tests" / "checkout.test.yaml").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    printed = log.read_text()
    # every phase is announced with its expected duration; the install was skipped
    assert re.search(r"==> virtualenv .venv with the package \(about .+\)", printed), printed
    assert "nothing to install" in printed, printed
    assert re.search(r"==> generating .+ \(a few seconds\)", printed), printed
    # and it says how to get the CLI, with the README's command
    assert activate in printed, printed


def test_your_first_slo_runs_as_written_after_the_quick_start(clone: Path):
    require_tool("promtool")
    _, activate, _ = _blocks("## Quick start")
    [first_slo] = _blocks("## Your first SLO in five minutes")
    env = dict(os.environ, PATH=_clean_path())
    # a new shell has no `sloexporter` until the README's activate line
    missing = subprocess.run(["bash", "-c", "command -v sloexporter"], cwd=clone, env=env,
                             capture_output=True, text=True)
    assert missing.returncode != 0, missing.stdout
    # promtool: Debian's, which the test command installs (on PATH after the quick start)
    promtool_dir = str(Path(require_tool("promtool")).parent)
    if "/.tools" in promtool_dir:
        env["PATH"] += os.pathsep + promtool_dir
    script = f"{activate}\n{first_slo}\n"
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=clone, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    spec = yaml.safe_load((clone / "slos" / "checkout.yaml").read_text())
    assert [s["name"] for s in spec["slos"]] == ["availability", "latency"]
    assert spec["slos"][0]["sli"]["http"]["selector"] == '{job="checkout"}'
    assert (clone / "generated" / "dashboards").is_dir()
    assert (clone / "generated" / "alertmanager" / "alertmanager.yaml").is_file()


def test_the_test_command_prints_its_phases_and_needs_no_go_once_tools_are_cached(
        clone: Path):
    """`bash scripts/test.sh` as the README writes it (with a test file to keep it short),
    in a shell where Go is not on PATH: a new shell after the Go hint's `export PATH`."""
    for tool in ("sloth", "promtool3", "prometheus3", "kube-apiserver", "etcd",
                 "kube-controller-manager", "victoria-metrics", "vmalert"):
        require_tool(tool)
    _, _, test = _blocks("## Quick start")
    path = os.pathsep.join(p for p in _clean_path().split(os.pathsep)
                           if not (Path(p) / "go").exists())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GO", "SLOEXPORTER_"))}
    env["PATH"] = path
    result = subprocess.run(["bash", "-c", f"{test} tests/test_layout.py"], cwd=clone,
                            env=env, capture_output=True, text=True, timeout=600)
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed
    phases = re.findall(r"^==> (.+?) \((.+)\)$", printed, re.M)
    names = [name for name, _ in phases]
    for expected in ("installing the tools", "Debian packages", "virtualenv", "helm",
                     "Go tools", "ruff check", "the test suite"):
        assert any(n.startswith(expected) for n in names), (expected, names)
    assert all(duration for _, duration in phases)  # each says how long it usually takes
    assert "nothing to build" in printed and "no Go 1.21+" not in printed
    assert re.search(r"3 passed", printed), printed


def _lib(call: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a function of scripts/lib.sh in `cwd`."""
    return subprocess.run(["bash", "-c", f'. "{ROOT}/scripts/lib.sh" && {call}'], cwd=cwd,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


def test_the_venv_interpreter_is_the_first_usable_one(tmp_path):
    """SLOEXPORTER_PYTHON lists the candidates in order: one that is too old (or is no
    Python) is passed over, and the first usable one is named by its real path."""
    real = os.path.realpath(sys._base_executable)
    old = tmp_path / "python3.10"
    old.write_text("#!/bin/sh\nexit 1\n")  # what the 3.11+ check gets from an older one
    old.chmod(0o755)
    link = tmp_path / "python-link"
    link.symlink_to(real)
    result = _lib("venv_python", tmp_path, SLOEXPORTER_PYTHON=f"{old} /nonexistent {link}")
    assert result.returncode == 0 and result.stdout.strip() == real, result.stderr
    result = _lib("venv_python", tmp_path, SLOEXPORTER_PYTHON=f"{old} /nonexistent")
    assert result.returncode == 1 and not result.stdout


def test_the_default_interpreter_is_the_distributions_when_it_can_make_a_venv(tmp_path):
    usable = subprocess.run(
        ["/usr/bin/python3", "-c",
         "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
        capture_output=True).returncode == 0 if os.path.exists("/usr/bin/python3") else False
    env = {k: v for k, v in os.environ.items() if k != "SLOEXPORTER_PYTHON"}
    result = subprocess.run(["bash", "-c", f'. "{ROOT}/scripts/lib.sh" && venv_python'],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    chosen = result.stdout.strip()
    if usable:
        assert chosen == os.path.realpath("/usr/bin/python3")
    else:
        assert chosen and chosen != os.path.realpath("/usr/bin/python3")


def test_a_venv_made_with_another_interpreter_is_told_apart(tmp_path):
    """ensure_venv makes .venv anew when venv_made_with says it is another interpreter's."""
    real = os.path.realpath(sys._base_executable)
    subprocess.run([real, "-m", "venv", "--without-pip", str(tmp_path / ".venv")], check=True,
                   timeout=120)
    assert _lib(f'venv_made_with "{real}"', tmp_path).returncode == 0
    assert _lib('venv_made_with /usr/bin/other-python3', tmp_path).returncode == 1
    assert _lib(f'venv_made_with "{real}"', tmp_path / ".venv").returncode == 1  # no .venv
