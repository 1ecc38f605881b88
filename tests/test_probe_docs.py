"""The probe configuration shown in docs/serve.md parses, and means what the page says."""

from __future__ import annotations

import re

import yaml

from sloexporter.sources.http_probe import HTTPProbeConfig
from sloexporter.sources.tls_probe import TLSProbeConfig
from tests.tools import doc_section

# the YAML block of docs/serve.md's probing section, as a user copies it
README_EXAMPLE = re.findall(r"```yaml\n(.*?)\n```",
                            doc_section("serve", "## Probing TLS endpoints and HTTP targets"),
                            re.S)[0].replace("/etc/ssl/internal-ca.pem", "{ca_file}")


def test_readme_probe_example_parses_as_documented(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    doc = yaml.safe_load(README_EXAMPLE.format(ca_file=ca))
    tls = TLSProbeConfig.model_validate(doc["tls_probe"])
    http = HTTPProbeConfig.model_validate(doc["http_probe"])
    assert [t.label for t in tls.targets] == ["shop.example.com:443", "api-internal"]
    assert [t.sni for t in tls.targets] == ["shop.example.com", "api.example.com"]
    assert (tls.interval, tls.timeout, tls.concurrency) == (60, 10, 10)
    assert [t.label for t in http.targets] == ["https://shop.example.com/healthz", "checkout"]
    first, checkout = http.targets
    assert first.method == "GET" and first.timeout is None
    assert all(first.expected(c) for c in (200, 204, 302)) and not first.expected(404)
    assert checkout.expected(204) and not checkout.expected(302)
    assert (checkout.method, checkout.timeout) == ("HEAD", 2)
    assert (http.interval, http.timeout) == (30, 5)
