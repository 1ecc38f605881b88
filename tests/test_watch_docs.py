"""docs/watching.md says what the code does: reasons, defaults, the backoff, the bound.

The behaviour itself is tested on a real apiserver (tests/test_kube_real.py) and kmock
(tests/test_informer.py); this pins the page's numbers and names to the code.
"""

from __future__ import annotations

import re

import yaml

from sloexporter.config import Watch
from sloexporter.sources import informer
from sloexporter.sources.informer import REASONS, WatchSettings, backoff_delay
from tests.tools import ROOT

PAGE = (ROOT / "docs" / "watching.md").read_text()
SERVE = (ROOT / "docs" / "serve.md").read_text()


def test_the_reasons_table_is_every_reason_the_informer_counts():
    table = re.findall(r"^\| `(\w+)` \|", PAGE, re.M)
    assert table == list(REASONS)
    source = (ROOT / "sloexporter" / "sources" / "informer.py").read_text()
    used = set(re.findall(r'(?:WatchFailed|_failed|restart)\([^"]*"(\w+)"', source))
    used |= {"forbidden", "throttled", "unavailable", "http"}  # from status_reason()
    used |= {"unresponsive", "decode", "connection", "error"}  # from classify()
    assert used <= set(REASONS), used - set(REASONS)


def test_the_documented_defaults_are_the_code_defaults():
    watch = Watch()
    settings = WatchSettings()
    assert "default 10" in PAGE and watch.heartbeat_seconds == settings.heartbeat_seconds == 10
    assert "default 5" in PAGE and watch.heartbeat_timeout == settings.heartbeat_timeout == 5
    assert "15 s with the defaults" in PAGE
    assert watch.backoff_max == settings.backoff_max == 30 and "default 30 s" in PAGE
    assert watch.timeout_seconds == 300 and "default 300" in PAGE
    assert watch.list_timeout == 30 and watch.connect_timeout == 10
    assert informer.FLAP_SECONDS == 5 and "sooner than 5 s" in PAGE


def test_the_config_block_in_serve_md_is_the_config():
    block = re.search(r"```yaml\n(listen:.*?)```", SERVE, re.S)
    assert block
    documented = yaml.safe_load(block.group(1))["watch"]
    assert documented == {k: v for k, v in Watch().model_dump().items()}


def test_backoff_is_exponential_with_jitter_and_capped():
    for n in range(1, 20):
        cap = min(30.0, 0.5 * 2 ** (n - 1))
        delays = [backoff_delay(n, 0.5, 30.0) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays)
        assert len(set(delays)) > 100  # jittered, not one fixed value
