"""docs/serve.md's serve reference says what the code does: options, limits, defaults;
and the pieces it promises that need no process (log scrubbing, probe labels)."""

from __future__ import annotations

import argparse
import json
import logging
import re

import pytest

from sloexporter import logs
from sloexporter.config import Server
from sloexporter.server import (
    EXIT_DEADLINE,
    RELOAD_READY_TIMEOUT,
    SUMMARY_AFTER,
    add_serve_arguments,
)
from sloexporter.sources import manifests
from sloexporter.sources.http_probe import HTTPTarget, url_label
from tests.tools import doc, doc_section

REFERENCE = doc_section("serve", "## Serve reference")


def test_every_serve_option_is_documented():
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    options = {o for a in parser._actions for o in a.option_strings
               if o.startswith("--") and o != "--help"}
    table = doc_section("serve", "### Options")
    assert options == set(re.findall(r"`(--[a-z-]+)", table))


def test_documented_limits_and_defaults_are_the_code_s():
    assert f"{manifests.MAX_FILE_BYTES >> 20} MiB per file" in REFERENCE
    assert f"{manifests.MAX_DEPTH} levels of nesting" in REFERENCE
    assert f"{manifests.MAX_ALIAS_NODES:,} nodes added by alias expansion" in REFERENCE
    assert f"A hard deadline of {EXIT_DEADLINE} s" in REFERENCE
    assert f"once ready (or\n  after {RELOAD_READY_TIMEOUT:.0f} s)" in REFERENCE
    assert f"not ready after {SUMMARY_AFTER:.0f} s" in REFERENCE
    assert f"cut at {logs.MAX_MESSAGE:,} characters" in REFERENCE
    defaults = Server()
    assert f"`server.idle_timeout` ({defaults.idle_timeout:.0f} s)" in REFERENCE
    assert f"`server.write_timeout` ({defaults.write_timeout:.0f} s)" in REFERENCE
    config = doc("serve")
    assert f"idle_timeout: {defaults.idle_timeout:.0f} " in config
    assert f"write_timeout: {defaults.write_timeout:.0f} " in config


@pytest.mark.parametrize("text, secret", [
    ("GET https://api/x with Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.abc.def", "eyJhbGci"),
    ("probe https://admin:hunter2@shop.example.com/health failed", "hunter2"),
    ("url http://h/x?token=s3cr3t-value&a=1", "s3cr3t-value"),
    ("password=correct-horse in the error", "correct-horse"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----", "MIIEvQ"),
    ("basic dXNlcjpwYXNzd29yZA== sent", "dXNlcjpwYXNzd29yZA"),
])
def test_secrets_are_scrubbed_from_every_log_line(text, secret, capsys):
    logs.setup_logging("info", "json")
    try:
        logging.getLogger("sloexporter.test").warning("%s", text)
        logging.getLogger("aiohttp.client").error("failed: %s", text)  # not our logger
    finally:
        logs.setup_logging("info", "text")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert secret not in line and logs.REDACTED in json.loads(line)["msg"]


def test_a_hostile_log_message_is_cut():
    assert len(logs.scrub("x" * 100_000)) <= logs.MAX_MESSAGE + 3


@pytest.mark.parametrize("url, label", [
    ("https://user:pw@shop.example.com/health?token=abc#frag", "https://shop.example.com/health"),
    ("http://10.0.0.7:8080/healthz?key=v", "http://10.0.0.7:8080/healthz"),
    ("http://shop.example.com/", "http://shop.example.com/"),
])
def test_probe_target_labels_carry_no_credentials(url, label):
    assert url_label(url) == label
    assert HTTPTarget(url=url).label == label
    assert HTTPTarget(url=url, name="mine").label == "mine"
