"""The one YAML loader: hostile input is one `FILE:LINE: message` line and exit 1, fast.

Each hazard is fed to every reader of YAML: specs (`validate`), Alertmanager settings
(`generate --alertmanager-settings`), the serve config and the manifests folder.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time

import pytest

from sloexporter import yamlsafe
from sloexporter.config import load_config
from sloexporter.sources.manifests import read_objects
from sloexporter.specs.errors import SpecErrors
from tests.conftest import run_cli
from tests.test_validate import VALID

HEAD = "apiVersion: sloexporter.dev/v1\nkind: ServiceLevels\nservice: x\n"


def laughs(levels: int = 10, width: int = 9, key: str = "lol") -> str:
    """A billion-laughs document: 9^10 values once expanded, a few hundred bytes written."""
    text = f'{key}0: &{key}0 [' + ",".join(['"lol"'] * width) + "]\n"
    for i in range(1, levels):
        text += f"{key}{i}: &{key}{i} [" + ",".join([f"*{key}{i - 1}"] * width) + "]\n"
    return text


def deep(levels: int) -> str:
    return "x: " + "[" * levels + "]" * levels + "\n"


# (name, document, expected line, message pattern): each is refused in every reader
HAZARDS = [
    ("billion laughs", laughs(), 5, "alias"),
    ("billion laughs in a mapping", "a: &a {x: 1, y: 1, z: 1, w: 1}\n" + "".join(
        f"b{i}: &b{i} {{p: *{'a' if i == 0 else f'b{i - 1}'}, q: *{'a' if i == 0 else f'b{i - 1}'}"
        f", r: *{'a' if i == 0 else f'b{i - 1}'}, s: *{'a' if i == 0 else f'b{i - 1}'}}}\n"
        for i in range(12)), None, "alias"),
    ("a recursive alias", "a: &a [1, *a]\n", 1, "recursive alias"),
    ("5,000 levels deep", deep(5000), 1, "nested deeper"),
    ("100 levels deep", deep(100), 1, "nested deeper"),
    ("deep through aliases", "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 40 + "*a"
     + "]" * 40 + "\n", 1, "nested deeper"),
    ("an integer of 5,000 digits", "n: " + "9" * 5000 + "\n", 1, "number of 5,000 characters"),
    ("a float of 5,000 digits", "n: 0." + "1" * 4998 + "\n", 1, "number of 5,000 characters"),
    ("a duplicate key", "a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a': first given at line"),
    ("a duplicate key on one line", "a: {b: 1, b: 2}\n", 1, "duplicate key 'b'"),
    ("a tab for indentation", "a:\n\tb: 1\n", 2, "tab character"),
    ("a control character", "a: b\x07c\n", 1, "control character U+0007"),
    ("a Python tag", "a: !!python/object:os.system {}\n", 1, "unsupported YAML tag"),
]


@pytest.mark.parametrize("hazard", HAZARDS, ids=[h[0] for h in HAZARDS])
def test_the_loader_refuses_each_hazard_with_its_line(hazard):
    name, text, line, pattern = hazard
    started = time.process_time()
    with pytest.raises(yamlsafe.YAMLProblem) as info:
        yamlsafe.load_all(text, "f.yaml")
    assert time.process_time() - started < 1.0, "refused without expanding anything"
    assert pattern in info.value.message
    if line is not None:
        assert info.value.line == line
    assert "\n" not in str(info.value)


def _one_line_exit_1(result: subprocess.CompletedProcess[str], file: str,
                     pattern: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert re.match(rf"^{re.escape(file)}:[1-9]\d*: ", lines[0]), lines[0]
    assert pattern in lines[0]


def test_validate_gives_one_line_per_hostile_file_and_exit_1(tmp_path):
    """One run over a folder of every hazard (a CLI start is slow on a busy machine)."""
    for i, (_, text, _, _) in enumerate(HAZARDS):
        (tmp_path / f"h{i:02d}.yaml").write_text(HEAD + text + "slos: []\n")
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(HAZARDS), lines
    for i, (line, (_, _, _, pattern)) in enumerate(zip(lines, HAZARDS, strict=True)):
        assert re.match(rf"^{re.escape(str(tmp_path / f'h{i:02d}.yaml'))}:[1-9]\d*: ", line)
        assert pattern in line, line


@pytest.mark.parametrize("reader", ["serve config", "alertmanager settings"])
@pytest.mark.parametrize("hazard", HAZARDS, ids=[h[0] for h in HAZARDS])
def test_the_serve_config_and_alertmanager_settings_refuse_each_hazard(tmp_path, hazard,
                                                                       reader):
    from sloexporter.alertmanager import load_settings

    load = load_config if reader == "serve config" else load_settings
    _, text, line, pattern = hazard
    path = tmp_path / "file.yaml"
    path.write_text(text)
    with pytest.raises(SpecErrors) as info:
        load(str(path))
    [error] = info.value.errors
    assert pattern in error.message and error.line >= 1
    if line is not None:
        assert error.line == line



@pytest.mark.parametrize("reader", ["serve config", "alertmanager settings"])
def test_the_serve_config_and_alertmanager_settings_refuse_a_huge_file_and_two_documents(
        tmp_path, reader):
    from sloexporter.alertmanager import load_settings

    load = load_config if reader == "serve config" else load_settings
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as fh:  # sparse: over the limit without writing megabytes
        fh.truncate(yamlsafe.LIMITS.max_bytes + 1)
    twice = tmp_path / "twice.yaml"
    twice.write_text("{}\n---\n{}\n")
    for path, pattern in ((huge, "larger than"), (twice, "holds one YAML document")):
        with pytest.raises(SpecErrors) as info:
            load(str(path))
        [error] = info.value.errors
        assert error.file == str(path) and error.line == 1 and pattern in error.message, error

def test_generate_refuses_a_bomb_in_the_settings_in_one_line(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(VALID)
    settings = tmp_path / "settings.yaml"
    settings.write_text(laughs())
    result = run_cli("generate", str(good), "-o", str(tmp_path / "out"),
                     "--alertmanager-settings", str(settings))
    _one_line_exit_1(result, str(settings), "alias")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.yaml"))


def test_a_bomb_is_refused_within_a_second_of_cpu(tmp_path):
    """The CLI's own work: 9^10 values written in 300 bytes, refused in well under a
    second of CPU (the child's CPU time, so a loaded machine does not skew it)."""
    spec = tmp_path / "bomb.yaml"
    spec.write_text(HEAD + laughs(levels=12) + "slos: []\n")
    before = _children_cpu()
    result = run_cli("validate", str(spec))
    assert result.returncode == 1 and "alias" in result.stderr
    assert _children_cpu() - before < 2.0  # interpreter start-up and imports included


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("hazard", HAZARDS, ids=[h[0] for h in HAZARDS])
def test_a_hostile_manifest_is_skipped_and_the_others_load(tmp_path, hazard, caplog):
    _, text, _, _ = hazard
    (tmp_path / "bad.yaml").write_text(text)
    (tmp_path / "good.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n"
                                        "metadata: {name: a, namespace: b}\n")
    with caplog.at_level(logging.WARNING):
        objects, bad = read_objects(tmp_path)
    assert bad == 1
    assert [o["metadata"]["name"] for o in objects] == ["a"]
    assert "bad.yaml" in caplog.text


def test_anchors_and_merge_keys_still_work(tmp_path):
    text = VALID.replace("labels: {team: payments}", "labels: &common {team: payments}") \
        .replace("      page: {labels: {}, annotations: {}}",
                 "      page: {labels: *common, annotations: {}}")
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    result = run_cli("validate", str(spec))
    assert result.returncode == 0, result.stderr
    docs = yamlsafe.load_all("a: &a {x: 1}\nb: {<<: *a, x: 2}\n", "f")
    assert docs[0].data["b"] == {"x": 2}


def test_floats_are_exact_in_specs_and_plain_elsewhere():
    from decimal import Decimal

    [doc] = yamlsafe.load_all("a: 99.95\nb: 1_000.5\nc: .inf\n", "f", exact_numbers=True)
    assert doc.data == {"a": Decimal("99.95"), "b": Decimal("1000.5"), "c": Decimal("Infinity")}
    [doc] = yamlsafe.load_all("a: 99.95\n", "f")
    assert doc.data == {"a": 99.95}


def test_too_big_and_not_utf8_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * (yamlsafe.LIMITS.max_bytes + 10) + b"\n")
    result = run_cli("validate", str(big))
    _one_line_exit_1(result, str(big), "larger than")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"a: 1\nb: caf\xe9\n")
    _one_line_exit_1(run_cli("validate", str(latin)), str(latin), "not UTF-8")
    assert f"{latin}:2:" in run_cli("validate", str(latin)).stderr


