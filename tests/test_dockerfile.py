"""The Dockerfile, read by a small parser: no Docker engine here, so it is not built."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache

import yaml

from sloexporter.config import Config
from tests.tools import ROOT

BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "cargo", "rustc", "git", "curl",
               "wget", "pip")


@dataclass
class Stage:
    base: str
    name: str | None
    #: (instruction, arguments) in order, continuation lines joined
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.steps if i == instruction]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    logical = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))
    for line in logical.splitlines():
        if not line.strip():
            continue
        instruction, _, rest = line.strip().partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and instruction == "ARG":
            key, _, default = rest.partition("=")
            args[key] = default
        else:
            stages[-1].steps.append((instruction, rest))
    return args, stages


@cache
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse((ROOT / "Dockerfile").read_text())


def final() -> Stage:
    return dockerfile()[1][-1]


def test_the_build_is_multi_stage_on_a_slim_python_base():
    _, stages = dockerfile()
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", stage.base), stage.base
    build_names = {s.name for s in stages[:-1]}
    copies = final().args("COPY")
    assert copies and all(re.match(r"--from=(\S+) ", c) for c in copies)
    assert {re.match(r"--from=(\S+) ", c).group(1) for c in copies} <= build_names


def test_the_final_stage_installs_nothing_and_carries_no_build_tools():
    stage = final()
    assert stage.args("RUN") == [], "the final stage only copies the built virtualenv"
    text = " ".join(a for _, a in stage.steps)
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(^|[\s/]){re.escape(tool)}(\s|$)", text), tool


def test_the_image_runs_as_a_numeric_non_root_user_the_chart_agrees_with():
    [user] = final().args("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    values = (ROOT / "helm" / "sloexporter" / "templates" / "workload.yaml").read_text()
    assert f"runAsUser: {uid}" in values


def test_the_entrypoint_is_sloexporter_serve_in_exec_form():
    [entrypoint] = final().args("ENTRYPOINT")
    [cmd] = final().args("CMD")
    # exec form: sloexporter is PID 1 and gets SIGTERM itself
    assert json.loads(entrypoint) == ["sloexporter"]
    assert json.loads(cmd) == ["serve"]
    env = " ".join(final().args("ENV"))
    assert "PATH=/opt/venv/bin:" in env  # where the build stage installs the command
    assert any("/opt/venv" in r for r in dockerfile()[1][0].args("RUN"))


def test_the_exposed_port_is_the_one_serve_and_the_chart_use():
    [port] = final().args("EXPOSE")
    assert int(port) == int(Config().listen.rpartition(":")[2])
    values = yaml.safe_load((ROOT / "helm" / "sloexporter" / "values.yaml").read_text())
    assert values["service"]["port"] == int(port)


def test_the_build_context_holds_only_what_the_build_copies():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip().rstrip("/") for ln in lines if ln.strip() and ln[0] != "#"]
    assert patterns[0] == "*"  # everything is excluded, then allowed back one by one
    copied = {w.rstrip("/") for c in dockerfile()[1][0].args("COPY")
              for w in shlex.split(c)[:-1]}
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    assert copied == allowed


def test_the_parser_reads_continuations_and_stage_names():
    args, stages = parse("ARG B=python:3.12-slim\nFROM ${B} AS one\n"
                         "RUN a \\\n && b\n# c\nFROM ${B}\nUSER 1:1\n")
    assert args == {"B": "python:3.12-slim"}
    assert [(s.base, s.name) for s in stages] == [("python:3.12-slim", "one"),
                                                 ("python:3.12-slim", None)]
    assert stages[0].args("RUN") == ["a   && b"]
    assert stages[1].args("USER") == ["1:1"]
