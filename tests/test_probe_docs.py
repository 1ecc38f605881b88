"""The probe configuration shown in the README parses, and means what the README says."""

from __future__ import annotations

import yaml

from sloexporter.sources.http_probe import HTTPProbeConfig
from sloexporter.sources.tls_probe import TLSProbeConfig

# Keep in sync with the README's probing section (the YAML block there).
README_EXAMPLE = """
tls_probe:
  targets:
    - shop.example.com                # host[:port]; the port defaults to 443
    - address: 10.0.0.7:8443
      server_name: api.example.com    # SNI and the verified name; default: the host
      name: api-internal              # the target label; default: host:port
  interval: 1m
  timeout: 10s                        # connect + handshake(s), per target
  concurrency: 10
  ca_file: {ca_file}                  # replaces the system trust store
http_probe:
  targets:
    - https://shop.example.com/healthz
    - name: checkout
      url: http://checkout.shop.svc:8080/healthz
      method: HEAD                    # GET (default) or HEAD
      expected_codes: [200, 204]      # default: any 2xx or 3xx
      timeout: 2s                     # default: the http_probe timeout
  interval: 30s
  timeout: 5s
  concurrency: 10
"""


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
