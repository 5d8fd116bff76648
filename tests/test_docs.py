"""The documentation stays readable and its links stay true: the README a newcomer reads in
ten minutes is at most 15,000 characters, and every relative link (and image) in the README,
docs/, bench/README.md and CHANGELOG.md names a file that exists, with a heading there when
the link names one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 15_000
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "bench" / "README.md",
        ROOT / "CHANGELOG.md",
        *ROOT.glob("docs/*.md"),
    ]
)
# [text](target) and ![alt](target); a target has no spaces (an optional "title" may follow).
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def _anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to '-'."""
    anchors = set()
    for line in FENCE.sub("", text).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            heading = match.group(1).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return anchors


def _links(page: Path) -> list[str]:
    return LINK.findall(_prose(page.read_text(encoding="utf-8")))


def test_the_readme_is_at_most_15000_characters():
    length = len((ROOT / "README.md").read_text(encoding="utf-8"))
    assert length <= README_LIMIT, f"README.md has {length} characters; the limit is 15,000"


def test_the_pages_checked_exist_and_have_links():
    assert all(page.is_file() for page in PAGES)
    assert len(_links(ROOT / "README.md")) >= 10


def _broken(page: Path) -> list[str]:
    """Each relative link of `page` whose file, or whose heading in a Markdown file, is missing."""
    broken = []
    for target in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_that_exists(page):
    broken = _broken(page)
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_a_missing_file_or_heading_is_reported_and_code_is_not_read_as_a_link(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\nSee [gone](missing.md), [here](#title), [there](other.md#a-code-heading),\n"
        "[wrong](other.md#nope), [web](https://example.com/x.md) and `[code](nowhere.md)`.\n"
        "```\n[fenced](nowhere.md)\n```\n"
    )
    assert _broken(page) == [
        f"missing.md: no file {tmp_path / 'missing.md'}",
        "other.md#nope: no heading #nope in other.md",
    ]


def test_the_readme_links_every_docs_page():
    linked = {target.partition("#")[0] for target in _links(ROOT / "README.md")}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set()
