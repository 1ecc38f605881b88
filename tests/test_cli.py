"""The command line explains itself: help for every option, examples, exit codes, and a
start-up that loads only what the command needs."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from sloexporter.cli import build_parser
from tests.conftest import run_cli
from tests.tools import ROOT

COMMANDS = ("init", "validate", "generate", "convert", "serve", "report")
SERVER_STACK = ("aiohttp", "kubernetes_asyncio")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(with_serve_options=True)
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_of_every_command_has_help():
    subparsers = _subparsers()
    assert set(subparsers) == set(COMMANDS)
    for name, parser in subparsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 10, (name, action.dest)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_help_has_examples_and_exit_codes(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "examples:\n  sloexporter " + command in text
    assert "exit codes:\n  0" in text and "\n  1  invalid input" in text
    assert "\n  2  usage or path error" in text
    if command in ("validate", "generate", "convert"):
        for fmt in ("sloexporter.dev/v1", "prometheus/v1", "pyrra.dev/v1alpha1", "openslo/v1"):
            assert fmt in text, (command, fmt)
    if command == "serve":
        for endpoint in ("/metrics", "/healthz", "/readyz"):
            assert f"  {endpoint}" in text


def test_the_top_level_help_lists_commands_first_steps_and_exit_codes():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"    {command} " in result.stdout
    assert "first steps:" in result.stdout and "exit codes:" in result.stdout


@pytest.mark.parametrize("args", [(), ("frobnicate",), ("generate", "x"),
                                  ("convert", "x", "--to", "yaml", "-o", "out"),
                                  ("init",), ("generate", "x", "-o", "out", "--bogus")])
def test_usage_errors_exit_2(args):
    assert run_cli(*args).returncode == 2


@pytest.mark.parametrize("args", [("--version",), ("validate", "examples/slos"),
                                  ("init", "shop"), ("generate", "examples/slos", "-o", "-")])
def test_only_serve_loads_the_server_stack(args):
    """`--version`, `init`, `validate` and `generate` never import aiohttp or
    kubernetes_asyncio; their start-up time is in bench/generate.py."""
    code = ("import sys\nfrom sloexporter.cli import main\n"
            "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as exc:\n"
            "    code = exc.code\n"
            f"loaded = sorted({{m.split('.')[0] for m in sys.modules}} & {set(SERVER_STACK)!r})\n"
            "print('LOADED', loaded, file=sys.stderr)\nsys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stderr, result.stderr


@pytest.mark.parametrize("args", [("--version",), ("validate", "examples/slos")])
def test_validate_and_version_do_not_import_shutil(args):
    """argparse's formatter would import shutil (with bz2 and lzma) for the width."""
    code = ("import sys\nfrom sloexporter.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted({'shutil', 'bz2', 'lzma'} & set(sys.modules)), "
            "file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert "LOADED []" in result.stderr, result.stderr


@pytest.mark.parametrize("columns", [None, "57", "200", "0", "-3", "wide"])
def test_the_help_is_as_wide_as_shutil_would_make_it(monkeypatch, columns):
    import shutil

    from sloexporter import cli

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli._columns() == shutil.get_terminal_size().columns
    width = cli._columns() - 2
    assert cli._Formatter("p")._width == argparse.HelpFormatter("p")._width == width


ARGVS = {"init": ["init", "shop", "--job", "shop", "--objective", "99.5"],
         "validate": ["validate", "a", "b/"],
         "generate": ["generate", "x", "-o", "out", "--with-tests"],
         "convert": ["convert", "x", "--to", "sloth", "-o", "o"],
         "serve": ["serve", "--manifests", "m", "--listen", "127.0.0.1:9469"],
         "report": ["report", "--prometheus-url", "http://p:9090", "--period", "2026-11"]}


@pytest.mark.parametrize("command", COMMANDS)
def test_the_parser_of_one_command_parses_as_the_whole_one(command):
    """`main` builds only the parser of the command it is given first."""
    argv = ARGVS[command]
    alone = build_parser(with_serve_options=True, only=command)
    [sub] = [a for a in alone._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == {command}
    assert vars(alone.parse_args(argv)) == vars(build_parser().parse_args(argv))


def test_help_before_a_command_and_a_misspelt_command_name_every_command():
    listed = run_cli("-h", "validate")
    assert listed.returncode == 0
    for command in COMMANDS:
        assert f"    {command} " in listed.stdout
    wrong = run_cli("valdate", "x")
    assert wrong.returncode == 2
    assert "invalid choice: 'valdate'" in wrong.stderr
    assert all(f"'{command}'" in wrong.stderr for command in COMMANDS)


@pytest.mark.parametrize("args", [("validate", "examples/slos"), ("--version",)])
def test_a_batch_command_runs_without_garbage_collection(args):
    """From its imports on, a batch command's heap is kept, not walked by the collector;
    in process, the collector is on again afterwards. `--version` is not a batch command:
    the proof that the probe sees collections."""
    code = ("import gc, sys\nfrom sloexporter.cli import main\nseen = []\n"
            "gc.callbacks.append(lambda phase, info: seen.append(phase))\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "import pydantic.main\n"
            "print('COLLECTIONS', len(seen), gc.isenabled(), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    counts = result.stderr.split("COLLECTIONS ")[-1].split()
    if args[0] == "validate":
        assert counts == ["0", "True"], result.stderr
    else:
        assert int(counts[0]) > 0 and counts[1] == "True", result.stderr


def test_serve_loads_its_options_only_when_it_runs():
    """The proof the test above can fail: serve's own options come with the server."""
    code = ("import sys\nfrom sloexporter.cli import build_parser\n"
            "build_parser(with_serve_options=True)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp'}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "['aiohttp']", result.stdout + result.stderr


def _validate_with_plugin(tmp_path, env_value):
    """validate, with a pydantic plugin installed (a dist-info with a `pydantic` entry
    point on PYTHONPATH) and PYDANTIC_DISABLE_PLUGINS as given (None: unset)."""
    site = tmp_path / "site"
    info = site / "probe_plugin-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pydantic]\nprobe = probe_plugin:plugin\n")
    (site / "probe_plugin.py").write_text(
        "import sys\nprint('PLUGIN LOADED', file=sys.stderr)\n"
        "class Plugin:\n"
        "    def new_schema_validator(self, *args):\n"
        "        return None, None, None\n"
        "plugin = Plugin()\n")
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = str(site)
    if env_value is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = env_value
    code = ("import sys\nfrom sloexporter.cli import main\ncode = main(sys.argv[1:])\n"
            "print('METADATA', 'importlib.metadata' in sys.modules, file=sys.stderr)\n"
            "sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", code, "validate", "examples/slos"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_pydantic_plugins_are_off_and_not_looked_for(tmp_path):
    """Short commands neither load pydantic plugins nor import importlib.metadata to look
    for them (13 ms of `validate`'s start-up)."""
    err = _validate_with_plugin(tmp_path, None)
    assert "PLUGIN LOADED" not in err and "METADATA False" in err, err
    err = _validate_with_plugin(tmp_path, "true")
    assert "PLUGIN LOADED" not in err and "METADATA False" in err, err


@pytest.mark.parametrize("setting", ["", "other-plugin"])
def test_a_users_pydantic_plugin_setting_is_kept(tmp_path, setting):
    """Set to anything but off, PYDANTIC_DISABLE_PLUGINS is the user's: pydantic's own
    loader runs and finds their plugin (the proof the test above can fail)."""
    err = _validate_with_plugin(tmp_path, setting)
    assert "PLUGIN LOADED" in err and "METADATA True" in err, err


def test_the_plugin_loader_stand_in_hands_over_any_other_name():
    """Should pydantic ask its plugin loader for more than `get_plugins`, the real module
    answers, rather than an import error."""
    code = ("import os, sys\nos.environ.pop('PYDANTIC_DISABLE_PLUGINS', None)\n"
            "from sloexporter import cli\ncli._no_pydantic_plugins()\n"
            "from pydantic.plugin._loader import get_plugins\n"
            "print(tuple(get_plugins()))\n"
            "from pydantic.plugin._loader import PYDANTIC_ENTRY_POINT_GROUP as group\n"
            "print(group, type(sys.modules['pydantic.plugin._loader']).__name__)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.split("\n")[:2] == ["()", "pydantic module"], result.stderr


def test_a_batch_command_leaves_with_all_its_output_written(tmp_path):
    """`entry` ends validate and generate with os._exit: what they printed is flushed
    first, also when it is far more than a pipe's buffer, and the exit code is kept."""
    import os

    import yaml

    from bench.generate import write_specs

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}

    def run_cli(*args: str) -> subprocess.CompletedProcess[str]:  # stdout block-buffered
        return subprocess.run([sys.executable, "-m", "sloexporter.cli", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)

    write_specs(tmp_path, 200)
    result = run_cli("generate", str(tmp_path), "-o", "-")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) > 1 << 20
    groups = yaml.safe_load(result.stdout)["groups"]
    assert {g["name"] for g in groups} >= {f"sloexporter-svc{s}-requests-{i}-period"
                                          for s in range(40)
                                          for i in range(5)}
    result = run_cli("validate", str(tmp_path))  # a short line, held in stdout's buffer
    assert (result.returncode, result.stdout) == (0, "ok: 200 SLOs in 40 services\n")
    (tmp_path / "svc0.yaml").write_text("version: prometheus/v1\nservice: x\nslos: 3\n")
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith(f"{tmp_path / 'svc0.yaml'}:"), result.stderr
    assert result.stdout == ""
