"""Alertmanager routes from `generate`, proved with amtool and a real Alertmanager."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import tools
from tests.conftest import run_cli
from tests.stack import (
    EXAMPLE_SETTINGS,
    PAGERDUTY_KEY,
    Alertmanager,
    Mail,
    PagerDutyEvents,
    SlackMessage,
    SlackWebhook,
    SMTPInbox,
    alertmanager_settings,
    with_secret_files,
)
from tests.tools import ROOT, require_tool

RUNBOOK = "https://runbooks.example.com/checkout/availability"
DASHBOARD = "https://grafana.example.com/d/sloexporter-slo-detail?var-service=checkout"


def generate(tmp_path: Path, *extra: str) -> Path:
    out = tmp_path / "out"
    result = run_cli("generate", "examples/slos", "-o", str(out), *extra)
    assert result.returncode == 0, result.stderr
    return out / "alertmanager"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("amtool"), *args], capture_output=True, text=True,
                          timeout=60)


def routes_test(config: Path, receivers: str, *labels: str) -> subprocess.CompletedProcess[str]:
    return amtool("config", "routes", "test", f"--config.file={config}",
                  f"--verify.receivers={receivers}", *labels)


# ---- static checks -------------------------------------------------------------------------

def test_amtool_accepts_the_default_config(tmp_path):
    config = generate(tmp_path) / "alertmanager.yaml"
    result = amtool("check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 inhibit rules" in result.stdout


def test_amtool_accepts_the_example_settings_with_real_secret_files(tmp_path):
    settings = with_secret_files(tmp_path)
    config = generate(tmp_path, "--alertmanager-settings", str(settings)) / "alertmanager.yaml"
    result = amtool("check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    text = config.read_text()
    assert "not-a-real-secret" not in text  # referenced by path, never inlined
    assert str(tmp_path / "secrets" / "smtp-password") in text
    slack = next(r for r in yaml.safe_load(text)["receivers"] if r["name"] == "sloexporter-slack")
    # one message per channel: a Slack config each
    assert [c["channel"] for c in slack["slack_configs"]] == ["#sre-oncall", "#slo-pages"]


def test_pages_go_to_slack_and_pagerduty_tickets_to_email(tmp_path):
    settings = with_secret_files(tmp_path)
    config = generate(tmp_path, "--alertmanager-settings", str(settings)) / "alertmanager.yaml"
    alert = ("alertname=ErrorBudgetBurn", "service=checkout", "slo=availability")
    for receivers, severity in (("sloexporter-pagerduty,sloexporter-slack", "page"),
                                ("sloexporter-email", "ticket")):
        result = routes_test(config, receivers, *alert, f"severity={severity}")
        assert result.returncode == 0, result.stdout + result.stderr


def test_without_pagerduty_pages_go_to_slack_only(tmp_path):
    config = generate(tmp_path) / "alertmanager.yaml"
    alert = ("service=auth", "slo=login-availability")
    result = routes_test(config, "sloexporter-slack", *alert, "severity=page")
    assert result.returncode == 0, result.stdout + result.stderr
    result = routes_test(config, "sloexporter-email", *alert, "severity=ticket")
    assert result.returncode == 0, result.stdout + result.stderr


def test_other_alerts_are_not_routed_to_ours(tmp_path):
    config = generate(tmp_path) / "alertmanager.yaml"
    for labels in (("alertname=KubePodCrashLooping", "severity=page"),  # no slo label
                   ("service=billing", "slo=availability", "severity=page")):  # not our service
        result = routes_test(config, "sloexporter-drop", *labels)
        assert result.returncode == 0, result.stdout + result.stderr


def test_a_renamed_severity_is_routed_as_the_rules_label_it(tmp_path):
    spec = tmp_path / "checkout.yaml"
    spec.write_text((ROOT / "examples" / "slos" / "checkout-api.yaml").read_text().replace(
        "page: {labels: {}, annotations: {}}", "page: {labels: {severity: critical}}"))
    out = tmp_path / "out"
    assert run_cli("generate", str(spec), "-o", str(out)).returncode == 0
    config = out / "alertmanager" / "alertmanager.yaml"
    # latency-p95 still pages with severity=page: both values reach Slack
    for severity in ("critical", "page"):
        result = routes_test(config, "sloexporter-slack", "service=checkout", "slo=x",
                             f"severity={severity}")
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_fails_on_a_wrong_receiver(tmp_path):
    """--verify.receivers is not vacuous: a page does not reach the email receiver."""
    config = generate(tmp_path) / "alertmanager.yaml"
    result = routes_test(config, "sloexporter-email", "service=checkout", "slo=availability",
                         "severity=page")
    assert result.returncode == 1


def test_the_subtree_merges_under_an_existing_route(tmp_path):
    """README: our route goes first under the user's, receivers and inhibit rules appended."""
    ours = yaml.safe_load((generate(tmp_path) / "alertmanager.yaml").read_text())
    theirs = {"route": {"receiver": "team-default", "group_by": ["alertname"],
                        "routes": [{"receiver": "team-critical",
                                    "matchers": ['severity="page"']}]},
              "receivers": [{"name": "team-default"}, {"name": "team-critical"}]}
    theirs["route"]["routes"][:0] = ours["route"]["routes"]
    theirs["receivers"] += [r for r in ours["receivers"] if r["name"] != "sloexporter-drop"]
    theirs["inhibit_rules"] = ours["inhibit_rules"]
    merged = tmp_path / "merged.yaml"
    merged.write_text(yaml.safe_dump(theirs))
    assert amtool("check-config", str(merged)).returncode == 0
    page = ("service=checkout", "slo=availability", "severity=page")
    assert routes_test(merged, "sloexporter-slack", *page).returncode == 0
    assert routes_test(merged, "team-critical", "alertname=NodeDown",
                       "severity=page").returncode == 0


