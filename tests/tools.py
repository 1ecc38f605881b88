"""Find the external tools a test needs.

The test command sets SLOEXPORTER_REQUIRE_TOOLS=1: then a missing tool fails the test.
Run without it (plain `pytest`), a missing tool skips the test with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
LOCAL_TOOLS = ROOT / ".tools" / "bin"
DOCS = ROOT / "docs"


def doc(page: str) -> str:
    """The text of README.md (`page="README"`) or of docs/<page>.md."""
    path = ROOT / "README.md" if page == "README" else DOCS / f"{page}.md"
    return path.read_text(encoding="utf-8")


def doc_section(page: str, heading: str) -> str:
    """The section under `heading` (e.g. "## Alertmanager routing") of a documentation page,
    up to the next heading of the same or a higher level (fenced code does not count)."""
    text = doc(page)
    marker = f"\n{heading}\n"
    assert marker in text, f"{page}: no heading {heading!r}"
    body = text.split(marker, 1)[1]
    level = heading.split(" ", 1)[0]
    out, fenced = [], False
    for line in body.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        head = line.split(" ", 1)[0]
        if not fenced and head and set(head) == {"#"} and len(head) <= len(level):
            break
        out.append(line)
    return "".join(out)


def all_docs() -> str:
    """README.md and every page under docs/, for checks that span the documentation."""
    return "\n".join([doc("README"), *(p.read_text(encoding="utf-8")
                                        for p in sorted(DOCS.glob("*.md")))])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(app: web.Application, port: int | None = None) -> AsyncIterator[str]:
    """`app` on 127.0.0.1:`port` until the block ends; yields "127.0.0.1:PORT". Without a
    port, one is picked right before the bind: one picked early could be handed out again
    by the next free_port() while it is still unbound."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def serve_text(body: Callable[[], str], port: int = 0) -> ThreadingHTTPServer:
    """Serve `body()` as Prometheus text exposition on 127.0.0.1 (`port`, or a free one),
    freshly rendered for every scrape, from a daemon thread; the caller shuts it down."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            data = body().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def require_tool(name: str) -> str:
    """The path of tool `name`, or fail/skip as the test command asked."""
    path = shutil.which(name) or shutil.which(name, path=str(LOCAL_TOOLS))
    if path:
        return path
    message = f"{name} is not installed; run scripts/install-tools.sh"
    if os.environ.get("SLOEXPORTER_REQUIRE_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)


#: Prometheus 2 (Debian's 2.42) and 3 (built by scripts/build-go-tools.sh)
PROMTOOLS = ("promtool", "promtool3")


def promtool_test_rules(files: list[Path], tools: tuple[str, ...] = PROMTOOLS) -> None:
    """`promtool test rules` on every file with each promtool; fails with their output.

    Files are batched (promtool reads rule files relative to each test file), two
    promtool runs at a time: the machine has two cores.
    """
    paths = [require_tool(t) for t in tools]
    half = (len(files) + 1) // 2
    jobs = [(tool, batch) for tool in paths for batch in (files[:half], files[half:]) if batch]

    def run(job: tuple[str, list[Path]]) -> str | None:
        tool, batch = job
        proc = subprocess.run([tool, "test", "rules", *map(str, batch)], capture_output=True,
                              text=True, timeout=1800)
        if proc.returncode == 0:
            return None
        report = "\n".join(line for line in proc.stdout.splitlines()
                           if line.strip() not in ("", "SUCCESS"))
        return f"{Path(tool).name} exited {proc.returncode}:\n{report[-20000:]}{proc.stderr}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        failures = [f for f in pool.map(run, jobs) if f]
    assert not failures, "\n".join(failures)


def run_sh(script: str, cwd: Path, check: bool = True, first: tuple[str, ...] = (),
           timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a README snippet with bash -euo pipefail, as a user would paste it.

    The folders in `first`, this venv's `sloexporter` and `python3`, then the project's
    tools come first on PATH; `check` fails the test with the output when the snippet fails.
    """
    path = os.pathsep.join([*first, str(Path(sys.executable).parent), str(LOCAL_TOOLS),
                            os.environ["PATH"]])
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd,
                            capture_output=True, text=True, timeout=timeout,
                            env=dict(os.environ, PATH=path, **env))
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


async def terminate(proc: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds: a test never leaves a process behind."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        proc.kill()
        await asyncio.wait_for(proc.wait(), grace)
