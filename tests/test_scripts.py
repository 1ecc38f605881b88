"""The setup scripts tell a newcomer what is missing and how to get it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.tools import ROOT

GO_TOOLS = ROOT / "scripts" / "build-go-tools.sh"


def _bin_without_go(tmp_path: Path, fake_go_version: str | None) -> str:
    """A PATH with the few commands the script needs, and a `go` of that version or none."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("bash", "sh", "mkdir", "dirname", "cut", "awk", "cat", "sha256sum"):
        found = shutil.which(tool)
        assert found, tool
        (folder / tool).symlink_to(found)
    if fake_go_version:
        go = folder / "go"
        go.write_text("#!/bin/sh\n"
                      f'if [ "$1" = env ]; then echo go{fake_go_version}; '
                      f'else echo "go version go{fake_go_version} linux/amd64"; fi\n')
        go.chmod(0o755)
    return str(folder)


@pytest.mark.parametrize("go_version", [None, "1.19.8"])
def test_build_go_tools_says_how_to_get_go_when_it_is_missing_or_too_old(tmp_path, go_version):
    result = subprocess.run([shutil.which("bash") or "bash", str(GO_TOOLS)],
                            env={**os.environ, "PATH": _bin_without_go(tmp_path, go_version)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr  # not fatal: the tests fail by name instead
    message = result.stderr
    if go_version:
        assert f"go{go_version} is too old" in message
    else:
        assert "Go is not on PATH" in message
    minimum = re.search(r"Install Go (\d+\.\d+\.\d+) or later", message)
    assert minimum, message
    tarball = re.search(r"curl -fsSL (https://go\.dev/dl/go(\S+)\.linux-amd64\.tar\.gz) \| "
                        r"sudo tar -C /usr/local -xz", message)
    assert tarball, message
    # the suggested tarball satisfies the stated minimum
    as_tuple = [tuple(int(x) for x in v.split(".")) for v in (minimum[1], tarball[2])]
    assert as_tuple[1] >= as_tuple[0]
    assert "export PATH=/usr/local/go/bin:$PATH" in message
    assert "scripts/install-tools.sh again" in message


def test_install_tools_fetches_a_go_new_enough_for_the_builds():
    """On a machine without Go (a fresh Debian 12 CI runner), install-tools.sh downloads a
    hash-pinned toolchain that build-go-tools.sh accepts."""
    install = (ROOT / "scripts" / "install-tools.sh").read_text()
    pinned = re.search(r"^GO_TOOLCHAIN=v0\.0\.1-go(\d+\.\d+\.\d+)\.linux-amd64$", install, re.M)
    assert pinned, "install-tools.sh pins no golang.org/toolchain version"
    assert re.search(r"^GO_TOOLCHAIN_SHA256=[0-9a-f]{64}$", install, re.M)
    assert '"${go_proxy%/}/golang.org/toolchain/@v/$GO_TOOLCHAIN.zip"' in install
    assert "sha256sum -c" in install.split("GO_TOOLCHAIN_SHA256=", 1)[1]
    minimum = re.search(r"^GO_MIN=(\d+\.\d+\.\d+)$", GO_TOOLS.read_text(), re.M)
    assert minimum
    as_tuple = [tuple(int(x) for x in v.split(".")) for v in (minimum[1], pinned[1])]
    assert as_tuple[1] >= as_tuple[0]


@pytest.mark.parametrize("env_proxy, go_says, expected", [
    ("https://mirror.example/go,direct", "", "https://mirror.example/go"),
    ("", "https://from-go-env.example|https://second.example", "https://from-go-env.example"),
    ("off", "", None),
    ("", "", None),
])
def test_install_tools_takes_the_go_proxy_from_the_machine(tmp_path, env_proxy, go_says,
                                                           expected):
    """The toolchain is fetched from the proxy this machine's Go setup names ($GOPROXY,
    else `go env GOPROXY` of an old Go), never a host written into the script; with none
    it stops with instructions."""
    install = (ROOT / "scripts" / "install-tools.sh").read_text()
    start = install.index('  go_proxy="${GOPROXY:-}"')
    end = install.index("  esac\n", start) + len("  esac\n")
    fake_go = tmp_path / "go"
    fake_go.write_text(f"#!/bin/sh\necho '{go_says}'\n")
    fake_go.chmod(0o755)
    script = (f"system_go={fake_go if go_says else ''}\n" + install[start:end]
              + 'echo "$go_proxy"\n')
    env = {k: v for k, v in os.environ.items() if k != "GOPROXY"}
    if env_proxy:
        env["GOPROXY"] = env_proxy
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                            timeout=30)
    if expected is None:
        assert result.returncode == 1 and "install-tools.sh again" in result.stderr
    else:
        assert result.returncode == 0 and result.stdout.strip() == expected


def _cached_tools() -> list[str]:
    """Every tool the script checks for before building (`have X`, `all_have X Y`)."""
    text = GO_TOOLS.read_text()
    found = re.findall(r"if ! (?:have|all_have) ([^;]+);", text)
    return sorted({t for group in found for t in group.split()})


@pytest.mark.parametrize("missing", [None, "kube-apiserver", "etcd"])
def test_build_go_tools_builds_only_what_is_not_cached(tmp_path, missing):
    """issue 10: the kube-apiserver and etcd builds (and every other) are skipped when the
    binaries exist; one missing binary rebuilds its group only. Run on a copy of the
    script, with a `go` that records what it was asked to do."""
    tools = _cached_tools()
    assert {"kube-apiserver", "etcd", "sloth", "promtool3"} <= set(tools), tools
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    script = repo / "scripts" / GO_TOOLS.name
    script.write_text(GO_TOOLS.read_text())
    cache = repo / ".tools" / "bin"
    cache.mkdir(parents=True)
    for tool in tools:
        if tool != missing:
            (cache / tool).write_text("#!/bin/sh\n")
            (cache / tool).chmod(0o755)
    calls = tmp_path / "go-calls"
    path = _bin_without_go(tmp_path, None)
    for tool in ("install", "mktemp", "rm", "env", "cp"):
        if not (Path(path) / tool).exists() and shutil.which(tool):
            (Path(path) / tool).symlink_to(shutil.which(tool))
    go = Path(path) / "go"
    go.write_text("#!/bin/sh\n"
                  'if [ "$1" = env ]; then echo go1.26.8; exit 0; fi\n'
                  'if [ "$1" = version ]; then echo "go version go1.26.8 linux/amd64"; exit 0; fi\n'
                  f'echo "$@" >> {calls}\nexit 1\n')
    go.chmod(0o755)
    result = subprocess.run(["bash", str(script)], env={**os.environ, "PATH": path},
                            capture_output=True, text=True, timeout=60, cwd=repo)
    assert result.returncode == 0, result.stderr
    asked = calls.read_text() if calls.exists() else ""
    building = [line for line in result.stderr.splitlines() if "building" in line]
    if missing is None:
        assert asked == "" and building == [], (asked, building)
    else:
        # its group alone is built (the fake go fails it: not fatal, said by name)
        assert len(building) == 1 and "kube-apiserver" in building[0], building
        assert asked and "slok/sloth" not in asked and "prometheus/cmd" not in asked \
            and "VictoriaMetrics" not in asked, asked
        assert "failed to build" in result.stderr