def test_alertmanagerconfig_matches_the_crd_schema(tmp_path):
    from tests.test_helm import crd_validator

    settings = with_secret_files(tmp_path)
    out = generate(tmp_path, "--alertmanager-settings", str(settings))
    doc = yaml.safe_load((out / "alertmanagerconfig.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1alpha1",
                                                "AlertmanagerConfig")
    crd_validator("AlertmanagerConfig", "v1alpha1").validate(doc)
    spec = doc["spec"]
    receivers = {r["name"]: r for r in spec["receivers"]}
    assert receivers["sloexporter-slack"]["slackConfigs"][0]["apiURL"] == {
        "name": "sloexporter-alertmanager", "key": "slack-api-url"}
    assert receivers["sloexporter-email"]["emailConfigs"][0]["authPassword"]["key"] == \
        "smtp-password"
    assert receivers["sloexporter-pagerduty"]["pagerdutyConfigs"][0]["routingKey"]["key"] == \
        "pagerduty-routing-key"
    assert spec["inhibitRules"][0]["equal"] == ["service", "slo"]


def test_the_chart_renders_the_same_alertmanagerconfig_from_the_helm_values(tmp_path):
    from tests.helm_util import helm_path, one, template
    from tests.test_helm import _CRDLoader, crd_validator

    settings = with_secret_files(tmp_path)
    out = generate(tmp_path, "--alertmanager-settings", str(settings))
    values = yaml.safe_load((out / "helm-values.yaml").read_text())
    result = template(helm_path(), values)
    assert result.returncode == 0, result.stderr
    # helm writes `matchType: =` unquoted: YAML 1.1's value tag to PyYAML, a string to Go
    docs = [d for d in yaml.load_all(result.stdout, Loader=_CRDLoader) if d]
    rendered = one(docs, "AlertmanagerConfig")
    crd_validator("AlertmanagerConfig", "v1alpha1").validate(rendered)
    assert rendered["spec"] == yaml.safe_load((out / "alertmanagerconfig.yaml").read_text())[
        "spec"]


def test_output_is_deterministic(tmp_path):
    a = generate(tmp_path / "a")
    b = generate(tmp_path / "b")
    for name in ("alertmanager.yaml", "alertmanagerconfig.yaml", "helm-values.yaml"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


# ---- settings errors -----------------------------------------------------------------------

BAD_SETTINGS = """\
slack:
  api_url_file: secrets/slack-url
  chanels: ["#x"]
email:
  smarthost: smtp.example.com
timing:
  group_wait: soon
"""


def test_bad_settings_name_file_line_and_field_and_write_nothing(tmp_path):
    bad = tmp_path / "am.yaml"
    bad.write_text(BAD_SETTINGS)
    out = tmp_path / "out"
    result = run_cli("generate", "examples/slos", "-o", str(out),
                     "--alertmanager-settings", str(bad))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert f"{bad}:2: slack.api_url_file: 'secrets/slack-url' must be an absolute path " \
           "(a file holding the secret)" in lines
    assert f"{bad}:3: slack.chanels: unknown field 'chanels'; did you mean 'channels'?" in lines
    assert any(ln.startswith(f"{bad}:5: email.smarthost: ") and "HOST:PORT" in ln
               for ln in lines)
    assert any(ln.startswith(f"{bad}:7: timing.group_wait: invalid duration") for ln in lines)
    assert not out.exists()


def test_a_missing_settings_file_is_an_error(tmp_path):
    result = run_cli("generate", "examples/slos", "-o", str(tmp_path / "out"),
                     "--alertmanager-settings", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2  # a path given on the command line: a usage error
    assert f"{tmp_path / 'nope.yaml'}: cannot read" in result.stderr
    assert not (tmp_path / "out").exists()


# ---- a real Alertmanager ---------------------------------------------------------------------

def burn_alert(slo: str, severity: str, windows: tuple[str, str] | None = None,
               **annotations: str) -> dict:
    """An alert as the generated rules send it, annotations rendered by Prometheus."""
    long_window, short_window = windows or (("1h", "5m") if severity == "page" else ("1d", "2h"))
    return {"labels": {"alertname": "ErrorBudgetBurn", "service": "checkout", "slo": slo,
                       "team": "payments", "severity": severity,
                       "long_window": long_window, "short_window": short_window},
            "annotations": {"summary": f"checkout/{slo}: error budget burning",
                            "description": f"The {slo} SLO of checkout is burning.",
                            "burn_rate": "15.23", "burn_rate_threshold": "14.4",
                            "budget_remaining": "87.5%", "runbook_url": RUNBOOK,
                            "dashboard_url": DASHBOARD, **annotations}}


async def start_alertmanager(tmp_path: Path, slack: SlackWebhook, smtp: SMTPInbox,
                             group_wait: str = "0s", pagerduty: PagerDutyEvents | None = None,
                             ) -> tuple[Alertmanager, Path]:
    settings = alertmanager_settings(tmp_path, slack, smtp, pagerduty, group_wait=group_wait,
                                     group_interval="1s")
    config = generate(tmp_path, "--alertmanager-settings", str(settings)) / "alertmanager.yaml"
    am = Alertmanager(require_tool("prometheus-alertmanager"), tmp_path)
    return am, config


async def test_a_page_reaches_slack_with_service_slo_burn_budget_and_links(
        tmp_path, slack_webhook, smtp_inbox):
    am, config = await start_alertmanager(tmp_path, slack_webhook, smtp_inbox)
    async with am.running(config):
        await am.post([burn_alert("availability", "page")])
        msg: SlackMessage = await slack_webhook.inbox.wait_for(
            lambda m: "checkout/availability" in m.title, "Slack page")
    assert msg.channel == "#slo-pages"
    assert msg.title.startswith("[FIRING:1] checkout/availability")
    assert "(page)" in msg.title
    for part in ("*checkout/availability*", "burn rate 15.23x over 1h",
                 "threshold 14.4x, also over 5m", "Budget remaining: 87.5%",
                 f"<{RUNBOOK}|runbook>", f"<{DASHBOARD}|dashboard>"):
        assert part in msg.text, (part, msg.text)
    assert not smtp_inbox.inbox.messages


async def test_a_page_also_reaches_pagerduty_when_configured(
        tmp_path, slack_webhook, smtp_inbox):
    async with PagerDutyEvents().running() as pagerduty:
        am, config = await start_alertmanager(tmp_path, slack_webhook, smtp_inbox,
                                              pagerduty=pagerduty)
        async with am.running(config):
            await am.post([burn_alert("availability", "page")])
            event = await pagerduty.inbox.wait_for(lambda e: True, "PagerDuty event")
            await slack_webhook.inbox.wait_for(lambda m: True, "the Slack page as well")
    assert event["routing_key"] == PAGERDUTY_KEY  # read from the file, never inlined
    assert event["event_action"] == "trigger"
    payload = event["payload"]
    assert payload["severity"] == "critical"
    assert payload["summary"].startswith("[FIRING:1] checkout/availability")
    details = payload["custom_details"]
    assert (details["runbook_url"], details["dashboard_url"]) == (RUNBOOK, DASHBOARD)
    assert "burn rate 15.23x over 1h" in details["alerts"]
    assert PAGERDUTY_KEY not in config.read_text()


async def test_both_page_tiers_of_an_slo_arrive_as_one_message(
        tmp_path, slack_webhook, smtp_inbox):
    am, config = await start_alertmanager(tmp_path, slack_webhook, smtp_inbox, group_wait="1s")
    async with am.running(config):
        await am.post([burn_alert("availability", "page"),
                       burn_alert("availability", "page", ("6h", "30m"), burn_rate="7.02")])
        msg = await slack_webhook.inbox.wait_for(lambda m: "checkout/availability" in m.title,
                                                 "Slack page")
    assert msg.title.startswith("[FIRING:2] checkout/availability")
    assert "burn rate 15.23x over 1h" in msg.text and "burn rate 7.02x over 6h" in msg.text
    assert len(slack_webhook.inbox.messages) == 1


async def test_a_ticket_reaches_email_with_service_slo_burn_budget_and_links(
        tmp_path, slack_webhook, smtp_inbox):
    am, config = await start_alertmanager(tmp_path, slack_webhook, smtp_inbox)
    async with am.running(config):
        await am.post([burn_alert("latency-p95", "ticket", burn_rate="3.10")])
        mail: Mail = await smtp_inbox.inbox.wait_for(
            lambda m: "checkout/latency-p95" in m.subject, "ticket email")
    assert mail.to == ("tickets@example.com",)
    assert mail.subject.startswith("[FIRING:1] checkout/latency-p95")
    for body in (mail.text, mail.html):
        for part in ("checkout/latency-p95", "burn rate 3.10x over 1d", "also over 2h",
                     "Budget remaining: 87.5%", RUNBOOK):
            assert part in body, (part, body)
    assert f"Dashboard: {DASHBOARD}" in mail.text
    assert 'href="https://grafana.example.com/d/sloexporter-slo-detail?var-service=checkout"' \
        in mail.html
    assert not slack_webhook.inbox.messages


async def test_a_firing_page_inhibits_the_ticket_of_the_same_slo_only(
        tmp_path, slack_webhook, smtp_inbox):
    am, config = await start_alertmanager(tmp_path, slack_webhook, smtp_inbox)
    async with am.running(config):
        await am.post([burn_alert("availability", "page")])
        await slack_webhook.inbox.wait_for(lambda m: "checkout/availability" in m.title,
                                           "Slack page")
        await am.post([burn_alert("availability", "ticket")])
        # the inhibition is visible in Alertmanager's own view of the ticket
        inhibited = await am.alerts(slo="availability", severity="ticket")
        assert inhibited and inhibited[0]["status"]["inhibitedBy"], json.dumps(inhibited)
        # a later ticket for another SLO is mailed; with group_wait 0s the inhibited one
        # would have been sent first, so its absence now is a result, not a timeout
        await am.post([burn_alert("latency-p95", "ticket")])
        await smtp_inbox.inbox.wait_for(lambda m: "checkout/latency-p95" in m.subject,
                                        "the other SLO's ticket email")
    subjects = [m.subject for m in smtp_inbox.inbox.messages]
    assert not [s for s in subjects if "checkout/availability" in s], subjects


# ---- docs/wiring.md's "Alertmanager routing" commands -------------------------------------------

def readme_commands() -> list[str]:
    section = tools.doc_section("wiring", "## Alertmanager routing")
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def run_sh(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """A README snippet, with the real amtool first on PATH; the caller checks the result."""
    return tools.run_sh(script, cwd, check=False,
                        first=(str(Path(require_tool("amtool")).parent),), **env)


@pytest.fixture
def readme_workdir(tmp_path: Path) -> Path:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    result = run_sh(readme_commands()[0], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return tmp_path


def test_readme_generate_check_and_route_commands_pass(readme_workdir):
    assert (readme_workdir / "out" / "alertmanager" / "alertmanagerconfig.yaml").is_file()


def test_readme_merge_keeps_the_users_tree_and_adds_ours(readme_workdir):
    theirs = {"route": {"receiver": "team-default",
                        "routes": [{"receiver": "team-critical", "matchers": ['severity="page"']}]},
              "receivers": [{"name": "team-default"}, {"name": "team-critical"}]}
    (readme_workdir / "alertmanager.yaml").write_text(yaml.safe_dump(theirs))
    result = run_sh(readme_commands()[1], readme_workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    merged = readme_workdir / "alertmanager.merged.yaml"
    page = ("service=checkout", "slo=availability", "severity=page")
    assert routes_test(merged, "sloexporter-pagerduty,sloexporter-slack", *page).returncode == 0
    assert routes_test(merged, "sloexporter-email", "service=checkout", "slo=availability",
                       "severity=ticket").returncode == 0
    assert routes_test(merged, "team-critical", "alertname=NodeDown",
                       "severity=page").returncode == 0
    assert routes_test(merged, "team-default", "alertname=Other").returncode == 0


def test_readme_secret_keys_are_the_ones_the_alertmanagerconfig_reads(readme_workdir):
    require_tool("kubectl")
    kubectl = readme_commands()[2]
    (name,) = re.findall(r"create secret generic (\S+)", kubectl)
    keys = set(re.findall(r"--from-file=(\S+)", kubectl))
    doc = yaml.safe_load((readme_workdir / "out" / "alertmanager" /
                          "alertmanagerconfig.yaml").read_text())
    refs = [v for r in doc["spec"]["receivers"] for kind, configs in r.items()
            if kind != "name" for c in configs for v in c.values()
            if isinstance(v, dict) and "key" in v]
    assert {r["name"] for r in refs} == {name}
    assert {r["key"] for r in refs} == keys
    assert "alertmanagerconfig.yaml" in kubectl
    # the real kubectl builds that Secret offline from files named like the keys
    create = kubectl.splitlines()[0] + " --dry-run=client -o yaml"
    for key in keys:
        (readme_workdir / key).write_text("not-a-real-secret\n")
    result = run_sh(create, readme_workdir, KUBECONFIG=os.devnull)
    assert result.returncode == 0, result.stderr
    secret = yaml.safe_load(result.stdout)
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", name)
    assert set(secret["data"]) == keys
    helm = readme_commands()[3]
    assert "-f out/alertmanager/helm-values.yaml" in helm  # rendered by the chart test above


def test_readme_namespace_matcher_note_matches_the_crd():
    from tests.test_helm import crd_schema

    matchers = crd_schema("AlertmanagerConfig", "v1alpha1")["properties"]["spec"][
        "properties"]["route"]["properties"]["matchers"]["description"]
    assert "adds a `namespace: <object\nnamespace>` matcher" in matchers


# ---- routing by label, and dashboard links ---------------------------------------------------

def test_the_documented_routing_block_is_the_example_settings():
    block = re.findall(r"```yaml\n(.*?)\n```",
                       tools.doc_section("wiring", "## Alertmanager routing"), re.S)[0]
    example = yaml.safe_load(EXAMPLE_SETTINGS.read_text())
    assert yaml.safe_load(block)["routing"] == example["routing"]


def test_routing_by_team_with_fallbacks_to_the_default(tmp_path):
    settings = with_secret_files(tmp_path)
    config = generate(tmp_path, "--alertmanager-settings", str(settings)) / "alertmanager.yaml"
    alert = ("alertname=ErrorBudgetBurn", "service=checkout", "slo=availability")
    for receivers, labels in [
        ("sloexporter-payments-pagerduty,sloexporter-payments-slack", ("team=payments",
                                                                      "severity=page")),
        ("sloexporter-email", ("team=payments", "severity=ticket")),  # payments: no email
        ("sloexporter-pagerduty,sloexporter-identity-slack", ("team=identity",
                                                             "severity=page")),
        ("sloexporter-identity-email", ("team=identity", "severity=ticket")),
        ("sloexporter-pagerduty,sloexporter-slack", ("team=platform", "severity=page")),
        ("sloexporter-pagerduty,sloexporter-slack", ("severity=page",)),  # no team label
        ("sloexporter-email", ("team=Payments", "severity=ticket")),  # values match exactly
    ]:
        result = routes_test(config, receivers, *alert, *labels)
        assert result.returncode == 0, (labels, result.stdout + result.stderr)
    doc = yaml.safe_load(config.read_text())
    identity = next(r for r in doc["receivers"] if r["name"] == "sloexporter-identity-email")
    # a value's block starts from the default one: same SMTP server, its own recipients
    [mail] = identity["email_configs"]
    assert (mail["to"], mail["smarthost"]) == ("identity-team@example.com",
                                               "smtp.example.com:587")


def test_routing_by_any_label_with_hostile_values(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text(json.dumps({"routing": {"label": "tier", "routes": {
        '1"} or {x="': {"slack": {"channels": ["#tier1"]}},
        "a\nb": {"email": {"to": ["ab@example.com"]}}}}}))
    config = generate(tmp_path, "--alertmanager-settings", str(settings)) / "alertmanager.yaml"
    assert amtool("check-config", str(config)).returncode == 0
    slug = [r["name"] for r in yaml.safe_load(config.read_text())["receivers"]
            if r.get("slack_configs") and r["name"] != "sloexporter-slack"]
    assert len(slug) == 1
    result = routes_test(config, slug[0], "service=checkout", "slo=availability",
                         'tier="1\\"} or {x=\\""', "severity=page")
    assert result.returncode == 0, result.stdout + result.stderr
    result = routes_test(config, "sloexporter-slack", "service=checkout", "slo=availability",
                         "tier=1", "severity=page")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("settings", "says"), [
    ({"routing": {"label": "severity", "routes": {"a": {}}}}, "routing.label"),
    ({"routing": {"label": "bad-label", "routes": {"a": {}}}}, "routing.label"),
    ({"routing": {"routes": {}}}, "routing.routes"),
    ({"routing": {"routes": {"a b": {}, "a/b": {}}}}, "same receiver names"),
    ({"routing": {"routes": {"a": {"slak": {}}}}}, "slak"),
    ({"routing": {"routes": {"a": {"email": {"smarthost": "nope"}}}}}, "smarthost"),
    ({"grafana_url": "grafana.example.com"}, "grafana_url"),
    ({"grafana_url": "https://g.example.com/?orgId=1"}, "grafana_url"),
])
def test_bad_routing_or_grafana_settings_name_the_field_and_write_nothing(
        tmp_path, settings, says):
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(settings))
    out = tmp_path / "out"
    result = run_cli("generate", "examples/slos", "-o", str(out), "--alertmanager-settings",
                     str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{path}:" in result.stderr and says in result.stderr, result.stderr
    assert not out.exists()


def test_a_label_value_routed_twice_is_refused_with_both_lines(tmp_path):
    # YAML would keep only the second block: the first value's receivers would vanish
    path = tmp_path / "settings.yaml"
    path.write_text("routing:\n  label: team\n  routes:\n"
                    "    payments: {slack: {channels: ['#a']}}\n"
                    "    payments: {slack: {channels: ['#b']}}\n")
    out = tmp_path / "out"
    result = run_cli("generate", "examples/slos", "-o", str(out), "--alertmanager-settings",
                     str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{path}:5: duplicate key 'payments'" in result.stderr, result.stderr
    assert "line 4" in result.stderr
    assert not out.exists()


def test_grafana_url_links_every_slo_without_its_own_dashboard(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("grafana_url: https://grafana.example.com/sub/\n")
    out = generate(tmp_path, "--alertmanager-settings", str(settings)).parent
    links = {}
    for path in (out / "rules").glob("*.yaml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    key = (rule["labels"]["service"], rule["labels"]["slo"])
                    links.setdefault(key, set()).add(rule["annotations"]["dashboard_url"])
    assert links and all(len(v) == 1 for v in links.values())
    # checkout/availability sets its own link in the spec; it is kept
    assert links["checkout", "availability"] == {
        "https://grafana.example.com/d/sloexporter-slo-detail?var-service=checkout"
        "&var-slo=availability"}
    assert links["auth", "token-latency"] == {
        "https://grafana.example.com/sub/d/sloexporter-slo-detail?var-service=auth"
        "&var-slo=token-latency"}
    stdout = run_cli("generate", "examples/slos", "-o", "-", "--alertmanager-settings",
                     str(settings)).stdout
    assert "grafana.example.com/sub/d/sloexporter-slo-detail?var-service=auth" in stdout


async def test_team_pages_reach_their_own_channel_and_others_the_default(
        tmp_path, slack_webhook, smtp_inbox):
    settings = alertmanager_settings(tmp_path, slack_webhook, smtp_inbox, group_wait="0s",
                                     group_interval="1s")
    data = json.loads(settings.read_text())
    data["routing"] = {"routes": {"payments": {"slack": {"channels": ["#payments-oncall"]},
                                               "email": {"to": ["payments@example.com"]}}}}
    data["grafana_url"] = "https://grafana.example.com"
    settings.write_text(json.dumps(data))
    config = generate(tmp_path, "--alertmanager-settings", str(settings)) / "alertmanager.yaml"
    am = Alertmanager(require_tool("prometheus-alertmanager"), tmp_path)
    page = burn_alert("availability", "page")
    other = burn_alert("latency-p95", "page")
    other["labels"]["team"] = "search"
    ticket = burn_alert("errors", "ticket")
    async with am.running(config):
        await am.post([page, other, ticket])
        mine = await slack_webhook.inbox.wait_for(
            lambda m: "checkout/availability" in m.title, "the payments page")
        theirs = await slack_webhook.inbox.wait_for(
            lambda m: "checkout/latency-p95" in m.title, "the other team's page")
        mail = await smtp_inbox.inbox.wait_for(lambda m: "checkout/errors" in m.subject,
                                               "the payments ticket")
    assert mine.channel == "#payments-oncall"
    assert theirs.channel == "#slo-pages"
    assert tuple(mail.to) == ("payments@example.com",)
