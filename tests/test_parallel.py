"""Batch commands split over forked workers write exactly what one process writes.

`SLOEXPORTER_WORKERS=N` forces N workers even for small inputs, so every stage (parse,
load, render) is cut into slices here; the outputs of 1 and 3 workers are compared byte
for byte, errors included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.generate import write_specs
from sloexporter import parallel
from tests.compat.peers import peer, peer_inputs
from tests.tools import ROOT


def cli(workers: int, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, parallel.ENV: str(workers)}
    return subprocess.run([sys.executable, "-m", "sloexporter.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def specs(tmp_path: Path) -> list[str]:
    """Native, Sloth and platform specs together: many services, every SLI kind."""
    sloth = tmp_path / "sloth"
    sloth.mkdir()
    write_specs(sloth, 60)
    platforms = sorted(str(p / "slos") for p in (ROOT / "examples" / "platforms").iterdir()
                       if (p / "slos").is_dir())
    return [str(ROOT / "examples" / "slos"), str(sloth), *platforms[:1]]


@pytest.mark.parametrize("options", [
    (), ("--with-tests",), ("--ruler-files", "--max-rules-per-group", "7"),
    ("--global", "--external-labels", "cluster=eu-1"), ("--format", "prometheus-operator"),
], ids=["plain", "with-tests", "ruler-files", "global", "operator"])
def test_generate_is_the_same_with_workers(tmp_path: Path, options: tuple[str, ...]) -> None:
    inputs = specs(tmp_path)
    outputs = {}
    for workers in (1, 3):
        out = tmp_path / f"out{workers}"
        proc = cli(workers, "generate", *inputs, "-o", str(out), *options)
        assert proc.returncode == 0, proc.stderr
        outputs[workers] = (tree(out), proc.stdout.replace(str(out), "OUT"), proc.stderr)
    assert len(outputs[1][0]) > 20
    assert outputs[1] == outputs[3]


def test_generate_to_stdout_and_from_stdin_with_workers(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "slos" / "checkout-api.yaml").read_text()
    results = []
    for workers in (1, 3):
        env = {**os.environ, parallel.ENV: str(workers)}
        proc = subprocess.run([sys.executable, "-m", "sloexporter.cli", "generate", "-",
                               str(ROOT / "examples" / "slos" / "auth.yaml"), "-o", "-"],
                              input=text, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        results.append(proc.stdout)
    assert "checkout" in results[0] and results[0] == results[1]


def test_validate_reports_the_same_errors_with_workers() -> None:
    """Every peer input at once: services merged across files, cross-document references
    (OpenSLO, Sloth AlertWindows) and many errors, each in the same order."""
    root = peer()
    paths = [str(root / rel) for rel in peer_inputs()]
    one, three = cli(1, "validate", *paths), cli(3, "validate", *paths)
    assert one.returncode == three.returncode == 1
    assert one.stderr.count("\n") > 10
    assert (one.stdout, one.stderr) == (three.stdout, three.stderr)


@given(st.lists(st.integers(), max_size=60), st.integers(min_value=1, max_value=9))
def test_slices_keep_every_item_in_order(items: list[int], count: int) -> None:
    parts = parallel.slices(items, count)
    assert len(parts) == count
    assert [x for part in parts for x in part] == items
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@given(st.lists(st.floats(min_value=0, max_value=100), max_size=60),
       st.integers(min_value=1, max_value=5))
def test_weighted_slices_keep_every_item_and_balance(weights: list[float], count: int) -> None:
    items = list(range(len(weights)))
    parts = parallel.slices(items, count, weights)
    assert len(parts) == count
    assert [x for part in parts for x in part] == items
    loads = [sum(weights[i] for i in part) for part in parts]
    # no part is heavier than an equal share by more than its heaviest item
    assert max(loads) <= sum(weights) / count + max(weights, default=0) + 1e-6


def test_a_heavy_item_gets_a_part_with_fewer_others() -> None:
    parts = parallel.slices(list(range(11)), 2, [1.0] * 10 + [6.0])
    assert [len(p) for p in parts] == [8, 3]


def _doubled(chunk: Sequence[int]) -> list[int]:
    return [2 * x for x in chunk]


@pytest.fixture
def forced(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(parallel.ENV, "3")
    with parallel.batch():
        yield


@pytest.mark.usefixtures("forced")
def test_results_come_back_in_order() -> None:
    items = list(range(100))
    parts = parallel.chunked_map(_doubled, items)
    assert [len(p) for p in parts] == [1, 33, 33, 33]  # the first item alone, before forking
    assert [x for part in parts for x in part] == [2 * x for x in items]


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the children chunked_map forks (the test process has others: servers
    that session fixtures started)."""
    pids: list[int] = []
    fork = parallel._fork

    def spy(*args: object) -> tuple[int, int, Sequence[object]]:
        child = fork(*args)  # type: ignore[arg-type]
        pids.append(child[0])
        return child

    monkeypatch.setattr(parallel, "_fork", spy)
    return pids


