"""The README's promises: two commands, CI runs the test one, the tables are the math."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from decimal import Decimal

from sloexporter.model import decimal_str, resolve_tiers
from tests.tools import ROOT

README = (ROOT / "README.md").read_text()
DAY = 86400


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def test_quick_start_has_exactly_two_commands():
    assert quick_start_commands() == ["bash scripts/run.sh", "bash scripts/test.sh"]


def test_the_test_command_installs_what_the_quick_start_lists():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    script = (ROOT / "scripts" / "install-tools.sh").read_text()
    assert "scripts/install-tools.sh" in (ROOT / "scripts" / "test.sh").read_text()
    for listed, installs in [
        ("`prometheus-alertmanager`", "apt_install prometheus-alertmanager"),
        ("Debian's `prometheus`", "apt_install prometheus"),
        ("`helm` and `kubectl` from a pinned, hash-checked wheel", "KUBECTL_SHA256="),
        ("`helm` and `kubectl` from a pinned, hash-checked wheel", "HELM_SHA256="),
        ("Sloth v0.16.0 built with\n`go install`",
         "SLOTH_MODULE=github.com/slok/sloth/cmd/sloth@v0.16.0"),
        ("a virtualenv with the\npackage and its test extras", "pip install -q -e '.[test]'"),
    ]:
        assert listed in section and installs in script, (listed, installs)


def test_ci_runs_the_readme_test_command():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.startswith(("#", "set ", "cd "))]
    assert lines == [quick_start_commands()[1]]


def test_factor_table_matches_the_model():
    rows = re.findall(r"^\| (page|ticket) \| (\S+) / (\S+) \| (\d+)% \| (\S+) \| (\S+) \| "
                      r"(\S+) \((\S+) / (\S+)\) \|$", README, re.M)
    assert len(rows) == 4
    t30, t28, t7 = (resolve_tiers(d * DAY) for d in (30, 28, 7))
    for row, a, b, c in zip(rows, t30, t28, t7, strict=True):
        sev, long_w, short_w, pct, f30, f28, f7, long7, short7 = row
        assert (sev, long_w, short_w, Decimal(pct)) == (a.severity, a.long, a.short,
                                                         a.budget_percent)
        assert (f30, f28, f7) == tuple(decimal_str(t.factor) for t in (a, b, c))
        assert (long7, short7) == (c.long, c.short)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, ""


def test_run_command_generates_and_serves_the_demo_cluster(tmp_path):
    port = _free_port()
    env = dict(os.environ, SLOEXPORTER_LISTEN=f"127.0.0.1:{port}")
    proc = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _ = _get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "not ready"
        _, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        for family in ("sloexporter_argocd_app_synced", "sloexporter_backup_last_success_"
                       "timestamp_seconds", "sloexporter_certificate_not_after_timestamp_seconds"):
            assert family in metrics
        assert (ROOT / "out" / "rules" / "checkout.yaml").is_file()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def serve_section() -> str:
    return README.split("## Run the exporter", 1)[1].split("\n## ", 1)[0]


def test_serve_config_examples_are_valid(tmp_path):
    import yaml

    from sloexporter.config import Config

    ca = tmp_path / "ca.pem"
    ca.write_text("")
    blocks = re.findall(r"```yaml\n(.*?)\n```", serve_section(), re.S)
    assert len(blocks) == 2
    for block in blocks:
        data = yaml.safe_load(block.replace("/etc/ssl/internal-ca.pem", str(ca)))
        Config.model_validate(data)


def test_every_metric_named_in_the_readme_exists():
    from sloexporter import names

    exported = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)
                and v.startswith("sloexporter_")}
    mentioned = set(re.findall(r"`(sloexporter_[a-z_]+)", README))
    for name in mentioned:
        assert any(e == name or e.startswith(name) for e in exported), name