def test_the_pure_python_loader_refuses_depth_too():
    """Without libyaml (hidden in a child process), PyYAML's composer recurses per level."""
    script = (
        "import sys, yaml\n"
        "del yaml.CSafeLoader\n"
        "from sloexporter import yamlsafe\n"
        "assert yamlsafe._BASE_LOADER is yaml.SafeLoader\n"
        "try:\n"
        f"    yamlsafe.load_all({deep(5000)!r}, 'f')\n"
        "except yamlsafe.YAMLProblem as e:\n"
        "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("f:1: nested deeper")


def test_the_pure_readers_check_still_refuses_control_characters():
    """yamlsafe imports PyYAML with its pure reader's check (a 4 ms regex) compiled on
    first use: without libyaml that reader runs, and a control character is still
    refused in one line at its line (the reader checks the text as the loader is made,
    which had escaped as a traceback). With libyaml the check is never compiled."""
    script = (
        "import re, sys\n"
        "sys.modules['yaml._yaml'] = None  # no libyaml: the pure reader parses\n"
        "from sloexporter import yamlsafe\n"
        "import yaml\n"
        "assert yamlsafe._BASE_LOADER is yaml.SafeLoader\n"
        "assert type(yaml.reader.Reader.NON_PRINTABLE).__name__ == '_CompiledOnUse', \\\n"
        "    'PyYAML changed the pattern: update yamlsafe._NON_PRINTABLE'\n"
        "assert re.compile.__module__ == 're'\n"
        "try:\n"
        "    yamlsafe.load_all('a: 1\\nb: x\\x07y\\n', 'f')\n"
        "except yamlsafe.YAMLProblem as e:\n"
        "    print(e)\n"
        "print(yamlsafe.load_all('a: caf\\u00e9 \\U0001F600\\n', 'g')[0].data)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("f:2: control character U+0007 is not allowed"), out.stdout
    assert lines[1] == "{'a': 'caf\u00e9 \U0001F600'}"
