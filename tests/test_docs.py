"""The README and the docs/ pages: every relative link resolves, and the README stays short.

A link is `[text](target)`, `![alt](target)` or a `[label]: target` definition, outside
code blocks and code spans. A target with a scheme (https:, mailto:) is not checked. The
path part must name a file or folder that exists, relative to the page; an anchor
(`page.md#a-heading`) must be the GitHub slug of a heading of that page.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 220

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """The text without fenced code blocks and code spans (links there are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slugs(text: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped,
    spaces to hyphens, repeats numbered -1, -2, …"""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))  # a link keeps its text
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(page: Path) -> list[str]:
    """Every relative link of a page that does not resolve, as 'target: why'."""
    prose = _prose(page.read_text(encoding="utf-8"))
    targets = INLINE_LINK.findall(prose) + REF_DEF.findall(prose)
    problems = []
    for target in targets:
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{target}: no such file {dest}")
            continue
        if anchor and dest.suffix == ".md" and anchor not in slugs(dest.read_text(encoding="utf-8")):
            problems.append(f"{target}: {dest.name} has no heading with the anchor #{anchor}")
    return problems


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    problems = broken_links(page)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_readme_maps_every_docs_page():
    readme = _prose((ROOT / "README.md").read_text(encoding="utf-8"))
    linked = {Path(t.partition("#")[0]).name for t in INLINE_LINK.findall(readme) if t.startswith("docs/")}
    missing = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name not in linked)
    assert missing == [], f"docs pages the README's map does not link: {missing}"


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; keep it under {README_MAX_LINES}"


def test_the_checker_finds_broken_links(tmp_path: Path):
    """The link check itself: a missing file, a missing anchor, and what it must not flag."""
    (tmp_path / "other.md").write_text("# Other page\n\n## Node binaries\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md) [ok anchor](other.md#node-binaries) [self](#page) ![img](other.md)\n"
        "[gone](missing.md) [bad anchor](other.md#nowhere) ![gone image](img/none.png)\n"
        "[web](https://example.org/x.md) `[in code](nowhere.md)`\n\n"
        "```\n[in a fence](nowhere.md)\n```\n\n"
        "[ref]: also-missing.md\n"
    )
    found = broken_links(page)
    assert [f.split(":")[0] for f in found] == [
        "missing.md", "other.md#nowhere", "img/none.png", "also-missing.md"]
