"""README.md and docs/*.md: every relative link and image resolves, and the README stays a front door."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 300

FENCE = re.compile(r"^(```|~~~).*?^\1", re.DOTALL | re.MULTILINE)   # fenced code blocks
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)             # inline code: `...`, ``...``
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^\s)]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")


def link_targets(markdown: str) -> list[str]:
    """The targets of the inline links and images of ``markdown`` (``[t](x)``, ``![a](x)``), code left out."""
    text = CODE_SPAN.sub("", FENCE.sub("", markdown))
    return [m.group(1).strip("<>") for m in LINK.finditer(text)]


def broken_links(markdown: str, base: Path) -> list[str]:
    """Relative targets of ``markdown`` that name no existing path under ``base`` (``#anchor`` ignored,
    http(s)/mailto links and same-page anchors skipped)."""
    broken = []
    for target in link_targets(markdown):
        if re.match(r"(https?|mailto):", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (base / path).exists():
            broken.append(target)
    return broken


def test_link_extraction_finds_links_and_images_and_reports_missing_targets(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("x\n")
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"")
    markdown = (
        "See [there](there.md#a-section), ![pic](img/a.png) and [gone](missing.md#x).\n"
        "[web](https://example.org/nowhere.md), [anchor](#top), ![gone too](img/b.png \"title\")\n"
        "`[in code](not-checked.md)`\n\n```\n[in a block](not-checked-either.md)\n```\n")
    assert link_targets(markdown) == ["there.md#a-section", "img/a.png", "missing.md#x",
                                      "https://example.org/nowhere.md", "#top", "img/b.png"]
    assert broken_links(markdown, tmp_path) == ["missing.md#x", "img/b.png"]
    assert broken_links("[ok](there.md) ![ok](img/a.png)", tmp_path) == []


def test_pages_exist() -> None:
    assert (REPO / "README.md").is_file()
    assert len(PAGES) > 1, "docs/*.md pages are missing"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_image_resolves(page: Path) -> None:
    broken = broken_links(page.read_text(), page.parent)
    assert not broken, f"{page.relative_to(REPO)}: links to missing files: {broken}"


def test_readme_is_a_front_door() -> None:
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move reference and results text to docs/")