def assert_reaped(pids: list[int]) -> None:
    assert pids
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # no such child: it was waited for


@pytest.mark.usefixtures("forced")
@pytest.mark.parametrize("how", ["raises", "crashes", "unpicklable"])
def test_a_failed_child_has_its_slice_redone(how: str, forked: list[int]) -> None:
    parent = os.getpid()

    def fn(chunk: Sequence[int]) -> object:
        if os.getpid() != parent:
            if how == "raises":
                raise RuntimeError("child failed")
            if how == "crashes":
                os._exit(9)
            return lambda: chunk  # a result pickle refuses
        return [x + 1 for x in chunk]

    parts = parallel.chunked_map(fn, list(range(30)))
    assert [x for part in parts for x in part] == list(range(1, 31))  # type: ignore[attr-defined]
    assert_reaped(forked)


@pytest.mark.usefixtures("forced")
def test_an_error_here_stops_and_reaps_the_children(forked: list[int]) -> None:
    parent = os.getpid()

    def fn(chunk: Sequence[int]) -> list[int]:
        if os.getpid() == parent and 0 not in chunk:  # this process's slice, after the forks
            raise ValueError("bad input")
        return list(chunk)

    with pytest.raises(ValueError, match="bad input"):
        parallel.chunked_map(fn, list(range(30)))
    assert_reaped(forked)


@pytest.mark.parametrize(("asked", "items", "expected"), [
    ("1", 1000, 1), ("3", 1000, 3), ("3", 2, 2), ("0", 1000, 1), ("-2", 1000, 1),
    ("many", 1000, 1), ("4", 1, 1), ("100000", 1000, parallel.MAX_ASKED), ("", 1, 1),
])
def test_workers_asked_for(monkeypatch: pytest.MonkeyPatch, asked: str, items: int,
                           expected: int) -> None:
    monkeypatch.setenv(parallel.ENV, asked)
    with parallel.batch():
        assert parallel.workers(items) == expected


def test_workers_by_default_only_for_big_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(parallel.ENV, raising=False)
    cpus = len(os.sched_getaffinity(0))
    with parallel.batch():
        assert parallel.workers(parallel.MIN_SLICE) == 1
        assert parallel.workers(100 * parallel.MIN_SLICE) == min(cpus, parallel.MAX_WORKERS)


def test_only_a_batch_command_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server (the status service loads specs) has threads: it never forks, asked or not."""
    monkeypatch.setenv(parallel.ENV, "3")
    assert parallel.workers(1000) == 1
    parent = os.getpid()
    assert parallel.chunked_map(lambda chunk: [os.getpid() for _ in chunk], [1, 2, 3]) == \
        [[parent] * 3]
    with parallel.batch():
        assert parallel.workers(1000) == 3
    assert parallel.workers(1000) == 1


def test_the_cli_page_gives_the_defaults() -> None:
    from tests.tools import doc_section

    text = " ".join(doc_section("cli", "### Every core").split())
    assert f"at most {parallel.MAX_WORKERS}" in text
    assert f"at least {parallel.MIN_SLICE} files or services a worker" in text
    assert f"{parallel.ENV}=N" in text
    assert f"at most {parallel.MAX_ASKED})" in text


def test_a_service_split_over_files_in_different_workers(tmp_path: Path) -> None:
    """One service in two files that land in different workers: merged as by one process,
    and an SLO name used in both is the same error, named at both places."""
    specs = tmp_path / "specs"
    specs.mkdir()
    write_specs(specs, 20)
    for n, slo in ((0, "requests-0"), (1, "extra")):
        (specs / f"zz-shop-{n}.yaml").write_text(
            "version: prometheus/v1\nservice: svc0\nslos:\n"
            f"  - name: {slo}\n    objective: 99.9\n    sli:\n      events:\n"
            "        error_query: sum(rate(x_total{code=\"500\"}[{{.window}}]))\n"
            "        total_query: sum(rate(x_total[{{.window}}]))\n"
            "    alerting:\n      name: X\n      page_alert: {disable: true}\n"
            "      ticket_alert: {disable: true}\n")
    one, three = cli(1, "validate", str(specs)), cli(3, "validate", str(specs))
    assert one.returncode == three.returncode == 1
    assert "duplicate SLO name 'requests-0' in service 'svc0'" in one.stderr
    assert (one.stdout, one.stderr) == (three.stdout, three.stderr)
    (specs / "zz-shop-0.yaml").unlink()
    one, three = cli(1, "generate", str(specs), "-o", "-"), cli(3, "generate", str(specs),
                                                                "-o", "-")
    assert one.returncode == three.returncode == 0, one.stderr
    assert "slo: extra" in one.stdout and one.stdout == three.stdout
