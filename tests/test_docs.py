"""The documentation holds together: every page is reachable and every local link resolves."""

from __future__ import annotations

import re
from pathlib import Path

from tests.tools import DOCS, ROOT, doc

PAGES = sorted(p.name for p in DOCS.glob("*.md") if p.name != "README.md")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text, fenced, out = path.read_text(encoding="utf-8"), False, set()
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            out.add(_anchor(line.split(" ", 1)[1]))
    return out


def test_every_docs_page_is_in_both_tables_of_contents():
    readme, index = doc("README"), doc("README").split("## Documentation", 1)[1]
    docs_index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        assert f"(docs/{page})" in index, f"README's table does not list docs/{page}"
        assert f"({page})" in docs_index, f"docs/README.md does not list {page}"
    assert "## Quick start" in readme and "## Your first SLO in five minutes" in readme


def test_every_local_link_and_anchor_resolves():
    files = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for source in files:
        text = re.sub(r"```.*?```", "", source.read_text(encoding="utf-8"), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            resolved = (source.parent / path).resolve() if path else source
            if not resolved.exists():
                broken.append(f"{source.relative_to(ROOT)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{source.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, broken


def test_the_readme_stays_short():
    """Reference material lives in docs/; the README is the story, the first steps and
    the headline benchmark figures."""
    assert len(doc("README")) < 9500
